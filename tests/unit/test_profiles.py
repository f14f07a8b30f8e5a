import pytest

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import find_profile, resolve, split_options

CLUSTER = {
    "profiles": [
        {
            "name": "small",
            "defaults": {"cpus": 1, "memory": "1G", "walltime": "01:00:00", "partition": "debug"},
            "limits": {
                "maxCpus": 4,
                "maxMemory": "8G",
                "maxWalltime": "08:00:00",
                "partitions": ["debug", "batch"],
                "accounts": ["research", "physics"],
                "extras": {"constraint": ["skylake", "icelake"]},
            },
        },
        {"name": "fixed", "defaults": {"cpus": 2, "partition": "debug"}},
    ]
}


def small():
    return find_profile("hpc", CLUSTER, "small")


def test_defaults_fill_in():
    got = resolve(small(), {})
    assert (got.cpus, got.memory, got.walltime, got.partition) == (1, "1G", "01:00:00", "debug")
    assert got.account is None and got.gpus == 0


def test_choices_within_limits():
    got = resolve(
        small(),
        {
            "cpus": "4",
            "memory": "8g",
            "walltime": "8:00:00",
            "partition": "batch",
            "account": "physics",
            "extras": {"constraint": "icelake"},
        },
    )
    assert (got.cpus, got.memory, got.partition, got.account) == (4, "8G", "batch", "physics")
    assert got.memory_mb == 8192 and got.walltime_seconds == 8 * 3600
    assert got.extras == {"constraint": "icelake"}


@pytest.mark.parametrize(
    "requested, message",
    [
        ({"cpus": 5}, "cpus must be between 1 and 4"),
        ({"cpus": 0}, "cpus must be between 1 and 4"),
        ({"cpus": "2; rm -rf ~"}, "whole number"),
        ({"cpus": True}, "whole number"),
        ({"memory": "9G"}, "more than profile 'small' allows"),
        ({"memory": "1G\n#SBATCH --qos=high"}, "is not a size"),
        ({"walltime": "08:00:01"}, "longer than profile 'small' allows"),
        ({"walltime": "tomorrow"}, "is not a time"),
        ({"partition": "gpu"}, "not allowed in profile 'small'"),
        ({"partition": "debug --qos=high"}, "may only contain"),
        ({"account": "$(id)"}, "may only contain"),
        ({"account": "other"}, "not allowed"),
        ({"gpus": 1}, "gpus must be between 0 and 0"),
        ({"extras": {"constraint": "haswell"}}, "not allowed"),
        ({"extras": {"exclusive": "yes"}}, "extra option 'exclusive' is not allowed"),
        ({"script": "x"}, "unknown option"),
        ({"memory": "0"}, "memory must be at least 1M"),
        ({"memory": "0G"}, "memory must be at least 1M"),
        ({"memory": "lots"}, "memory 'lots' is not a size"),
        ({"walltime": "00:00:00"}, "walltime must be at least 00:01:00"),
        ({"walltime": "0:00"}, "walltime must be at least"),
    ],
)
def test_out_of_bounds_and_hostile_values_are_refused(requested, message):
    with pytest.raises(InvalidOptions, match=message):
        resolve(small(), requested)


def test_a_profile_without_limits_allows_only_its_defaults():
    fixed = find_profile("hpc", CLUSTER, "fixed")
    assert resolve(fixed, {"cpus": 2}).cpus == 2
    with pytest.raises(InvalidOptions):
        resolve(fixed, {"cpus": 3})
    with pytest.raises(InvalidOptions, match="memory"):
        resolve(fixed, {"memory": "1G"})


def test_unknown_profile_names_the_choices():
    with pytest.raises(InvalidOptions, match=r"no profile 'huge' \(it has: small, fixed\)"):
        find_profile("hpc", CLUSTER, "huge")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"profile": "small"}, "cluster is required"),
        ({"cluster": "hpc"}, "profile is required"),
        ({"cluster": "hpc", "profile": "small", "image": "x"}, "unknown option"),
        ({"cluster": "../etc", "profile": "small"}, "cluster is required"),
        ("small", "must be an object"),
    ],
)
def test_option_shape(options, message):
    with pytest.raises(InvalidOptions, match=message):
        split_options(options)


def test_split_options():
    assert split_options({"cluster": "hpc", "profile": "small", "cpus": 2}) == (
        "hpc",
        "small",
        {"cpus": 2},
    )
