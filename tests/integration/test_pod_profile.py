"""Pod profiles on a real JupyterHub process and the suite's API server (no node): bad options
are refused before anything is created, and the form shows pod profiles beside the batch ones.
Real pods of a pod profile, reached through Zero to JupyterHub's proxy, are tested on the node
(node/test_z2jh_pods.py)."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime

import pytest
from kubernetes.client import ApiException

from .conftest import GROUP, VERSION, cluster_spec
from .stack import STATE, Hub

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]
NAMESPACE = "jupyterhub-pods"


@pytest.fixture(scope="module")
def hub(kubeconfig, core):
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
        },
        {"name": "staff-only", "groups": ["staff"]},
    ]
    running = Hub(
        kubeconfig,
        NAMESPACE,
        state=STATE / "hub-pods",
        extra_env={"POD_PROFILES": json.dumps(profiles)},
    )
    running.start()
    yield running
    running.stop()


def pods_of(core, user: str) -> list:
    selector = f"hub.jupyter.org/username={user}"
    return core.list_namespaced_pod(NAMESPACE, label_selector=selector).items


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
