"""Notebooks on several nodes: `nodes` and `tasks_per_node` within a profile's maxNodes and
maxTasksPerNode, checked by the form, the REST API and the operator alike, refused where the
scheduler cannot allocate several nodes, and rendered into each scheduler's own directives."""

from __future__ import annotations

import subprocess

import pytest
from test_form import card, spawner_like

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import Resources, notebook_resources, profile_resources, resolve
from batchnotebook_operator.render import JobRequest, render
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.schedulers.base import first_exec_host
from batchnotebook_spawner.form import options_from_form, render_form
from batchnotebook_spawner.resources import notebook_spec

MPI = {
    "name": "mpi",
    "defaults": {"cpus": 1, "memory": "4G"},
    "limits": {"maxNodes": 2, "maxTasksPerNode": 4, "maxCpus": 2},
}
SINGLE = {"name": "single", "defaults": {"cpus": 1}, "limits": {"maxCpus": 4}}


def cluster(scheduler: str = "slurm", **settings: str) -> dict:
    return {"scheduler": scheduler, "profiles": [MPI, SINGLE], **settings}


@pytest.mark.parametrize(
    ("profile", "requested", "message"),
    [
        (MPI, {"nodes": 4}, "nodes must be between 1 and 2 in profile 'mpi', not 4"),
        (MPI, {"nodes": 0}, "nodes must be between 1 and 2"),
        (MPI, {"tasks_per_node": 8}, "tasks_per_node must be between 1 and 4"),
        (MPI, {"nodes": "two"}, "nodes must be a whole number"),
        # A profile that says nothing about nodes allows one, as before the key existed.
        (SINGLE, {"nodes": 2}, "nodes must be between 1 and 1 in profile 'single', not 2"),
        (SINGLE, {"tasks_per_node": 2}, "tasks_per_node must be between 1 and 1"),
    ],
)
def test_nodes_and_tasks_stay_within_the_profiles_limits(profile, requested, message):
    with pytest.raises(InvalidOptions, match=message):
        resolve(profile, requested)


def test_a_single_node_spec_is_what_it_was():
    assert "nodes" not in resolve(SINGLE, {}).to_spec()
    chosen = resolve(MPI, {"nodes": "2", "tasks_per_node": 4, "cpus": 2})
    assert (chosen.nodes, chosen.tasks_per_node, chosen.cpus_per_node) == (2, 4, 8)
    assert chosen.to_spec() | {"memory": None} == {
        "nodes": 2,
        "tasks_per_node": 4,
        "cpus": 2,
        "gpus": 0,
        "memory": None,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (cluster("htcondor"), "a notebook on htcondor runs on one node only"),
        (cluster("sge"), "this sge cluster sets no parallelEnvironment"),
    ],
)
def test_schedulers_that_cannot_allocate_several_nodes_refuse_them(spec, message):
    with pytest.raises(InvalidOptions, match=message):
        profile_resources(spec, MPI, (), {"nodes": 2})
    assert profile_resources(spec, MPI, (), {"tasks_per_node": 4}).nodes == 1  # one node: fine
    notebook = {"hubUser": "alice", "unixUser": "alice", "profile": "mpi"}
    with pytest.raises(InvalidOptions, match=message):  # the operator, before it submits
        notebook_resources("c", spec, {**notebook, "resources": {"nodes": 2}})


def test_grid_engine_with_a_parallel_environment_allows_several_nodes():
    resources = profile_resources(cluster("sge", parallelEnvironment="mpi"), MPI, (), {"nodes": 2})
    assert resources.nodes == 2


async def named(spec: dict):
    async def cluster_named(_name: str) -> dict:
        return spec

    return cluster_named


async def test_the_rest_api_refuses_before_anything_is_created():
    options = {"cluster": "c", "profile": "mpi", "nodes": 4}
    with pytest.raises(InvalidOptions, match="nodes must be between 1 and 2"):
        await notebook_spec(options, await named(cluster()), "alice", "", [], "s")
    with pytest.raises(InvalidOptions, match="runs on one node only"):
        await notebook_spec(
            {**options, "nodes": 2}, await named(cluster("htcondor")), "alice", "", [], "s"
        )
    spec = await notebook_spec(
        {**options, "nodes": 2, "tasks_per_node": 2}, await named(cluster()), "alice", "", [], "s"
    )
    assert spec["resources"]["nodes"] == 2 and spec["resources"]["tasks_per_node"] == 2


async def test_the_form_shows_nodes_only_where_a_profile_allows_several():
    listing = {"items": [{"metadata": {"name": "c"}, "spec": cluster()}]}
    html = await render_form(spawner_like(listing=listing))
    mpi = card(html, "c/mpi")
    assert 'name="c/mpi:nodes" type="number"\n      min="1" max="2" value="1"' in mpi
    assert 'name="c/mpi:tasks_per_node" type="number"\n      min="1" max="4"' in mpi
    single = card(html, "c/single")
    assert "nodes" not in single.lower() and "tasks" not in single.lower()
    chosen = options_from_form(
        {"profile": ["c/mpi"], "c/mpi:nodes": ["4"], "c/mpi:tasks_per_node": ["2"]}
    )
    assert chosen == {"cluster": "c", "profile": "mpi", "nodes": "4", "tasks_per_node": "2"}
    with pytest.raises(InvalidOptions, match="nodes must be between 1 and 2"):
        await notebook_spec(chosen, await named(cluster()), "alice", "", [], "s")


def script(scheduler: str, resources: Resources, parallel_environment: str | None = None) -> str:
    text = render(
        BACKENDS[scheduler].default_template(),
        JobRequest(
            job_name="bnb-uid",
            comment="batchnotebook:ns/nb",
            user="alice",
            resources=resources,
            environment={},
            jupyter_command=["jupyterhub-singleuser"],
            parallel_environment=parallel_environment,
        ),
    )
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    return text


def directives(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


TWO_BY_FOUR = Resources(nodes=2, tasks_per_node=4, cpus=2, memory="4G", gpus=1)


@pytest.mark.parametrize(
    ("scheduler", "prefix", "expected", "absent"),
    [
        (
            "slurm",
            "#SBATCH",
            ["--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=2", "--mem=4G", "--gres=gpu:1"],
            ["--ntasks=1"],
        ),
        (
            "pbspro",
            "#PBS",
            ["-l select=2:ncpus=8:mpiprocs=4:mem=4096mb:ngpus=1", "-l place=scatter"],
            [],
        ),
        ("torque", "#PBS", ["-l nodes=2:ppn=8:gpus=1", "-l mem=8192mb"], []),
        ("moab", "#MSUB", ["-l nodes=2:ppn=8:gpus=1", "-l mem=8192mb"], []),
        ("lsf", "#BSUB", ["-n 16", '-R "span[ptile=8]"', '-R "rusage[mem=4096MB]"'], ["hosts=1"]),
        ("sge", "#$", ["-pe mpi 16", "-l h_vmem=512M"], ["-pe smp"]),
    ],
)
def test_each_scheduler_asks_for_the_nodes_in_its_own_words(scheduler, prefix, expected, absent):
    lines = directives(script(scheduler, TWO_BY_FOUR, "mpi"), prefix)
    for directive in expected:
        assert f"{prefix} {directive}" in lines
    assert not [line for line in lines for word in absent if word in line]


@pytest.mark.parametrize(
    ("scheduler", "prefix", "expected"),
    [
        ("slurm", "#SBATCH", ["--ntasks=1", "--cpus-per-task=2"]),
        ("pbspro", "#PBS", ["-l select=1:ncpus=2"]),
        ("torque", "#PBS", ["-l nodes=1:ppn=2"]),
        ("moab", "#MSUB", ["-l nodes=1:ppn=2"]),
        ("lsf", "#BSUB", ["-n 2", '-R "span[hosts=1]"']),
        ("sge", "#$", ["-pe smp 2"]),
    ],
)
def test_one_node_renders_as_before(scheduler, prefix, expected):
    lines = directives(script(scheduler, Resources(cpus=2)), prefix)
    for directive in expected:
        assert f"{prefix} {directive}" in lines
    assert not [line for line in lines if "place=scatter" in line or "--nodes" in line]


def test_tasks_on_one_node_multiply_the_cpus():
    one_node = Resources(tasks_per_node=4, cpus=2)
    assert "#SBATCH --nodes=1" in script("slurm", one_node)
    assert "#SBATCH --ntasks-per-node=4" in script("slurm", one_node)
    assert "#$ -pe smp 8" in script("sge", one_node)
    assert "request_cpus=8" in script("htcondor", one_node)
    assert "#PBS -l select=1:ncpus=8:mpiprocs=4" in script("pbspro", one_node)


@pytest.mark.parametrize(
    ("listed", "first"),
    [
        ("tx-c[1-2]", "tx-c1"),  # Slurm's NodeList
        ("node[07-09,11],gpu01", "node07"),
        ("a/0+b/0", "a"),  # Torque's exec_host
        ("a/0*4+b/0*4", "a"),  # PBS Pro's
        ("2*h1 2*h2", "h1"),  # LSF's bhist
        ("2*h1:2*h2", "h1"),  # LSF's bjobs EXEC_HOST
        ("all.q@n1.example", "n1.example"),  # Grid Engine's master queue
    ],
)
def test_the_first_host_of_an_allocation_is_jupyters(listed, first):
    assert first_exec_host(listed) == first


def test_slurm_accounting_names_the_first_node_of_the_allocation():
    line = "42|bnb-x|alice|RUNNING|0:0|tx-c[1-2]|2026-01-01T09:00:00"
    (job,) = BACKENDS["slurm"]().parse_accounting(line)
    assert job.exec_host == "tx-c1"
