"""Fixtures of the tests on the real node: a control plane with a node of its own (dev/devstack)
and our chart's operator on it. Package-scoped: the node runs while these tests do, not beside
the rest of the suite."""

from __future__ import annotations

import shutil

import pytest

from devstack import cluster

from ..stack import API_PORT, STATE
from . import z2jh as zero_to_jupyterhub
from .deployment import need_z2jh, operator_installed


@pytest.fixture(scope="package")
def cluster_node():
    """A control plane with a real node, in a state directory and on an API port of its own
    (STATE-node, the API port + 2000): the other tests' API server has no node."""
    state = STATE.with_name(f"{STATE.name}-node")
    # Fresh each run, as on a new machine: what an earlier run left in etcd would change the
    # outcome (a release or namespace that exists already).
    cluster.down(state)
    shutil.rmtree(state, ignore_errors=True)
    running = cluster.up(state, API_PORT + 2000)
    yield running
    cluster.down(state)


@pytest.fixture(scope="package")
def operator_pod(cluster_node, slurm):
    """Our chart's operator on the node (deployment.py)."""
    with operator_installed(cluster_node) as node:
        yield node


@pytest.fixture(scope="package")
def z2jh(operator_pod):
    """Zero to JupyterHub's chart beside the operator (z2jh.py)."""
    need_z2jh()
    with zero_to_jupyterhub.installed(operator_pod) as hub:
        yield hub


@pytest.fixture
def late_cluster(z2jh):
    with zero_to_jupyterhub.late_cluster(z2jh.node) as name:
        yield name
