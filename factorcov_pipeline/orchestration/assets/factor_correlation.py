"""`factor_correlation`: EWMA correlation forecasts, continued from the stored recursion state."""

import datetime as dt
from typing import Any

import numpy as np
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.correlation import CorrelationForecaster, CorrelationState
from factorcov_pipeline.core.panel import cube_to_pairs, long_to_matrix
from factorcov_pipeline.core.settings import DEFAULT_MODEL, FactorCovarianceSettings
from factorcov_pipeline.core.volatility import VolatilityForecaster
from factorcov_pipeline.core.warmup import CORRELATION, warmups
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    matrix_chunk_sessions,
    model_factors,
    return_dates,
    settings_metadata,
    stale_later_dates,
)
from factorcov_pipeline.orchestration.assets.models import (
    Model,
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

ASSET = "factor_correlation"
ANNUALISATION = 252.0


def prior_daily_vol(
    store: Store,
    days: list,
    names: tuple[str, ...],
    settings: FactorCovarianceSettings,
    model: str = DEFAULT_MODEL,
) -> np.ndarray:
    """Row t: the daily volatility forecast dated the session before days[t] (the input of
    `combine_standardized`), of covariance model `model`. Read from `factor_volatility`;
    sessions in the warm-up have no published volatility, so the volatility recursion is
    recomputed from the first return for them (the warm-up is at the start of the history: at
    most `warmup_length` sessions plus no-return days)."""
    prev = calendar.previous_session(days[0])
    before = [prev, *days[:-1]]
    vol = store.read_dates("factor_volatility", prev, days[-1], model=model)
    daily = long_to_matrix(vol, before, names, "volatility") / np.sqrt(ANNUALISATION)
    missing = np.isnan(daily).all(axis=1)
    if settings.warmup_length > 0 and missing.any():
        first = store.stored_dates("factor_returns", end=days[-1])[0]
        history = return_dates(store, calendar.sessions(first, days[-1]), ASSET)
        fr = store.read_dates("factor_returns", history[0], history[-1])
        F = long_to_matrix(fr, history, names, "factor_return")
        fc, _ = VolatilityForecaster(settings).run(None, F)
        pos = {d: t for t, d in enumerate(history)}
        for t in np.flatnonzero(missing):
            if days[t] in pos:
                daily[t] = fc.prior_daily_vol[pos[days[t]]]
    return daily


def matrix_block(k: int) -> int:
    """Sessions per recursion block and write of a K x K table: at most STATE_EVERY, and at
    most `matrix_chunk_sessions` (bounded memory at hundreds of factors)."""
    return min(resume.STATE_EVERY, matrix_chunk_sessions(k))


# No self-dependency (t on t-1) is declared: Dagster's backfill daemon refuses to run a
# self-dependent asset in the same run as its upstream assets (asset_backfill.py: "Self-dependant
# assets cannot be materialized in the same run as other assets"), so a range launched from the
# UI became several runs. The dependency on the previous session is enforced at run time by
# `resume.resume_point`, with an error naming the gap.
@asset(
    **PARTITIONED,
    deps=[AssetDep("factor_returns"), AssetDep("factor_volatility")],
    group_name="covariance",
    kinds={"numpy", "duckdb"},
)
@one_connection
def factor_correlation(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Factor correlation: EWMA of outer products (half-life `halflife_cor`), normalised.

    The tutorial's `ewm(halflife=120)` on f f' divided by sqrt(diag x diag'); with Newey-West
    lags, `combine_standardized` and shrinkage when set (`core.correlation`). Every row
    carries `warm` (`core/warmup.py`: one `halflife_cor` of returns by default). Every
    covariance model is computed from the same factor returns, read once; a model new to the
    file over the whole stored history (`assets/models.py`).
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    meta = settings_metadata(settings)
    ident = identity(settings)
    first = history_start(store)
    run_returns = return_dates(store, dates, ASSET)
    plans: list[tuple[Model, list[dt.date], resume.ResumePoint]] = []
    for m in run_models(settings):
        before = extension(store, ASSET, m.name, dates, first)
        ret = return_dates(store, before + dates, ASSET) if before else run_returns
        if not ret:
            empty = resume.with_warm(
                cube_to_pairs(
                    [], factors.names, np.empty((0, factors.k, factors.k)), "correlation"
                ),
                [],
                [],
            )
            store.replace(
                [m.write(ASSET, empty)],
                (before[0] if before else dates[0], dates[-1]),
                state={m.state_key(ASSET): {}},  # forecasts and states of the range go together
                **ident,
            )
            continue
        warmup = m.settings.factor_cov_settings.warmup_length
        point = resume.resume_point(
            store, ASSET, ret[0], warmup, dates[-1], m.name, m.state_key(ASSET)
        )
        plans.append((m, ret, point))
    if not plans:
        on_last_session(context, {"dates": 0, **meta})
        return MaterializeResult()
    # the factor returns every model steps through, read once
    union = sorted({d for _, ret, point in plans for d in [*point.replay, *ret]})
    fr = store.read_dates("factor_returns", union[0], union[-1])
    F_all = long_to_matrix(fr, union, factors.names, "factor_return")
    row = {d: t for t, d in enumerate(union)}
    summary: dict[str, object] = {}
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for m, ret, point in plans:
            days = point.replay + ret
            F = F_all[[row[d] for d in days]]
            n_published = _recursion(
                store, writer, m, factors.names, F, days, ret, point, dates, ident
            )
            if m.is_default:
                summary = {
                    "dates": len([d for d in ret if d >= dates[0]]),
                    "continued_from_state": point.state is not None,
                    "replayed_sessions": len(point.replay),
                    "published_dates": n_published,
                }
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    per, figures = views.correlation(store, factors, dates)
    per_session(context, per)
    on_last_session(
        context,
        {**summary, "models": len(plans), "later_dates_now_stale": stale, **figures, **meta},
    )
    return MaterializeResult()


def _recursion(
    store: Store,
    writer: Any,
    m: Model,
    names: tuple[str, ...],
    F: np.ndarray,
    days: list[dt.date],
    ret: list[dt.date],
    point: resume.ResumePoint,
    dates: list[dt.date],
    ident: dict[str, Any],
) -> int:
    """Model `m`'s correlation recursion over `days` (the replayed sessions, then `ret`) from
    its stored state, a block of sessions at a time: one recursion call, one write (through
    `writer`), one stored state at its end (the long K x K table of a 10-year range does not
    sit in memory at once). Returns the number of dates published."""
    cov_settings = m.settings.factor_cov_settings
    state = CorrelationState.from_bytes(point.state) if point.state is not None else None
    prior = (
        prior_daily_vol(store, days, names, cov_settings, m.name)
        if cov_settings.combine_standardized
        else None
    )
    show = resume.published(store, days, F, cov_settings.warmup_length)
    warm_after = warmups(m.settings)[CORRELATION]
    forecaster = CorrelationForecaster(cov_settings)
    n_replay = len(point.replay)
    for i in range(0, n_replay, resume.STATE_EVERY):  # recomputed, not re-published
        j = min(i + resume.STATE_EVERY, n_replay)
        _, state = forecaster.run(state, F[i:j], None if prior is None else prior[i:j])
    size, n_published = matrix_block(len(names)), 0
    first = min(ret[0], dates[0])  # before the range: a model new to the file
    for i in range(n_replay, len(days), size):
        j = min(i + size, len(days))
        fc, state = forecaster.run(state, F[i:j], None if prior is None else prior[i:j])
        keep = np.flatnonzero(show[i:j])
        block_days = [days[i + t] for t in keep]
        pairs = cube_to_pairs(block_days, names, fc.corr[keep], "correlation")
        warm = resume.warm_flags(store, block_days, warm_after)
        span = (
            first if i == n_replay else days[i],
            dates[-1] if j == len(days) else days[j - 1],
        )
        writer.replace(
            [m.write(ASSET, resume.with_warm(pairs, block_days, warm))],
            span,
            state={m.state_key(ASSET): {days[j - 1]: state.to_bytes()}},
            **ident,
        )
        n_published += len(block_days)
    return n_published
