"""Per-group overrides: members of a group get other defaults and limits, in the form, in the
spawner's validation (REST and form alike) and in the operator's, which reads the groups the
hub recorded in the notebook's spec."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado import web

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import for_groups, resolve
from batchnotebook_spawner import BatchNotebookSpawner
from batchnotebook_spawner.form import render_form

COURSE = {
    "name": "course",
    "defaults": {"cpus": 1, "memory": "1G", "walltime": "01:00:00", "extras": {"module": "py"}},
    "limits": {"maxCpus": 2, "maxMemory": "2G", "maxWalltime": "02:00:00"},
    "groupOverrides": [
        {"groups": ["staff"], "limits": {"maxCpus": 8, "maxWalltime": "08:00:00"}},
        {"groups": ["thesis"], "defaults": {"cpus": 2}, "limits": {"maxCpus": 4}},
        {"groups": ["gpu"], "limits": {"maxGpus": 1, "extras": {"module": ["py", "cuda"]}}},
    ],
}


def test_users_in_no_listed_group_get_the_profile_as_written():
    assert for_groups(COURSE, ["students"])["limits"] == COURSE["limits"]
    with pytest.raises(InvalidOptions, match="between 1 and 2"):
        resolve(for_groups(COURSE, []), {"cpus": 3})


def test_an_override_replaces_only_what_it_sets():
    staff = for_groups(COURSE, ["staff"])
    assert staff["limits"] == {"maxCpus": 8, "maxMemory": "2G", "maxWalltime": "08:00:00"}
    assert resolve(staff, {"cpus": 8, "walltime": "08:00:00"}).cpus == 8
    with pytest.raises(InvalidOptions, match="more than profile 'course' allows"):
        resolve(staff, {"memory": "4G"})
    assert COURSE["limits"]["maxCpus"] == 2  # the cluster's spec is not changed


def test_overrides_apply_in_order_and_a_later_one_wins():
    both = for_groups(COURSE, ["thesis", "staff"])
    assert both["limits"]["maxCpus"] == 4 and both["limits"]["maxWalltime"] == "08:00:00"
    assert resolve(both, {}).cpus == 2  # the thesis default


def test_extras_are_merged_key_by_key():
    gpu = for_groups(COURSE, ["gpu"])
    assert gpu["defaults"]["extras"] == {"module": "py"}
    assert resolve(gpu, {"extras": {"module": "cuda"}, "gpus": 1}).extras == {"module": "cuda"}
    with pytest.raises(InvalidOptions, match="extra option 'module' is not allowed"):
        resolve(for_groups(COURSE, []), {"extras": {"module": "cuda"}})


def spawner_for(monkeypatch, groups: list[str], options: dict) -> BatchNotebookSpawner:
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner()
    spawner.user = SimpleNamespace(name="alice", groups=[SimpleNamespace(name=g) for g in groups])
    spawner.user_options = options

    async def cluster_spec(_name: str) -> dict:
        return {"profiles": [COURSE]}

    monkeypatch.setattr(spawner, "cluster_spec", cluster_spec)
    return spawner


async def test_the_spawner_validates_with_the_users_groups_and_records_them(monkeypatch):
    options = {"cluster": "hpc", "profile": "course", "cpus": "6"}
    with pytest.raises(web.HTTPError) as refused:
        await spawner_for(monkeypatch, ["students"], options).validated_spec()
    assert refused.value.status_code == 400 and "between 1 and 2" in str(refused.value)
    spec = await spawner_for(monkeypatch, ["staff", "students"], options).validated_spec()
    assert spec["resources"]["cpus"] == 6
    assert spec["groups"] == ["staff", "students"]  # what the operator validates with


async def test_the_form_shows_each_user_their_own_bounds():
    listing = {"items": [{"metadata": {"name": "hpc"}, "spec": {"profiles": [COURSE]}}]}

    class Custom:
        async def list_cluster_custom_object(self, *_args: str) -> dict:
            return listing

    def html_for(groups: list[str]):
        return render_form(
            SimpleNamespace(
                custom=Custom(),
                user=SimpleNamespace(name="a", groups=[SimpleNamespace(name=g) for g in groups]),
                user_options={},
                handler=None,
            )
        )

    def cpus_input(html: str) -> str:
        start = html.index('name="hpc/course:cpus"')
        return html[start : html.index("</span>", start)]

    assert 'max="2"' in cpus_input(await html_for([]))
    assert 'max="8"' in cpus_input(await html_for(["staff"]))
