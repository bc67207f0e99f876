"""`factor_volatility`: EWMA volatility forecasts, continued from the stored recursion state."""

import numpy as np
import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core.panel import long_to_matrix, matrix_to_long
from factorcov_pipeline.core.volatility import VolatilityForecaster, VolatilityState
from factorcov_pipeline.core.warmup import VOLATILITY, warmups
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
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
from factorcov_pipeline.storage import TableWrite

ASSET = "factor_volatility"
REGIME_SCHEMA = {
    "date": pl.Date,
    "bias_statistic": pl.Float64,
    "vra_multiplier": pl.Float64,
    "warm": pl.Boolean,
}
EMPTY_REGIME = pl.DataFrame(schema=REGIME_SCHEMA)


# No self-dependency (t on t-1) is declared: Dagster's backfill daemon refuses to run a
# self-dependent asset in the same run as its upstream assets (asset_backfill.py: "Self-dependant
# assets cannot be materialized in the same run as other assets"), so a range launched from the
# UI became several runs. The dependency on the previous session is enforced at run time by
# `resume.resume_point`, with an error naming the gap.
@asset(
    **PARTITIONED,
    deps=[AssetDep("factor_returns")],
    group_name="covariance",
    kinds={"numpy", "duckdb"},
)
@one_connection
def factor_volatility(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Annualised factor volatility: sqrt(252 x EWMA of squared factor returns).

    Half-life `halflife_vol`, pandas-adjusted weights, no demeaning (the tutorial's
    `ewm(halflife=60).mean()`), with Newey-West lags and the volatility regime adjustment when
    set. A daily run reads only the previous session's stored state (cost independent of the
    history's length); a missing predecessor is an error. Every row carries `warm`
    (`core/warmup.py`: one `halflife_vol` of returns by default).
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
        empty_vol = resume.with_warm(
            matrix_to_long([], factors.names, np.empty((0, factors.k)), "volatility"), [], []
        )
        store.replace(
            [TableWrite(ASSET, empty_vol), TableWrite("volatility_regime", EMPTY_REGIME)],
            (dates[0], dates[-1]),
            state={ASSET: {}},
            settings_json=settings.fingerprint(),
        )
        on_last_session(context, {"dates": 0, **meta})
        return MaterializeResult()
    warmup = settings.factor_cov_settings.warmup_length
    point = resume.resume_point(store, ASSET, ret_dates[0], warmup, dates[-1])
    state = VolatilityState.from_bytes(point.state) if point.state is not None else None
    days = point.replay + ret_dates
    fr = store.read_dates("factor_returns", days[0], days[-1])
    F = long_to_matrix(fr, days, factors.names, "factor_return")
    forecaster = VolatilityForecaster(settings.factor_cov_settings)
    blocks, states = [], {}
    ends = resume.state_dates(days, ret_dates[0])
    for i in range(
        0, len(days), resume.STATE_EVERY
    ):  # blocks: one call each (= day by day, bitwise)
        fc, state = forecaster.run(state, F[i : i + resume.STATE_EVERY])
        blocks.append(fc)
        end = min(i + resume.STATE_EVERY, len(days)) - 1
        if end in ends:
            states[days[end]] = state.to_bytes()
    keep = np.arange(len(point.replay), len(days))
    keep = keep[resume.published(store, days, F, warmup)[keep]]
    pub_dates = [days[t] for t in keep]
    vol = np.concatenate([b.vol for b in blocks])[keep]
    warm = resume.warm_flags(store, pub_dates, warmups(settings)[VOLATILITY])
    regime = pl.DataFrame(
        {
            "date": pub_dates,
            "bias_statistic": np.concatenate([b.bias_stat for b in blocks])[keep],
            "vra_multiplier": np.concatenate([b.vra_multiplier for b in blocks])[keep],
            "warm": warm,
        },
        schema=REGIME_SCHEMA,
    )
    long = matrix_to_long(pub_dates, factors.names, vol, "volatility")
    store.replace(
        [
            TableWrite(ASSET, resume.with_warm(long, pub_dates, warm)),
            TableWrite("volatility_regime", regime),
        ],
        (dates[0], dates[-1]),
        state={ASSET: states},
        settings_json=settings.fingerprint(),
    )
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    per, figures = views.volatility(store, factors, dates, warmups(settings)[VOLATILITY])
    per_session(context, per)
    on_last_session(
        context,
        {
            "dates": len(ret_dates),
            "continued_from_state": point.state is not None,
            "replayed_sessions": len(point.replay),
            "published_dates": len(pub_dates),
            "warm_dates": int(warm.sum()),
            "last_date_mean_vol": float(vol[-1].mean()) if len(vol) else float("nan"),
            "later_dates_now_stale": stale,
            **figures,
            **meta,
        },
    )
    return MaterializeResult()
