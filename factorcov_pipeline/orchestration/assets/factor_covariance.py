"""`factor_covariance`: covariance_ij = vol_i x vol_j x correlation_ij, the full K x K per date,
eigen-adjusted when `eigen_adjustment_scale` is set (`core/eigen.py`)."""

import datetime as dt

import numpy as np
from dagster import AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core.covariance import covariance_from
from factorcov_pipeline.core.eigen import EigenAdjustment
from factorcov_pipeline.core.panel import cube_to_pairs, pairs_to_cube
from factorcov_pipeline.core.warmup import COVARIANCE, warmups
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_span,
    matrix_chunk_sessions,
    model_factors,
    read_panel,
    require_dates,
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
from factorcov_pipeline.storage import BaseStore

ASSET = "factor_covariance"


@asset(
    **PARTITIONED,
    deps=["factor_volatility", "factor_correlation"],
    group_name="covariance",
    kinds={"numpy", "duckdb"},
)
@one_connection
def factor_covariance(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Annualised factor covariance forecasts from the stored volatility and correlation;
    `warm` once both are (`core/warmup.py`: the larger of their warm-ups)."""
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    ident = identity(settings)
    first = history_start(store)
    n_dates = 0
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for m in run_models(settings):
            eigen = EigenAdjustment.from_settings(m.settings.factor_cov_settings)
            warm_after = warmups(m.settings)[COVARIANCE]
            before = extension(store, ASSET, m.name, dates, first)
            # bounded memory: one chunk of K x K matrices at a time
            for chunk in chunks(before, dates, matrix_chunk_sessions(factors.k)):
                fc_dates, vol = read_panel(
                    store,
                    "factor_volatility",
                    chunk[0],
                    chunk[-1],
                    factors.names,
                    "volatility",
                    model=m.name,
                )
                require_dates(store, "factor_correlation", fc_dates, ASSET, model=m.name)
                corr_long = store.read_dates(
                    "factor_correlation", chunk[0], chunk[-1], model=m.name
                )
                corr = pairs_to_cube(corr_long, fc_dates, factors.names, "correlation")
                cov = covariance_from(vol, corr)
                if eigen is not None:
                    cov = eigen_adjusted(store, eigen, fc_dates, cov)
                pairs = cube_to_pairs(fc_dates, factors.names, cov, "covariance")
                warm = resume.warm_flags(store, fc_dates, warm_after)
                writer.replace(
                    [m.write(ASSET, resume.with_warm(pairs, fc_dates, warm))],
                    date_span(chunk),
                    **ident,
                )
                if m.is_default:
                    n_dates += len(fc_dates)
    per, tables = views.covariance(store, factors, dates)
    per_session(context, per)
    on_last_session(context, {"dates": n_dates, **tables, **settings_metadata(settings)})
    return MaterializeResult()


def eigen_adjusted(
    store: BaseStore, eigen: EigenAdjustment, days: list[dt.date], cov: np.ndarray
) -> np.ndarray:
    """The eigenfactor risk adjustment of the covariances `cov` of `days` (`core/eigen.py`).

    Applied to vol_i vol_j corr_ij with the regime multiplier inside the volatilities: the
    adjustment is scale-equivariant, so this equals USE4's order (Newey-West, eigen, regime).
    Each date's number of observations is the count of sessions with factor returns up to it
    (the sessions its EWMA has seen); each date's result depends on its own matrix only, so a
    daily run stores the bits of a one-block run.
    """
    if not days:
        return cov
    returns = np.asarray(store.stored_dates("factor_returns", end=days[-1]), dtype="datetime64[D]")
    n_obs = np.searchsorted(returns, np.asarray(days, dtype="datetime64[D]"), side="right")
    try:
        return eigen.adjust(cov, n_obs, labels=days)
    except ValueError as err:
        raise ValueError(f"{ASSET}: {err}") from None
