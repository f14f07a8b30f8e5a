from __future__ import annotations

import base64
import os
import secrets
import uuid

import pytest
from kubernetes import client, config

from .stack import (
    JOB_PYTHON,
    OPERATOR_PORT,
    REPO,
    STAND_IN,
    STATE,
    Operator,
    delete_notebook,
    run,
    start_control_plane,
    start_slurm,
    wait_for,
)

GROUP, VERSION = "batchnotebook.dev", "v1alpha1"
# Where the operator's own Secrets live (SSH and JWT keys): the test operator inherits this
# environment, so it reads the same variable.
OPERATOR_NAMESPACE = os.environ.get("BATCHNOTEBOOK_NAMESPACE", "default")
# Each test stack has its own login node for the ssh transport (dev/sshd.sh), next to its
# operator's ports unless told otherwise, its keys in the state directory.
SSHD_PORT = int(os.environ.get("BATCHNOTEBOOK_TEST_SSHD_PORT", str(OPERATOR_PORT + 22)))
SSHD_DIR = STATE / "sshd"


@pytest.fixture(scope="session")
def kubeconfig():
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    return start_control_plane()


@pytest.fixture(scope="session")
def slurm():
    start_slurm()


@pytest.fixture(scope="session")
def api(kubeconfig):
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def custom(api):
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="session")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def operator(kubeconfig, slurm):
    running = Operator(kubeconfig)
    running.start()
    yield running
    running.stop()


def sshd(*args: str) -> str:
    env = {
        **os.environ,
        "BATCHNOTEBOOK_STATE": str(STATE),
        "BATCHNOTEBOOK_SSHD_PORT": str(SSHD_PORT),
    }
    return run(REPO / "dev/sshd.sh", *args, env=env).stdout


@pytest.fixture(scope="module")
def login_node(kubeconfig, slurm):
    sshd("install")
    sshd("start")
    yield
    sshd("stop")


@pytest.fixture
def operator_secret(core):
    """Makes Secrets in the operator's namespace, as an admin would with `kubectl create secret
    generic NAME --from-file=KEY=FILE`; deletes them afterwards."""
    created = []

    def make(prefix: str, data: dict[str, bytes]) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            {
                "metadata": {"name": name},
                "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
            },
        )
        created.append(name)
        return name

    yield make
    for name in created:
        core.delete_namespaced_secret(name, OPERATOR_NAMESPACE)


@pytest.fixture(scope="module")
def namespace(core):
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def cluster_spec(**overrides) -> dict:
    spec = {
        "scheduler": "slurm",
        "callbackURL": f"http://127.0.0.1:{OPERATOR_PORT}",
        "allowInsecureCallback": True,  # the report never leaves this machine
        "execHosts": {"allowLoopback": True},  # the jobs run on this machine
        "pollIntervalSeconds": 2,
        "python": JOB_PYTHON,
        "jupyterCommand": [JOB_PYTHON, "-c", STAND_IN],
        "profiles": [
            {
                "name": "small",
                "displayName": "Small",
                "description": "1 CPU, 1 hour",
                "defaults": {
                    "cpus": 1,
                    "memory": "200M",
                    "walltime": "01:00:00",
                    "partition": "debug",
                },
                "limits": {
                    "maxCpus": 2,
                    "maxMemory": "1G",
                    "maxWalltime": "02:00:00",
                    "partitions": ["debug", "batch"],
                    "accounts": ["research", "physics"],
                },
            },
        ],
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def make_cluster(custom):
    created = []

    def make(name: str | None = None, **overrides) -> str:
        name = name or f"itest-{uuid.uuid4().hex[:6]}"
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            "batchclusters",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BatchCluster",
                "metadata": {"name": name},
                "spec": cluster_spec(**overrides),
            },
        )
        created.append(name)
        return name

    yield make
    for name in created:
        try:  # the operator keeps a cluster until its notebooks are gone
            custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", name)
        except client.ApiException as error:
            if error.status != 404:
                raise


def owned_by(notebook: dict) -> dict:
    """The patch that gives a notebook's Secret to it, as the spawner does."""
    meta = notebook["metadata"]
    owner = {"apiVersion": notebook["apiVersion"], "kind": "BatchNotebook"}
    return {"metadata": {"ownerReferences": [{**owner, "name": meta["name"], "uid": meta["uid"]}]}}


@pytest.fixture
def make_notebook(custom, core, namespace):
    """Creates a Secret and a BatchNotebook the way the spawner does; deletes them afterwards
    (the operator cancels their jobs)."""
    created = []

    def make(cluster: str, user: str = "alice", name: str | None = None, **spec_overrides) -> dict:
        name = name or f"nb-{user}-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": f"{name}-env"},
                "data": {
                    k: base64.b64encode(v.encode()).decode()
                    for k, v in {
                        "JUPYTERHUB_USER": user,
                        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:0/user/" + user + "/",
                        "BATCHNOTEBOOK_REPORT_TOKEN": secrets.token_urlsafe(16),
                    }.items()
                },
            },
        )
        spec = {
            "clusterName": cluster,
            "profile": "small",
            "hubUser": user,
            "unixUser": user,
            "envSecretName": f"{name}-env",
            **spec_overrides,
        }
        created.append(name)
        notebook = custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "batchnotebooks",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BatchNotebook",
                "metadata": {"name": name},
                "spec": spec,
            },
        )
        # The operator uses only a Secret its notebook owns.
        core.patch_namespaced_secret(f"{name}-env", namespace, owned_by(notebook))
        return notebook

    yield make
    for name in created:
        delete_notebook(core, custom, namespace, name)

    # Their jobs are cancelled by the operator: wait, so that no test leaves a job behind.
    def gone() -> bool:
        left = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks")
        return not {i["metadata"]["name"] for i in left["items"]} & set(created)

    if created:
        wait_for(gone, 90, "the test's notebooks (and their jobs) to go")


@pytest.fixture
def notebook_status(custom, namespace):
    def get(name: str) -> dict:
        return custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "batchnotebooks", name
        ).get("status", {})

    return get


@pytest.fixture
def wait_phase(notebook_status):
    def wait(name: str, *phases: str, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (s := notebook_status(name)).get("phase") in phases and s,
            timeout,
            f"{name} to reach {'/'.join(phases)}",
        )

    return wait
