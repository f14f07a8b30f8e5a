"""The spawn form: cards per profile, inputs bounded by the limits, pre-filled from the last
choice or a link, profiles limited to JupyterHub groups, live availability on batch cards, and
pod profiles next to them."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from tornado import web

from batchnotebook_spawner import BatchNotebookSpawner
from batchnotebook_spawner.form import (
    OptionsFromLink,
    availability,
    options_from_form,
    options_from_query,
    render_form,
)

SMALL = {
    "name": "small",
    "displayName": "Small",
    "description": "1 CPU, 1 hour",
    "defaults": {"cpus": 1, "memory": "200M", "walltime": "01:00:00", "partition": "debug"},
    "limits": {
        "maxCpus": 4,
        "maxMemory": "1G",
        "maxWalltime": "02:00:00",
        "partitions": ["debug", "batch"],
        "accounts": ["research", "physics"],
    },
}
FIXED = {"name": "fixed", "defaults": {"cpus": 1, "memory": "2G", "qos": "normal"}}
GPU = {"name": "gpu", "groups": ["gpu-users"], "defaults": {"cpus": 2}, "limits": {"maxGpus": 2}}
CLUSTERS = {
    "items": [
        {"metadata": {"name": "local"}, "spec": {"profiles": [SMALL, FIXED, GPU]}},
        {"metadata": {"name": "alpha"}, "spec": {"profiles": [{"name": "tiny"}]}},
    ]
}


class Custom:
    def __init__(self, listing: dict) -> None:
        self.listing = listing

    async def list_cluster_custom_object(self, *_args: str) -> dict:
        return self.listing


def spawner_like(
    groups=(), user_options=None, query=None, method="GET", listing=CLUSTERS, pod_profiles=()
):
    request = SimpleNamespace(
        method=method, query_arguments={k: [v.encode()] for k, v in (query or {}).items()}
    )
    return SimpleNamespace(
        custom=Custom(listing),
        user=SimpleNamespace(name="alice", groups=[SimpleNamespace(name=g) for g in groups]),
        user_options=user_options or {},
        handler=SimpleNamespace(request=request),
        pod_profiles=list(pod_profiles),
    )


def card(html: str, value: str) -> str:
    start = html.index(f'data-profile="{value}"')
    end = html.find('<div class="bnb-card"', start)
    return html[start : end if end > 0 else None]


async def test_a_card_per_profile_the_user_may_use():
    html = await render_form(spawner_like())
    assert 'value="alpha/tiny"' in html and 'value="local/small"' in html
    assert 'value="local/fixed"' in html
    assert "local/gpu" not in html  # only for the gpu-users group
    assert "1 CPU, 1 hour" in html and "<strong>Small</strong>" in html
    assert "local/gpu" in await render_form(spawner_like(groups=["gpu-users"]))


async def test_inputs_follow_the_profiles_limits():
    html = await render_form(spawner_like())
    small = card(html, "local/small")
    assert 'name="local/small:cpus" type="number"\n      min="1" max="4" value="1"' in small
    assert "at most 1G" in small and "at most 02:00:00" in small
    assert '<select class="form-control" id="bnb-local-small-partition"' in small
    assert "<option selected>debug</option><option >batch</option>" in small
    assert "<option selected>research</option><option >physics</option>" in small
    assert 'name="local/small:gpus"' not in small  # no GPUs to choose: shown fixed
    fixed = card(html, "local/fixed")
    for key in ("cpus", "gpus", "memory", "qos"):  # nothing to change but the account
        assert f'name="local/fixed:{key}"' not in fixed
    assert 'class="bnb-fixed">2G<' in fixed and 'class="bnb-fixed">normal<' in fixed
    gpu = card(await render_form(spawner_like(groups=["gpu-users"])), "local/gpu")
    assert 'min="0" max="2" value="0"' in gpu


async def test_an_account_without_a_list_is_free_text():
    html = await render_form(spawner_like())
    assert 'name="alpha/tiny:account" pattern="[A-Za-z0-9_.-]+"' in card(html, "alpha/tiny")


async def test_the_last_choice_is_chosen_and_filled_in():
    last = {"cluster": "local", "profile": "small", "cpus": "3", "partition": "batch"}
    html = await render_form(spawner_like(user_options=last))
    assert "from your link" not in html
    assert 'value="local/small" checked' in html and 'value="alpha/tiny" checked' not in html
    small = card(html, "local/small")
    assert 'max="4" value="3"' in small and "<option selected>batch</option>" in small


async def test_a_link_chooses_and_fills_in_over_the_last_choice():
    last = {"cluster": "alpha", "profile": "tiny"}
    link = {"cluster": "local", "opt-profile": "small", "cpus": "2", "next": "/x"}
    html = await render_form(spawner_like(user_options=last, query=link))
    assert 'value="local/small" checked' in html
    assert 'max="4" value="2"' in card(html, "local/small")
    assert "options from your link are filled in" in html
    with pytest.raises(OptionsFromLink):  # the hub shows the form instead of starting
        options_from_query({"cluster": ["local"]})


async def test_without_a_known_choice_the_first_card_is_chosen():
    html = await render_form(spawner_like(user_options={"cluster": "gone", "profile": "x"}))
    assert 'value="alpha/tiny" checked' in html


def test_only_the_chosen_cards_values_are_read():
    formdata = {
        "profile": ["local/small"],
        "local/small:cpus": ["2"],
        "local/small:partition": ["batch"],
        "local/small:memory": [""],
        "alpha/tiny:account": ["other"],
    }
    assert options_from_form(formdata) == {
        "cluster": "local",
        "profile": "small",
        "cpus": "2",
        "partition": "batch",
    }


async def test_the_spawner_refuses_a_profile_of_other_groups(monkeypatch):
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner()
    spawner.user = SimpleNamespace(name="alice", groups=[SimpleNamespace(name="staff")])
    spawner.user_options = {"cluster": "local", "profile": "gpu"}

    async def cluster_spec(_name: str) -> dict:
        return CLUSTERS["items"][0]["spec"]

    monkeypatch.setattr(spawner, "cluster_spec", cluster_spec)
    with pytest.raises(web.HTTPError) as refused:
        await spawner.validated_spec()
    assert refused.value.status_code == 400
    assert "only for members of the group(s) gpu-users" in str(refused.value)
    spawner.user.groups.append(SimpleNamespace(name="gpu-users"))
    assert (await spawner.validated_spec())["resources"]["cpus"] == 2


# What the operator writes into a BatchCluster's status: a snapshot of every partition.
STATUS = {
    "availabilityTime": "2026-11-23T04:20:00Z",
    "partitions": [
        {"name": "debug", "state": "up", "cpusIdle": 2, "cpusTotal": 4, "gpusIdle": 0,
         "gpusTotal": 0, "nodesIdle": 1, "nodesTotal": 1, "jobsPending": 3, "jobsRunning": 1},
        {"name": "batch", "state": "down", "cpusIdle": 0, "cpusTotal": 8, "nodesIdle": 0,
         "nodesTotal": 2, "jobsPending": 5, "jobsRunning": 0},
        {"name": "gpu", "state": "up", "cpusIdle": 16, "cpusTotal": 32, "gpusIdle": 3,
         "gpusTotal": 8, "nodesIdle": 1, "nodesTotal": 4, "jobsPending": 0, "jobsRunning": 2},
    ],
}  # fmt: skip
FORTY_SECONDS_LATER = datetime(2026, 11, 23, 4, 20, 40, tzinfo=UTC)


def test_availability_of_the_partitions_a_profile_may_use():
    shown = availability(SMALL, STATUS, FORTY_SECONDS_LATER)
    assert shown.lines == [
        "debug: 2 of 4 cores idle · 0 of 0 GPUs · 3 jobs waiting",
        "batch (down): 0 of 8 cores idle · 5 jobs waiting",  # no GPUs reported: none said
    ]
    assert shown.age == "40 s ago"
    # Without a list, the default partition; without either, every partition.
    only_default = {"name": "d", "defaults": {"partition": "gpu"}}
    assert availability(only_default, STATUS, FORTY_SECONDS_LATER).lines == [
        "gpu: 16 of 32 cores idle · 3 of 8 GPUs · 0 jobs waiting"
    ]
    assert len(availability({"name": "any"}, STATUS, FORTY_SECONDS_LATER).lines) == 3
    later = datetime(2026, 11, 23, 6, 25, tzinfo=UTC)
    assert availability(SMALL, STATUS, later).age == "2 h ago"


def test_no_availability_when_the_cluster_reports_none():
    assert availability(SMALL, {}, FORTY_SECONDS_LATER) is None
    assert (
        availability(SMALL, {"availabilityTime": "2026-11-23T04:20:00Z"}, FORTY_SECONDS_LATER)
        is None
    )
    elsewhere = {"name": "x", "limits": {"partitions": ["other"]}}
    assert availability(elsewhere, STATUS, FORTY_SECONDS_LATER) is None


async def test_cards_show_their_clusters_availability():
    local, alpha = CLUSTERS["items"]
    listing = {"items": [{**local, "status": STATUS}, alpha]}
    html = await render_form(spawner_like(listing=listing))
    small = card(html, "local/small")
    assert "debug: 2 of 4 cores idle · 0 of 0 GPUs · 3 jobs waiting<br>" in small
    assert "batch (down): 0 of 8 cores idle · 5 jobs waiting" in small
    assert "gpu:" not in small  # not one of the profile's partitions
    assert "as of " in small and " ago</small>" in small
    assert "cores idle" not in card(html, "alpha/tiny")  # its cluster reports nothing


POD_PROFILES = [
    {"name": "local", "display_name": "Local server", "description": "A pod in this cluster"},
    {"name": "staff-pod", "groups": ["staff"], "kubespawner_override": {"cpu_limit": 2}},
]


async def test_pod_profiles_have_cards_in_their_own_section():
    html = await render_form(spawner_like(pod_profiles=POD_PROFILES))
    section = html[html.index("<h4>Kubernetes (this cluster)</h4>") :]
    assert 'value="pod:local"' in section and "<strong>Local server</strong>" in section
    assert "A pod in this cluster" in section
    assert "pod:staff-pod" not in html  # only for the staff group
    assert "pod:staff-pod" in await render_form(
        spawner_like(groups=["staff"], pod_profiles=POD_PROFILES)
    )
    assert "Kubernetes (this cluster)" not in await render_form(spawner_like())


async def test_a_pod_profile_is_remembered_and_read_back():
    html = await render_form(spawner_like(user_options={"pod": "local"}, pod_profiles=POD_PROFILES))
    assert 'value="pod:local" checked' in html and 'value="alpha/tiny" checked' not in html
    linked = await render_form(spawner_like(query={"pod": "local"}, pod_profiles=POD_PROFILES))
    assert 'value="pod:local" checked' in linked
    formdata = {"profile": ["pod:local"], "local/small:cpus": ["2"]}
    assert options_from_form(formdata) == {"pod": "local"}


async def test_only_pod_profiles_still_make_a_form():
    html = await render_form(spawner_like(listing={"items": []}, pod_profiles=POD_PROFILES[:1]))
    assert 'value="pod:local" checked' in html and "No cluster profile" not in html
    assert "No cluster profile" in await render_form(spawner_like(listing={"items": []}))
