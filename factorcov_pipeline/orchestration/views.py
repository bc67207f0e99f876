"""What each asset page of the UI shows: per-session numbers and last-session figures/tables.

Each function reads the stored history it draws (up to the range's last session) and returns
`(per_session, last)`: the numbers of each session of the range, and the figures and tables of
the range's last session (`metadata.per_session` / `metadata.on_last_session` publish them).
In a run nobody will see, no figure is drawn (`metadata.figures_wanted`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.orchestration.metadata import figures_wanted, image, table
from factorcov_pipeline.render import plots
from factorcov_pipeline.storage import Store

PerSession = dict[dt.date, dict[str, float | int]]
EARLIEST = dt.date(1900, 1, 1)


def _main_factors(factors: FactorSet) -> list[str]:
    """Market and the style factors (the 13+ sector lines would bury them)."""
    return [n for n, g in zip(factors.names, factors.groups, strict=True) if g != "trbc"]


def volatility(
    store: Store, factors: FactorSet, dates: list[dt.date]
) -> tuple[PerSession, dict[str, Any]]:
    """Per session: the market's and the mean factor volatility; last session: the forecasts of
    the main factors over the whole stored history (plot) and the last date's volatilities."""
    history = store.read_dates("factor_volatility", EARLIEST, dates[-1])
    if history.height == 0:
        return {}, {}
    days = sorted(set(history["date"].to_list()))
    vol = long_to_matrix(history, days, factors.names, "volatility")
    market = factors.names.index("Market") if "Market" in factors.names else 0
    in_range = set(dates)
    per = {
        d: {
            "market_volatility": float(vol[t, market]),
            "mean_volatility": float(np.nanmean(vol[t])),
        }
        for t, d in enumerate(days)
        if d in in_range
    }
    last = pl.DataFrame({"factor": list(factors.names), "volatility": vol[-1]}).sort(
        "volatility", descending=True
    )
    if not figures_wanted():
        return per, {"last_date_volatilities": table(last)}
    main = _main_factors(factors)
    figure = plots.line_chart(
        days,
        {n: vol[:, factors.names.index(n)] for n in main},
        "Annualised volatility forecasts: Market and style factors",
        "volatility",
    )
    return per, {
        "volatility_forecasts": image(figure, "volatility forecasts"),
        "last_date_volatilities": table(last),
    }


def _per_date(
    store: Store, table: str, value_sql: str, dates: list[dt.date]
) -> list[tuple[dt.date, float]]:
    """(date, SUM(value_sql)) of each stored date of the range, aggregated in the database: a
    range of 2,520 sessions x 72 factors is 13 million pairs, which must not come back as a
    frame (benchmark 5's memory)."""
    frame = store.read(
        f"SELECT date, SUM({value_sql}) AS v FROM {table} WHERE date BETWEEN ? AND ? "
        "GROUP BY date ORDER BY date",
        [dates[0], dates[-1]],
    )
    return list(zip(frame["date"].to_list(), frame["v"].to_list(), strict=True))


def _last_matrix(
    store: Store, table: str, value: str, factors: FactorSet, day: dt.date
) -> np.ndarray:
    """The K x K matrix of `table` on `day`."""
    frame = store.read_dates(table, day, day)
    return pairs_to_cube(frame, [day], factors.names, value)[0]


def correlation(
    store: Store, factors: FactorSet, dates: list[dt.date]
) -> tuple[PerSession, dict[str, Any]]:
    """Per session: the mean absolute off-diagonal correlation; last session: its heatmap."""
    k = factors.k
    sums = _per_date(
        store,
        "factor_correlation",
        "CASE WHEN factor_1 <> factor_2 THEN abs(correlation) ELSE 0 END",
        dates,
    )
    if not sums:
        return {}, {}
    per = {d: {"mean_abs_correlation": float(v) / max(1, k * (k - 1))} for d, v in sums}
    if not figures_wanted():
        return per, {}
    last_day = sums[-1][0]
    corr = _last_matrix(store, "factor_correlation", "correlation", factors, last_day)
    figure = plots.heatmap(corr, list(factors.names), f"Factor correlation on {last_day}")
    return per, {"correlation_heatmap": image(figure, "correlation heatmap")}


def covariance(
    store: Store, factors: FactorSet, dates: list[dt.date]
) -> tuple[PerSession, dict[str, Any]]:
    """Per session: total variance (trace); last session: volatilities and the covariance
    matrix as a table (one row per factor)."""
    sums = _per_date(
        store,
        "factor_covariance",
        "CASE WHEN factor_1 = factor_2 THEN covariance ELSE 0 END",
        dates,
    )
    if not sums:
        return {}, {}
    per = {d: {"total_variance": float(v)} for d, v in sums}
    last_day = sums[-1][0]
    last = _last_matrix(store, "factor_covariance", "covariance", factors, last_day)
    rows = pl.DataFrame(
        {
            "factor": list(factors.names),
            "volatility": np.sqrt(np.diagonal(last)),
            **{name: last[:, j] for j, name in enumerate(factors.names)},
        }
    )
    return per, {f"covariance_{last_day}": table(rows, float_digits=4)}


def regression(store: Store, dates: list[dt.date]) -> tuple[PerSession, dict[str, Any]]:
    """Per session: R-squared and the number of assets regressed; last session: both over the
    stored history (plots)."""
    stats = store.read_dates("regression_stats", EARLIEST, dates[-1]).sort("date")
    if stats.height == 0:
        return {}, {}
    in_range = set(dates)
    per = {
        row["date"]: {"r_squared": float(row["r_squared"]), "n_assets": int(row["n_assets"])}
        for row in stats.iter_rows(named=True)
        if row["date"] in in_range
    }
    if not figures_wanted():
        return per, {}
    days = stats["date"].to_list()
    r2 = plots.line_chart(
        days, {"R-squared": stats["r_squared"].to_numpy()}, "Cross-sectional R-squared", "R²"
    )
    n = plots.line_chart(
        days, {"assets": stats["n_assets"].to_numpy()}, "Assets in the regression", "assets"
    )
    return per, {
        "r_squared_over_time": image(r2, "R-squared"),
        "assets_over_time": image(n, "assets"),
    }


def bias(
    store: Store, summary: pl.DataFrame | None, dates: list[dt.date]
) -> tuple[PerSession, dict[str, Any]]:
    """Per session: mean |b - 1| of the windows ending then; last session: the mean bias
    statistic over time for factors and random portfolios (plot, ideal 1) and `summary` (the
    table `core.backtest.bias_summary` gives, whatever its columns)."""
    history = store.read_dates("forecast_bias", EARLIEST, dates[-1])
    if history.height == 0:
        return {}, {}
    by_day = (
        history.filter(pl.col("bias").is_not_nan())
        .group_by("window_end", "portfolio_kind")
        .agg(pl.col("bias").mean().alias("mean_bias"))
        .sort("window_end")
    )
    in_range = set(dates)
    dev = (
        history.filter(pl.col("bias").is_not_nan() & pl.col("window_end").is_in(list(in_range)))
        .group_by("window_end")
        .agg((pl.col("bias") - 1.0).abs().mean().alias("dev"))
    )
    per = {d: {"mean_abs_bias_minus_1": float(v)} for d, v in dev.iter_rows()}
    if not figures_wanted():
        return per, {"summary": table(summary)} if summary is not None and summary.height else {}
    days = sorted(set(by_day["window_end"].to_list()))
    series = {}
    for kind in sorted(set(by_day["portfolio_kind"].to_list())):
        part = by_day.filter(pl.col("portfolio_kind") == kind)
        values = dict(zip(part["window_end"].to_list(), part["mean_bias"].to_list(), strict=True))
        series[f"mean bias ({kind})"] = np.array([values.get(d, np.nan) for d in days])
    figure = plots.line_chart(
        days, series, "Bias statistic of the forecasts (21-session windows)", "bias", 1.0
    )
    last: dict[str, Any] = {"bias_over_time": image(figure, "bias statistics")}
    if summary is not None and summary.height:
        last["summary"] = table(summary)
    return per, last
