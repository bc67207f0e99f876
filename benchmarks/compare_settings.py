"""Compare two covariance settings on the forecast backtest (issue 4), side by side.

    python benchmarks/compare_settings.py [--start 2025-03-31] [--end 2026-03-31]
        [--n-assets 3000] [--settings-b '{"halflife_vra": 40, "nw_lags_vol": 2}']
        [--out-dir DIR] [--keep]

Materialises the same session range twice through the Dagster pipeline (`run_range`, one
in-process run each, every asset check included) into two DuckDB files: A with the tutorial's
default `factor_cov_settings`, B with the `factor_cov_settings` given as JSON. Both use the same
risk model (`factor_model_settings`), so the factor returns are identical and only the
covariance forecasts differ. It then prints, for each settings file, the summary of the
`forecast_bias` table (rolling 21-session bias statistics, USE4 methodology notes, section
"Bias statistics"): per portfolio kind (the K factors, the 20 fixed random factor portfolios)

* mean |b - 1| over all windows and portfolios (0 for a perfect forecast),
* the share of windows with |b - 1| <= sqrt(2 / n_obs) (the approximate 95% band of an
  unbiased forecast with normal outcomes; overlapping windows, so descriptive only),

and a full-sample statistic computed here from the stored tables: for each factor, the standard
deviation over all dates of f_t / sigma_{t-1} (the prior day's forecast volatility), and the
share of factors inside 1 +/- sqrt(2 / T).

The output goes to stdout; docs/settings-comparison.md records a run and its command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANNUALISATION = 252.0
DEFAULT_B = {"halflife_vra": 40, "nw_lags_vol": 2}


def write_settings(path: Path, n_assets: int, cov: dict[str, Any]) -> str:
    """A settings file with the tutorial's risk model (n_assets synthetic assets) and `cov`."""
    data: dict[str, Any] = {"factor_model_settings": {"universe": {"n_assets": n_assets}}}
    if cov:
        data["factor_cov_settings"] = cov
    path.write_text(json.dumps(data, indent=2))
    return str(path)


def materialise(db: Path, settings_file: str, start: dt.date, end: dt.date) -> float:
    """Run every asset and check for [start, end] into `db`; returns the wall time in seconds."""
    from factorcov_pipeline.orchestration.resources import FactorcovStorage
    from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range

    t0 = time.perf_counter()
    result = run_range(
        start, end, FactorcovStorage(database=str(db)), settings_file, logger=quiet_logger()
    )
    elapsed = time.perf_counter() - t0
    if not result.success:
        failed = [
            f"check {c.asset_check_key.name}: {c.description}"
            for c in result.get_asset_check_evaluations()
            if not c.passed
        ]
        raise SystemExit(
            f"materialisation into {db} failed:\n  "
            + "\n  ".join(failure_messages(result) + failed)
        )
    checks = result.get_asset_check_evaluations()
    print(
        f"  {db.name}: {elapsed:.1f} s, {sum(c.passed for c in checks)}/{len(checks)} checks passed"
    )
    return elapsed


def window_summary(db: Path, burn_in: int = 0) -> dict[str, dict[str, float]]:
    """mean |b - 1| and the share inside 1 +/- sqrt(2/n_obs) of the rolling windows, per kind;
    `burn_in` > 0 keeps only the windows that start after the first `burn_in` forecast dates."""
    from factorcov_pipeline.storage import Store

    fb = Store(db).read("SELECT window_end, portfolio_kind, n_obs, bias FROM forecast_bias")
    if burn_in:
        ends = sorted(set(fb["window_end"].to_list()))
        fb = fb.filter(pl.col("window_end").is_in(ends[burn_in:]))
    out = (
        fb.with_columns(
            dev=(pl.col("bias") - 1.0).abs(),
            band=(2.0 / pl.col("n_obs").cast(pl.Float64)).sqrt(),
        )
        .group_by("portfolio_kind")
        .agg(
            pl.col("dev").mean().alias("mean_abs_bias_minus_1"),
            (pl.col("dev") <= pl.col("band")).cast(pl.Float64).mean().alias("share_inside_band"),
            pl.len().alias("windows"),
        )
    )
    return {r["portfolio_kind"]: r for r in out.iter_rows(named=True)}


def full_sample_bias(db: Path, burn_in: int = 0) -> tuple[int, np.ndarray, list[str]]:
    """Per factor: std (ddof 1) of f_t / (prior-day forecast vol) over all dates after the
    first `burn_in` outcomes, and the number of dates T."""
    from factorcov_pipeline.storage import Store

    store = Store(db)
    fr = (
        store.read("SELECT date, factor, factor_return FROM factor_returns")
        .pivot(on="factor", index="date", values="factor_return")
        .sort("date")
    )
    vol = (
        store.read("SELECT date, factor, volatility FROM factor_volatility")
        .pivot(on="factor", index="date", values="volatility")
        .sort("date")
    )
    names = sorted(c for c in fr.columns if c != "date")
    if fr["date"].to_list() != vol["date"].to_list():
        raise SystemExit(f"{db}: factor_returns and factor_volatility have different dates")
    f = fr.select(names).to_numpy()
    sigma = vol.select(names).to_numpy() / np.sqrt(ANNUALISATION)
    z = (f[1:] / sigma[:-1])[burn_in:]
    return z.shape[0], z.std(axis=0, ddof=1), names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", default="2025-03-31")
    parser.add_argument("--end", default="2026-03-31")
    parser.add_argument("--n-assets", type=int, default=3000)
    parser.add_argument("--settings-b", default=json.dumps(DEFAULT_B))
    parser.add_argument("--out-dir", default="")
    parser.add_argument(
        "--burn-in",
        type=int,
        default=63,
        help="also summarise without the first N forecast dates (EWMA/VRA start-up), default 63",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse DuckDB files already in --out-dir"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from factorcov_pipeline.core.settings import load_settings

    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    cov_b = json.loads(args.settings_b)
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="factorcov-compare-"))
    out.mkdir(parents=True, exist_ok=True)
    runs = {
        "A (defaults)": (out / "settings_a.json", {}, out / "defaults.duckdb"),
        "B " + json.dumps(cov_b, separators=(",", ":")): (
            out / "settings_b.json",
            cov_b,
            out / "settings_b.duckdb",
        ),
    }
    print(
        f"factorcov settings comparison: {start} .. {end}, {args.n_assets} synthetic assets, "
        f"python {platform.python_version()}, files in {out}"
    )
    dbs: dict[str, Path] = {}
    for label, (settings_path, cov, db) in runs.items():
        settings_file = write_settings(settings_path, args.n_assets, cov)
        non_default = load_settings(settings_file).factor_cov_settings.non_default()
        print(f"{label}: non-default {non_default}")
        if args.reuse and db.exists():
            print(f"  {db.name}: reused")
        else:
            for suffix in ("", ".wal"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            materialise(db, settings_file, start, end)
        dbs[label] = db
    for burn_in in sorted({0, args.burn_in}):
        report(dbs, burn_in)
    return 0


def report(dbs: dict[str, Path], burn_in: int) -> None:
    """Print the side-by-side tables, over all dates or without the first `burn_in`."""
    results: dict[str, tuple[dict[str, dict[str, float]], int, np.ndarray, list[str]]] = {
        label: (window_summary(db, burn_in), *full_sample_bias(db, burn_in))
        for label, db in dbs.items()
    }
    labels = list(results)
    width = max(len(label) for label in labels) + 2
    print()
    scope = f"without the first {burn_in} forecast dates" if burn_in else "all forecast dates"
    print(f"==== {scope} ====")
    print()
    print("Rolling 21-session windows (forecast_bias table)")
    header = f"{'statistic':<44}" + "".join(f"{label:>{width}}" for label in labels)
    print(header)
    print("-" * len(header))
    for kind in ("factor", "random"):
        for key, what in (
            ("mean_abs_bias_minus_1", f"mean |b - 1|, {kind} portfolios"),
            ("share_inside_band", f"share inside 1 +/- sqrt(2/n), {kind}"),
        ):
            row = f"{what:<44}"
            for label in labels:
                row += f"{results[label][0][kind][key]:>{width}.4f}"
            print(row)
    print()
    t_obs = results[labels[0]][1]
    band = float(np.sqrt(2.0 / t_obs))
    print(
        f"Full sample (T = {t_obs} dates, band 1 +/- {band:.3f}): std of f_t / sigma_t-1 per factor"
    )
    header = f"{'factor':<44}" + "".join(f"{label:>{width}}" for label in labels)
    print(header)
    print("-" * len(header))
    names = results[labels[0]][3]
    for i, name in enumerate(names):
        print(f"{name:<44}" + "".join(f"{results[label][2][i]:>{width}.3f}" for label in labels))
    row_mean = f"{'mean |b - 1| over factors':<44}"
    row_in = f"{'factors inside the band':<44}"
    for label in labels:
        b = results[label][2]
        row_mean += f"{float(np.mean(np.abs(b - 1))):>{width}.4f}"
        row_in += f"{f'{int((np.abs(b - 1) <= band).sum())}/{len(b)}':>{width}}"
    print(row_mean)
    print(row_in)


if __name__ == "__main__":
    sys.exit(main())
