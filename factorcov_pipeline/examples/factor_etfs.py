"""Factor-ETF files of daily factor returns: real (`--real`) or simulated, 5 factors.

`--real`: the daily returns of the five iShares MSCI USA factor ETFs (MTUM, QUAL, SIZE, USMV,
VLUE), 2014-01-03 .. 2022-12-28 (2,263 sessions), from the adjusted closes shipped in
`examples/data/factor_etf_prices.csv.gz` (skfolio's factors dataset, BSD 3-Clause; see
examples/data/README.md). Simple returns r_t = p_t / p_(t-1) - 1 of consecutive rows.

Without `--real`, a simulated file of the same shape:

Stands in for nine years of the MSCI factor ETFs' daily total returns (MTUM, QUAL, SIZE, USMV,
VLUE), which cannot be downloaded here. Same shape and realistic properties: long-only factor
ETFs are dominated by the equity market (pairwise correlations 0.75-0.95), daily volatility
about 1% with clustering (GARCH(1,1), Bollerslev 1986, persistence 0.98) and fat tails
(Student-t innovations with 5 degrees of freedom, kurtosis well above 3), and the low-volatility
fund (USMV) has the lowest beta. Deterministic for a seed.

    python -m factorcov_pipeline.examples.factor_etfs out.parquet [--start 2016-04-01]
    python -m factorcov_pipeline.examples.factor_etfs --real out.parquet
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from factorcov_pipeline.core import calendar

TICKERS: tuple[str, ...] = ("MTUM", "QUAL", "SIZE", "USMV", "VLUE")
N_SESSIONS = 2263
DEFAULT_START = dt.date(2016, 4, 1)
# Market beta and idiosyncratic (style) daily volatility of each fund.
BETA = np.array([1.05, 1.0, 1.02, 0.72, 1.08])
STYLE_VOL = np.array([0.0045, 0.0025, 0.0030, 0.0030, 0.0040])


def factor_etf_returns(
    start: dt.date = DEFAULT_START,
    n_sessions: int = N_SESSIONS,
    names: Sequence[str] = TICKERS,
    seed: int = 2016,
) -> pl.DataFrame:
    """Long `date, factor, factor_return` for the first `n_sessions` XNYS sessions from
    `start` (inclusive), one row per session and name; `names` may be any text (the file
    format's names are data) and any number: names beyond the five funds reuse their betas
    cyclically."""
    days = calendar.sessions(start, start + dt.timedelta(days=2 * n_sessions + 30))[:n_sessions]
    if len(days) < n_sessions:
        raise ValueError(f"the calendar has only {len(days)} sessions from {start}")
    k = len(names)
    rng = np.random.default_rng(seed)
    beta = BETA[np.arange(k) % len(BETA)]
    style_vol = STYLE_VOL[np.arange(k) % len(STYLE_VOL)]
    df = 5.0
    t_scale = np.sqrt((df - 2.0) / df)  # unit-variance Student-t
    # GARCH(1,1) market variance: h_t = w + a r_{t-1}^2 + b h_{t-1}, long-run vol 0.9% a day.
    a, b, long_run = 0.10, 0.88, 0.009**2
    w = long_run * (1.0 - a - b)
    z_m = rng.standard_t(df, n_sessions) * t_scale
    market = np.empty(n_sessions)
    h = long_run
    for t in range(n_sessions):  # the GARCH recursion over dates
        market[t] = np.sqrt(h) * z_m[t]
        h = w + a * market[t] ** 2 + b * h
    z_s = rng.standard_t(df, (n_sessions, k)) * t_scale
    returns = 0.0003 + beta[None, :] * market[:, None] + style_vol[None, :] * z_s
    return pl.DataFrame(
        {
            "date": np.repeat(np.array(days, dtype="datetime64[D]"), k),
            "factor": np.tile(np.array(list(names), dtype=object), n_sessions),
            "factor_return": returns.reshape(-1),
        },
        schema={"date": pl.Date, "factor": pl.String, "factor_return": pl.Float64},
    )


REAL_PRICES = Path(__file__).resolve().parent / "data" / "factor_etf_prices.csv.gz"


def real_factor_etf_returns(path: Path = REAL_PRICES) -> pl.DataFrame:
    """Long `date, factor, factor_return` of the shipped real factor-ETF closes: the simple
    return of each fund between consecutive rows (the first row has no return)."""
    prices = pl.read_csv(path, try_parse_dates=True).sort("Date")
    names = [c for c in prices.columns if c != "Date"]
    returns = prices.select(
        pl.col("Date").alias("date"), *[(pl.col(n) / pl.col(n).shift(1) - 1.0) for n in names]
    ).slice(1)
    return returns.unpivot(
        index="date", on=names, variable_name="factor", value_name="factor_return"
    ).sort("date", "factor")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="Parquet or CSV path")
    parser.add_argument("--start", default=str(DEFAULT_START))
    parser.add_argument("--sessions", type=int, default=N_SESSIONS)
    parser.add_argument("--real", action="store_true", help="the shipped real ETF returns")
    args = parser.parse_args(argv)
    if args.real:
        frame = real_factor_etf_returns()
    else:
        frame = factor_etf_returns(dt.date.fromisoformat(args.start), args.sessions)
    if args.out.endswith(".csv"):
        frame.write_csv(args.out)
    else:
        frame.write_parquet(args.out)
    print(
        f"{args.out}: {frame['date'].n_unique()} sessions {frame['date'].min()} .. "
        f"{frame['date'].max()} x {frame['factor'].n_unique()} factors"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
