"""The chaos campaign's pure parts: the seeded timeline, the invariants on made-up readings, the
results table, and one fault's bookkeeping on a fake clock."""

from __future__ import annotations

import itertools
import json
import threading
import types

import pytest

from chaos import faults
from chaos.invariants import Checker, Job, Notebook, Reading, Violation, settled
from chaos.results import Outcome, markdown, percentile, table, write
from chaos.schedule import KINDS, Fault, Plan, describe, timeline

# --- schedule ---------------------------------------------------------------------------------


def test_the_same_seed_draws_the_same_timeline():
    assert timeline(Plan(42, 50)) == timeline(Plan(42, 50))
    assert timeline(Plan(42, 50)) != timeline(Plan(43, 50))


def test_a_longer_campaign_starts_with_the_shorter_ones_faults():
    assert timeline(Plan(5, 40))[:10] == timeline(Plan(5, 10))


def test_faults_follow_one_another_within_the_plans_ranges():
    plan = Plan(1, 200, kinds=("operator", "sshd"), gap=(2, 4), down=(1, 3))
    faults_ = timeline(plan)
    assert [f.index for f in faults_] == list(range(200))
    assert {f.kind for f in faults_} == {"operator", "sshd"}
    assert all(1 <= f.down <= 3 for f in faults_)
    for before, after in itertools.pairwise(faults_):
        assert after.at - (before.at + before.down) >= 2 - 0.11  # rounded to 0.1 s


def test_a_share_of_long_outages_and_the_command_that_draws_them_again():
    plan = Plan(4, 200, gap=(1, 2), down=(1, 5), long_share=0.1, long_down=(60, 90))
    downs = [f.down for f in timeline(plan)]
    long = [d for d in downs if d >= 60]
    assert 5 <= len(long) <= 40 and all(d <= 90 for d in long)
    assert all(1 <= d <= 5 for d in downs if d < 60)
    assert describe(plan, []).endswith("--down 1 5 --long 0.1 60 90")
    # Without long outages, the timeline is what it was before they existed.
    assert timeline(Plan(4, 20)) == timeline(Plan(4, 20, long_share=0.0))
    with pytest.raises(ValueError, match="share"):
        Plan(1, 1, long_share=1.5)


def test_every_kind_comes_once_in_each_round_of_kinds():
    drawn = [f.kind for f in timeline(Plan(3, 3 * len(KINDS) + 2))]
    for start in range(0, 3 * len(KINDS), len(KINDS)):
        assert sorted(drawn[start : start + len(KINDS)]) == sorted(KINDS)
    assert drawn[: len(KINDS)] != list(KINDS)  # shuffled, not in the table's order


@pytest.mark.parametrize(
    "bad",
    [
        {"kinds": ("operator", "printer")},
        {"kinds": ()},
        {"gap": (5, 1)},
        {"down": (-1, 2)},
        {"count": -1},
    ],
)
def test_a_plan_refuses_what_it_cannot_draw(bad):
    with pytest.raises(ValueError):
        Plan(**{"seed": 1, "count": 3, **bad})


def test_the_printed_timeline_names_the_command_that_replays_it():
    plan = Plan(9, 2, kinds=("etcd",), gap=(1, 1), down=(2, 2))
    assert describe(plan, timeline(plan)).splitlines() == [
        "seed 9: python -m chaos run --seed 9 --faults 2 --kinds etcd --gap 1 1 --down 2 2",
        "#000 t+    1.0s etcd       down  2.0s",
        "#001 t+    4.0s etcd       down  2.0s",
    ]


# --- invariants -------------------------------------------------------------------------------


def nb(name: str, uid: str, phase: str = "Ready", job: str | None = None, **kw) -> Notebook:
    return Notebook(name, uid, kw.pop("user", "alice"), phase, job, **kw)


def job(job_id: str, uid: str, state: str = "RUNNING", user: str = "alice") -> Job:
    return Job(job_id, f"bnb-{uid}", user, state)


def kinds(violations) -> list[tuple[str, str]]:
    return [(v.invariant, v.notebook) for v in violations]


def test_a_healthy_reading_violates_nothing():
    reading = Reading((nb("a", "u1", job="1"), nb("b", "u2", "Queued", "2")), (job("1", "u1"),
                      job("2", "u2", "PENDING"), job("0", "u9", "COMPLETED")))  # fmt: skip
    assert Checker(2, 60).check(reading, 100, 50) == []


def test_two_live_jobs_for_one_notebook():
    reading = Reading((nb("a", "u1", job="1"),), (job("1", "u1"), job("2", "u1", "PENDING")))
    found = Checker(2, 60).check(reading, 100, None)
    assert kinds(found) == [("one-job", "a")]
    assert "1 (RUNNING), 2 (PENDING)" in found[0].detail


def test_an_ended_job_beside_a_live_one_is_no_second_job():
    reading = Reading((nb("a", "u1", job="2"),), (job("1", "u1", "CANCELLED"), job("2", "u1")))
    assert Checker(2, 60).check(reading, 100, None) == []


def test_a_job_of_another_user():
    reading = Reading((nb("a", "u1", job="1"),), (job("1", "u1", user="bob"),))
    assert kinds(Checker(2, 60).check(reading, 100, None)) == [("right-user", "a")]


def test_ended_while_the_job_runs():
    reading = Reading((nb("a", "u1", "Failed", "1"),), (job("1", "u1"),))
    assert kinds(Checker(2, 60).check(reading, 100, None)) == [("ended-while-running", "a")]
    # Ended with its job ended (or completing) is what should happen.
    for state in ("CANCELLED", "COMPLETING"):
        reading = Reading((nb("a", "u1", "Cancelled", "1"),), (job("1", "u1", state),))
        assert Checker(2, 60).check(reading, 100, None) == []


def test_an_orphan_counts_after_two_poll_intervals_of_quiet():
    checker = Checker(poll_interval=2, terminating_bound=60)
    orphan = Reading((), (job("7", "gone"),))
    assert checker.check(orphan, 100, quiet_since=90) == []  # just seen
    assert checker.check(orphan, 103, quiet_since=90) == []
    assert kinds(checker.check(orphan, 104, quiet_since=90)) == [("no-orphans", "bnb-gone")]
    assert checker.check(orphan, 110, quiet_since=90) == []  # said once


def test_a_completing_job_is_no_orphan():
    checker = Checker(poll_interval=2, terminating_bound=60)
    completing = Reading((), (job("7", "gone", "COMPLETING"),))
    assert checker.check(completing, 100, 0) == []
    assert checker.check(completing, 200, 0) == []


def test_an_orphan_waits_while_a_fault_is_in_force_and_after():
    checker = Checker(poll_interval=2, terminating_bound=60)
    orphan = Reading((), (job("7", "gone"),))
    assert checker.check(orphan, 100, quiet_since=None) == []
    assert checker.check(orphan, 200, quiet_since=None) == []
    assert checker.check(orphan, 201, quiet_since=199) == []
    assert kinds(checker.check(orphan, 203, quiet_since=199)) == [("no-orphans", "bnb-gone")]


def test_a_job_whose_notebook_shows_up_is_no_orphan():
    checker = Checker(poll_interval=2, terminating_bound=60)
    assert checker.check(Reading((), (job("7", "new"),)), 100, 0) == []
    assert checker.check(Reading((nb("n", "new", job="7"),), (job("7", "new"),)), 101, 0) == []
    # Gone again later: the clock starts anew.
    assert checker.check(Reading((), (job("7", "new"),)), 150, 0) == []


def test_stuck_terminating_counts_from_the_end_of_the_last_fault():
    checker = Checker(poll_interval=2, terminating_bound=60)
    deleting = Reading((nb("a", "u1", deleting_since=100),), None)
    assert checker.check(deleting, 500, quiet_since=None) == []
    assert checker.check(deleting, 500, quiet_since=450) == []
    assert kinds(checker.check(deleting, 511, quiet_since=450)) == [("stuck-terminating", "a")]


def test_a_silent_scheduler_judges_no_job():
    reading = Reading((nb("a", "u1", "Failed", "1"),), None)
    assert Checker(2, 60).check(reading, 100, 0) == []


def test_settled_wants_ready_or_an_ended_outside_cancel():
    notebooks = [
        nb("ready", "u1"),
        nb("starting", "u2", "Starting"),
        nb("cancelled", "u3", "Cancelled"),
        nb("still-ready", "u4"),
        nb("deleting", "u5", "Stopping", deleting_since=1),
    ]
    found = settled(notebooks, {"cancelled", "still-ready"}, 100)
    assert kinds(found) == [("ready-or-gone", "starting"), ("ready-or-gone", "still-ready")]


def test_settled_lets_a_short_walltime_end_but_not_hang():
    notebooks = [nb("ended", "u1", "Completed"), nb("ready", "u2"), nb("stuck", "u3", "Starting")]
    found = settled(notebooks, set(), 100, frozenset({"ended", "ready", "stuck"}))
    assert kinds(found) == [("ready-or-gone", "stuck")]


# --- results ----------------------------------------------------------------------------------


def outcome(kind: str, at: float, recovery: float | None, index: int = 0) -> Outcome:
    fault = Fault(index, kind, at, 1)
    healthy = None if recovery is None else at + 1 + recovery
    return Outcome(fault, at, at + 1, healthy, None if recovery is not None else "stuck")


def test_percentiles_are_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([5], 99) == 5


def test_the_table_per_kind_and_violations_by_the_last_fault_before():
    outcomes = [
        outcome("operator", 10, 2.0),
        outcome("slurmctld", 20, 5.0),
        outcome("operator", 30, 4.0),
        outcome("sshd", 40, None),
    ]
    violations = [Violation("one-job", "a", "", 25), Violation("no-orphans", "b", "", 5)]
    rows = {r.kind: r for r in table(outcomes, violations)}
    assert list(rows) == ["operator", "slurmctld", "sshd", "none"]
    assert (rows["operator"].injected, rows["operator"].recovered) == (2, 2)
    assert (rows["operator"].p50, rows["operator"].p99) == (2.0, 4.0)
    # The outage counts from the fault: one second down, then the recovery.
    assert (rows["operator"].outage_p50, rows["operator"].outage_p99) == (3.0, 5.0)
    assert (rows["sshd"].injected, rows["sshd"].recovered, rows["sshd"].p50) == (1, 0, None)
    assert rows["slurmctld"].violations == 1 and rows["none"].violations == 1
    text = markdown(list(rows.values()), "# head")
    assert "| operator | 2 | 2 | 2.0 s | 4.0 s | 3.0 s | 5.0 s | 0 |" in text
    assert "| sshd | 1 | 0 | - | - | - | - | 0 |" in text
    assert "| **all** | 4 | 3 | | | | | 2 |" in text


def test_write_leaves_markdown_and_json(tmp_path):
    write(tmp_path, "# head", [outcome("etcd", 1, 3.0)], [], {"seed": 4})
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["seed"] == 4 and raw["rows"][0]["kind"] == "etcd"
    assert raw["outcomes"][0]["recovery"] == 3.0 and raw["outcomes"][0]["outage"] == 4.0
    assert (tmp_path / "results.md").read_text().startswith("# head\n")


# --- one fault --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_apply_records_injection_restart_and_health():
    clock, calls = Clock(), []
    injector = faults.Injector("x", lambda: calls.append("inject"), lambda: calls.append("up"))
    answers = iter([False, False, True])
    got = faults.apply(
        injector,
        Fault(0, "x", 0, 5),
        lambda since: since == 1005 and next(answers),
        60,
        clock,
        clock.sleep,
    )
    assert calls == ["inject", "up"]
    assert (got.injected_at, got.restarted_at, got.healthy_at) == (1000, 1005, 1006)
    assert got.recovery == 1.0 and got.error is None


def test_apply_says_what_did_not_recover():
    clock = Clock()
    injector = faults.Injector("x", lambda: None, lambda: None)
    got = faults.apply(injector, Fault(0, "x", 0, 1), lambda since: False, 10, clock, clock.sleep)
    assert got.healthy_at is None and got.recovery is None
    assert got.error == "not healthy after 10 s"

    def refuse() -> None:
        raise RuntimeError("no")

    got = faults.apply(faults.Injector("x", refuse, refuse), Fault(0, "x", 0, 1), bool, 10,
                       clock, clock.sleep)  # fmt: skip
    assert got.injected_at is None and got.error == "RuntimeError: no"


# --- what each kind breaks -------------------------------------------------------------------


class FakeNetwork:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add_toxic(self, toxic, names) -> None:
        self.calls.append(("toxic", toxic.type, tuple(names)))

    def drop(self, names, probability=None) -> None:
        self.calls.append(("drop", tuple(names), probability))

    def heal(self) -> None:
        self.calls.append(("heal",))


class FakeReplica:
    def __init__(self, name: str) -> None:
        self.name, self.alive, self.events = name, True, []

    def kill(self) -> None:
        self.alive = False
        self.events.append("kill")

    def start(self) -> None:
        self.alive = True
        self.events.append("start")


class FakeStack:
    def __init__(self) -> None:
        self.network, self.slurm_calls = FakeNetwork(), []
        self.operators = [FakeReplica("a"), FakeReplica("b")]
        self.holder: FakeReplica | None = self.operators[1]
        self.held_down: set[str] = set()
        self.starting = threading.Lock()
        self.plane = types.SimpleNamespace(start=lambda: None)

    def sshd(self, *args: str) -> None:
        self.slurm_calls.append(("sshd", *args))

    def leader(self):
        return self.holder

    def slurm(self, *args: str) -> None:
        self.slurm_calls.append(args)


def test_every_kind_has_an_injector():
    # The hub's comes with the hub (chaos.hub), which needs a real one.
    assert set(faults.injectors(FakeStack())) | {"hub"} == set(KINDS)  # type: ignore[arg-type]


# --- the hub's servers ------------------------------------------------------------------------


def test_the_proxy_must_answer_with_the_users_own_server():
    from chaos.hub import route_answer

    assert route_answer("alice", 200, "stand-in for alice as uid 1001\n") is None
    assert route_answer("alice", 200, "stand-in for alicex as uid 1003\n") is not None
    assert route_answer("alice", 503, "") == "HTTP 503"
    # The hub's own page (no route yet, or any more): not reached, but nobody else's either.
    hub_page = route_answer("alice", 200, "<!DOCTYPE HTML>\n<html>")
    assert hub_page is not None and hub_page.startswith("not the server")


def test_a_ready_server_may_be_unreachable_only_for_a_while_and_never_someone_elses():
    from chaos.hub import Reachability

    seen = Reachability(bound=60)
    assert seen.observe("alice/h1", "HTTP 503", 100, None) is None  # a fault is in force
    assert seen.observe("alice/h1", "HTTP 503", 150, 120) is None  # 30 s since healthy
    late = seen.observe("alice/h1", "HTTP 503", 181, 120)
    assert late is not None and late.invariant == "reachable" and late.detail.endswith("81 s")
    assert seen.observe("alice/h1", None, 182, 120) is None and not seen.failing_since
    wrong = seen.observe("bob/h2", "answered for someone else: 'x'", 10, None)
    assert wrong is not None and wrong.invariant == "right-route"
    seen.observe("bob/h3", "HTTP 502", 10, None)
    seen.forget_all_but({"alice/h1"})
    assert seen.failing_since == {}


def test_the_operator_fault_kills_the_leader_and_starts_it_again():
    stack = FakeStack()
    failover = faults.injectors(stack)["operator"]  # type: ignore[arg-type]
    failover.inject()
    assert stack.operators[1].events == ["kill"] and stack.operators[0].events == []
    assert stack.held_down == {"b"}  # the supervisor leaves it down while the fault lasts
    failover.recover()
    assert stack.operators[1].events == ["kill", "start"] and stack.operators[0].alive
    assert stack.held_down == set()
    stack.holder = None
    with pytest.raises(RuntimeError, match="no replica holds the Lease"):
        failover.inject()


def test_slurm_daemons_crash_and_come_back_with_start():
    stack = FakeStack()
    slurmd = faults.injectors(stack)["slurmd"]  # type: ignore[arg-type]
    slurmd.inject()
    slurmd.recover()
    assert stack.slurm_calls == [("kill", "slurmd"), ("start",)]


def test_network_faults_cut_the_sites_or_everything_and_heal():
    stack = FakeStack()
    chosen = faults.injectors(stack)  # type: ignore[arg-type]
    for kind in ("partition", "loss", "latency", "stall", "reset"):
        chosen[kind].inject()
        chosen[kind].recover()
    assert stack.network.calls == [
        ("drop", ("ssh", "rest"), None), ("heal",),
        ("drop", ("ssh", "rest", "apiserver"), faults.LOSS), ("heal",),
        ("toxic", "latency", ("ssh", "rest", "apiserver")), ("heal",),
        ("toxic", "timeout", ("ssh", "rest")), ("heal",),
        ("toxic", "reset_peer", ("ssh", "rest", "apiserver")), ("heal",),
    ]  # fmt: skip


def test_a_drop_rule_is_ours_and_on_the_loopback_only():
    from chaos.network import drop_rule

    assert drop_rule(4000, "bnb-chaos-x", None) == [
        "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", "4000",
        "-m", "comment", "--comment", "bnb-chaos-x", "-j", "DROP",
    ]  # fmt: skip
    lossy = drop_rule(4000, "bnb-chaos-x", 0.3)
    assert lossy[7:13] == ["-m", "statistic", "--mode", "random", "--probability", "0.3"]


# --- reading the system -----------------------------------------------------------------------


def test_squeue_lines_of_our_namespace_only():
    from chaos.workload import jobs_of

    out = (
        "11|bnb-u1|alice|RUNNING|batchnotebook:chaos-ab/nb-1\n"
        "12|bnb-u2|bob|PENDING|batchnotebook:t-other/nb-2\n"
        "13|bnb-u3|bob|COMPLETED|batchnotebook:chaos-ab/nb|3\n"
        "14|sleep|root|RUNNING|(null)\n"
    )
    assert jobs_of(out, "batchnotebook:chaos-ab/") == (
        Job("11", "bnb-u1", "alice", "RUNNING"),
        Job("13", "bnb-u3", "bob", "COMPLETED"),
    )


def test_a_notebook_from_the_api_server():
    from chaos.workload import notebook_of

    item = {
        "metadata": {"name": "nb", "uid": "u1", "deletionTimestamp": "2026-01-01T00:00:10Z"},
        "spec": {"unixUser": "bob"},
        "status": {"phase": "Stopping", "jobId": "5"},
    }
    assert notebook_of(item) == Notebook("nb", "u1", "bob", "Stopping", "5", 1767225610.0)
    fresh = notebook_of({"metadata": {"name": "n", "uid": "u"}, "spec": {"unixUser": "a"}})
    assert (fresh.phase, fresh.job_id, fresh.deleting_since) == ("Pending", None, None)
