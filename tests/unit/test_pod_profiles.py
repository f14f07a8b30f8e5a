"""Pod profiles: configuration checked when set, user_options checked before anything is created,
a child KubeSpawner configured by the profile, the state that lets a restarted hub follow the pod,
and the API token kept out of the pod's spec."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from jupyterhub import orm
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from batchnotebook_spawner import BatchNotebookSpawner
from batchnotebook_spawner.pod import PodServer, TokenSecret, chosen_pod_profile

LOCAL = {
    "name": "local",
    "display_name": "Local server",
    "kubespawner_override": {
        "image": "quay.io/jupyter/base-notebook:2024-12-02",
        "cpu_limit": 1.5,
        "mem_limit": "2G",
        "cmd": ["jupyterhub-singleuser"],
        "extra_labels": {"site/tier": "interactive"},
    },
}
STAFF = {"name": "staff", "groups": ["staff"]}


@pytest.fixture
def spawner(monkeypatch):
    """A BatchNotebookSpawner as the hub makes one, without a Kubernetes API server."""
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **_: None)
    made = BatchNotebookSpawner(
        namespace="hub-ns",
        pod_profiles=[LOCAL, STAFF],
        extra_labels={"site/hub": "main"},
        hub=SimpleNamespace(
            api_url="http://hub:8081/hub/api", base_url="/hub/", public_host="", url="/hub/"
        ),
    )
    made.user = SimpleNamespace(
        name="alice", id=7, url="/user/alice/", groups=[SimpleNamespace(name="physics")]
    )
    return made


@pytest.mark.parametrize(
    "profiles, message",
    [
        (
            [{"name": "a", "kubespawner_override": {"imag": "x"}}],
            "KubeSpawner has no option(s) imag",
        ),
        ([{"name": "a"}, {"name": "a"}], "two pod profiles are named 'a'"),
        ([{"name": "a b"}], "pod profile name 'a b'"),
        ([{"name": "a", "image": "x"}], "unknown key(s) image"),
        ([{"name": "a", "groups": "staff"}], "groups must be a list"),
    ],
)
def test_a_wrong_configuration_is_refused_when_set(spawner, profiles, message):
    with pytest.raises(TraitError) as refused:
        spawner.pod_profiles = profiles
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pod": "nosuch"}, "there is no pod profile named 'nosuch'"),
        ({"pod": "staff"}, "pod profile 'staff' is only for members of the group(s) staff"),
        ({"pod": "local", "cpus": 4}, "a pod profile takes no other option, not cpus"),
        ({"pod": "local", "cluster": "hpc"}, "not cluster"),
    ],
)
def test_bad_options_are_a_400_that_says_why(spawner, options, message):
    with pytest.raises(web.HTTPError) as refused:
        chosen_pod_profile(spawner, options)
    assert refused.value.status_code == 400
    assert message in str(refused.value)


def test_a_pod_profile_for_the_users_groups_is_chosen(spawner):
    assert chosen_pod_profile(spawner, {"pod": "local"}) is LOCAL
    spawner.user.groups.append(SimpleNamespace(name="staff"))
    assert chosen_pod_profile(spawner, {"pod": "staff"}) is STAFF


async def test_the_child_kubespawner_is_configured_by_the_profile(spawner):
    child = PodServer(spawner, LOCAL).child
    assert (child.user, child.hub, child.config) == (spawner.user, spawner.hub, spawner.config)
    assert child.namespace == "hub-ns"
    assert child.image == LOCAL["kubespawner_override"]["image"]
    assert (child.cpu_limit, child.mem_limit) == (1.5, 2 * 1024**3)
    assert child.user_options == {}  # the profile is the whole configuration
    assert child.extra_labels == {
        "batchnotebook.dev/hub-user": "alice",
        "batchnotebook.dev/server-name": "default",
        "batchnotebook.dev/pod-profile": "local",
        "site/hub": "main",
        "site/tier": "interactive",
    }


async def test_the_state_says_a_pod_runs_and_a_restarted_hub_follows_it(spawner, monkeypatch):
    spawner.pod_server = PodServer(spawner, LOCAL)
    state = spawner.get_state()
    assert state["pod"]["profile"] == "local"
    assert state["pod"]["pod_name"] == spawner.pod_server.child.pod_name
    assert "notebook" not in state

    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    restarted = BatchNotebookSpawner(namespace="hub-ns", pod_profiles=[LOCAL], hub=spawner.hub)
    restarted.user = spawner.user
    restarted.load_state(state)
    assert restarted.pod_server.child.pod_name == spawner.pod_server.child.pod_name
    assert restarted.pod_server.child.image == LOCAL["kubespawner_override"]["image"]
    restarted.clear_state()
    assert restarted.pod_server is None
    assert "notebook" in restarted.get_state()  # the next start may choose a batch profile


async def test_a_restarted_hub_follows_a_pod_to_its_new_address(spawner, monkeypatch):
    """The pod restarted (its node did) while the hub did: KubeSpawner's poll finds the new
    address, and the hub's own Server object, which it checks and routes by, must have it too
    (it kept the old one and waited http_timeout on it, then stopped a running server)."""
    spawner.orm_spawner = orm.Spawner(
        name="",
        server=orm.Server(
            proto="http", ip="10.244.1.6", port=8888, base_url="/user/alice/", cookie_name="c"
        ),
    )
    spawner.pod_server = PodServer(spawner, LOCAL)
    assert spawner.server.url == "http://10.244.1.6:8888/user/alice/"  # the hub reads it first

    async def poll_finding_the_pod_moved() -> None:  # what KubeSpawner.poll does then
        spawner.pod_server.child.server.ip = "10.244.1.14"

    monkeypatch.setattr(spawner.pod_server.child, "poll", poll_finding_the_pod_moved)
    assert await spawner.poll() is None
    assert await spawner.get_url() == "http://10.244.1.14:8888/user/alice/"
    assert spawner.server.url == "http://10.244.1.14:8888/user/alice/"


async def test_the_api_token_goes_into_a_secret_not_the_pods_spec(spawner):
    child = PodServer(spawner, LOCAL).child
    child.api_token = "the-token"
    created = []

    class CoreApi:
        async def delete_namespaced_secret(self, name: str, namespace: str) -> None:
            pass

        async def create_namespaced_secret(self, namespace: str, body: dict) -> None:
            created.append((namespace, body))

    child.api = CoreApi()
    pod = await child.modify_pod_hook(child, await child.get_pod_manifest())
    env = {e.name: e for e in pod.spec.containers[0].env}
    for name in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
        assert env[name].value is None
        reference = env[name].value_from.secret_key_ref
        assert (reference.name, reference.key) == (TokenSecret.name(child), name)
    assert "the-token" not in str(pod.to_dict())
    [(namespace, secret)] = created
    assert namespace == "hub-ns"
    assert base64.b64decode(secret["data"]["JUPYTERHUB_API_TOKEN"]) == b"the-token"
    assert secret["metadata"]["labels"]["batchnotebook.dev/pod-profile"] == "local"


async def test_the_sites_kubespawner_labels_and_hook_are_kept(monkeypatch):
    """c.KubeSpawner settings reach the child: Zero to JupyterHub labels user pods with
    hub.jupyter.org/network-access-hub (its NetworkPolicy admits them to the hub), and a site's
    modify_pod_hook still runs, before the one that moves the token into a Secret."""
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **_: None)
    seen = []

    def site_hook(spawner, pod):
        seen.append(pod.metadata.name)
        pod.metadata.annotations = {"site/hooked": "yes"}
        return pod

    config = Config()
    config.KubeSpawner.extra_labels = {"hub.jupyter.org/network-access-hub": "true"}
    config.KubeSpawner.modify_pod_hook = site_hook
    parent = BatchNotebookSpawner(
        config=config,
        namespace="hub-ns",
        pod_profiles=[LOCAL],
        hub=SimpleNamespace(
            api_url="http://hub:8081/hub/api", base_url="/hub/", public_host="", url="/hub/"
        ),
    )
    parent.user = SimpleNamespace(name="alice", id=7, url="/user/alice/", groups=[])
    child = PodServer(parent, LOCAL).child
    assert child.extra_labels["hub.jupyter.org/network-access-hub"] == "true"
    assert child.extra_labels["site/tier"] == "interactive"  # the profile's too

    child.api_token = "the-token"

    class CoreApi:
        async def delete_namespaced_secret(self, name: str, namespace: str) -> None:
            pass

        async def create_namespaced_secret(self, namespace: str, body: dict) -> None:
            pass

    child.api = CoreApi()
    pod = await child.modify_pod_hook(child, await child.get_pod_manifest())
    assert seen == [pod.metadata.name]
    assert pod.metadata.annotations == {"site/hooked": "yes"}
    assert pod.metadata.labels["hub.jupyter.org/network-access-hub"] == "true"
    assert "the-token" not in str(pod.to_dict())
