"""`factor_volatility`: EWMA volatility forecasts, continued from the stored recursion state."""

import numpy as np
import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core.panel import long_to_matrix, matrix_to_long
from factorcov_pipeline.core.volatility import VolatilityForecaster, VolatilityState
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    model_factors,
    recursion_start_state,
    return_dates,
    settings_metadata,
    stale_later_dates,
)
from factorcov_pipeline.orchestration.partitions import partition_dates, previous_session_mapping
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import TableWrite

ASSET = "factor_volatility"
EMPTY_REGIME = pl.DataFrame(
    schema={"date": pl.Date, "bias_statistic": pl.Float64, "vra_multiplier": pl.Float64}
)


@asset(
    **PARTITIONED,
    deps=[AssetDep("factor_returns"), AssetDep(ASSET, partition_mapping=previous_session_mapping)],
    group_name="covariance",
    kinds={"numpy", "duckdb"},
)
def factor_volatility(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Annualised factor volatility: sqrt(252 x EWMA of squared factor returns).

    Half-life `halflife_vol`, pandas-adjusted weights, no demeaning (the tutorial's
    `ewm(halflife=60).mean()`), with Newey-West lags and the volatility regime adjustment when
    set. A daily run reads only the previous session's stored state (cost independent of the
    history's length); a missing predecessor is an error.
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    ret_dates = return_dates(store, dates, ASSET)
    meta = settings_metadata(settings)
    if not ret_dates:
        # Nothing to forecast: the range's forecasts, regime rows AND recursion states go
        # together (a state without its forecast would be picked up by a later run).
        empty_vol = matrix_to_long([], factors.names, np.empty((0, factors.k)), "volatility")
        store.replace(
            [TableWrite(ASSET, empty_vol), TableWrite("volatility_regime", EMPTY_REGIME)],
            (dates[0], dates[-1]),
            state={ASSET: {}},
            settings_json=settings.fingerprint(),
        )
        return MaterializeResult(metadata={"dates": 0, **meta})
    blob = recursion_start_state(store, ASSET, ret_dates[0])
    state = VolatilityState.from_bytes(blob) if blob is not None else None
    fr = store.read_dates("factor_returns", ret_dates[0], ret_dates[-1])
    F = long_to_matrix(fr, ret_dates, factors.names, "factor_return")
    forecaster = VolatilityForecaster(settings.factor_cov_settings)
    vols, lambdas, biases, states = [], [], [], {}
    for t, day in enumerate(ret_dates):  # the recursion's own loop over dates, K-sized state
        fc, state = forecaster.run(state, F[t : t + 1])
        vols.append(fc.vol[0])
        lambdas.append(fc.vra_multiplier[0])
        biases.append(fc.bias_stat[0])
        states[day] = state.to_bytes()
    vol = np.vstack(vols)
    regime = pl.DataFrame(
        {
            "date": ret_dates,
            "bias_statistic": np.asarray(biases),
            "vra_multiplier": np.asarray(lambdas),
        }
    )
    store.replace(
        [
            TableWrite(ASSET, matrix_to_long(ret_dates, factors.names, vol, "volatility")),
            TableWrite("volatility_regime", regime),
        ],
        (dates[0], dates[-1]),
        state={ASSET: states},
        settings_json=settings.fingerprint(),
    )
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    return MaterializeResult(
        metadata={
            "dates": len(ret_dates),
            "continued_from_state": blob is not None,
            "last_date_mean_vol": float(vol[-1].mean()),
            "later_dates_now_stale": stale,
            **meta,
        }
    )
