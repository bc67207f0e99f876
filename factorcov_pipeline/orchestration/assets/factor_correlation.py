"""`factor_correlation`: EWMA correlation forecasts, continued from the stored recursion state."""

import numpy as np
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.correlation import CorrelationForecaster, CorrelationState
from factorcov_pipeline.core.panel import cube_to_pairs, long_to_matrix
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    date_span,
    model_factors,
    recursion_start_state,
    return_dates,
    settings_metadata,
    stale_later_dates,
)
from factorcov_pipeline.orchestration.partitions import partition_dates, previous_session_mapping
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import Store, TableWrite

ASSET = "factor_correlation"
ANNUALISATION = 252.0


def prior_daily_vol(store: Store, ret_dates: list, names: tuple[str, ...]) -> np.ndarray:
    """Row t: the daily volatility forecast published for the session before ret_dates[t]."""
    prev = calendar.previous_session(ret_dates[0])
    days = [prev, *ret_dates[:-1]]
    vol = store.read_dates("factor_volatility", prev, ret_dates[-1])
    return long_to_matrix(vol, days, names, "volatility") / np.sqrt(ANNUALISATION)


@asset(
    **PARTITIONED,
    deps=[
        AssetDep("factor_returns"),
        AssetDep("factor_volatility"),
        AssetDep(ASSET, partition_mapping=previous_session_mapping),
    ],
    group_name="covariance",
    kinds={"numpy", "duckdb"},
)
def factor_correlation(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Factor correlation: EWMA of outer products (half-life `halflife_cor`), normalised.

    The tutorial's `ewm(halflife=120)` on f f' divided by sqrt(diag x diag'); with Newey-West
    lags, `combine_standardized` and shrinkage when set (`core.correlation`).
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    ret_dates = return_dates(store, dates, ASSET)
    meta = settings_metadata(settings)
    if not ret_dates:
        empty = cube_to_pairs([], factors.names, np.empty((0, factors.k, factors.k)), "correlation")
        store.replace(
            [TableWrite(ASSET, empty)],
            (dates[0], dates[-1]),
            state={ASSET: {}},  # forecasts and states of the range go together
            settings_json=settings.fingerprint(),
        )
        return MaterializeResult(metadata={"dates": 0, **meta})
    blob = recursion_start_state(store, ASSET, ret_dates[0])
    state = CorrelationState.from_bytes(blob) if blob is not None else None
    fr = store.read_dates("factor_returns", ret_dates[0], ret_dates[-1])
    F = long_to_matrix(fr, ret_dates, factors.names, "factor_return")
    cov_settings = settings.factor_cov_settings
    prior = (
        prior_daily_vol(store, ret_dates, factors.names)
        if cov_settings.combine_standardized
        else None
    )
    forecaster = CorrelationForecaster(cov_settings)
    position = {day: t for t, day in enumerate(ret_dates)}
    # Written a chunk of sessions at a time (one transaction each): the long K x K table of a
    # 10-year range does not sit in memory at once.
    for chunk in date_chunks(dates):
        days = [d for d in chunk if d in position]
        corrs, states = [], {}
        for day in days:  # the recursion's own loop over dates, K x K state
            t = position[day]
            fc, state = forecaster.run(
                state, F[t : t + 1], None if prior is None else prior[t : t + 1]
            )
            corrs.append(fc.corr[0])
            states[day] = state.to_bytes()
        corr = np.stack(corrs) if corrs else np.empty((0, factors.k, factors.k))
        store.replace(
            [TableWrite(ASSET, cube_to_pairs(days, factors.names, corr, "correlation"))],
            date_span(chunk),
            state={ASSET: states},
            settings_json=settings.fingerprint(),
        )
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    return MaterializeResult(
        metadata={
            "dates": len(ret_dates),
            "continued_from_state": blob is not None,
            "later_dates_now_stale": stale,
            **meta,
        }
    )
