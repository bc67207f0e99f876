"""`forecast_bias`: bias statistics of the covariance forecasts over rolling windows."""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import bias_summary
from factorcov_pipeline.core.backtest import forecast_bias as bias_table
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    model_factors,
    settings_metadata,
)
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import TableWrite

ASSET = "forecast_bias"
WINDOW = 21
N_PORTFOLIOS = 20
ANNUALISATION = 252.0


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
    lookback_start = calendar.sessions(dates[0] - dt.timedelta(days=3 * WINDOW + 10), dates[0])
    start = lookback_start[-(WINDOW + 1)] if len(lookback_start) > WINDOW else lookback_start[0]
    fr = store.read_dates("factor_returns", start, dates[-1])
    cov_long = store.read_dates("factor_covariance", start, dates[-1])
    # Forecast dates include no-return sessions (gaps): their return row is NaN (left out of the
    # windows) and their forecast is the prior of the next session.
    days = sorted(set(cov_long["date"].to_list())) if cov_long.height else []
    out: pl.DataFrame
    if len(days) < 2:
        out = pl.DataFrame(
            schema={
                "window_end": pl.Date,
                "portfolio": pl.String,
                "portfolio_kind": pl.String,
                "n_obs": pl.Int32,
                "bias": pl.Float64,
            }
        )
    else:
        F = long_to_matrix(fr, days, factors.names, "factor_return")
        cov = pairs_to_cube(cov_long, days, factors.names, "covariance") / ANNUALISATION
        prior = np.concatenate([np.full((1, factors.k, factors.k), np.nan), cov[:-1]])
        out = bias_table(days, factors.names, F, prior, window=WINDOW, n_portfolios=N_PORTFOLIOS)
        out = out.filter(pl.col("window_end").is_between(dates[0], dates[-1]))
    store.replace(
        [TableWrite(ASSET, out)], (dates[0], dates[-1]), settings_json=settings.fingerprint()
    )
    summary = bias_summary(out) if out.height else None
    meta = {"rows": out.height, **settings_metadata(settings)}
    if summary is not None:
        meta["mean_abs_bias_minus_1"] = float(summary["mean_abs_bias_minus_1"].mean())
        meta["summary"] = MetadataValue.text(str(summary.head(30)))
    return MaterializeResult(metadata=meta)
