"""Benchmark: a 10-year backfill into PostgreSQL as chunked runs on N worker processes.

    python benchmarks/parallel.py [--years 10] [--workers 1 2] [--assets 3000] [--out FILE]

Starts a throwaway PostgreSQL server (tests/pg_server.py, Debian's binaries), then for each N
materialises the same range into a fresh database with `run_parallel` (chunks of
`FACTORCOV_CHUNK_SESSIONS`, default 63 sessions: 40 runs per cross-sectional stage for 10 years)
and records the wall time of every stage and of every run. The per-run costs are what
docs/scaling.md's estimate for N pods is built from. In its own process with
FACTORCOV_PARTITIONS_START set to the range's first session (as benchmark 5 of run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = {10: "2016-03-31", 5: "2021-03-31", 2: "2024-03-28", 1: "2025-03-31"}

CHILD = """
import datetime as dt, json, sys, time
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.parallel import run_parallel
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import FactorcovPostgres
from factorcov_pipeline.orchestration.runner import failure_messages

if __name__ == "__main__":
    url, settings, workers, years = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    end = calendar.sessions(SESSIONS_START, dt.date(SESSIONS_START.year + years, 3, 31))[-1]
    t0 = time.perf_counter()
    res = run_parallel(SESSIONS_START, end, FactorcovPostgres(url=url), settings, workers,
                       progress=lambda m: print(m, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    print(json.dumps({
        "success": res.success, "failures": failure_messages(res), "wall": wall,
        "sessions": len(calendar.sessions(SESSIONS_START, end)), "end": str(end),
        "stage_seconds": res.stage_seconds,
        "runs": [{"assets": list(o.assets), "start": str(o.start), "end": str(o.end),
                  "seconds": o.seconds} for o in res.outcomes],
    }))
"""


def estimate(result: dict, pods: int, startup: float = 0.0) -> float:
    """Wall time of the same backfill on `pods` workers from one measured run's per-run costs:
    each per-chunk stage takes ceil(runs / pods) x its median run (+ `startup` seconds per run
    for a pod's start and imports), the recursion stage its measured time (+ one start-up)."""
    total = 0.0
    stages: dict[tuple[str, ...], list[float]] = {}
    for r in result["runs"]:
        stages.setdefault(tuple(r["assets"]), []).append(r["seconds"])
    for costs in stages.values():
        if len(costs) == 1:
            total += costs[0] + startup
        else:
            waves = -(-len(costs) // pods)
            total += waves * (statistics.median(costs) + startup)
    return total


def markdown(summary: dict) -> str:
    """The tables of docs/scaling.md: measured stages per N, per-run costs, estimate for P."""
    res = summary["results"]
    ns = sorted(res, key=int)
    names = [", ".join(r["assets"]) for r in res[ns[0]]["runs"]]
    stages = list(dict.fromkeys(names))
    lines = ["| stage | runs | " + " | ".join(f"N={n} wall" for n in ns) + " |"]
    lines.append("| --- | --- |" + " --- |" * len(ns))
    for i, stage in enumerate(stages):
        runs = names.count(stage)
        cells = [f"{res[n]['stage_seconds'][i]:.1f} s" for n in ns]
        lines.append(f"| `{stage}` | {runs} | " + " | ".join(cells) + " |")
    lines.append("| **total** | | " + " | ".join(f"**{res[n]['wall']:.0f} s**" for n in ns) + " |")
    base = res[ns[0]]
    lines += ["", "| workers P | estimate, no start-up | estimate, +30 s start-up per run |"]
    lines.append("| --- | --- | --- |")
    for pods in (1, 2, 4, 10, 40):
        lines.append(
            f"| {pods} | {estimate(base, pods):.0f} s | {estimate(base, pods, 30.0):.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, default=10, choices=sorted(START))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--assets", type=int, default=3000)
    parser.add_argument("--out", default="")
    parser.add_argument("--report", default="", help="print the tables of a saved --out file")
    args = parser.parse_args()
    if args.report:
        print(markdown(json.loads(Path(args.report).read_text())))
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import postgres_server

    tmp = Path(tempfile.mkdtemp(prefix="factorcov-par-"))
    settings = tmp / "settings.json"
    settings.write_text(
        json.dumps({"factor_model_settings": {"universe": {"n_assets": args.assets}}})
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FACTORCOV_PARTITIONS_START": START[args.years]}
    results = {}
    with postgres_server() as server:
        for n in args.workers:
            url = server.create_database(f"bench{n}")
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, url, str(settings), str(n), str(args.years)],
                env=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            out["process_wall"] = time.perf_counter() - t0
            results[n] = out
            print(
                f"N={n}: {out['wall']:.1f} s, stages {[round(s, 1) for s in out['stage_seconds']]}"
            )
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared, loaded)",
        "years": args.years,
        "assets": args.assets,
        "results": results,
        "per_run_median_seconds": {
            n: {
                ", ".join(stage): statistics.median(
                    r["seconds"] for r in res["runs"] if r["assets"] == list(stage)
                )
                for stage in {tuple(r["assets"]) for r in res["runs"]}
            }
            for n, res in results.items()
        },
    }
    summary["markdown"] = markdown(summary)
    print(summary["markdown"])
    text = json.dumps(summary, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps(summary["per_run_median_seconds"], indent=1))
    if len(results) == 2:
        a, b = (results[n]["wall"] for n in args.workers)
        print(f"wall N={args.workers[0]} / N={args.workers[1]}: {a / b:.2f}")


if __name__ == "__main__":
    main()
