"""Pod profiles end to end: a real JupyterHub asks the real kube-apiserver for a pod through the
spawner's child KubeSpawner. There is no kubelet here, so the test plays it: it runs
jupyterhub-singleuser with the pod's command and environment (its Secret references resolved)
and reports the pod Running and ready; the hub's own checks and the proxy do the rest."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from .conftest import GROUP, VERSION, cluster_spec
from .stack import STATE, Hub, wait_for
from .test_hub import through_proxy

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]
NAMESPACE = "jupyterhub-pods"
IMAGE = "quay.io/jupyter/base-notebook:2025-01-06"
# The image's environment, as far as this test's kubelet provides one.
IMAGE_PATH = "/opt/batchnotebook/jobenv/bin:/usr/bin:/bin"
NOBODY = pwd.getpwnam("nobody")  # the image's user; Jupyter refuses to run as root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def pod_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def hub(kubeconfig, core, pod_port):
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as error:  # it exists from an earlier run
        if error.status != 409:
            raise
    profiles = [
        {
            "name": "local",
            "display_name": "Local server",
            "description": "A pod in the hub's cluster",
            "kubespawner_override": {
                "image": IMAGE,
                "cmd": ["jupyterhub-singleuser"],
                "uid": NOBODY.pw_uid,
                "port": pod_port,
                "cpu_limit": 2,
                "cpu_guarantee": 0.5,
                "mem_limit": "1G",
                "mem_guarantee": "512M",
                "environment": {"SITE_GREETING": "hello"},
                "extra_labels": {"site.example/tier": "interactive"},
            },
        },
        {"name": "staff-only", "groups": ["staff"]},
    ]
    running = Hub(
        kubeconfig,
        NAMESPACE,
        state=STATE / "hub-pods",
        extra_env={"POD_PROFILES": shlex.quote(json.dumps(profiles))},
    )
    running.start()
    yield running
    for user in ("alice", "bob"):
        if (running.api("GET", f"/users/{user}")[1] or {}).get("servers", {}).get(""):
            running.api("DELETE", f"/users/{user}/server")
    running.stop()


class Kubelet:
    """What a kubelet would do for one pod: run its container with its environment and report the
    pod Running, its container ready, on 127.0.0.1."""

    def __init__(self, core: Any, pod: Any) -> None:
        self.core = core
        self.pod = pod
        self.user = pod.spec.containers[0].security_context.run_as_user
        # The container's own filesystem: a home directory its user may write to.
        self.workdir = Path(tempfile.mkdtemp(prefix="bnb-pod-"))
        os.chown(self.workdir, self.user, NOBODY.pw_gid)
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        env = {"PATH": IMAGE_PATH, "HOME": str(self.workdir)}
        for variable in self.pod.spec.containers[0].env:
            if variable.value_from:
                reference = variable.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(reference.name, NAMESPACE)
                env[variable.name] = base64.b64decode(secret.data[reference.key]).decode()
            else:  # the API server leaves an empty value out
                env[variable.name] = variable.value or ""
        return env

    def run(self) -> None:
        container = self.pod.spec.containers[0]
        # This "image" has no entrypoint. The pod's network namespace would have the pod's IP;
        # here it is the loopback.
        argv = [*(container.command or []), *container.args, "--ip=127.0.0.1"]
        log = open(self.workdir / "singleuser.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv,
            env=self.environment(),
            cwd=self.workdir,
            user=self.user,
            group=NOBODY.pw_gid,
            extra_groups=[],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def report_running(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        container = self.pod.spec.containers[0]
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": now,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(self.pod.metadata.name, NAMESPACE, {"status": status})

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        shutil.rmtree(self.workdir)


def pods_of(core, user: str) -> list:
    selector = f"hub.jupyter.org/username={user}"
    return core.list_namespaced_pod(NAMESPACE, label_selector=selector).items


def test_a_pod_server_starts_is_reached_survives_a_hub_restart_and_stops(hub, core, pod_port):
    hub.api("POST", "/users/alice")
    code, answer = hub.api("POST", "/users/alice/server", {"pod": "local"})
    # No kubelet runs the pod: the hub answers that the server is still starting.
    assert code == 202, answer
    [pod] = wait_for(lambda: pods_of(core, "alice"), 60, "alice's pod")

    container = pod.spec.containers[0]
    assert container.image == IMAGE
    # KubeSpawner passes its cmd as args, to the image's entrypoint.
    assert (container.command, container.args) == (None, ["jupyterhub-singleuser"])
    assert container.ports[0].container_port == pod_port
    assert container.resources.limits == {"cpu": "2", "memory": "1073741824"}
    assert container.resources.requests == {"cpu": "500m", "memory": "536870912"}
    labels = pod.metadata.labels
    assert labels["component"] == "singleuser-server"
    assert labels["hub.jupyter.org/username"] == "alice"
    assert labels[f"{GROUP}/pod-profile"] == "local"
    assert labels[f"{GROUP}/hub-user"] == "alice"
    assert labels["site.example/tier"] == "interactive"
    env = {e.name: e for e in container.env}
    assert env["SITE_GREETING"].value == "hello"
    assert env["JUPYTERHUB_USER"].value == "alice"
    assert env["JUPYTERHUB_SERVICE_PREFIX"].value == "/user/alice/"
    # The API token is in a Secret owned by the pod: not in the spec, not on the command line.
    token_ref = env["JUPYTERHUB_API_TOKEN"].value_from.secret_key_ref
    secret = core.read_namespaced_secret(token_ref.name, NAMESPACE)
    token = base64.b64decode(secret.data[token_ref.key]).decode()
    assert [o.uid for o in secret.metadata.owner_references] == [pod.metadata.uid]
    assert token not in json.dumps(core.api_client.sanitize_for_serialization(pod))
    assert not any(token in part for part in [*(container.command or []), *container.args])

    assert container.security_context.run_as_user == NOBODY.pw_uid
    kubelet = Kubelet(core, pod)
    try:
        kubelet.run()
        kubelet.report_running()
        server = wait_for(
            lambda: (s := hub.server("alice")) and s.get("ready") and s, 120, "alice's server"
        )
        assert server["url"] == "/user/alice/"
        # Through the proxy to the server in "the pod", with the token from the Secret.
        code, status = through_proxy(hub, "/user/alice/api/status")
        assert code == 200 and "started" in status
        assert kubelet.environment()["JUPYTERHUB_API_TOKEN"] == token

        hub.restart()
        server = wait_for(lambda: hub.server("alice"), 60, "the restarted hub to know alice")
        assert server["ready"]
        assert through_proxy(hub, "/user/alice/api/status")[0] == 200
        assert [p.metadata.uid for p in pods_of(core, "alice")] == [pod.metadata.uid]

        code, answer = hub.api("DELETE", "/users/alice/server")
        assert code in (202, 204), answer
        wait_for(lambda: hub.server("alice") is None, 60, "alice's server to stop")
        assert pods_of(core, "alice") == []
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_secret(token_ref.name, NAMESPACE)
        assert gone.value.status == 404
    finally:
        kubelet.stop()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pod": "nosuch"}, "there is no pod profile named 'nosuch'"),
        ({"pod": "staff-only"}, "only for members of the group(s) staff"),
        ({"pod": "local", "image": "evil/image"}, "a pod profile takes no other option, not image"),
    ],
)
def test_bad_pod_options_are_refused_before_anything_is_created(hub, core, options, message):
    hub.api("POST", "/users/bob")
    code, answer = hub.api("POST", "/users/bob/server", options)
    assert code == 400, answer
    assert message in answer["message"]
    assert pods_of(core, "bob") == []
    assert not [s for s in core.list_namespaced_secret(NAMESPACE).items if "bob" in s.metadata.name]
    assert hub.server("bob") is None


def logged_in(hub: Hub, user: str) -> urllib.request.OpenerDirector:
    """A browser-like client logged in to the hub's pages (they take no API token)."""
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    browser.open(f"{hub.url}/hub/login", timeout=30).close()
    xsrf = next(cookie.value for cookie in cookies if cookie.name == "_xsrf")
    form = {"username": user, "password": hub.password, "_xsrf": xsrf}
    browser.open(f"{hub.url}/hub/login", urllib.parse.urlencode(form).encode(), 30).close()
    return browser


def test_the_form_shows_pod_profiles_and_live_availability(hub, custom):
    """The form as a user sees it: the batch card with what its cluster's status reports for the
    profile's partitions, and the pod profile in its own section."""
    name = "pods-form"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BatchCluster",
        "metadata": {"name": name},
        # No snapshot of its own: the operator would write the real partitions over these.
        "spec": cluster_spec(availabilityIntervalSeconds=0),
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "batchclusters", body)
    try:
        partition = {"state": "up", "nodesIdle": 1, "nodesTotal": 1, "jobsRunning": 1}
        status = {
            "availabilityTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "partitions": [
                {**partition, "name": "debug", "cpusIdle": 2, "cpusTotal": 4, "jobsPending": 3},
                {**partition, "name": "gpu", "cpusIdle": 8, "cpusTotal": 8, "jobsPending": 0},
            ],
        }
        custom.patch_cluster_custom_object_status(
            GROUP, VERSION, "batchclusters", name, {"status": status}
        )
        with logged_in(hub, "alice").open(f"{hub.url}/hub/spawn", timeout=30) as answer:
            html = answer.read().decode()
        small = html[html.index(f'data-profile="{name}/small"') :]
        assert "debug: 2 of 4 cores idle · 3 jobs waiting" in small
        assert "gpu:" not in small  # not one of the profile's partitions
        assert "as of " in small
        pods = html[html.index("Kubernetes (this cluster)") :]
        assert 'value="pod:local"' in pods and "<strong>Local server</strong>" in pods
        assert "pod:staff-only" not in html
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", name)
