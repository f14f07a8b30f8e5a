"""The spawn form: cards per profile, inputs bounded by the limits, pre-filled from the last
choice or a link, and profiles limited to JupyterHub groups."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from batchnotebook_spawner import BatchNotebookSpawner
from batchnotebook_spawner.form import (
    OptionsFromLink,
    options_from_form,
    options_from_query,
    render_form,
)
from tornado import web

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
    async def list_cluster_custom_object(self, *_args: str) -> dict:
        return CLUSTERS


def spawner_like(groups=(), user_options=None, query=None, method="GET"):
    request = SimpleNamespace(
        method=method, query_arguments={k: [v.encode()] for k, v in (query or {}).items()}
    )
    return SimpleNamespace(
        custom=Custom(),
        user=SimpleNamespace(name="alice", groups=[SimpleNamespace(name=g) for g in groups]),
        user_options=user_options or {},
        handler=SimpleNamespace(request=request),
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
