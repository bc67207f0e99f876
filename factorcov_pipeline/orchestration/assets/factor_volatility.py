"""`factor_volatility`: EWMA volatility forecasts, continued from the stored recursion state."""

import datetime as dt
from dataclasses import dataclass

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
    (`core/warmup.py`: one `halflife_vol` of returns by default). Every covariance model of the
    settings (`models`) is computed from the same factor returns, read once; a model new to the
    file is computed over the whole stored history (`assets/models.py`).
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
        span = (before[0] if before else dates[0], dates[-1])
        if not ret:
            # Nothing to forecast: the range's forecasts, regime rows AND recursion states go
            # together (a state without its forecast would be picked up by a later run).
            empty_vol = resume.with_warm(
                matrix_to_long([], factors.names, np.empty((0, factors.k)), "volatility"), [], []
            )
            store.replace(
                [m.write(ASSET, empty_vol), m.write("volatility_regime", EMPTY_REGIME)],
                span,
                state={m.state_key(ASSET): {}},
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
    for m, ret, point in plans:
        days = point.replay + ret
        F = F_all[[row[d] for d in days]]
        out = _forecast(store, m, factors.names, F, days, ret, point)
        store.replace(
            [m.write(ASSET, out.volatility), m.write("volatility_regime", out.regime)],
            (min(ret[0], dates[0]), dates[-1]),
            state={m.state_key(ASSET): out.states},
            **ident,
        )
        if m.is_default:
            summary = {
                "dates": len([d for d in ret if d >= dates[0]]),
                "continued_from_state": point.state is not None,
                "replayed_sessions": len(point.replay),
                "published_dates": out.published,
                "warm_dates": out.warm_dates,
                "last_date_mean_vol": out.last_mean,
            }
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    per, figures = views.volatility(store, factors, dates, warmups(settings)[VOLATILITY])
    per_session(context, per)
    on_last_session(
        context,
        {**summary, "models": len(plans), "later_dates_now_stale": stale, **figures, **meta},
    )
    return MaterializeResult()


@dataclass(frozen=True)
class _Forecasts:
    """One model's rows of the range: volatilities and regime rows (with `warm`), the states
    to store, and numbers for the metadata."""

    volatility: pl.DataFrame
    regime: pl.DataFrame
    states: dict[dt.date, bytes]
    published: int
    warm_dates: int
    last_mean: float


def _forecast(
    store: Store,
    m: Model,
    names: tuple[str, ...],
    F: np.ndarray,
    days: list[dt.date],
    ret: list[dt.date],
    point: resume.ResumePoint,
) -> _Forecasts:
    """Model `m`'s volatility recursion over `days` (the replayed sessions, then `ret`) from
    its stored state, in blocks of STATE_EVERY sessions (one call each: equal to stepping day
    by day, bit for bit)."""
    state = VolatilityState.from_bytes(point.state) if point.state is not None else None
    forecaster = VolatilityForecaster(m.settings.factor_cov_settings)
    warmup = m.settings.factor_cov_settings.warmup_length
    blocks, states = [], {}
    ends = resume.state_dates(days, ret[0])
    for i in range(0, len(days), resume.STATE_EVERY):
        fc, state = forecaster.run(state, F[i : i + resume.STATE_EVERY])
        blocks.append(fc)
        end = min(i + resume.STATE_EVERY, len(days)) - 1
        if end in ends:
            states[days[end]] = state.to_bytes()
    keep = np.arange(len(point.replay), len(days))
    keep = keep[resume.published(store, days, F, warmup)[keep]]
    pub_dates = [days[t] for t in keep]
    vol = np.concatenate([b.vol for b in blocks])[keep]
    warm = resume.warm_flags(store, pub_dates, warmups(m.settings)[VOLATILITY])
    regime = pl.DataFrame(
        {
            "date": pub_dates,
            "bias_statistic": np.concatenate([b.bias_stat for b in blocks])[keep],
            "vra_multiplier": np.concatenate([b.vra_multiplier for b in blocks])[keep],
            "warm": warm,
        },
        schema=REGIME_SCHEMA,
    )
    long = matrix_to_long(pub_dates, names, vol, "volatility")
    return _Forecasts(
        resume.with_warm(long, pub_dates, warm),
        regime,
        states,
        len(pub_dates),
        int(warm.sum()),
        float(vol[-1].mean()) if len(vol) else float("nan"),
    )
