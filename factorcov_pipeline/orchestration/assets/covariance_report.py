"""`covariance_report`: the tutorial's `df_vcov` layout, one row per (date, factor)."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core.covariance import covariance_report as report_layout
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_span,
    matrix_chunk_sessions,
    model_factors,
    read_panel,
)
from factorcov_pipeline.orchestration.assets.factor_covariance import factor_covariance
from factorcov_pipeline.orchestration.assets.models import (
    chunks,
    extension,
    history_start,
    identity,
    run_models,
)
from factorcov_pipeline.orchestration.metadata import on_last_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)


@asset(**PARTITIONED, deps=[factor_covariance], group_name="covariance", kinds={"polars", "duckdb"})
@one_connection
def covariance_report(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """The covariance forecasts in the tutorial's wide layout: `date, factor, <one column per
    factor>`, rows and columns in alphabetical order of the factor names, as `df_vcov`.

    No `warm` column here (unlike the other forecast tables): its columns are the factors
    (a user's factor may be called `warm`) and the tutorial's code reads each date's block as
    a square matrix; `factor_covariance.warm` of the same date says whether it is warm.
    `model` (the covariance model) is the last column, after the factors'."""
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    ident = identity(settings)
    first = history_start(store)
    n_dates, rows = 0, 0
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for m in run_models(settings):
            before = extension(store, "covariance_report", m.name, dates, first)
            # bounded memory: one chunk of K x K matrices at a time
            for chunk in chunks(before, dates, matrix_chunk_sessions(factors.k)):
                fc_dates, cov = read_panel(
                    store,
                    "factor_covariance",
                    chunk[0],
                    chunk[-1],
                    factors.names,
                    "covariance",
                    model=m.name,
                )
                report = report_layout(fc_dates, factors.names, cov)
                writer.replace([m.write("covariance_report", report)], date_span(chunk), **ident)
                if m.is_default:
                    n_dates += len(fc_dates)
                    rows += report.height
    # the latest covariance as a table: what a risk manager opens the asset for
    on_last_session(context, {"dates": n_dates, "rows": rows, **views.report(store, dates)})
    return MaterializeResult()
