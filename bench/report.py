"""bench/results/results.md and its plots, from the raw measurements (bench/results/raw.json).

`python -m bench.report [DIR]` rewrites them from DIR/raw.json without measuring again."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from .common import summary

TARGET_RSS_MIB = 200
TARGET_CPU_FRACTION = 0.05
TARGET_OVERHEAD_P99 = 2.0
SIMULTANEOUS_SPAWNS = 300


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _busy(burst: dict) -> str:
    if "machine_cpu_busy" not in burst:
        return "-"
    return (
        f"{100 * burst['machine_cpu_busy']:.0f} %, {burst['operator_cpu_cores']:.2f}, "
        f"{1000 * burst['api_write_seconds']:.0f}"
    )


def _started_first(run: dict) -> str:
    """How many jobs started before the status said they were submitted (their part: 0)."""
    first = run.get("start_before_status")
    return f" ({first} started first)" if first else ""


def _p(values: list[float] | None) -> str:
    """p50 / p99 of a list of seconds."""
    s = summary(values or [])
    return "-" if not s["count"] else f"{s['p50']:.2f} / {s['p99']:.2f}"


def _ratio(theirs: float | None, ours: float | None) -> str:
    if theirs is None or ours is None:
        return "-"
    if ours == 0:
        return "∞" if theirs else "1"
    return f"{theirs / ours:.1f}x"


def per_minute(run: dict, tools: tuple[str, ...] = ("squeue",)) -> float:
    steady = run["steady"]
    return sum(steady["calls"].get(t, 0) for t in tools) * 60 / steady["seconds"]


def most_in_one_interval(run: dict) -> int:
    """The most status queries that fell into any one poll interval of the steady window (a
    window a little shorter than the interval: rounds start a few milliseconds late or early)."""
    times = run["steady"]["status_query_times"]
    width = 0.95 * run["poll_interval"]
    return max((sum(1 for t in times if start <= t < start + width) for start in times), default=0)


def per_interval(run: dict, count: float) -> float:
    return count * run["poll_interval"] / run["steady"]["seconds"]


# What the operator itself asks of the API server; the API server's own informers (WATCH nodes,
# ...) and leases also land in apiserver_request_total.
OPERATOR_RESOURCES = ("batchnotebooks", "batchclusters", "secrets", "events")


def operator_requests(requests: dict[str, int]) -> int:
    return sum(count for key, count in requests.items() if key.split()[1] in OPERATOR_RESOURCES)


def mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def memory_slope_kib(runs: list[dict], key: str = "rss_kib_steady") -> float | None:
    """Least-squares slope of the operator's steady RSS over N (KiB per notebook)."""
    points = [(r["n"], r[key]) for r in runs if r.get(key)]
    if len(points) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    spread = sum((n - mean_n) ** 2 for n, _ in points)
    return sum((n - mean_n) * (m - mean_m) for n, m in points) / spread if spread else None


def ours_table(runs: list[dict]) -> list[str]:
    lines = [
        "| N | ready (cap) | status queries / interval (most in one) | scheduler calls / interval "
        "| start burst calls / notebook | operator CPU | RSS idle → steady (peak) "
        "| API requests / interval | start API requests / notebook "
        "| state change → status p50 / p99 s | spawn → Ready p50 / p99 s "
        "| status says submitted → job script starts p50 / p99 s | overhead p50 / p99 s "
        "| of which create → submitted p50 / p99 s | job's start-up: script → report p50 / p99 s "
        "| report → Ready p50 / p99 s | operator's share: create → submitted + report → Ready "
        "p50 / p99 s | start burst: machine CPUs busy, operator cores, API write ms (all "
        "clients) | job PSS "
        "| slurmctld down |",
        "|" + "---|" * 20,
    ]
    for r in runs:
        steady, burst = r["steady"], r["start_burst"]
        burst_calls = sum(burst["calls"].values())
        burst_requests = operator_requests(burst["api_requests"])
        lines.append(
            f"| {r['n']} | {r['ready']} ({r['max_running']}) "
            f"| {_f(per_interval(r, steady['status_queries']), 2)} ({most_in_one_interval(r)}) "
            f"| {_f(per_interval(r, sum(steady['calls'].values())), 2)} "
            f"| {_f(burst_calls / r['n'], 2)} "
            f"| {_f(100 * steady['cpu_fraction'], 2)} % "
            f"| {_f(mib(r['rss_kib_idle']))} → {_f(mib(r['rss_kib_steady']))} "
            f"({_f(mib(r.get('hwm_kib')))}) MiB "
            f"| {_f(per_interval(r, operator_requests(steady['api_requests'])), 2)} "
            f"| {_f(burst_requests / r['n'], 2)} "
            f"| {_p(r.get('state_change_to_status'))} "
            f"| {_p(r.get('spawn_to_ready'))} | {_p(r.get('scheduler_start'))}"
            f"{_started_first(r)} "
            f"| {_p(r.get('overhead_to_ready'))} | {_p(r.get('create_to_submitted'))} "
            f"| {_p(r.get('start_to_reported'))} | {_p(r.get('reported_to_ready'))} "
            f"| {_p(r.get('operator_overhead'))} "
            f"| {_busy(burst)} "
            f"| {_f(mib(r.get('job_pss_kib')))} MiB "
            f"| {r.get('slurmctld_down_seconds', 0)} s |"
        )
    return lines


def hub_table(pairs: list[tuple[int, dict | None, dict | None]]) -> list[str]:
    lines = [
        "| N | measure | ours | batchspawner | batchspawner / ours |",
        "|---|---|---|---|---|",
    ]
    for n, ours, theirs in pairs:
        rows: list[tuple[str, str, str, str]] = []

        def both(
            label: str,
            get: Callable[[dict], float | None],
            digits: int = 1,
            unit: str = "",
            ours: dict | None = ours,
            theirs: dict | None = theirs,
            rows: list = rows,
        ) -> None:
            a = get(ours) if ours else None
            b = get(theirs) if theirs else None
            shown = [_f(v, digits) + unit if v is not None else "-" for v in (a, b)]
            rows.append((label, *shown, _ratio(b, a)))

        both("servers ready", lambda r: r["ready"], 0)
        both("squeue calls / minute, steady", lambda r: per_minute(r), 1)
        both(
            "all Slurm calls / minute, steady",
            lambda r: per_minute(r, tuple(r["steady"]["calls"])),
            1,
        )
        both(
            "Slurm calls / server, start burst",
            lambda r: sum(r["start_burst"]["calls"].values()) / r["n"],
            2,
        )
        both(
            "Slurm calls / server, stopping",
            lambda r: sum(r["teardown"]["calls"].values()) / r["n"],
            2,
        )
        for label, key in (
            ("spawn → ready, p50 s", "spawn_to_ready"),
            ("overhead beyond Slurm's start, p50 s", "overhead_to_ready"),
        ):
            both(label, lambda r, key=key: summary(r.get(key) or [])["p50"], 2)
            both(
                label.replace("p50", "p99"),
                lambda r, key=key: summary(r.get(key) or [])["p99"],
                2,
            )
        both(
            "job cancelled outside → gone from hub, p50 s",
            lambda r: summary(r.get("state_change_to_hub") or [])["p50"],
            1,
        )
        both(
            "hub CPU, steady",
            lambda r: 100 * r["steady"]["cpu_fraction"]["hub"],
            2,
            " %",
        )
        both(
            "operator CPU, steady",
            lambda r: (
                100 * r["steady"]["cpu_fraction"]["operator"]
                if "operator" in r["steady"]["cpu_fraction"]
                else None
            ),
            2,
            " %",
        )
        both(
            "hub + operator RSS, steady",
            lambda r: mib(sum(r["rss_kib_steady"].values())),
            0,
            " MiB",
        )
        both("job PSS", lambda r: mib(r.get("job_pss_kib")), 1, " MiB")
        for label, a, b, ratio in rows:
            lines.append(f"| {n} | {label} | {a} | {b} | {ratio} |")
    return lines


def targets(ours_runs: list[dict], hub_runs: list[dict]) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]

    def row(target: str, measured: str, met: bool | None) -> None:
        verdict = "-" if met is None else "yes" if met else "no"
        lines.append(f"| {target} | {measured} | {verdict} |")

    if ours_runs:
        worst = max(most_in_one_interval(r) for r in ours_runs)
        row(
            "one scheduler query per cluster per interval, any N",
            f"at most {worst} status query in any poll interval, steady (N = "
            f"{', '.join(str(r['n']) for r in ours_runs)})",
            worst <= 1,
        )
        largest = max(ours_runs, key=lambda r: r["n"])
        rss = mib(largest["rss_kib_steady"])
        cpu = 100 * largest["steady"]["cpu_fraction"]
        row(
            f"operator under {TARGET_RSS_MIB} MB RSS at N = 1000, steady",
            f"{rss:.0f} MiB at N = {largest['n']} (peak {_f(mib(largest.get('hwm_kib')), 0)})",
            rss < TARGET_RSS_MIB if largest["n"] >= 1000 else None,
        )
        row(
            f"operator under {100 * TARGET_CPU_FRACTION:.0f} % of a core at N = 1000, steady",
            f"{cpu:.2f} % at N = {largest['n']}",
            cpu < 100 * TARGET_CPU_FRACTION if largest["n"] >= 1000 else None,
        )
        latencies = [
            (max(r["state_change_to_status"]), r["poll_interval"])
            for r in ours_runs
            if r.get("state_change_to_status")
        ]
        if latencies:
            slowest = max(latencies)
            row(
                "a scheduler change in status within one poll interval",
                f"slowest {slowest[0]:.1f} s (interval {slowest[1]} s)",
                all(late <= interval for late, interval in latencies),
            )
        for target, key in (
            (
                f"overhead to Ready p99 under {TARGET_OVERHEAD_P99:.0f} s beyond Slurm's start",
                "overhead_to_ready",
            ),
            (
                "the operator's share of it (create → submitted + report → Ready)",
                "operator_overhead",
            ),
        ):
            p99s = [(summary(r[key])["p99"], r["n"]) for r in ours_runs if r.get(key)]
            if p99s:
                row(
                    target,
                    ", ".join(f"{p:.2f} s at N = {n}" for p, n in p99s),
                    all(p < TARGET_OVERHEAD_P99 for p, _ in p99s),
                )
    spawns = [r for r in hub_runs if r["side"] == "ours-hub" and r["n"] >= SIMULTANEOUS_SPAWNS]
    if spawns:
        r = spawns[0]
        row(
            f"{SIMULTANEOUS_SPAWNS} simultaneous spawns through the hub's REST API all succeed",
            f"{r['ready']} of {r['n']} ready, {r.get('refused', 0)} refused",
            r["ready"] == r["n"] and not r.get("refused"),
        )
    return lines


def plot(ours_runs: list[dict], hub_runs: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for side, runs, marker in (
        ("ours (operator)", ours_runs, "o"),
        ("ours through the hub", [r for r in hub_runs if r["side"] == "ours-hub"], "s"),
        ("batchspawner 1.3", [r for r in hub_runs if r["side"] == "batchspawner"], "^"),
    ):
        if runs:
            ax.plot(
                [r["n"] for r in runs],
                [per_minute(r, tuple(r["steady"]["calls"])) for r in runs],
                marker=marker,
                label=side,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("servers (N)")
    ax.set_ylabel("Slurm commands per minute, steady state")
    ax.set_title("Scheduler load against N")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scheduler_calls.png", dpi=110)
    plt.close(fig)
    written.append("scheduler_calls.png")

    series = [
        (f"{label} N={r['n']}", r["overhead_to_ready"])
        for label, side_runs in (
            ("ours", ours_runs),
            ("ours-hub", [r for r in hub_runs if r["side"] == "ours-hub"]),
            ("batchspawner", [r for r in hub_runs if r["side"] == "batchspawner"]),
        )
        for r in side_runs
        if r.get("overhead_to_ready")
    ]
    if series:
        fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(series)), 4.4))
        ax.boxplot([values for _, values in series], whis=(1, 99), showfliers=True)
        ax.set_xticks(range(1, len(series) + 1), [label for label, _ in series], rotation=30)
        ax.set_ylabel("spawn → ready minus Slurm's submit → start (s)")
        ax.set_title("Time to ready beyond the scheduler's own start (whiskers: p1-p99)")
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "time_to_ready.png", dpi=110)
        plt.close(fig)
        written.append("time_to_ready.png")
    return written


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = results["runs"]
    ours_runs = sorted((r for r in runs if r["side"] == "ours"), key=lambda r: r["n"])
    hub_runs = sorted((r for r in runs if r["side"] != "ours"), key=lambda r: r["n"])
    machine = results["machine"]
    pairs = [
        (
            n,
            next((r for r in hub_runs if r["side"] == "ours-hub" and r["n"] == n), None),
            next((r for r in hub_runs if r["side"] == "batchspawner" and r["n"] == n), None),
        )
        for n in sorted({r["n"] for r in hub_runs})
    ]
    slope = memory_slope_kib(ours_runs)
    plots = plot(ours_runs, hub_runs, out)
    text = [
        "# BatchNotebook benchmark: scale and speed, side by side with batchspawner",
        "",
        f"Measured {machine['date']} on {machine['cpus']} CPUs with "
        f"{machine['memory_available_kib'] / 1024**2:.1f} GiB available, {machine['slurm']}, "
        f"commit {machine['commit']}, load average {machine['load_average_at_start']:.2f} at the "
        f"start, the operator run by `{machine.get('operator_python', 'the suite venv')}`. "
        "Written by "
        f"`{results.get('command', 'make bench')}`"
        + (
            f" (added to a run of {results['earlier']['date']}, commit "
            f"{results['earlier']['commit']})"
            if results.get("earlier")
            else ""
        )
        + "; raw numbers in `raw.json`.",
        "",
        "Every number below is a measurement of this run. Slurm commands are counted by wrapper "
        "scripts that both sides call (one log line per call); CPU and memory from /proc (own "
        "CPU time, not the commands' it runs); API requests from the API server's "
        "`apiserver_request_total`, less the benchmark's own creates. Jobs run the same light "
        "stand-in server (tests/bin/stand-in-server.py) in Slurm's `bench` partition: ours through "
        "the real launcher, batchspawner's through `batchspawner-singleuser` under `srun`. "
        "Overhead = spawn → ready minus Slurm's own part of the start: for the operator runs, "
        "from the status saying the job was submitted to the job script's first line (a "
        "prologue that logs the time to the microsecond); side by side through the hubs, "
        "sacct's submit → start for both (whole seconds). It includes the job's own start-up "
        "(launcher and server), shown apart with the operator's share. "
        "Where N is above the running cap, the rest of the jobs wait in the queue (Resources) and "
        "are still followed by every poll: the cap is half the available memory divided by the "
        "measured job size.",
        "",
        "## Targets",
        "",
        *targets(ours_runs, hub_runs),
        "",
        "## Ours: the operator, N BatchNotebooks created against the API",
        "",
        f"pollIntervalSeconds {ours_runs[0]['poll_interval'] if ours_runs else '-'}; "
        "steady state: all submitted and started (up to the cap), nothing changing. "
        "State change: a sample of jobs cancelled with `scancel` from outside, until the watch "
        "shows the status change.",
        "",
        *ours_table(ours_runs),
        "",
        "Memory per notebook (slope of the operator's steady RSS over N): "
        + ("-" if slope is None else f"{slope:.1f} KiB")
        + ".",
        "",
        "## Side by side through JupyterHub's REST API",
        "",
        f"batchspawner ran up to N = {results.get('batchspawner_max_n')}: each of its jobs "
        "(srun + batchspawner-singleuser, which imports JupyterHub) is the job PSS below, so more "
        "would not all run in half this machine's memory, and every server left pending in the "
        "queue asks squeue twice a second (startup_poll_interval).",
        "",
        "Both hubs are JupyterHub 6.1.1 with no cap on simultaneous spawns; N named servers of one "
        "user are requested at once (one thread each) and the hub's user model is read every "
        "0.5 s for ready servers. Ours: BatchNotebookSpawner + the operator "
        "(pollIntervalSeconds as above); batchspawner 1.3.0 SlurmSpawner with its defaults "
        "(JupyterHub's poll_interval 30 s, startup_poll_interval 0.5 s).",
        "",
        *hub_table(pairs),
        "",
        "slurmctld unreachable during these runs (s): "
        + (
            ", ".join(
                f"{r['side']} N={r['n']}: {r.get('slurmctld_down_seconds', 0)}" for r in hub_runs
            )
            or "-"
        )
        + ".",
        "",
        *[f"![{name}]({name})" for name in plots],
        "",
    ]
    (out / "results.md").write_text("\n".join(text))


if __name__ == "__main__":
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    write(json.loads((directory / "raw.json").read_text()), directory)
