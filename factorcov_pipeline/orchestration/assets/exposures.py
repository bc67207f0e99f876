"""`exposures`: Market, sector dummies and standardised styles per asset and session."""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from factorcov_pipeline.core.exposures import exposures_table, style_exposures
from factorcov_pipeline.core.factors import GROUP_MARKET, MARKET_FACTOR
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    category_column,
    date_chunks,
    date_span,
    model_factors,
    require_dates,
    rows_per_session,
    user_model,
)
from factorcov_pipeline.orchestration.assets.models import identity
from factorcov_pipeline.orchestration.assets.universe import universe
from factorcov_pipeline.orchestration.metadata import on_last_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import EXPOSURES_TABLE, TableWrite, exposures_view


@asset(**PARTITIONED, deps=[universe], group_name="factor_model", kinds={"polars", "duckdb"})
@one_connection
def exposures(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Exposures of each asset: Market 1, its own sector 1, and the 7 styles.

    Styles are winsorised and standardised cross-sectionally per date (cap-weighted mean 0,
    unit equal-weighted standard deviation; `core.exposures.style_exposures`). Stored wide,
    one row per asset and session (`exposures_wide`: category and one column per style); the
    long `exposures` view (Market 1, own category 1, styles; zero dummies are not rows) is
    created in the same transaction.
    """
    settings = model.load()
    if user_model(settings):  # nothing to compute (not selected by `factorcov materialize`)
        return MaterializeResult(
            metadata={"skipped": "factor returns are supplied by the user: no exposures needed"}
        )
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    require_dates(store, "universe", dates, "exposures")
    view = exposures_view(factors.styles, MARKET_FACTOR if GROUP_MARKET in factors.groups else None)
    rows = 0
    chunks = date_chunks(dates, rows_per_session=rows_per_session(settings, factors))

    def read_universe(chunk: list[dt.date]) -> pl.DataFrame:
        return store.read_dates("universe", *date_span(chunk))

    # chunk k + 1 is read while chunk k is computed and chunk k - 1 stored
    # (storage/read_ahead.py, storage/write_behind.py)
    with store.write_behind() as writer:
        for chunk, uni in store.read_ahead(chunks, read_universe):
            wide = style_exposures(
                uni, factors.styles, settings.factor_model_settings.exposures.winsorize_sigma
            )
            table = exposures_table(wide, factors, category_column(settings))
            writer.replace(
                [TableWrite(EXPOSURES_TABLE, table)],
                date_span(chunk),
                **identity(settings),
                views=[view],
            )
            rows += table.height
    on_last_session(context, {"dates": len(dates), "rows": rows})  # run totals, last session
    return MaterializeResult()
