"""Prometheus metrics of notebooks: queue wait, time to ready, notebooks per phase."""

from __future__ import annotations

from prometheus_client import REGISTRY

from batchnotebook_operator.metrics import count_phases, forget_cluster, observe_status_change


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_job_leaving_the_queue_and_a_ready_server_are_observed():
    before = {"phase": "Queued", "submittedAt": "2026-11-23T10:00:00Z"}
    observe_status_change(
        "m1",
        "2026-11-23T09:59:58Z",
        before,
        {"phase": "Starting", "startedAt": "2026-11-23T10:05:00Z"},
    )
    assert sample("batchnotebook_queue_wait_seconds_sum", cluster="m1") == 300
    assert sample("batchnotebook_queue_wait_seconds_count", cluster="m1") == 1
    starting = {**before, "phase": "Starting", "startedAt": "2026-11-23T10:05:00Z"}
    observe_status_change(
        "m1",
        "2026-11-23T09:59:58Z",
        starting,
        {"phase": "Ready", "readyAt": "2026-11-23T10:05:04Z"},
    )
    assert sample("batchnotebook_time_to_ready_seconds_sum", cluster="m1") == 306
    # Updates that complete nothing are not observed twice.
    ready = {**starting, "phase": "Ready", "readyAt": "2026-11-23T10:05:04Z"}
    observe_status_change("m1", "2026-11-23T09:59:58Z", ready, {"phase": "Ready", "port": 1})
    assert sample("batchnotebook_time_to_ready_seconds_count", cluster="m1") == 1
    assert sample("batchnotebook_queue_wait_seconds_count", cluster="m1") == 1


def test_notebooks_are_counted_per_phase_and_forgotten_with_their_cluster():
    count_phases(
        "m2", [{"status": {"phase": "Ready"}}, {"status": {"phase": "Ready"}}, {"status": {}}]
    )
    assert sample("batchnotebook_notebooks", cluster="m2", phase="Ready") == 2
    assert sample("batchnotebook_notebooks", cluster="m2", phase="Pending") == 1
    assert sample("batchnotebook_notebooks", cluster="m2", phase="Queued") == 0
    forget_cluster("m2")
    assert sample("batchnotebook_notebooks", cluster="m2", phase="Ready") is None
