"""Benchmark 10 (issue 23.3): how long the Dagster UI takes to materialise a 5-session range, from
the launch to the end, beside `factorcov materialize` of the same range.

Run through `python benchmarks/run.py --only 10`. One `dagster dev` (webserver + daemon, started
from the repository root as the README starts it, DAGSTER_HOME holding deploy/dagster.yaml) and
the CLI on the same settings; consecutive 5-session ranges (each run continues the history of
the ranges before it), the same sequence of ranges for the UI and for the CLI, interleaved:

- UI backfill: the UI's own mutation `launchPartitionBackfill` (what the Materialize dialog
  sends for a range), polled as the backfill page polls it, until `COMPLETED_SUCCESS`; split
  into the daemon's pick-up (launch -> run created), the run's start (queue, run worker process),
  the run, and the wait after it (run end -> backfill marked done);
- UI one run: `launchPipelineExecution` of the job `factorcov_daily` with the range's tags
  (what the job's Launchpad sends with *Edit tags*), until the run's SUCCESS;
- CLI: `factorcov materialize --start --end` as a process, wall time.

Why the backfill cannot meet 2x the CLI: Dagster's backfill daemon evaluates backfills every 30
seconds, a constant (dagster/_daemon/backfill.py, `execute_backfill_iteration_loop`: sleeps
`DEFAULT_DAEMON_INTERVAL_SECONDS - loop_duration`, dagster/_daemon/controller.py: 30); no
instance setting changes it (`backfills:` takes use_threads, num_workers, num_submit_workers).
A backfill is picked up at the daemon's next cycle (0-30 s after the launch) and marked done at
the first cycle after its run ended (its submitting cycle cannot: it computes the materialised
partitions before it submits), so launch -> done >= 30 s whatever the run takes. The UI's
dialog launches any range of more than one partition as a backfill (its single-run toggle is
shown only for code locations older than Dagster 1.5, remote_representation/feature_flags.py).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SESSIONS_PER_RANGE = 5
DAEMON_CYCLE_SECONDS = 30
FACTORCOV = str(Path(sys.executable).parent / "factorcov")


def _ranges(n: int) -> list[tuple[str, str]]:
    from factorcov_pipeline.core import calendar
    from factorcov_pipeline.orchestration.partitions import SESSIONS_START

    days = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=400))
    k = SESSIONS_PER_RANGE
    return [(str(days[i * k]), str(days[i * k + k - 1])) for i in range(n)]


def _cli_seconds(start: str, end: str, env: dict[str, str]) -> float:
    """`factorcov materialize` of [start, end] as a process (no DAGSTER_HOME: unrecorded)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [FACTORCOV, "materialize", "--start", start, "--end", end],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"factorcov materialize failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def _ui_backfill(dev: Any, start: str, end: str) -> dict[str, float]:
    from dagster_dev import launch_backfill, runs, wait_for_backfill

    from factorcov_pipeline.core import calendar

    partitions = [
        str(d) for d in calendar.sessions(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    ]
    t0 = time.time()
    backfill_id = launch_backfill(dev, partitions)
    backfill = wait_for_backfill(dev, backfill_id, timeout=600)
    t1 = time.time()
    if backfill["status"] != "COMPLETED_SUCCESS":
        raise RuntimeError(f"backfill {backfill_id}: {backfill['status']}\n{dev.tail()}")
    (run_id,) = [r["runId"] for r in backfill["runs"]]
    (run,) = [r for r in runs(dev) if r["runId"] == run_id]
    return {
        "total": t1 - t0,
        "pickup": run["creationTime"] - t0,
        "start": run["startTime"] - run["creationTime"],
        "run": run["endTime"] - run["startTime"],
        "after": t1 - run["endTime"],
    }


def _ui_one_run(dev: Any, start: str, end: str) -> dict[str, float]:
    from dagster_dev import launch_range_run, wait_for_run

    t0 = time.time()
    run_id = launch_range_run(dev, start, end)
    run = wait_for_run(dev, run_id, ("SUCCESS", "FAILURE", "CANCELED"), timeout=600)
    t1 = time.time()
    if run["status"] != "SUCCESS":
        raise RuntimeError(f"run {run_id}: {run['status']}\n{dev.tail()}")
    return {
        "total": t1 - t0,
        "start": run["startTime"] - t0,
        "run": run["endTime"] - run["startTime"],
        "after": t1 - run["endTime"],
    }


def measure(repeats: int, n_assets: int | None, log: Callable[[str], None] = print) -> dict:
    """Interleaved: UI backfill of range 2i, CLI of range 2i, UI one run of range 2i+1, CLI of
    range 2i+1 (the CLI on its own file, the same ranges in the same order as the UI's)."""
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from dagster_dev import dagster_dev

    ranges = _ranges(2 * repeats)
    out: dict[str, list] = {"backfill": [], "one_run": [], "cli_backfill": [], "cli_one_run": []}
    with tempfile.TemporaryDirectory(prefix="ui-latency-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "ui").mkdir()
        with dagster_dev(tmp / "ui", n_assets=n_assets) as dev:
            cli_env = {k: v for k, v in dev.env.items() if k != "DAGSTER_HOME"}
            cli_env["FACTORCOV_DUCKDB"] = str(tmp / "cli.duckdb")
            for i in range(repeats):
                (b0, b1), (r0, r1) = ranges[2 * i], ranges[2 * i + 1]
                out["backfill"].append(_ui_backfill(dev, b0, b1))
                out["cli_backfill"].append(_cli_seconds(b0, b1, cli_env))
                out["one_run"].append(_ui_one_run(dev, r0, r1))
                out["cli_one_run"].append(_cli_seconds(r0, r1, cli_env))
                log(
                    f"  repeat {i + 1}: backfill {out['backfill'][-1]['total']:.1f} s "
                    f"(CLI {out['cli_backfill'][-1]:.1f} s), one run "
                    f"{out['one_run'][-1]['total']:.1f} s (CLI {out['cli_one_run'][-1]:.1f} s)"
                )
    return out


def bench_ui_latency(
    quick: bool,
    repeats: int,
    print_table: Callable[..., None],
    fmt_s: Callable[[float], str],
    verdict: Callable[[bool], str],
) -> None:
    n_assets = 300 if quick else None  # None: the default universe (3,000 assets)
    repeats = 1 if quick else repeats
    data = measure(repeats, n_assets)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    cli_b = statistics.median(data["cli_backfill"])
    cli_r = statistics.median(data["cli_one_run"])
    backfill, one_run = med(data["backfill"], "total"), med(data["one_run"], "total")
    rows = [
        [
            "UI backfill (launchPartitionBackfill -> COMPLETED_SUCCESS)",
            fmt_s(backfill),
            fmt_s(cli_b),
            f"{backfill / cli_b:.1f}x",
            verdict(backfill <= 2 * cli_b),
        ],
        [
            "  daemon pick-up (launch -> run created)",
            fmt_s(med(data["backfill"], "pickup")),
            "",
            "",
            "",
        ],
        [
            "  run start (queue, run worker process)",
            fmt_s(med(data["backfill"], "start")),
            "",
            "",
            "",
        ],
        ["  the run", fmt_s(med(data["backfill"], "run")), "", "", ""],
        ["  run end -> backfill marked done", fmt_s(med(data["backfill"], "after")), "", "", ""],
        [
            "UI one run (Launchpad of factorcov_daily, range tags -> SUCCESS)",
            fmt_s(one_run),
            fmt_s(cli_r),
            f"{one_run / cli_r:.1f}x",
            verdict(one_run <= 2 * cli_r),
        ],
        [
            "  run start (queue, run worker process)",
            fmt_s(med(data["one_run"], "start")),
            "",
            "",
            "",
        ],
        ["  the run", fmt_s(med(data["one_run"], "run")), "", "", ""],
    ]
    universe = f"{n_assets} assets" if n_assets else "the default universe (3,000 assets)"
    print_table(
        f"10. The UI, a {SESSIONS_PER_RANGE}-session range from the launch to the end "
        "(target <= 2x the CLI)",
        ["path", "median", "CLI, same ranges", "ratio", "target"],
        rows,
        [
            f"`dagster dev` with deploy/dagster.yaml, {universe}, {repeats} repeat(s); "
            "consecutive 5-session ranges, the CLI (`factorcov materialize`, process wall, "
            "unrecorded) on its own file over the same ranges in the same order, interleaved.",
            f"The backfill waits for Dagster's backfill daemon twice: it is picked up at the "
            f"daemon's next {DAEMON_CYCLE_SECONDS}-second cycle and marked done at the first "
            "cycle after its run ended, a constant no dagster.yaml setting changes "
            "(benchmarks/ui_latency.py says where): launch -> done >= 30 s. A range launched as "
            "ONE run (the job's Launchpad with the range tags) goes through the run queue "
            "(polled every second) without the daemon.",
            f"Machine load (1-min average) at the end: {os.getloadavg()[0]:.1f}.",
        ],
    )
