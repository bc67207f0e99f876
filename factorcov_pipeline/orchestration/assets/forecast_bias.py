"""`forecast_bias`: bias statistics of the covariance forecasts over rolling windows.

Tables: `forecast_bias` (21-session rolling statistics, `warm` when every forecast of the window
was warm), `forecast_outcomes` (each session's realised return and the risk forecast the
session before, per test portfolio, with the forecast's `warm`) and `forecast_bias_summary`
(the full-sample statistic with its 95% band and 12-month windows over the whole stored
history, `core/backtest.outcome_summary`, replaced by every run; the metadata reads it).
"""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import (
    PORTFOLIO_KIND_FACTOR,
    PORTFOLIO_KIND_RANDOM,
    random_portfolio_names,
    random_portfolio_weights,
)
from factorcov_pipeline.core.backtest import forecast_bias as bias_table
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix
from factorcov_pipeline.core.settings import DEFAULT_MODEL
from factorcov_pipeline.core.warmup import COVARIANCE, warmups
from factorcov_pipeline.orchestration import summaries, views
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_span,
    matrix_chunk_sessions,
    model_factors,
    read_panel,
    settings_metadata,
)
from factorcov_pipeline.orchestration.assets.models import (
    chunks,
    extension,
    history_start,
    identity,
    run_models,
)
from factorcov_pipeline.orchestration.metadata import on_last_session, per_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import Store

ASSET = "forecast_bias"
OUTCOMES = "forecast_outcomes"
SUMMARY = "forecast_bias_summary"
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
        "warm": pl.Boolean,
    }
)
OUTCOME_SCHEMA = {
    "date": pl.Date,
    "portfolio": pl.String,
    "portfolio_kind": pl.String,
    "realised_return": pl.Float64,
    "predicted_risk": pl.Float64,
    "warm": pl.Boolean,
}


def portfolio_outcomes(
    factor_returns: np.ndarray, prior_cov_daily: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(T, P) realised daily returns w'f_t and annualised risk forecasts
    sqrt(252 w' Sigma_{t-1} w) of the portfolios `weights` (P, K) (NaN where a return or the
    forecast is missing). Each date's numbers are computed alone (a K x K @ K x P product and
    element-wise sums, no BLAS call whose blocking depends on T), so a date's stored outcome
    does not depend on the chunk it was computed in (tests/test_parallel.py)."""
    w = np.asarray(weights, dtype=np.float64)
    realised = np.einsum("tk,pk->tp", factor_returns, w)
    fw = np.matmul(prior_cov_daily, w.T)  # (T, K, P), one product per date
    var = np.einsum("pk,tkp->tp", w, fw)
    with np.errstate(invalid="ignore"):
        predicted = np.sqrt(np.where(var > 0, var, np.nan) * ANNUALISATION)
    return realised, predicted


def _bias_of_windows_ending_in(
    store: Store,
    factors: FactorSet,
    chunk: list[dt.date],
    warm_after: int,
    model: str = DEFAULT_MODEL,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of `forecast_bias` for the windows ending on the sessions of `chunk`, and of
    `forecast_outcomes` for its sessions with a forecast before them, of covariance model
    `model`."""
    lookback = calendar.sessions(chunk[0] - dt.timedelta(days=3 * WINDOW + 10), chunk[0])
    start = lookback[-(WINDOW + 1)] if len(lookback) > WINDOW else lookback[0]
    fr = store.read_dates("factor_returns", start, chunk[-1])
    # Forecast dates include no-return sessions (gaps): their return row is NaN (left out of the
    # windows) and their forecast is the prior of the next session.
    days, cov = read_panel(
        store, "factor_covariance", start, chunk[-1], factors.names, "covariance", model=model
    )
    if len(days) < 2:
        return EMPTY, pl.DataFrame(schema=OUTCOME_SCHEMA)
    F = long_to_matrix(fr, days, factors.names, "factor_return")
    cov = cov / ANNUALISATION
    prior = np.concatenate([np.full((1, factors.k, factors.k), np.nan), cov[:-1]])
    out = bias_table(days, factors.names, F, prior, window=WINDOW, n_portfolios=N_PORTFOLIOS)
    out = out.filter(pl.col("window_end").is_between(chunk[0], chunk[-1]))
    # warm of the forecast each date's outcome is scored against (the previous date's)
    warm_prior = np.concatenate([[False], resume.warm_flags(store, days[:-1], warm_after)])
    at = {d: i for i, d in enumerate(days)}
    first = np.array([at[d] - WINDOW + 1 for d in out["window_end"].to_list()], dtype=np.int64)
    out = out.with_columns(pl.Series("warm", warm_prior[first], dtype=pl.Boolean))
    weights = np.vstack([np.eye(factors.k), random_portfolio_weights(factors.names, N_PORTFOLIOS)])
    names = list(factors.names) + random_portfolio_names(N_PORTFOLIOS)
    kinds = [PORTFOLIO_KIND_FACTOR] * factors.k + [PORTFOLIO_KIND_RANDOM] * N_PORTFOLIOS
    rows = np.flatnonzero(
        np.array([chunk[0] <= d <= chunk[-1] for d in days]) & (np.arange(len(days)) > 0)
    )
    realised, predicted = portfolio_outcomes(F[rows], prior[rows], weights)
    p = len(names)
    outcomes = pl.DataFrame(
        {
            "date": pl.Series([days[i] for i in rows], dtype=pl.Date).gather(
                np.repeat(np.arange(rows.size), p)
            ),
            "portfolio": np.tile(np.asarray(names, dtype=object), rows.size),
            "portfolio_kind": np.tile(np.asarray(kinds, dtype=object), rows.size),
            "realised_return": realised.ravel(),
            "predicted_risk": predicted.ravel(),
            "warm": np.repeat(warm_prior[rows], p),
        },
        schema=OUTCOME_SCHEMA,
    ).fill_nan(None)
    return out, outcomes


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
    21 sessions ending on each date, for every factor and 20 fixed random factor portfolios
    (keyed by factor name, `core.backtest.random_portfolio_weights`); each session's outcomes
    (`forecast_outcomes`) and their full-sample summary (`forecast_bias_summary`).

    A window ending at t reads only the last 21 sessions, so a daily run stays cheap; the
    summary reads the stored outcomes (K + 20 rows a session).
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    ident = identity(settings)
    first = history_start(store)
    n_rows = 0
    # bounded memory: a chunk (+ its lookback) at a time
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for m in run_models(settings):
            warm_after = warmups(m.settings)[COVARIANCE]
            before = extension(store, OUTCOMES, m.name, dates, first)
            for chunk in chunks(before, dates, matrix_chunk_sessions(factors.k)):
                out, outcomes = _bias_of_windows_ending_in(
                    store, factors, chunk, warm_after, m.name
                )
                writer.replace(
                    [m.write(ASSET, out), m.write(OUTCOMES, outcomes)],
                    date_span(chunk),
                    **ident,
                )
                if m.is_default:
                    n_rows += out.height
    # The summary reads the full-sample statistic std(r(t+1) / sigma(t)) over the stored
    # history and its 12-month windows (core/backtest.bias_report), not the mean of the
    # 21-session statistics, which reads low for fat-tailed returns (issue 13). One per model.
    summary = pl.DataFrame()
    for m in run_models(settings):
        frame = summaries.replace_summary(store, OUTCOMES, SUMMARY, ident, model=m.name)
        if m.is_default:
            summary = frame
    warm_after = warmups(settings)[COVARIANCE]
    last: dict[str, object] = {
        "rows": n_rows,
        "warm_up": summaries.note(warm_after, settings.factor_cov_settings.warmup_length > 0),
        **summaries.mean_bias(summary, "full_sample_bias_mean"),
        **summaries.metadata(summary, "bias_summary"),
        **settings_metadata(settings),
    }
    per, figures = views.bias(store, dates, warm_after)
    per_session(context, per)
    on_last_session(context, {**last, **figures})
    return MaterializeResult()
