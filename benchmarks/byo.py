"""Benchmarks 7 and 8 (issue 11): end to end at the speed of the data.

7. A user factor-return file of the factor-ETF shape (2,263 sessions x 5 factors, MTUM QUAL
   SIZE USMV VLUE; `factorcov_pipeline.examples.factor_etfs`), `factorcov materialize` end to
   end with every check: target <= 10 s. Also once with DAGSTER_HOME set (a recorded run,
   what the UI shows: every per-session event stored), for comparison.
8. The default synthetic model over 10 years (2,520 sessions x 3,000 assets, 21 factors), end
   to end with every check: target <= 60 s (--quick: one year).

Registered in benchmarks/run.py (`--only 7`, `--only 8`); helpers are run.py's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any


def _helpers() -> Any:
    import run  # benchmarks/run.py (this directory is on sys.path when it runs)

    return run


def _steps_rows(r: Any, steps: dict[str, float], wall: float) -> list[list[Any]]:
    rows = [
        [k, f"{v:.2f} s", f"{100 * v / wall:.0f}%"]
        for k, v in sorted(steps.items(), key=lambda kv: -kv[1])
    ]
    total = sum(steps.values())
    rows.append(["(sum of steps)", f"{total:.2f} s", f"{100 * total / wall:.0f}%"])
    rows.append(["(process start, imports, Dagster: wall - steps)", f"{wall - total:.2f} s", ""])
    return rows


def bench_user_file(quick: bool, repeats: int) -> None:
    """7. The 2,263 x 5 factor-ETF-shaped file through `factorcov materialize`."""
    r = _helpers()
    from factorcov_pipeline.examples.factor_etfs import factor_etf_returns

    n = 252 if quick else 2263
    reps = 1 if quick else repeats
    start = dt.date(2016, 4, 1)
    with tempfile.TemporaryDirectory() as tmp:
        frame = factor_etf_returns(start, n)
        path = Path(tmp) / "factor_etfs.parquet"
        frame.write_parquet(path)
        end = max(frame["date"].to_list())
        settings = Path(tmp) / "settings.json"
        settings.write_text(
            json.dumps({"factor_model_settings": {"universe": {"factor_returns": str(path)}}})
        )
        base = {**os.environ, "PYTHONPATH": str(r.ROOT), "FACTORCOV_PARTITIONS_START": str(start)}
        for key in ("DAGSTER_HOME", "FACTORCOV_SETTINGS"):
            base.pop(key, None)
        argv = [*r.factorcov_cmd(), "materialize", "--start", str(start), "--end", str(end),
                "--settings", str(settings)]  # fmt: skip
        walls, steps_all, rss = [], [], []
        for i in range(reps):
            env = {**base, "FACTORCOV_DUCKDB": f"{tmp}/run{i}.duckdb"}
            wall, peak, out, rc = r.run_measured(argv, env)
            if rc != 0:
                raise RuntimeError("factorcov materialize failed (user factor file)")
            walls.append(wall)
            rss.append(peak)
            steps_all.append(r.step_times(out))
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(r.ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        env = {**base, "FACTORCOV_DUCKDB": f"{tmp}/recorded.duckdb", "DAGSTER_HOME": str(home)}
        rec_wall, _, _, rc = r.run_measured(argv, env)
        recorded = f"{rec_wall:.1f} s" if rc == 0 else "failed"
    wall = statistics.median(walls)
    med = {k: statistics.median(s.get(k, float("nan")) for s in steps_all) for k in steps_all[0]}
    rows = _steps_rows(r, med, wall)
    rows.append(
        ["**wall (median)**", f"**{wall:.2f} s**", f"target <= 10 s: {r.verdict(wall <= 10)}"]
    )
    rows.append(["peak RSS (max over runs)", f"{max(rss):.2f} GiB", ""])
    rows.append(["recorded in DAGSTER_HOME (one run, every event stored)", recorded, "no target"])
    r.print_table(
        f"7. user factor returns, {n} sessions x 5 factors (MTUM, QUAL, SIZE, USMV, VLUE), "
        "`factorcov materialize` with every check",
        ["step (asset or check)", "seconds (median)", "share of wall"],
        rows,
        [
            f"{reps} run(s), fresh subprocess and DuckDB file each; walls "
            + ", ".join(f"{w:.1f}" for w in walls)
            + f" s. Load average at the end: {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores (the machine is shared)."
        ],
    )


def bench_synthetic_decade(quick: bool, repeats: int) -> None:
    """8. The default synthetic model over 10 years, end to end with every check (one run)."""
    r = _helpers()
    from factorcov_pipeline.core import calendar

    end = calendar.DEFAULT_END
    n = 252 if quick else 2520
    days = calendar.sessions(end - dt.timedelta(days=int(n * 1.5) + 30), end)[-n:]
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(r.ROOT),
            "FACTORCOV_PARTITIONS_START": str(days[0]),
            "FACTORCOV_DUCKDB": f"{tmp}/decade.duckdb",
        }
        for key in ("DAGSTER_HOME", "FACTORCOV_SETTINGS"):
            env.pop(key, None)
        argv = [*r.factorcov_cmd(), "materialize", "--start", str(days[0]), "--end", str(end)]
        wall, peak, out, rc = r.run_measured(argv, env)
        if rc != 0:
            raise RuntimeError("factorcov materialize failed (synthetic decade)")
        steps = r.step_times(out)
    rows = _steps_rows(r, steps, wall)
    rows.append(["**wall**", f"**{wall:.2f} s**", f"target <= 60 s: {r.verdict(wall <= 60)}"])
    rows.append(["peak RSS", f"{peak:.2f} GiB", ""])
    r.print_table(
        f"8. default synthetic model, {n} sessions x 3,000 assets x 21 factors, "
        "`factorcov materialize` with every check",
        ["step (asset or check)", "seconds", "share of wall"],
        rows,
        [
            f"One run (FACTORCOV_PARTITIONS_START={days[0]}). Load average at the end: "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine is shared)."
        ],
    )
