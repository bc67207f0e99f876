"""Benchmarks 11 and 12 (issue 22.5): what several covariance models cost beside one.

A settings file's `models` adds covariance models to the one of `factor_cov_settings`
(`default`); the factor model (universe, exposures, factor returns, specific risk) is computed
once and shared, and each model repeats only its K x K recursions, its eigen adjustment and its
evaluation (`orchestration/assets/models.py`). Measured as a user waits, as benchmark 3b
(`run.spawn_timed`): `factorcov materialize` from the spawn to the exit, beside the run's own
time (its summary's `wall time`), CPU and peak RSS, with one model and with several, the two
commands ALTERNATED in one loop (the order reversed every other repeat: the machine is shared),
medians, and the ratio of the medians measured in the same run.

11. The tutorial's year (the default embedded data, the README's main job range: 252 sessions x
    3,000 assets x 21 factors) with `default` alone against `default` + `eigen` (the eigenfactor
    risk adjustment, `eigen_adjustment_scale` 1.2): target <= 1.5x.
12. 10 years (2,520 sessions) x 3,000 assets with `default` alone against four models:
    `default`, `eigen` (a = 1.2), `fast` (half-lives 42 / 84, the issue's example) and `slow`
    (90 / 180): target <= 2x. `--quick`: one year.

After each materialisation, one new session (`run.ONE_SESSION`) on the same file, timed the
same way (a daily run; no target here: benchmark 4 is the daily one). In the first repeat the
two files are compared after the range's run: the `default` model's stored
`factor_covariance` of the file with several models equals the one-model file's bit for bit,
and so do the `covariance_report` row counts (5,271 in the tutorial's year). Each file is deleted after its runs (1.1 GiB at 10
years). Registered in benchmarks/run.py (`--only 11`, `--only 12`); helpers are run.py's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EIGEN = {"eigen_adjustment_scale": 1.2}
YEAR_MODELS: dict[str, dict[str, float]] = {"eigen": EIGEN}
DECADE_MODELS: dict[str, dict[str, float]] = {
    "eigen": EIGEN,
    "fast": {"halflife_vol": 42, "halflife_cor": 84},
    "slow": {"halflife_vol": 90, "halflife_cor": 180},
}


def _helpers() -> Any:
    import run  # benchmarks/run.py (this directory is on sys.path when it runs)

    return run


@dataclass
class _Config:
    """One side of the comparison: a label and its `models` (empty: `default` alone)."""

    label: str
    models: dict[str, dict[str, float]]

    def argv(self, tmp: str) -> list[str]:
        if not self.models:
            return []
        path = Path(tmp) / f"settings-{len(self.models) + 1}.json"
        path.write_text(json.dumps({"models": self.models}))
        return ["--settings", str(path)]


def _default_forecasts(db: Path) -> tuple[np.ndarray, int, list[str]]:
    """The `default` model's stored covariances (in key order), its `covariance_report` row
    count, and the models the file holds."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        cov = con.execute(
            "SELECT covariance FROM factor_covariance WHERE model = 'default' "
            "ORDER BY date, factor_1, factor_2"
        ).fetchnumpy()["covariance"]
        report = con.execute(
            "SELECT count(*) FROM covariance_report WHERE model = 'default'"
        ).fetchone()[0]
        found = con.execute("SELECT DISTINCT model FROM factor_covariance ORDER BY 1")
        models = [m for (m,) in found.fetchall()]
    finally:
        con.close()
    return np.asarray(cov), int(report), models


def _compare(
    title: str,
    configs: list[_Config],
    range_argv: list[str],
    partitions_start: str | None,
    reps: int,
    target: float,
    what: str,
) -> None:
    """Time the configs' `factorcov materialize` alternately, `reps` times each, then print
    the tables (module docstring)."""
    r = _helpers()
    one, many = configs
    year: dict[str, list[Any]] = {c.label: [] for c in configs}
    daily: dict[str, list[Any]] = {c.label: [] for c in configs}
    loads: list[float] = [os.getloadavg()[0]]
    stored: dict[str, tuple[np.ndarray, int, list[str]]] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("FACTORCOV_BENCH_TMP")) as tmp:
        cmd, env = r._command(r.ROOT, tmp)
        if partitions_start is not None:
            env["FACTORCOV_PARTITIONS_START"] = partitions_start
        r._warm(cmd, env, tmp)
        extra = {c.label: c.argv(tmp) for c in configs}
        for i in range(reps):
            # alternately, the order reversed every other repeat (a drift of the shared
            # machine's load does not favour one side)
            for c in configs if i % 2 == 0 else configs[::-1]:
                db = Path(tmp) / f"models{len(c.models) + 1}_{i}.duckdb"
                run_env = {**env, "FACTORCOV_DUCKDB": str(db)}
                argv = [*cmd, "materialize", *range_argv, *extra[c.label]]
                year[c.label].append(r.spawn_timed(argv, run_env, tmp))
                if i == 0:  # the range's stored numbers, before the new session
                    stored[c.label] = _default_forecasts(db)
                argv = [*cmd, "materialize", "--start", r.ONE_SESSION, "--end", r.ONE_SESSION]
                daily[c.label].append(r.spawn_timed([*argv, *extra[c.label]], run_env, tmp))
                loads.append(os.getloadavg()[0])
                db.unlink()
    (cov_one, rows_one, models_one), (cov_many, rows_many, models_many) = (
        stored[one.label],
        stored[many.label],
    )
    assert models_one == ["default"], models_one
    assert sorted(models_many) == sorted(["default", *many.models]), models_many
    assert rows_one == rows_many, (rows_one, rows_many)
    assert np.array_equal(cov_one, cov_many), "default differs between the files"
    same = (
        f"The `default` model's {cov_one.size:,} stored covariances of the range are the same "
        f"bits in both files ({rows_one:,} covariance_report rows each; the file with several "
        f"models holds {', '.join(models_many)})."
    )
    rows: list[list[str]] = []
    for label, runs in ((one.label, year[one.label]), (many.label, year[many.label])):
        rows.append(_row(r, label, runs))
    rows.append(_ratio_row(year[many.label], year[one.label], target))
    for c in configs:
        rows.append(_row(r, f"one new session after it: {c.label}", daily[c.label]))
    rows.append(_ratio_row(daily[many.label], daily[one.label], None))
    r.print_table(
        title,
        [
            "command",
            "process wall, median (each run)",
            "the run's own (summary's wall time), median",
            "CPU (user + system), median",
            "peak RSS (max)",
            "target",
        ],
        rows,
        [
            f"{what}. {reps} repeat(s), the two commands alternated in one loop (the order "
            "reversed every other repeat), each on a fresh DuckDB file, then one new session "
            f"({r.ONE_SESSION}) on that file. Process wall: spawn to exit, as the shell times it "
            "(`run.spawn_timed`, bytecode cached and warmed first, no DAGSTER_HOME); the run's "
            "own: the summary's `wall time`. Ratios: the medians of this run, and in brackets "
            "each repeat's pair. " + same,
            f"Load average (1 min) at the start and after each run: "
            f"{', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores (the machine is "
            "shared with other developers' tests).",
        ],
    )
    _steps_table(r, title.split(".")[0], one, many, year)


def _row(r: Any, label: str, runs: list[Any]) -> list[str]:
    wall = statistics.median(w.wall for w in runs)
    return [
        label,
        f"**{wall:.2f} s** ({', '.join(f'{w.wall:.2f}' for w in runs)})",
        f"{statistics.median(w.run for w in runs):.2f} s",
        f"{statistics.median(w.cpu for w in runs):.2f} s",
        f"{max(w.rss for w in runs):.2f} GiB",
        "",
    ]


def _ratio_row(many: list[Any], one: list[Any], target: float | None) -> list[str]:
    r = _helpers()

    def ratio(key: str) -> float:
        return statistics.median(getattr(w, key) for w in many) / statistics.median(
            getattr(w, key) for w in one
        )

    pairs = ", ".join(f"{m.wall / o.wall:.2f}" for m, o in zip(many, one, strict=True))
    wall = ratio("wall")
    return [
        "**ratio several / one**",
        f"**{wall:.2f}x** ({pairs})",
        f"{ratio('run'):.2f}x",
        f"{ratio('cpu'):.2f}x",
        "",
        "" if target is None else f"<= {target:g}x: {r.verdict(wall <= target)}",
    ]


def _steps_table(
    r: Any, number: str, one: _Config, many: _Config, year: dict[str, list[Any]]
) -> None:
    """Where the extra time goes: each step's median in both, and the difference."""
    med = {}
    for c in (one, many):
        steps = [r.step_times(w.stdout) for w in year[c.label]]
        med[c.label] = {
            k: statistics.median(s.get(k, float("nan")) for s in steps) for k in steps[0]
        }
    rows = []
    keys = sorted(med[many.label], key=lambda k: -(med[many.label][k] - med[one.label].get(k, 0.0)))
    for k in keys:
        a, b = med[one.label].get(k, float("nan")), med[many.label][k]
        rows.append([k, f"{a:.2f} s", f"{b:.2f} s", f"{b - a:+.2f} s"])
    total_a, total_b = sum(med[one.label].values()), sum(med[many.label].values())
    rows.append(
        ["(sum of steps)", f"{total_a:.2f} s", f"{total_b:.2f} s", f"{total_b - total_a:+.2f} s"]
    )
    r.print_table(
        f"{number}b. Where the extra time goes, per step (medians of the runs of the range)",
        ["step (asset or check)", one.label, many.label, "difference"],
        rows,
        [
            "Per-step times from the command's progress lines (STEP_START to STEP_SUCCESS) of "
            "the runs above; sorted by the difference. Steps overlap on the run's threads, so "
            "the sum is more than the run's wall time."
        ],
    )


def bench_models_year(quick: bool, repeats: int) -> None:
    """11. The tutorial's year: `default` against `default` + `eigen`."""
    _compare(
        "11. Two covariance models: the tutorial's year (252 sessions x 3,000 assets x 21 "
        "factors), `default` alone against `default` + `eigen` (issue 22.5)",
        [_Config("default", {}), _Config("default + eigen", YEAR_MODELS)],
        [],
        None,
        1 if quick else repeats,
        1.5,
        "`factorcov materialize` (the README's main job: the tutorial's year, every check) "
        f"without settings, and with `--settings` {json.dumps({'models': YEAR_MODELS})}",
    )


def bench_models_decade(quick: bool, repeats: int) -> None:
    """12. 10 years x 3,000 assets: `default` against four models."""
    from factorcov_pipeline.core import calendar

    end = calendar.DEFAULT_END
    n = 252 if quick else 2520
    days = calendar.sessions(end - dt.timedelta(days=int(n * 1.5) + 30), end)[-n:]
    label = "10 years" if n == 2520 else "one year, --quick"
    _compare(
        f"12. Four covariance models: {label} ({n} sessions x 3,000 assets x 21 factors), "
        "`default` alone against `default`, `eigen`, `fast`, `slow` (issue 22.5)",
        [_Config("default", {}), _Config("four models", DECADE_MODELS)],
        ["--start", str(days[0]), "--end", str(end)],
        str(days[0]),
        1 if quick else repeats,
        2.0,
        f"`factorcov materialize --start {days[0]} --end {end}` "
        f"(FACTORCOV_PARTITIONS_START={days[0]}; every check) without settings, and with "
        f"`--settings` {json.dumps({'models': DECADE_MODELS})} (`eigen`: the eigenfactor "
        "risk adjustment, a = 1.2, M = 128; `fast` / `slow`: the half-life pairs of the "
        "volatility / correlation; no VRA)",
    )


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    quick = "--quick" in sys.argv
    for fn in (bench_models_year, bench_models_decade):
        fn(quick, 3)
