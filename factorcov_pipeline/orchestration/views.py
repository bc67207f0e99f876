"""What each asset page of the UI shows: per-session numbers and last-session figures/tables.

Each function reads the stored history it draws (up to the range's last session; of the
`default` covariance model, issue 22) and returns
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
from factorcov_pipeline.core.settings import DEFAULT_MODEL
from factorcov_pipeline.orchestration.metadata import figures_wanted, image, table
from factorcov_pipeline.render import plots
from factorcov_pipeline.storage import Store
from factorcov_pipeline.storage.contract import MODEL_COLUMN

PerSession = dict[dt.date, dict[str, float | int]]
EARLIEST = dt.date(1900, 1, 1)


def _main_factors(factors: FactorSet) -> list[str]:
    """Market and the style factors (the 13+ sector lines would bury them)."""
    return [n for n, g in zip(factors.names, factors.groups, strict=True) if g != "trbc"]


def volatility(
    store: Store, factors: FactorSet, dates: list[dt.date], warm_after: int
) -> tuple[PerSession, dict[str, Any]]:
    """Per session: the market's and the mean factor volatility (and `warm`); last session: the
    forecasts of the main factors over the stored history after their warm-up (plot; the
    warm-up alone while nothing is warm yet, saying so) and the last date's volatilities."""
    history = store.read_dates("factor_volatility", EARLIEST, dates[-1], model=DEFAULT_MODEL)
    if history.height == 0:
        return {}, {}
    days = sorted(set(history["date"].to_list()))
    vol = long_to_matrix(history, days, factors.names, "volatility")
    warm_days = set(history.filter(pl.col("warm").fill_null(False))["date"].to_list())
    market = factors.names.index("Market") if "Market" in factors.names else 0
    in_range = set(dates)
    per = {
        d: {
            "market_volatility": float(vol[t, market]),
            "mean_volatility": float(np.nanmean(vol[t])),
            "warm": int(d in warm_days),
        }
        for t, d in enumerate(days)
        if d in in_range
    }
    last = pl.DataFrame({"factor": list(factors.names), "volatility": vol[-1]}).sort(
        "volatility", descending=True
    )
    if not figures_wanted():
        return per, {"last_date_volatilities": table(last), "last_date_warm": days[-1] in warm_days}
    main = _main_factors(factors)
    shown = [t for t, d in enumerate(days) if d in warm_days]
    title = f"Annualised volatility forecasts after the {warm_after}-session warm-up"
    if not shown:
        shown = list(range(len(days)))
        title = f"Volatility forecasts, all in their {warm_after}-session warm-up"
    figure = plots.line_chart(
        [days[t] for t in shown],
        {n: vol[shown, factors.names.index(n)] for n in main},
        f"{title}: Market and style factors",
        "volatility",
    )
    return per, {
        "volatility_forecasts": image(figure, "volatility forecasts"),
        "last_date_volatilities": table(last),
        "last_date_warm": days[-1] in warm_days,
    }


def _per_date(
    store: Store, table: str, value_sql: str, dates: list[dt.date]
) -> list[tuple[dt.date, float]]:
    """(date, SUM(value_sql)) of each stored date of the range, aggregated in the database: a
    range of 2,520 sessions x 72 factors is 13 million pairs, which must not come back as a
    frame (benchmark 5's memory)."""
    clause, params = store.model_clause(table, DEFAULT_MODEL)
    frame = store.read(
        f"SELECT date, SUM({value_sql}) AS v FROM {table} WHERE date BETWEEN ? AND ?{clause} "
        "GROUP BY date ORDER BY date",
        [dates[0], dates[-1], *params],
    )
    return list(zip(frame["date"].to_list(), frame["v"].to_list(), strict=True))


def _last_matrix(
    store: Store, table: str, value: str, factors: FactorSet, day: dt.date
) -> tuple[np.ndarray, bool]:
    """The K x K matrix of `table` on `day`, and whether it is warm (`warm` on every row)."""
    frame = store.read_dates(table, day, day, model=DEFAULT_MODEL)
    warm = bool(frame["warm"].fill_null(False).all()) if "warm" in frame.columns else False
    return pairs_to_cube(frame, [day], factors.names, value)[0], warm


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
    last_day = sums[-1][0]
    corr, warm = _last_matrix(store, "factor_correlation", "correlation", factors, last_day)
    if not figures_wanted():
        return per, {"last_date_warm": warm}
    title = f"Factor correlation on {last_day}" + ("" if warm else " (in its warm-up)")
    figure = plots.heatmap(corr, list(factors.names), title)
    return per, {
        "correlation_heatmap": image(figure, "correlation heatmap"),
        "last_date_warm": warm,
    }


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
    last, warm = _last_matrix(store, "factor_covariance", "covariance", factors, last_day)
    rows = pl.DataFrame(
        {
            "factor": list(factors.names),
            "volatility": np.sqrt(np.diagonal(last)),
            **{name: last[:, j] for j, name in enumerate(factors.names)},
        }
    )
    return per, {f"covariance_{last_day}": table(rows, float_digits=4), "last_date_warm": warm}


def report(store: Store, dates: list[dt.date]) -> dict[str, Any]:
    """Last session of the range with a report: its rows as stored (the tutorial's `df_vcov`
    layout: one row per factor, a column per factor, alphabetical; annualised covariances)
    with each factor's volatility, and whether the forecast is warm (`factor_covariance`)."""
    clause, params = store.model_clause("covariance_report", DEFAULT_MODEL)
    day = store.read(
        f"SELECT max(date) AS d FROM covariance_report WHERE date BETWEEN ? AND ?{clause}",
        [dates[0], dates[-1], *params],
    )["d"][0]
    if day is None:
        return {}
    rows = store.read_dates("covariance_report", day, day, model=DEFAULT_MODEL)
    rows = rows.sort("factor").drop("date", MODEL_COLUMN, strict=False)
    names = rows["factor"].to_list()
    values = rows.select(names).to_numpy()
    rows = rows.select("factor", pl.Series("volatility", np.sqrt(np.diagonal(values))), *names)
    cov = store.read_dates("factor_covariance", day, day, model=DEFAULT_MODEL)
    warm = "warm" in cov.columns and bool(cov["warm"].fill_null(False).all())
    return {
        "latest_date": str(day),
        "latest_date_warm": warm,
        # one key whatever the date (a key per date would be a new metadata entry every session)
        "latest_covariance": table(rows, float_digits=4),
    }


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


def bias(store: Store, dates: list[dt.date], warm_after: int) -> tuple[PerSession, dict[str, Any]]:
    """Per session: mean |b - 1| of the windows ending then (and whether they are warm);
    last session: the mean bias statistic over time for factors and random portfolios (plot,
    ideal 1) of the windows whose forecasts are all warm, the axis clipped to them."""
    history = store.read_dates("forecast_bias", EARLIEST, dates[-1], model=DEFAULT_MODEL)
    if history.height == 0:
        return {}, {}
    in_range = set(dates)
    dev = (
        history.filter(pl.col("bias").is_not_nan() & pl.col("window_end").is_in(list(in_range)))
        .group_by("window_end")
        .agg(
            (pl.col("bias") - 1.0).abs().mean().alias("dev"),
            pl.col("warm").fill_null(False).all().alias("warm"),
        )
    )
    per = {d: {"mean_abs_bias_minus_1": float(v), "warm": int(w)} for d, v, w in dev.iter_rows()}
    if not figures_wanted():
        return per, {}
    warm = history.filter(pl.col("warm").fill_null(False))
    title = f"Bias statistic of the forecasts (21-session windows after the {warm_after}-session "
    title += "warm-up)"
    if warm.height == 0:  # nothing after the warm-up yet: the warm-up, saying so
        warm = history
        title = f"Bias statistic, 21-session windows: all in the {warm_after}-session warm-up"
    by_day = (
        warm.filter(pl.col("bias").is_not_nan())
        .group_by("window_end", "portfolio_kind")
        .agg(pl.col("bias").mean().alias("mean_bias"))
        .sort("window_end")
    )
    if by_day.height == 0:
        return per, {}
    days = sorted(set(by_day["window_end"].to_list()))
    series = {}
    for kind in sorted(set(by_day["portfolio_kind"].to_list())):
        part = by_day.filter(pl.col("portfolio_kind") == kind)
        values = dict(zip(part["window_end"].to_list(), part["mean_bias"].to_list(), strict=True))
        series[f"mean bias ({kind})"] = np.array([values.get(d, np.nan) for d in days])
    figure = plots.line_chart(
        days,
        series,
        title,
        "bias",
        1.0,
        ylim=plots.data_limits(np.concatenate(list(series.values())), include=(1.0,)),
    )
    return per, {"bias_over_time": image(figure, "bias statistics")}


N_DECILES = 10


def specific_risk(store: Store, last: dt.date) -> dict[str, Any]:
    """Last session's specific risk forecasts by size decile (1 = smallest market cap; equal
    caps in asset id order): a box per decile (10th, 25th, 50th, 75th, 90th percentile) and the
    table of those percentiles, with the count of forecasts not estimated from the asset's own
    returns (`reason` not NULL)."""
    day = store.read("SELECT max(date) AS d FROM specific_risk WHERE date <= ?", [last])["d"][0]
    if day is None:
        return {}
    frame = store.read(
        "SELECT s.asset_id, s.specific_risk, s.reason, u.market_cap FROM specific_risk s "
        "JOIN universe u ON u.date = s.date AND u.asset_id = s.asset_id "
        "WHERE s.date = ? AND u.date = ? ORDER BY s.asset_id",
        [day, day],
    ).filter(pl.col("specific_risk").is_not_null())
    if frame.height == 0:
        return {}
    rank = frame["market_cap"].rank("ordinal").to_numpy().astype(np.int64) - 1
    frame = frame.with_columns(
        pl.Series("size_decile", rank * N_DECILES // frame.height + 1, dtype=pl.Int32)
    )
    q = pl.col("specific_risk")
    deciles = (
        frame.group_by("size_decile")
        .agg(
            pl.len().alias("n_assets"),
            q.quantile(0.1, "linear").alias("p10"),
            q.quantile(0.25, "linear").alias("p25"),
            q.median().alias("median"),
            q.quantile(0.75, "linear").alias("p75"),
            q.quantile(0.9, "linear").alias("p90"),
            pl.col("market_cap").min().alias("min_cap"),
            pl.col("market_cap").max().alias("max_cap"),
            pl.col("reason").is_not_null().sum().alias("not_from_own_returns"),
        )
        .sort("size_decile")
    )
    # one key whatever the date (a key per date would be a new metadata entry every session)
    tables = {"specific_risk_deciles": table(deciles.with_columns(pl.lit(day).alias("date")),
                                             float_digits=4)}  # fmt: skip
    if not figures_wanted():
        return tables
    figure = plots.boxes(
        [str(d) for d in deciles["size_decile"].to_list()],
        deciles.select("p10", "p25", "median", "p75", "p90").to_numpy(),
        f"Specific risk by size decile on {day} (annualised; 1 = smallest)",
        "size decile",
        "specific risk (box 25-75%, whiskers 10-90%)",
    )
    return {"specific_risk_by_size_decile": image(figure, "specific risk by size decile"), **tables}
