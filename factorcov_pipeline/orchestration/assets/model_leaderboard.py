"""`model_leaderboard`: which covariance model forecast best over the stored history (issue 22).

Every covariance model of the settings (`default` and the `models`) is scored by
`core/leaderboard.leaderboard` on the stored factor returns and the model's stored
`factor_covariance` forecasts: the forecast F_{t-1} of the previous forecast date against the
returns of t, after its warm-up (the stored `warm` flag of F_{t-1}), every model on the dates
scored for all of them. The random test portfolios are those of `forecast_bias`
(`backtest.random_portfolio_weights` of the factor names, 20 of them). The table is replaced as a
whole by every run (one row per model in force, ranked; `as_of` the last forecast date), over
the whole stored history whatever the run's range; a model removed from the settings leaves it
(its rows of the forecast tables stay). In factor space only: it works for user factor files.
"""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core.backtest import random_portfolio_weights
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.forecaster import ANNUALISATION_DAYS
from factorcov_pipeline.core.leaderboard import (
    LEADERBOARD_SCHEMA,
    ROLLING_WINDOW,
    Leaderboard,
    leaderboard,
)
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2
from factorcov_pipeline.core.warmup import COVARIANCE, warmups
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    matrix_chunk_sessions,
    model_factors,
)
from factorcov_pipeline.orchestration.assets.forecast_bias import N_PORTFOLIOS
from factorcov_pipeline.orchestration.assets.models import identity
from factorcov_pipeline.orchestration.metadata import (
    figures_wanted,
    image,
    on_last_session,
    table,
)
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.render import plots
from factorcov_pipeline.storage import BaseStore, TableWrite
from factorcov_pipeline.storage.contract import WHOLE_TABLE_SPAN

ASSET = "model_leaderboard"
# The plot's rolling window when fewer than ROLLING_WINDOW dates are scored (forecast_bias'
# window).
SHORT_WINDOW = 21
TABLE_SCHEMA = {**LEADERBOARD_SCHEMA, "as_of": pl.Date()}
# The leaderboard's columns in the UI (the ranking and its three criteria, with the headline
# minimum-variance bias): a table that fits the asset page; every column is in SQL.
UI_COLUMNS = (
    "model",
    "rank",
    "score",
    "n_obs",
    "mean_abs_bias_minus_1",
    "min_variance_bias",
    "min_variance_volatility",
    "gaussian_nll",
)


def stored_inputs(
    store: BaseStore,
    factors: FactorSet,
    settings: FactorCovarianceReportSettingsV2,
) -> tuple[list[dt.date], np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """What `core.leaderboard.leaderboard` scores, from the stored tables: the forecast dates t
    of every model (ascending; sessions without returns included, their returns NaN), the
    factor returns (T, K) of those dates and, per model, the DAILY forecast F_{t-1} of the
    previous forecast date (T, K, K; NaN on the first date and where the model has none) with
    the stored `warm` flag of that forecast (a NULL flag, written before the column existed,
    is the warm-up rule of `core/warmup.py` on the stored returns)."""
    names = factors.names
    per_model_dates = {
        m: store.stored_dates("factor_covariance", model=m) for m in settings.model_names()
    }
    days = sorted({d for ds in per_model_dates.values() for d in ds})
    if not days:
        return [], np.empty((0, factors.k)), {}
    fr = store.read_dates("factor_returns", days[0], days[-1])
    returns = long_to_matrix(fr, days, names, "factor_return")
    at = {d: i for i, d in enumerate(days)}
    forecasts = {}
    for m in settings.model_names():
        cov = np.full((len(days), factors.k, factors.k), np.nan)
        warm = np.zeros(len(days), dtype=bool)
        known = np.zeros(len(days), dtype=bool)
        mine = per_model_dates[m]
        # a chunk of K x K matrices at a time: bounded memory at 72 factors x 10 years
        for chunk in date_chunks(mine, size=matrix_chunk_sessions(factors.k)):
            frame = store.read_dates("factor_covariance", chunk[0], chunk[-1], model=m)
            rows = [at[d] for d in chunk]
            cov[rows] = pairs_to_cube(frame, chunk, names, "covariance")
            flags = (
                frame.group_by("date")
                .agg(pl.col("warm").all().alias("w"), pl.col("warm").is_null().any().alias("n"))
                .sort("date")
            )
            for day, w, null in flags.iter_rows():  # a loop over the chunk's dates
                warm[at[day]], known[at[day]] = bool(w), not null
        if not known[[at[d] for d in mine]].all():  # rows written before `warm` existed
            rule = resume.warm_flags(store, days, warmups(settings.for_model(m))[COVARIANCE])
            warm = np.where(known, warm, rule)
        prior = np.concatenate([np.full((1, factors.k, factors.k), np.nan), cov[:-1]])
        warm_prior = np.concatenate([[False], warm[:-1]])
        forecasts[m] = (prior / ANNUALISATION_DAYS, warm_prior)
    return days, returns, forecasts


def stored_leaderboard(
    store: BaseStore,
    factors: FactorSet,
    settings: FactorCovarianceReportSettingsV2,
    rolling_window: int = ROLLING_WINDOW,
) -> tuple[Leaderboard, dt.date] | None:
    """The leaderboard of the stored history and its last forecast date (None: nothing
    stored yet); `rolling_window` sessions for its rolling bias series."""
    days, returns, forecasts = stored_inputs(store, factors, settings)
    if not days:
        return None
    weights = random_portfolio_weights(factors.names, N_PORTFOLIOS)
    board = leaderboard(
        days, factors.names, returns, forecasts, weights, rolling_window=rolling_window
    )
    return board, days[-1]


def _plots(board: Leaderboard, window: int) -> dict[str, object]:
    """Each model's rolling bias statistics over `window` sessions
    (`core.leaderboard.ROLLING_SCHEMA`): of the minimum-variance portfolio, and the mean over
    the factor portfolios, one line per model."""
    rolling = board.rolling
    if rolling.height == 0:
        return {}
    days = sorted(set(rolling["date"].to_list()))
    band = float(np.sqrt(2.0 / window))
    out: dict[str, object] = {}
    for column, key, what in (
        ("min_variance_bias", "rolling_min_variance_bias", "the minimum-variance portfolio"),
        ("factor_mean_bias", "rolling_factor_bias", "the factor portfolios (mean)"),
    ):
        series = {}
        for m, rank in board.table.select("model", "rank").iter_rows():  # ranked order
            part = rolling.filter(pl.col("model") == m)
            values = dict(zip(part["date"].to_list(), part[column].to_list(), strict=True))
            series[f"{m} (rank {rank})"] = np.array(
                [np.nan if values.get(d) is None else values[d] for d in days], dtype=float
            )
        stacked = np.concatenate(list(series.values()))
        png = plots.line_chart(
            days,
            series,
            f"Bias statistic of {what}, rolling {window} sessions, per model",
            "bias",
            1.0,
            band=(1.0 - band, 1.0 + band),
            ylim=plots.data_limits(stacked, include=(1.0 - band, 1.0 + band)),
        )
        out[key] = image(png, key.replace("_", " "))
    return out


@asset(
    **PARTITIONED,
    deps=["factor_returns", "factor_covariance", "forecast_bias"],
    group_name="evaluation",
    kinds={"numpy", "duckdb"},
)
@one_connection
def model_leaderboard(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """The covariance models ranked on their out-of-sample statistics over the stored
    history (`core/leaderboard.py`: bias statistics of factor, random, eigen- and
    minimum-variance portfolios, the minimum-variance portfolio's realised volatility, the
    Gaussian likelihood and QLIKE), one row per model, replaced by every run. Metadata: the
    table, and each model's rolling bias (plots)."""
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    found = stored_leaderboard(store, factors, settings)
    if found is None:
        frame = pl.DataFrame(schema=TABLE_SCHEMA)
        store.replace([TableWrite(ASSET, frame)], WHOLE_TABLE_SPAN, **identity(settings))
        on_last_session(context, {"models": 0})
        return MaterializeResult()
    board, as_of = found
    frame = board.table.with_columns(pl.lit(as_of, dtype=pl.Date).alias("as_of"))
    store.replace([TableWrite(ASSET, frame)], WHOLE_TABLE_SPAN, **identity(settings))
    best = frame.row(0, named=True)
    if best["rank"] is None:  # no model has a scored date yet
        context.log.info(
            f"{ASSET}: no date scored yet (every forecast through {as_of} is within its "
            "warm-up): no model is ranked"
        )
    meta: dict[str, object] = {
        "models": frame.height,
        "best_model": "none yet (within warm-up)" if best["rank"] is None else str(best["model"]),
        "as_of": str(as_of),
        "scored_dates": int(best["n_obs"]),
        "leaderboard": table(frame.select(UI_COLUMNS)),
    }
    if figures_wanted():
        window = ROLLING_WINDOW
        scored = int(best["n_obs"])
        if board.rolling.height == 0 and SHORT_WINDOW <= scored < ROLLING_WINDOW:
            # a history shorter than a quarter after the warm-up: 21-session windows
            window = SHORT_WINDOW
            again = stored_leaderboard(store, factors, settings, window)
            board = again[0] if again is not None else board
        meta.update(_plots(board, window))
    if dates[-1] < as_of:
        context.log.info(
            f"{ASSET}: scored over the whole stored history, through {as_of} (after this "
            f"run's range)"
        )
    on_last_session(context, meta)
    return MaterializeResult()
