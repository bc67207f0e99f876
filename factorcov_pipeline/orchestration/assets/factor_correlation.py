"""`factor_correlation`: EWMA correlation forecasts, continued from the stored recursion state."""

import numpy as np
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.correlation import CorrelationForecaster, CorrelationState
from factorcov_pipeline.core.panel import cube_to_pairs, long_to_matrix
from factorcov_pipeline.core.settings import FactorCovarianceSettings
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
from factorcov_pipeline.orchestration.metadata import on_last_session, per_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import Store, TableWrite

ASSET = "factor_correlation"
ANNUALISATION = 252.0


def prior_daily_vol(
    store: Store, days: list, names: tuple[str, ...], settings: FactorCovarianceSettings
) -> np.ndarray:
    """Row t: the daily volatility forecast dated the session before days[t] (the input of
    `combine_standardized`). Read from `factor_volatility`; sessions in the warm-up have no
    published volatility, so the volatility recursion is recomputed from the first return
    for them (the warm-up is at the start of the history: at most `warmup_length` sessions
    plus no-return days)."""
    prev = calendar.previous_session(days[0])
    before = [prev, *days[:-1]]
    vol = store.read_dates("factor_volatility", prev, days[-1])
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
    carries `warm` (`core/warmup.py`: one `halflife_cor` of returns by default).
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    ret_dates = return_dates(store, dates, ASSET)
    meta = settings_metadata(settings)
    if not ret_dates:
        empty = resume.with_warm(
            cube_to_pairs([], factors.names, np.empty((0, factors.k, factors.k)), "correlation"),
            [],
            [],
        )
        store.replace(
            [TableWrite(ASSET, empty)],
            (dates[0], dates[-1]),
            state={ASSET: {}},  # forecasts and states of the range go together
            settings_json=settings.fingerprint(),
        )
        on_last_session(context, {"dates": 0, **meta})
        return MaterializeResult()
    cov_settings = settings.factor_cov_settings
    point = resume.resume_point(store, ASSET, ret_dates[0], cov_settings.warmup_length, dates[-1])
    state = CorrelationState.from_bytes(point.state) if point.state is not None else None
    days = point.replay + ret_dates
    fr = store.read_dates("factor_returns", days[0], days[-1])
    F = long_to_matrix(fr, days, factors.names, "factor_return")
    prior = (
        prior_daily_vol(store, days, factors.names, cov_settings)
        if cov_settings.combine_standardized
        else None
    )
    show = resume.published(store, days, F, cov_settings.warmup_length)
    warm_after = warmups(settings)[CORRELATION]
    forecaster = CorrelationForecaster(cov_settings)
    n_replay = len(point.replay)
    for i in range(0, n_replay, resume.STATE_EVERY):  # recomputed, not re-published
        j = min(i + resume.STATE_EVERY, n_replay)
        _, state = forecaster.run(state, F[i:j], None if prior is None else prior[i:j])
    # A block of sessions at a time: one recursion call, one transaction, one stored state
    # at its end (the long K x K table of a 10-year range does not sit in memory at once).
    size, n_published = matrix_block(factors.k), 0
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for i in range(n_replay, len(days), size):
            j = min(i + size, len(days))
            fc, state = forecaster.run(state, F[i:j], None if prior is None else prior[i:j])
            keep = np.flatnonzero(show[i:j])
            block_days = [days[i + t] for t in keep]
            pairs = cube_to_pairs(block_days, factors.names, fc.corr[keep], "correlation")
            warm = resume.warm_flags(store, block_days, warm_after)
            span = (
                dates[0] if i == n_replay else days[i],
                dates[-1] if j == len(days) else days[j - 1],
            )
            writer.replace(
                [TableWrite(ASSET, resume.with_warm(pairs, block_days, warm))],
                span,
                state={ASSET: {days[j - 1]: state.to_bytes()}},
                settings_json=settings.fingerprint(),
            )
            n_published += len(block_days)
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    per, figures = views.correlation(store, factors, dates)
    per_session(context, per)
    on_last_session(
        context,
        {
            "dates": len(ret_dates),
            "continued_from_state": point.state is not None,
            "replayed_sessions": len(point.replay),
            "published_dates": n_published,
            "later_dates_now_stale": stale,
            **figures,
            **meta,
        },
    )
    return MaterializeResult()
