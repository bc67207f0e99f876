"""`forecast_bias`: bias statistics of the covariance forecasts over rolling windows."""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import (
    bias_report,
    random_portfolio_names,
    random_portfolio_weights,
    standardized_outcomes,
)
from factorcov_pipeline.core.backtest import forecast_bias as bias_table
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    date_span,
    matrix_chunk_sessions,
    model_factors,
    read_panel,
    settings_metadata,
)
from factorcov_pipeline.orchestration.metadata import on_last_session, per_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
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
) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows of `forecast_bias` for the windows ending on the sessions of `chunk`, and the
    standardised outcomes z (dates of `chunk` x portfolios) for the full-sample summary."""
    lookback = calendar.sessions(chunk[0] - dt.timedelta(days=3 * WINDOW + 10), chunk[0])
    start = lookback[-(WINDOW + 1)] if len(lookback) > WINDOW else lookback[0]
    fr = store.read_dates("factor_returns", start, chunk[-1])
    # Forecast dates include no-return sessions (gaps): their return row is NaN (left out of the
    # windows) and their forecast is the prior of the next session.
    days, cov = read_panel(
        store, "factor_covariance", start, chunk[-1], factors.names, "covariance"
    )
    if len(days) < 2:
        return EMPTY, np.empty((0, factors.k + N_PORTFOLIOS))
    F = long_to_matrix(fr, days, factors.names, "factor_return")
    cov = cov / ANNUALISATION
    prior = np.concatenate([np.full((1, factors.k, factors.k), np.nan), cov[:-1]])
    out = bias_table(days, factors.names, F, prior, window=WINDOW, n_portfolios=N_PORTFOLIOS)
    weights = np.vstack([np.eye(factors.k), random_portfolio_weights(factors.k, N_PORTFOLIOS)])
    in_chunk = np.array([chunk[0] <= d <= chunk[-1] for d in days])
    z = standardized_outcomes(F, prior, weights)[in_chunk]
    return out.filter(pl.col("window_end").is_between(chunk[0], chunk[-1])), z


@asset(
    **PARTITIONED,
    deps=["factor_returns", "factor_covariance"],
    group_name="evaluation",
    kinds={"numpy", "duckdb"},
)
@one_connection
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
    frames, outcomes = [], []
    # bounded memory: a chunk (+ its lookback) at a time
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for chunk in date_chunks(dates, size=matrix_chunk_sessions(factors.k)):
            out, z = _bias_of_windows_ending_in(store, factors, chunk)
            outcomes.append(z)
            writer.replace(
                [TableWrite(ASSET, out)], date_span(chunk), settings_json=settings.fingerprint()
            )
            frames.append(out)
    out = pl.concat(frames)
    # The summary reads the full-sample statistic std(r(t+1) / sigma(t)) over the run's dates
    # and its 12-month windows (core/backtest.bias_report), not the mean of the 21-session
    # statistics, which reads low for fat-tailed returns (issue 13); the plot keeps the
    # 21-session series stored up to the range's end.
    names = list(factors.names) + random_portfolio_names(N_PORTFOLIOS)
    kinds = ["factor"] * factors.k + ["random"] * N_PORTFOLIOS
    report = bias_report(np.concatenate(outcomes), names, kinds)
    last: dict[str, object] = {"rows": out.height, **settings_metadata(settings)}
    summary = None
    if report["n_obs"].max() >= 2:
        last["full_sample_bias_mean"] = float(report["full_sample_bias"].mean())
        last["full_sample_bias_n_obs"] = int(report["n_obs"].max())
        summary = report
    per, figures = views.bias(store, summary, dates)
    per_session(context, per)
    on_last_session(context, {**last, **figures})
    return MaterializeResult()
