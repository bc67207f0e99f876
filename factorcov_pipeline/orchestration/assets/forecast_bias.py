"""`forecast_bias`: bias statistics of the covariance forecasts over rolling windows."""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import bias_summary
from factorcov_pipeline.core.backtest import forecast_bias as bias_table
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    date_span,
    matrix_chunk_sessions,
    model_factors,
    settings_metadata,
)
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import Store, TableWrite

ASSET = "forecast_bias"
WINDOW = 21
N_PORTFOLIOS = 20
ANNUALISATION = 252.0


EMPTY = pl.DataFrame(
    schema={
        "window_end": pl.Date,
        "portfolio": pl.String,
        "portfolio_kind": pl.String,
        "n_obs": pl.Int32,
        "bias": pl.Float64,
    }
)


def _bias_of_windows_ending_in(
    store: Store, factors: FactorSet, chunk: list[dt.date]
) -> pl.DataFrame:
    """Rows of `forecast_bias` for the windows ending on the sessions of `chunk`."""
    lookback = calendar.sessions(chunk[0] - dt.timedelta(days=3 * WINDOW + 10), chunk[0])
    start = lookback[-(WINDOW + 1)] if len(lookback) > WINDOW else lookback[0]
    fr = store.read_dates("factor_returns", start, chunk[-1])
    cov_long = store.read_dates("factor_covariance", start, chunk[-1])
    # Forecast dates include no-return sessions (gaps): their return row is NaN (left out of the
    # windows) and their forecast is the prior of the next session.
    days = sorted(set(cov_long["date"].to_list())) if cov_long.height else []
    if len(days) < 2:
        return EMPTY
    F = long_to_matrix(fr, days, factors.names, "factor_return")
    cov = pairs_to_cube(cov_long, days, factors.names, "covariance") / ANNUALISATION
    prior = np.concatenate([np.full((1, factors.k, factors.k), np.nan), cov[:-1]])
    out = bias_table(days, factors.names, F, prior, window=WINDOW, n_portfolios=N_PORTFOLIOS)
    return out.filter(pl.col("window_end").is_between(chunk[0], chunk[-1]))


@asset(
    **PARTITIONED,
    deps=["factor_returns", "factor_covariance"],
    group_name="evaluation",
    kinds={"numpy", "duckdb"},
)
def forecast_bias(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Bias statistic (std of return / prior-day forecast volatility) over rolling windows of
    21 sessions ending on each date, for every factor and 20 fixed random factor portfolios.

    A window ending at t reads only the last 21 sessions, so a daily run stays cheap.
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    frames = []
    for chunk in date_chunks(
        dates, size=matrix_chunk_sessions(factors.k)
    ):  # bounded memory: a chunk (+ its lookback) at a time
        out = _bias_of_windows_ending_in(store, factors, chunk)
        store.replace(
            [TableWrite(ASSET, out)], date_span(chunk), settings_json=settings.fingerprint()
        )
        frames.append(out)
    out = pl.concat(frames)
    summary = bias_summary(out) if out.height else None
    meta = {"rows": out.height, **settings_metadata(settings)}
    if summary is not None:
        meta["mean_abs_bias_minus_1"] = float(summary["mean_abs_bias_minus_1"].mean())
        meta["summary"] = MetadataValue.text(str(summary.head(30)))
    return MaterializeResult(metadata=meta)
