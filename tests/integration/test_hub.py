"""End to end: a real JupyterHub with configurable-http-proxy, the operator, real Slurm, and the
real jupyterhub-singleuser running as the user's batch job."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes.client import ApiException

from .conftest import GROUP, VERSION, cluster_spec
from .stack import JOB_PYTHON, Hub, run, slurm_template_starting, squeue, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.e2e]
CLUSTER = "e2e"


def hub_stack(kubeconfig, custom, core, cluster, namespace, **hub_options):
    """A hub with its own namespace and BatchCluster whose jobs call back through its proxy."""
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as error:  # it exists from an earlier run
        if error.status != 409:
            raise
    running = Hub(kubeconfig, namespace, **hub_options)
    spec = cluster_spec(
        callbackURL=f"{running.url}/services/batchnotebook",
        jupyterCommand=["/opt/batchnotebook/jobenv/bin/jupyterhub-singleuser"],
        python=JOB_PYTHON,
        pollIntervalSeconds=2,
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BatchCluster",
        "metadata": {"name": cluster},
        "spec": spec,
    }
    try:
        custom.create_cluster_custom_object(GROUP, VERSION, "batchclusters", body)
    except ApiException as error:
        if error.status != 409:
            raise
        custom.patch_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster, {"spec": spec})
    running.start()
    yield running
    for user in ("alice", "bob"):
        for name in list((running.api("GET", f"/users/{user}")[1] or {}).get("servers", {})):
            running.api(
                "DELETE", f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
            )
    running.stop()


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(kubeconfig, custom, core, CLUSTER, "jupyterhub-e2e")


def notebooks(custom, namespace):
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks")[
        "items"
    ]


def cluster_like_the_hubs(custom, name, **changes):
    """A second BatchCluster: the hub's own with `changes` (the test deletes it)."""
    spec = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", CLUSTER)["spec"]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BatchCluster",
        "metadata": {"name": name},
        "spec": {**spec, **changes},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "batchclusters", body)
    return name


def job_ids_of(user: str) -> set[str]:
    """Every job of the user Slurm still lists, in any state: a refused spawn adds none (other
    tests' jobs on this shared Slurm may still be there)."""
    out = run("squeue", "--noheader", "--states=all", "-u", user, "--format=%i").stdout
    return set(out.split())


def of_cluster(custom, namespace, cluster):
    return [n for n in notebooks(custom, namespace) if n["spec"]["clusterName"] == cluster]


def start_server(hub, user, options, name=""):
    path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
    for existing in ("alice", "bob"):
        hub.api("POST", f"/users/{existing}")  # create the users if needed
    code, answer = hub.api("POST", path, options)
    assert code in (201, 202), answer
    return wait_for(
        lambda: (s := hub.server(user, name)) and s.get("ready") and s,
        180,
        f"{user}'s server {name!r} to be ready",
    )


def through_proxy(hub, path):
    request = urllib.request.Request(
        f"{hub.url}{path}", headers={"Authorization": f"token {hub.token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, json.loads(answer.read())


def answers_through_proxy(hub, path) -> bool:
    """Whether the server answers 200 through the proxy; an error while a restarted hub comes
    back (the server checks the request's token with the hub: 500 until it answers) is a no."""
    try:
        return through_proxy(hub, path)[0] == 200
    except (urllib.error.HTTPError, OSError):
        return False


def job_of(custom, namespace, user, name=""):
    items = [
        i
        for i in notebooks(custom, namespace)
        if i["spec"]["hubUser"] == user and i["spec"]["serverName"] == name
    ]
    assert len(items) == 1, items
    return items[0]


def test_rest_api_start_reach_stop(hub, custom):
    start_server(
        hub, "alice", {"cluster": CLUSTER, "profile": "small", "cpus": 2, "walltime": "00:30:00"}
    )
    nb = job_of(custom, hub.namespace, "alice")
    jobs = squeue(f"bnb-{nb['metadata']['uid']}")
    assert [(j["user"], j["state"]) for j in jobs] == [("alice", "RUNNING")]
    assert nb["spec"]["resources"]["cpus"] == 2

    code, status = through_proxy(hub, "/user/alice/api/status")
    assert code == 200 and "started" in status
    # The server really runs as alice on the batch node.
    code, contents = through_proxy(hub, "/user/alice/api/contents")
    assert code == 200 and contents["type"] == "directory"

    code, _ = hub.api("DELETE", "/users/alice/server")
    assert code in (202, 204)
    wait_for(lambda: hub.server("alice") is None, 120, "the server to stop")
    wait_for(
        lambda: all(
            j["state"] not in ("RUNNING", "PENDING") for j in squeue(f"bnb-{nb['metadata']['uid']}")
        ),
        60,
        "the job to end",
    )
    wait_for(
        lambda: (
            not [
                i
                for i in notebooks(custom, hub.namespace)
                if i["metadata"]["uid"] == nb["metadata"]["uid"]
            ]
        ),
        60,
        "the BatchNotebook to go",
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cluster": CLUSTER, "profile": "small", "cpus": "1; touch /tmp/pwned"}, "whole number"),
        (
            {"cluster": CLUSTER, "profile": "small", "partition": "debug\n#SBATCH --uid=0"},
            "may only contain",
        ),
        ({"cluster": CLUSTER, "profile": "small", "account": "$(id)"}, "may only contain"),
        ({"cluster": CLUSTER, "profile": "huge"}, "has no profile 'huge'"),
        ({"cluster": "nosuch", "profile": "small"}, "no cluster named 'nosuch'"),
        ({"cluster": CLUSTER, "profile": "small", "cpus": 64}, "cpus must be between 1 and 2"),
        ({"cluster": CLUSTER, "profile": "small", "walltime": "99:00:00"}, "longer than"),
        ({"cluster": CLUSTER, "profile": "small", "cmd": "bash"}, "unknown option"),
    ],
)
def test_hostile_options_are_refused_before_anything_is_created(hub, custom, options, message):
    hub.api("POST", "/users/bob")
    before = len(notebooks(custom, hub.namespace))
    jobs_before = job_ids_of("bob")
    code, answer = hub.api("POST", "/users/bob/server", options)
    assert code == 400, answer
    assert message in answer["message"]
    assert len(notebooks(custom, hub.namespace)) == before
    assert job_ids_of("bob") == jobs_before


def test_hub_restart_keeps_the_server(hub, custom):
    start_server(hub, "bob", {"cluster": CLUSTER, "profile": "small"})
    nb = job_of(custom, hub.namespace, "bob")
    tag = f"bnb-{nb['metadata']['uid']}"
    hub.restart()
    assert through_proxy(hub, "/user/bob/api/status")[0] == 200
    server = wait_for(lambda: hub.server("bob"), 30, "the hub to know bob's server")
    assert server["ready"]
    assert (
        len(squeue(tag)) == 1
        and job_of(custom, hub.namespace, "bob")["metadata"]["uid"] == nb["metadata"]["uid"]
    )
    hub.api("DELETE", "/users/bob/server")
    wait_for(lambda: hub.server("bob") is None, 120, "bob's server to stop")


def test_a_hub_restarted_while_the_job_waits_learns_its_address_when_it_runs(hub, custom):
    """The hub restarts while alice's job waits in the queue: once the job runs, the hub routes
    to the address the job reported (JupyterHub asks get_url()), instead of waiting on its
    placeholder address, giving up and cancelling the job."""
    late = cluster_like_the_hubs(
        custom,
        "e2e-late",
        jobTemplate=slurm_template_starting("now+40"),
    )
    hub.api("POST", "/users/alice")
    try:
        options = {"cluster": late, "profile": "small"}
        code, answer = hub.api("POST", "/users/alice/servers/late", options)
        assert code == 202, answer
        queued = wait_for(
            lambda: [
                n for n in of_cluster(custom, hub.namespace, late)
                if n.get("status", {}).get("phase") == "Queued"
            ],
            60,
            "alice's job to wait in the queue",
        )  # fmt: skip
        tag = f"bnb-{queued[0]['metadata']['uid']}"
        hub.restart()
        server = wait_for(
            lambda: (s := hub.server("alice", "late")) and s.get("ready") and s,
            180,
            "the restarted hub to find alice's server ready",
        )
        status = job_of(custom, hub.namespace, "alice", "late")["status"]
        assert status["phase"] == "Ready"
        assert through_proxy(hub, f"{server['url']}api/status")[0] == 200
        assert [j["state"] for j in squeue(tag)] == ["RUNNING"]
    finally:
        hub.api("DELETE", "/users/alice/servers/late", {"remove": True})
        wait_for(lambda: not of_cluster(custom, hub.namespace, late), 120, "alice's server to go")
        custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", late)


def test_job_cancelled_outside_the_hub(hub, custom):
    start_server(hub, "alice", {"cluster": CLUSTER, "profile": "small"}, name="side")
    nb = job_of(custom, hub.namespace, "alice", "side")
    run("scancel", nb["status"]["jobId"])
    # The operator polls every 2 s, the spawner's poll every 5 s: gone within two of those.
    wait_for(
        # One read: the server may go between two.
        lambda: not (hub.server("alice", "side") or {}).get("ready"),
        2 * 5 + 2 + 3,
        "the hub to see the server stopped",
    )
    # Nothing is left behind, though the hub does not call stop() for a server that ended.
    wait_for(
        lambda: (
            nb["metadata"]["uid"]
            not in {i["metadata"]["uid"] for i in notebooks(custom, hub.namespace)}
        ),
        60,
        "the ended BatchNotebook to go",
    )


def test_named_servers_on_one_user(hub, custom):
    start_server(hub, "bob", {"cluster": CLUSTER, "profile": "small"}, name="one")
    start_server(
        hub, "bob", {"cluster": CLUSTER, "profile": "small", "partition": "batch"}, name="two"
    )
    one, two = (
        job_of(custom, hub.namespace, "bob", "one"),
        job_of(custom, hub.namespace, "bob", "two"),
    )
    assert one["status"]["jobId"] != two["status"]["jobId"]
    assert through_proxy(hub, "/user/bob/one/api/status")[0] == 200
    assert through_proxy(hub, "/user/bob/two/api/status")[0] == 200
    for name in ("one", "two"):
        hub.api("DELETE", f"/users/bob/servers/{name}")


def test_progress_follows_the_status(hub, custom):
    # A job that takes a while to start, so that the hub answers the POST before it is ready
    # (after its slow_spawn_timeout, 10 s) and the progress stream has a story to tell.
    slow = cluster_like_the_hubs(custom, "e2e-slow", prologue="sleep 15")
    try:
        hub.api("POST", "/users/alice")
        code, answer = hub.api("POST", "/users/alice/server", {"cluster": slow, "profile": "small"})
        assert code == 202, answer
        request = urllib.request.Request(
            f"{hub.url}/hub/api/users/alice/server/progress",
            headers={"Authorization": f"token {hub.token}"},
        )
        events = []
        with urllib.request.urlopen(request, timeout=180) as stream:
            for line in stream:
                if line.startswith(b"data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("ready") or events[-1].get("failed"):
                        break
        messages = " | ".join(e.get("message", "") for e in events)
        assert events[-1].get("ready"), messages
        assert "Running, Jupyter is starting: running on vm" in messages, messages
        assert "Ready" in messages or "ready" in messages, messages
        hub.api("DELETE", "/users/alice/server")
        wait_for(lambda: hub.server("alice") is None, 120, "the server to stop")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", slow)


def test_a_refused_job_says_why_and_leaves_nothing(hub, custom, core):
    hub.api("POST", "/users/bob")
    # The profile offers "physics", but Slurm has bob only in "research": sbatch refuses.
    code, answer = hub.api(
        "POST",
        "/users/bob/servers/refused",
        {"cluster": CLUSTER, "profile": "small", "account": "physics"},
    )
    assert code == 400, answer
    assert "Invalid account or account/partition combination" in answer["message"], answer
    wait_for(
        lambda: (
            not [
                i for i in notebooks(custom, hub.namespace) if i["spec"]["serverName"] == "refused"
            ]
        ),
        60,
        "the failed BatchNotebook to be removed",
    )
    secrets = core.list_namespaced_secret(hub.namespace).items
    assert not [s for s in secrets if "refused" in s.metadata.name]


def test_a_hub_user_named_root_gets_a_clear_refusal_and_no_job(hub, custom):
    """Open sign-up or a careless admin makes a hub user `root`: nothing may run as root."""
    code, answer = hub.api("POST", "/users/root")
    assert code in (201, 409), answer
    before = len(notebooks(custom, hub.namespace))
    jobs_before = job_ids_of("root")
    code, answer = hub.api("POST", "/users/root/server", {"cluster": CLUSTER, "profile": "small"})
    assert code == 400, answer
    assert "the Unix account 'root' is refused" in answer["message"], answer
    assert len(notebooks(custom, hub.namespace)) == before
    assert job_ids_of("root") == jobs_before


def test_one_user_cannot_fill_the_queue_for_everyone(hub, custom):
    """bob opens named servers into a queue that will not start them for an hour: the spawner's
    per-user cap (max_queued_per_user, 3 by default) refuses the fourth before creating it, so
    JupyterHub's concurrent_spawn_limit is never his alone."""
    waiting = cluster_like_the_hubs(
        custom,
        "e2e-waiting",
        jobTemplate=slurm_template_starting("now+1hour"),
    )
    hub.api("POST", "/users/bob")
    # Stopped named servers count against named_server_limit_per_user (5 here): remove bob's.
    listed = hub.api("GET", "/users/bob?include_stopped_servers")[1] or {}
    for name in list(listed.get("servers", {})):
        if name:
            hub.api("DELETE", f"/users/bob/servers/{name}", {"remove": True})
    names = [f"wait{i}" for i in range(4)]
    try:
        for name in names[:3]:
            code, answer = hub.api(
                "POST", f"/users/bob/servers/{name}", {"cluster": waiting, "profile": "small"}
            )
            assert code == 202, answer  # pending: the job waits for its start time
        wait_for(
            lambda: len(of_cluster(custom, hub.namespace, waiting)) == 3,
            30,
            "bob's three waiting servers",
        )
        code, answer = hub.api(
            "POST", f"/users/bob/servers/{names[3]}", {"cluster": waiting, "profile": "small"}
        )
        assert code == 429, answer
        assert "already have 3 servers waiting in a queue" in answer["message"], answer
        assert len(of_cluster(custom, hub.namespace, waiting)) == 3
        # alice is not held up by bob's queue.
        code, answer = hub.api(
            "POST", "/users/alice/servers/notblocked", {"cluster": waiting, "profile": "small"}
        )
        assert code == 202, answer
    finally:
        for user, name in [("bob", n) for n in names[:3]] + [("alice", "notblocked")]:
            hub.api("DELETE", f"/users/{user}/servers/{name}", {"remove": True})
        wait_for(
            lambda: not of_cluster(custom, hub.namespace, waiting),
            120,
            "the waiting servers to go",
        )
        custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", waiting)
