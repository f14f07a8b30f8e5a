"""The Helm chart on a real API server: lint, every rendered manifest through server-side
dry-run, install and upgrade (CRDs included), and its RBAC put to work: the operator, run with
its ServiceAccount's token, takes a notebook through real Slurm; the hub's token does the
spawner's calls; `kubectl auth can-i` shows neither can do more than that. And the Dockerfile
through hadolint.

The chart gets a control plane of its own (a fresh one each run), so that installing, adopting
and changing CRDs never disturbs the suite's shared API server.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from devstack import controlplane
from devstack.controlplane import ControlPlane
from devstack.host import OperatorProcess

from .conftest import GROUP, SSHD_DIR, VERSION, cluster_spec
from .stack import API_PORT, OPERATOR_PORT, REPO, STATE, run, squeue, wait_for
from .test_ssh import ssh_connection

pytestmark = [pytest.mark.cluster]

CHART = REPO / "charts" / "batchnotebook"
CACHE_BIN = (
    Path(os.environ.get("BATCHNOTEBOOK_CACHE", Path.home() / ".cache/batchnotebook")) / "bin"
)
PLANE = STATE / "chart-plane"
PLANE_PORT = int(os.environ.get("BATCHNOTEBOOK_TEST_CHART_API_PORT", str(API_PORT + 10)))
# Not the suite's operator port: its session-wide operator may still be running.
CHART_OPERATOR_PORT = int(
    os.environ.get("BATCHNOTEBOOK_TEST_CHART_OPERATOR_PORT", str(OPERATOR_PORT + 30))
)
CALLBACK = {"callbackURL": f"http://127.0.0.1:{CHART_OPERATOR_PORT}"}

# Two releases, one per RBAC flavour, each with its own operator, hub and notebook namespaces:
# the default layout (the chart creates <hub>-notebooks), and one made beforehand.
RELEASES = {
    "cluster": {
        "release": "bnb",
        "namespace": "bnb-system",
        "hub_namespace": "hub",
        "notebook_namespace": "hub-notebooks",
        "values": {
            "hub": {"namespace": "hub", "rbac": {"kubeSpawner": True}},
            "secrets": {"sshKeys": ["hpc-ssh"], "jwtKeys": ["hpc-jwt"]},
            "clusters": {"site": cluster_spec(**CALLBACK)},
            # Its operator elects itself through the Lease, with the token's RBAC.
            "leaderElection": {"enabled": True},
        },
    },
    "namespace": {
        "release": "bnb-ns",
        "namespace": "bnb-ns-system",
        "hub_namespace": "hub2",
        "notebook_namespace": "hub2-notebooks",
        "values": {
            "rbac": {"scope": "namespace"},
            "crds": {"install": False},  # the other release owns them
            "notebookNamespaces": ["hub2-notebooks"],
            "createNotebookNamespaces": False,  # `kubectl create namespace` beforehand
            "hub": {"namespace": "hub2"},
            "secrets": {"sshKeys": ["hpc-ssh"]},
        },
    },
}
OTHER_NAMESPACE = "elsewhere"
HUB_SA = "hub"  # what Zero to JupyterHub names the hub's ServiceAccount


CRDS_NOT_SERVED_YET = "ensure CRDs are installed first"


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    result = run(CACHE_BIN / "helm", "--kubeconfig", PLANE / "kubeconfig", *args, check=False)
    if check and result.returncode:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def kubectl(*args: str | Path, check: bool = True, stdin: str | None = None) -> str:
    result = run(
        CACHE_BIN / "kubectl", "--kubeconfig", PLANE / "kubeconfig", *args, check=False, input=stdin
    )
    if check and result.returncode:
        raise AssertionError(f"kubectl {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


def values_file(flavour: str, **overrides) -> Path:
    path = PLANE / f"values-{flavour}.yaml"
    path.write_text(yaml.safe_dump({**RELEASES[flavour]["values"], **overrides}))
    return path


def render(flavour: str, *options: str) -> list[dict]:
    spec = RELEASES[flavour]
    out = helm(
        "template",
        spec["release"],
        CHART,
        "--namespace",
        spec["namespace"],
        "-f",
        values_file(flavour),
        *options,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def install(flavour: str, command: str = "install", chart: Path = CHART, **overrides) -> None:
    spec = RELEASES[flavour]
    where = ("--namespace", spec["namespace"], "-f", values_file(flavour, **overrides))
    result = helm(command, spec["release"], chart, *where, check=False)
    if result.returncode and command == "install" and CRDS_NOT_SERVED_YET in result.stderr:
        # The post-install hook that creates the first BatchClusters ran before the API server
        # served the CRDs it had just created (seconds on this loaded machine). A site avoids it
        # with `helm install --wait` (README), which waits for the CRDs to be Established; this
        # API server has no node for --wait's Deployment check, so: wait for the CRDs, and the
        # upgrade creates the clusters as ordinary objects of the release.
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        result = helm("upgrade", spec["release"], chart, *where, check=False)
    if result.returncode:
        raise AssertionError(f"helm {command} {spec['release']} failed:\n{result.stderr}")


def service_account(flavour: str) -> tuple[str, str]:
    spec = RELEASES[flavour]
    return spec["namespace"], f"{spec['release']}-batchnotebook-operator"


def token_kubeconfig(namespace: str, account: str) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a TokenRequest token."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=2h").strip()
    admin = yaml.safe_load((PLANE / "kubeconfig").read_text())
    cluster = admin["clusters"][0]
    path = PLANE / f"{namespace}-{account}.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": account,
                        "context": {
                            "cluster": cluster["name"],
                            "user": account,
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": account,
            }
        )
    )
    path.chmod(0o600)
    return path


# ---- the chart's own control plane; the conftest fixtures pointed at it ---


@pytest.fixture(scope="module")
def tools():
    run(REPO / "dev/helm.sh", "build")


@pytest.fixture(scope="module")
def kubeconfig(tools):
    controlplane.stop(PLANE)
    shutil.rmtree(PLANE, ignore_errors=True)
    ControlPlane(PLANE, PLANE_PORT).start()
    for spec in RELEASES.values():
        kubectl("create", "namespace", spec["namespace"])
        kubectl("create", "namespace", spec["hub_namespace"])
        # Zero to JupyterHub creates the hub's ServiceAccount; our chart only binds it.
        kubectl("create", "serviceaccount", HUB_SA, "-n", spec["hub_namespace"])
        # The hub's own Secrets (Zero to JupyterHub's `hub`: cookie secret, proxy token).
        kubectl(
            "create",
            "secret",
            "generic",
            "hub",
            "-n",
            spec["hub_namespace"],
            "--from-literal=hub.config.CryptKeeper.keys=k",
        )
        if spec["values"].get("createNotebookNamespaces") is False:
            kubectl("create", "namespace", spec["notebook_namespace"])
    kubectl("create", "namespace", OTHER_NAMESPACE)
    yield PLANE / "kubeconfig"
    controlplane.stop(PLANE)


@pytest.fixture(scope="module")
def releases(kubeconfig):
    for flavour in RELEASES:
        install(flavour)
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return RELEASES


@pytest.fixture(scope="module")
def api(kubeconfig):
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def custom(api):
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture(scope="module", params=list(RELEASES))
def flavour(request, releases):
    return request.param


@pytest.fixture(scope="module")
def namespace(flavour):
    """Where make_notebook puts notebooks: the flavour's notebook namespace."""
    return RELEASES[flavour]["notebook_namespace"]


def deployment_container(flavour: str) -> dict:
    spec = RELEASES[flavour]
    manifest = helm("get", "manifest", spec["release"], "-n", spec["namespace"]).stdout
    (deployment,) = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]["containers"][0]


def deployment_args(flavour: str, liveness: str) -> list[str]:
    args = deployment_container(flavour)["args"]
    # The same liveness endpoint, on a free local port instead of the pod's.
    return [liveness if a.startswith("http://0.0.0.0:") else a for a in args]


def lease_env(flavour: str) -> dict[str, str]:
    """The Deployment's leader election settings (those with a value: no downward API here)."""
    env = deployment_container(flavour)["env"]
    return {e["name"]: e["value"] for e in env if e["name"].startswith("BATCHNOTEBOOK_LEASE")}


@pytest.fixture(scope="module")
def operator(flavour, slurm):
    namespace, account = service_account(flavour)
    args = deployment_args(flavour, f"http://127.0.0.1:{CHART_OPERATOR_PORT + 2}/healthz")
    # The operator as the chart's Deployment runs it (its arguments, its namespace), but as a
    # local process with the ServiceAccount's token: there is no kubelet here.
    running = OperatorProcess(
        token_kubeconfig(namespace, account),
        CHART_OPERATOR_PORT,
        PLANE,
        name=f"operator-{namespace}",
        args=args,
        env={"BATCHNOTEBOOK_NAMESPACE": namespace, **lease_env(flavour)},
    )
    running.start()
    yield running
    running.stop()


# ---- the chart itself ---


def test_dockerfile_passes_hadolint(tools):
    result = run(CACHE_BIN / "hadolint", "--failure-threshold", "style", REPO / "Dockerfile")
    assert result.stdout == ""


def test_chart_lints_with_both_flavours(kubeconfig):
    for flavour in RELEASES:
        result = helm("lint", "--strict", CHART, "-f", values_file(flavour))
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_values_schema_refuses_unknown_scope_and_keys(kubeconfig):
    for bad in ("rbac.scope=everything", "rbac.scop=cluster", "operator.port=0"):
        result = helm("template", "x", CHART, "--set", bad, check=False)
        assert result.returncode != 0 and "values don't meet the specifications" in result.stderr


def test_notebooks_never_share_the_hubs_namespace(kubeconfig):
    """The operator may read Secrets where notebooks are: the hub's namespace, with the hub's
    own Secrets, is refused, whether named outright or reached through hub.namespace."""
    for options in (
        ["--set", "hub.namespace=hub", "--set", "notebookNamespaces={hub-notebooks,hub}"],
        ["--namespace", "jupyterhub", "--set", "notebookNamespaces={jupyterhub}"],
    ):
        result = helm("template", "x", CHART, *options, check=False)
        assert result.returncode != 0 and "must not include the hub's namespace" in result.stderr
    documents = [
        d for d in yaml.safe_load_all(helm("template", "x", CHART, "-n", "jh").stdout) if d
    ]
    (created,) = [d["metadata"] for d in documents if d["kind"] == "Namespace"]
    assert created["name"] == "jh-notebooks"
    assert created["annotations"]["helm.sh/resource-policy"] == "keep"
    placed = {
        d["metadata"].get("namespace") for d in documents if d["kind"] in ("Role", "RoleBinding")
    }
    assert placed == {"jh", "jh-notebooks"}  # the operator's own events and named Secrets in jh
    roles = {
        (d["metadata"]["name"], d["metadata"]["namespace"]): d["rules"]
        for d in documents
        if d["kind"] == "Role"
    }
    assert set(roles) == {
        ("x-batchnotebook-operator", "jh-notebooks"),
        ("x-batchnotebook-operator-self", "jh"),
        ("x-batchnotebook-hub", "jh-notebooks"),
    }
    assert not any(
        "secrets" in rule["resources"] for rule in roles[("x-batchnotebook-operator-self", "jh")]
    )


def test_two_replicas_only_with_leader_election(kubeconfig):
    """More than one replica needs the Lease (two standalone operators would both submit); with
    it: RollingUpdate, the Lease's env and RBAC (by name, but create), the replicas reaching each
    other's report port, and the optional PodDisruptionBudget."""
    refused = helm("template", "x", CHART, "--set", "replicas=2", check=False)
    assert refused.returncode != 0 and "needs leaderElection.enabled" in refused.stderr
    slow = [
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "leaderElection.renewDeadlineSeconds=20",
    ]
    refused = helm("template", "x", CHART, *slow, check=False)
    assert refused.returncode != 0 and "retryPeriodSeconds < renewDeadlineSeconds" in refused.stderr

    options = ["replicas=2", "leaderElection.enabled=true", "podDisruptionBudget.enabled=true"]
    out = helm("template", "x", CHART, "-n", "ops", *(f"--set={o}" for o in options)).stdout
    documents = [d for d in yaml.safe_load_all(out) if d]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BATCHNOTEBOOK_LEASE"]["value"] == "x-batchnotebook-operator"
    assert env["BATCHNOTEBOOK_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    (own,) = [
        d
        for d in documents
        if d["metadata"]["name"] == "x-batchnotebook-operator-self" and d["kind"] == "Role"
    ]
    lease_rules = [r for r in own["rules"] if r["resources"] == ["leases"]]
    assert {tuple(r["verbs"]): r.get("resourceNames") for r in lease_rules} == {
        ("create",): None,
        ("get", "update"): ["x-batchnotebook-operator"],
    }
    (policy,) = [d for d in documents if d["kind"] == "NetworkPolicy"]
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}} in peers
    (budget,) = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1

    single = [d for d in yaml.safe_load_all(helm("template", "x", CHART).stdout) if d]
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
    (deployment,) = [d for d in single if d["kind"] == "Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_rendered_crds_are_the_repository_crds_with_the_keep_policy(kubeconfig):
    rendered = {d["metadata"]["name"]: d for d in render("cluster") if d["kind"].startswith("Cus")}
    source = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        source[crd["metadata"]["name"]] = crd
    assert rendered.keys() == source.keys()
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["spec"] == source[name]["spec"]
    assert not any(d["kind"].startswith("Cus") for d in render("namespace"))


@pytest.mark.parametrize("flavour_name", list(RELEASES))
def test_every_rendered_manifest_passes_server_side_dry_run(releases, flavour_name):
    # Rendered as an upgrade renders it (the BatchCluster kind known), with the ServiceMonitor
    # and two replicas (their Lease's RBAC and the PodDisruptionBudget).
    documents = render(
        flavour_name,
        "--api-versions=batchnotebook.dev/v1alpha1/BatchCluster",
        "--set=metrics.serviceMonitor.enabled=true",
        "--set=replicas=2,leaderElection.enabled=true,podDisruptionBudget.enabled=true",
    )
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "ServiceAccount", "Service", "NetworkPolicy", "Role"} <= kinds
    assert "PodDisruptionBudget" in kinds
    # The Prometheus Operator's CRD is not installed here: the ServiceMonitor is checked as
    # rendered and left out of the dry-run.
    (monitor,) = [d for d in documents if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
    }
    documents = [d for d in documents if d["kind"] != "ServiceMonitor"]
    out = kubectl(
        "apply", "--dry-run=server", "-o", "name", "-f", "-", stdin=yaml.safe_dump_all(documents)
    )
    assert len(out.split()) == len(documents)


def test_install_creates_crds_clusters_and_a_locked_down_deployment(releases):
    crds = kubectl("get", "crd", "-o", "name").split()
    assert crds == [
        "customresourcedefinition.apiextensions.k8s.io/batchclusters.batchnotebook.dev",
        "customresourcedefinition.apiextensions.k8s.io/batchnotebooks.batchnotebook.dev",
    ]
    # Created by the post-install hook (the kind was unknown when the release was mapped).
    site = yaml.safe_load(kubectl("get", "batchcluster", "site", "-o", "yaml"))
    assert site["spec"]["scheduler"] == "slurm"
    assert site["metadata"]["annotations"]["meta.helm.sh/release-name"] == "bnb"
    deployment = yaml.safe_load(
        kubectl("get", "deployment", "bnb-batchnotebook-operator", "-n", "bnb-system", "-o", "yaml")
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "bnb-batchnotebook-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"livenessProbe", "readinessProbe", "resources"} <= container.keys()
    namespaced = yaml.safe_load(kubectl("get", "deployment", "-n", "bnb-ns-system", "-o", "yaml"))[
        "items"
    ][0]
    assert namespaced["spec"]["template"]["spec"]["containers"][0]["args"][2:] == [
        "--namespace",
        "hub2-notebooks",
        "--log-format",
        "full",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


# ---- RBAC: enough, and no more ---

OPERATOR = "system:serviceaccount:bnb-system:bnb-batchnotebook-operator"
NS_OPERATOR = "system:serviceaccount:bnb-ns-system:bnb-ns-batchnotebook-operator"
HUB = "system:serviceaccount:hub:hub"
HUB2 = "system:serviceaccount:hub2:hub"
NOTEBOOKS, NOTEBOOKS2 = "hub-notebooks", "hub2-notebooks"
BNB, BCL = "batchnotebooks.batchnotebook.dev", "batchclusters.batchnotebook.dev"

CAN_I = [
    # (who, verb, resource[/name] [--subresource=...], namespace: "*" all, "" cluster, allowed)
    (OPERATOR, "watch", BNB, "*", True),
    (OPERATOR, "patch", BNB, NOTEBOOKS, True),
    (OPERATOR, "patch", f"{BNB} --subresource=status", NOTEBOOKS, True),
    (OPERATOR, "watch", BCL, "", True),
    (OPERATOR, "get", BCL, "", True),  # a report's check of hostRewrite and execHosts
    (OPERATOR, "patch", f"{BCL} --subresource=status", "", True),
    (OPERATOR, "get", "secrets", NOTEBOOKS, True),  # the env Secret a notebook names
    (OPERATOR, "get", "secrets/hpc-ssh", "bnb-system", True),
    (OPERATOR, "get", "secrets/hpc-jwt", "bnb-system", True),
    (OPERATOR, "create", "events", NOTEBOOKS, True),
    (OPERATOR, "create", "events", "bnb-system", True),
    (OPERATOR, "list", "secrets", "*", False),
    (OPERATOR, "list", "secrets", NOTEBOOKS, False),
    # None of the hub's own Secrets (cookie secret, proxy token, database password).
    (OPERATOR, "get", "secrets", "hub", False),
    (OPERATOR, "get", "secrets/hub", "hub", False),
    (OPERATOR, "list", "secrets", "hub", False),
    (OPERATOR, "get", "secrets", OTHER_NAMESPACE, False),
    (OPERATOR, "get", "secrets/another", "bnb-system", False),
    (OPERATOR, "create", "secrets", NOTEBOOKS, False),
    (OPERATOR, "create", BNB, NOTEBOOKS, False),
    (OPERATOR, "delete", BNB, NOTEBOOKS, False),
    (OPERATOR, "create", BCL, "", False),
    (OPERATOR, "delete", BCL, "", False),
    (OPERATOR, "delete", "pods", NOTEBOOKS, False),
    (OPERATOR, "create", "pods", "bnb-system", False),
    (OPERATOR, "get", "configmaps", NOTEBOOKS, False),
    (OPERATOR, "create", "events", "hub", False),
    (OPERATOR, "create", "events", OTHER_NAMESPACE, False),
    (OPERATOR, "update", "customresourcedefinitions", "", False),
    (NS_OPERATOR, "watch", BNB, NOTEBOOKS2, True),
    (NS_OPERATOR, "get", "secrets", NOTEBOOKS2, True),
    (NS_OPERATOR, "get", "secrets/hpc-ssh", "bnb-ns-system", True),
    (NS_OPERATOR, "get", "secrets/hpc-jwt", "bnb-ns-system", False),
    (NS_OPERATOR, "watch", BCL, "", True),
    (NS_OPERATOR, "list", BNB, "*", False),
    (NS_OPERATOR, "list", BNB, NOTEBOOKS, False),
    (NS_OPERATOR, "list", BNB, "hub2", False),
    (NS_OPERATOR, "get", "secrets", "hub2", False),
    (NS_OPERATOR, "get", "secrets", "hub", False),
    (NS_OPERATOR, "get", "secrets", NOTEBOOKS, False),
    (NS_OPERATOR, "watch", "customresourcedefinitions", "", True),
    (NS_OPERATOR, "watch", "namespaces", "", True),
    (NS_OPERATOR, "get", "configmaps", NOTEBOOKS2, False),
    (NS_OPERATOR, "create", "events", NOTEBOOKS, False),
    (OPERATOR, "list", "namespaces", "", False),
    (OPERATOR, "create", "leases.coordination.k8s.io", "bnb-system", True),
    (OPERATOR, "get", "leases.coordination.k8s.io/bnb-batchnotebook-operator", "bnb-system", True),
    (
        OPERATOR,
        "update",
        "leases.coordination.k8s.io/bnb-batchnotebook-operator",
        "bnb-system",
        True,
    ),
    (OPERATOR, "update", "leases.coordination.k8s.io/another", "bnb-system", False),
    (OPERATOR, "get", "leases.coordination.k8s.io", "hub", False),
    (NS_OPERATOR, "create", "leases.coordination.k8s.io", "bnb-ns-system", False),
    (HUB, "create", BNB, NOTEBOOKS, True),
    (HUB, "watch", BNB, NOTEBOOKS, True),
    (HUB, "delete", BNB, NOTEBOOKS, True),
    # Exactly the spawner's (and KubeSpawner's) calls on the Secrets it creates.
    (HUB, "create", "secrets", NOTEBOOKS, True),
    (HUB, "get", "secrets", NOTEBOOKS, True),
    (HUB, "patch", "secrets", NOTEBOOKS, True),
    (HUB, "delete", "secrets", NOTEBOOKS, True),
    (HUB, "list", "secrets", NOTEBOOKS, False),
    (HUB, "watch", "secrets", NOTEBOOKS, False),
    (HUB, "update", "secrets", NOTEBOOKS, False),
    (HUB, "list", "secrets", "*", False),
    (HUB, "list", BCL, "", True),
    (HUB, "get", BCL, "", True),
    (HUB, "create", "pods", NOTEBOOKS, True),  # hub.rbac.kubeSpawner
    (HUB, "patch", BNB, NOTEBOOKS, False),  # the spawner never changes a notebook
    # Nothing from this chart in the hub's own namespace (Zero to JupyterHub grants that).
    (HUB, "create", BNB, "hub", False),
    (HUB, "create", "secrets", "hub", False),
    (HUB, "create", "pods", "hub", False),
    (HUB, "create", BNB, OTHER_NAMESPACE, False),
    (HUB, "get", "secrets", OTHER_NAMESPACE, False),
    (HUB, "get", "secrets", NOTEBOOKS2, False),
    (HUB, "list", BNB, "*", False),
    (HUB, "patch", f"{BNB} --subresource=status", NOTEBOOKS, False),
    (HUB, "patch", BCL, "", False),
    (HUB, "create", BCL, "", False),
    (HUB, "delete", BCL, "", False),
    (HUB, "create", "pods", NOTEBOOKS2, False),
    (HUB2, "create", "secrets", NOTEBOOKS2, True),
    (HUB2, "list", "secrets", NOTEBOOKS2, False),
    (HUB2, "create", "pods", NOTEBOOKS2, False),  # no hub.rbac.kubeSpawner there
    (HUB2, "create", BNB, "hub2", False),
]


def test_can_i_matrix(releases):
    wrong = []
    for who, verb, resource, namespace, allowed in CAN_I:
        where = ["-A"] if namespace == "*" else ["-n", namespace] if namespace else []
        answer = kubectl(
            "auth", "can-i", verb, *resource.split(), *where, f"--as={who}", check=False
        )
        if (answer.strip() == "yes") != allowed:
            wrong.append(f"{who} {verb} {resource} in {namespace or 'cluster'}: {answer.strip()}")
    assert not wrong, "\n".join(wrong)


def test_operator_with_its_token_runs_a_notebook_end_to_end(
    operator, make_cluster, make_notebook, wait_phase, custom, core, namespace
):
    cluster = make_cluster(**CALLBACK)
    notebook = make_notebook(cluster, user="alice")
    name, uid = notebook["metadata"]["name"], notebook["metadata"]["uid"]

    status = wait_phase(name, "Ready", timeout=90)
    (job,) = squeue(f"bnb-{uid}")
    assert job["user"] == "alice" and status["jobId"] == job["id"]
    assert custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)["status"]
    reasons = {
        e.reason
        for e in core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        ).items
    }
    assert {"Submitted", "Running", "Ready"} <= reasons

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: not any(j["state"] in ("PENDING", "RUNNING") for j in squeue(f"bnb-{uid}")),
        60,
        "the job to be cancelled",
    )
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "batchnotebooks", field_selector=f"metadata.name={name}"
            )["items"]
        ),
        60,
        "the notebook's finalizer to be removed",
    )
    denied = refused_api_calls(operator.log_path.read_text())
    assert not denied, "\n".join(denied)


@pytest.fixture
def ssh_key_secret(login_node, core, flavour):
    """The login node's key in the Secret the chart lets the operator read by name."""
    namespace = RELEASES[flavour]["namespace"]
    key = base64.b64encode((SSHD_DIR / "id_ed25519").read_bytes()).decode()
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hpc-ssh"}, "data": {"ssh-privatekey": key}}
    )
    yield "hpc-ssh"
    core.delete_namespaced_secret("hpc-ssh", namespace)


def test_operator_with_its_token_reads_its_named_ssh_key(
    operator, ssh_key_secret, make_cluster, make_notebook, wait_phase, custom, namespace
):
    cluster = make_cluster(connection=ssh_connection(ssh_key_secret), **CALLBACK)
    notebook = make_notebook(cluster, user="bob")
    name, uid = notebook["metadata"]["name"], notebook["metadata"]["uid"]
    status = wait_phase(name, "Ready", timeout=90)
    (job,) = squeue(f"bnb-{uid}")
    assert job["user"] == "bob" and status["jobId"] == job["id"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: not any(j["state"] in ("PENDING", "RUNNING") for j in squeue(f"bnb-{uid}")),
        60,
        "the job to be cancelled over ssh",
    )
    denied = refused_api_calls(operator.log_path.read_text())
    assert not denied, "\n".join(denied)


def refused_api_calls(log: str) -> list[str]:
    """The operator's log lines about API calls RBAC refused: kubernetes_asyncio's ApiException
    prints "(403)" and its reason; kopf says when it cannot post an event. (A bare "403" would
    also match a timestamp's milliseconds.)"""
    refused = re.compile(r"\(403\)|Forbidden|cannot post event")
    return [line for line in log.splitlines() if refused.search(line)]


def forbidden(call, *args) -> bool:
    with pytest.raises(client.ApiException) as denied:
        call(*args)
    return denied.value.status == 403


def test_hub_token_does_what_the_spawner_does_and_no_more(releases):
    hub_api = config.new_client_from_config(config_file=str(token_kubeconfig("hub", HUB_SA)))
    hub_core, hub_custom = client.CoreV1Api(hub_api), client.CustomObjectsApi(hub_api)
    name = f"nb-hubtoken-{uuid.uuid4().hex[:6]}"
    secret = {"metadata": {"name": f"{name}-env"}, "data": {"K": base64.b64encode(b"v").decode()}}
    notebook = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BatchNotebook",
        "metadata": {"name": name},
        "spec": {
            "clusterName": "site",
            "profile": "small",
            "hubUser": "alice",
            "unixUser": "alice",
            "envSecretName": f"{name}-env",
        },
    }
    hub_core.create_namespaced_secret(NOTEBOOKS, secret)
    hub_custom.create_namespaced_custom_object(
        GROUP, VERSION, NOTEBOOKS, "batchnotebooks", notebook
    )
    hub_core.patch_namespaced_secret(f"{name}-env", NOTEBOOKS, {"metadata": {"labels": {"a": "b"}}})
    assert hub_core.read_namespaced_secret(f"{name}-env", NOTEBOOKS).data == secret["data"]
    listed = hub_custom.list_namespaced_custom_object(GROUP, VERSION, NOTEBOOKS, "batchnotebooks")
    assert name in {i["metadata"]["name"] for i in listed["items"]}
    clusters = hub_custom.list_cluster_custom_object(GROUP, VERSION, "batchclusters")
    assert "site" in {i["metadata"]["name"] for i in clusters["items"]}
    assert hub_custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", "site")

    # Other users' Secrets cannot be enumerated, not even those the hub made.
    assert forbidden(hub_core.list_namespaced_secret, NOTEBOOKS)
    assert forbidden(hub_core.list_secret_for_all_namespaces)
    assert forbidden(
        hub_custom.create_namespaced_custom_object,
        GROUP,
        VERSION,
        OTHER_NAMESPACE,
        "batchnotebooks",
        notebook,
    )
    assert forbidden(
        hub_custom.patch_cluster_custom_object,
        GROUP,
        VERSION,
        "batchclusters",
        "site",
        {"metadata": {"labels": {"a": "b"}}},
    )

    hub_custom.delete_namespaced_custom_object(GROUP, VERSION, NOTEBOOKS, "batchnotebooks", name)
    hub_core.delete_namespaced_secret(f"{name}-env", NOTEBOOKS)


@pytest.mark.parametrize("flavour_name", list(RELEASES))
def test_operator_token_cannot_read_the_hubs_own_secrets(releases, flavour_name):
    """The attack: the operator's token (a compromised operator) after the hub's cookie secret."""
    spec = RELEASES[flavour_name]
    operator_api = config.new_client_from_config(
        config_file=str(token_kubeconfig(*service_account(flavour_name)))
    )
    operator_core = client.CoreV1Api(operator_api)
    assert forbidden(operator_core.read_namespaced_secret, "hub", spec["hub_namespace"])
    assert forbidden(operator_core.list_namespaced_secret, spec["hub_namespace"])
    assert forbidden(operator_core.list_namespaced_secret, spec["notebook_namespace"])
    # What it is for: a notebook's env Secret, in the notebooks' namespace.
    kubectl(
        "create",
        "secret",
        "generic",
        "nb-optoken-env",
        "-n",
        spec["notebook_namespace"],
        "--from-literal=K=v",
    )
    try:
        env = operator_core.read_namespaced_secret("nb-optoken-env", spec["notebook_namespace"])
        assert env.data == {"K": base64.b64encode(b"v").decode()}
    finally:
        kubectl("delete", "secret", "nb-optoken-env", "-n", spec["notebook_namespace"])


# ---- upgrade ---


def test_upgrade_applies_changed_values_and_changed_crds(releases, tmp_path):
    # The chart as released next: a copy (links followed) whose BatchCluster CRD gained a field.
    chart = tmp_path / "batchnotebook"
    shutil.copytree(CHART, chart, symlinks=False)
    crd_path = chart / "files/crds/batchnotebook.dev_batchclusters.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["upgradeProbe"] = {"type": "string"}
    crd_path.write_text(yaml.safe_dump(crd))

    def served_spec_fields() -> set[str]:
        served = yaml.safe_load(kubectl("get", "crd", BCL, "-o", "yaml"))
        return set(
            served["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
                "properties"
            ]
        )

    def deployment_args_now() -> list[str]:
        return yaml.safe_load(
            kubectl(
                "get",
                "deployment",
                "bnb-batchnotebook-operator",
                "-n",
                "bnb-system",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].args}",
            )
        )

    def history() -> list[dict]:
        return yaml.safe_load(helm("history", "bnb", "-n", "bnb-system", "-o", "yaml").stdout)

    assert "upgradeProbe" not in served_spec_fields()
    before = history()  # one revision, or two when install() had to finish with an upgrade
    install("cluster", "upgrade", chart, operator={"verbose": True})
    assert "upgradeProbe" in served_spec_fields()
    assert "--verbose" in deployment_args_now()
    after = history()
    assert [h["revision"] for h in after] == [h["revision"] for h in before] + [len(before) + 1]
    assert after[-1]["status"] == "deployed"
    # The upgrade adopted the hook-made BatchCluster: now an ordinary object of the release.
    manifest = helm("get", "manifest", "bnb", "-n", "bnb-system").stdout
    assert "kind: BatchCluster" in manifest

    # And back: the CRDs follow the chart both ways.
    install("cluster", "upgrade")
    assert "upgradeProbe" not in served_spec_fields()
    assert "--verbose" not in deployment_args_now()
