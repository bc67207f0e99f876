"""`universe`: the asset universe of each session (synthetic by default, or the user's data)."""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.degenerate import brief_dates
from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.core.synthetic import generate_universe_range
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    date_span,
    model_factors,
    rows_per_session,
    user_model,
)
from factorcov_pipeline.orchestration.assets.models import identity
from factorcov_pipeline.orchestration.metadata import on_last_session
from factorcov_pipeline.orchestration.partitions import SESSIONS_START, partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import TableWrite


def refuse_no_returns(frame: pl.DataFrame, dates: list[dt.date], source: str) -> None:
    """Refuse a range in which no session after the first partition has a single usable
    return: materialising it would replace every stored factor return and forecast of the
    range with nothing (issue 12.1). One session carried forward (null returns) inside a
    range that has returns elsewhere is a no-observation day and is accepted."""
    modelled = [d for d in dates if d > SESSIONS_START]
    if not modelled:
        return  # only the base session: prices, no returns by definition
    usable = frame.filter(pl.col("date").is_in(modelled) & pl.col("asset_return").is_not_null())
    if usable.height == 0:
        raise InputDataError(
            f"{source}: no usable return (total_return or price) on any of the "
            f"{len(modelled)} session(s) {modelled[0]} .. {modelled[-1]}; refusing to replace "
            "the stored factor returns and forecasts of the range with nothing. Check the "
            "return column of the file, or materialise a range that has returns"
        )


@asset(**PARTITIONED, group_name="factor_model", kinds={"polars", "duckdb"})
@one_connection
def universe(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Assets, sectors, market caps, daily total returns and raw style descriptors per session.

    The synthetic default is generated from the seed and the date alone (any order of
    partitions gives the same rows) with the planted factor returns stored beside it in
    `planted_factor_returns`. A user dataset (`universe.dataset` = a Parquet, CSV or DuckDB
    path) is loaded and validated instead. The first session has caps but no returns.
    """
    settings = model.load()
    if user_model(settings):
        # Only factor returns are supplied: there is no universe (the regression is not run);
        # nothing is read or written and the run says so (`factorcov materialize` does not
        # even select this step).
        return MaterializeResult(
            metadata={
                "rows": 0,
                "skipped": MetadataValue.text(
                    "universe.factor_returns is set: user factor returns replace the regression"
                ),
            }
        )
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    uni_settings = settings.factor_model_settings.universe
    sessions = calendar.sessions(SESSIONS_START, dates[-1])
    sigma = settings.factor_model_settings.exposures.winsorize_sigma
    user_frame: pl.DataFrame | None = None
    if uni_settings.dataset != "synthetic":
        from factorcov_pipeline.core.userdata import load_universe

        # Read and validate the whole file ONCE per run, then split it by chunk.
        user_frame = load_universe(
            uni_settings, sessions, factors.sectors, dates, styles=factors.styles
        )
        present = set(user_frame["date"].unique().to_list())
        absent = [d for d in dates if d not in present]
        if absent:
            shown = brief_dates(absent)
            raise InputDataError(
                f"{uni_settings.dataset}: no rows for {len(absent)} exchange session(s) of the "
                f"requested range: {shown}. Every session needs a cross-section (carry a "
                "missing session forward with null returns, see docs/user-data.md), or "
                "materialise only the sessions the file covers"
            )
        refuse_no_returns(user_frame, dates, uni_settings.dataset)
    rows, n_min, n_max = 0, None, 0
    # chunk k is stored while chunk k + 1 is computed (storage/write_behind.py)
    with store.write_behind() as writer:
        for chunk in date_chunks(dates, rows_per_session=rows_per_session(settings, factors)):
            writes: list[TableWrite]
            if uni_settings.dataset == "synthetic":
                generated = generate_universe_range(
                    chunk, sessions, uni_settings, factors, winsorize_sigma=sigma
                )
                frame, planted = generated.universe, generated.planted_factor_returns
                writes = [
                    TableWrite("universe", frame),
                    TableWrite("planted_factor_returns", planted),
                ]
            else:
                assert user_frame is not None
                frame = user_frame.filter(pl.col("date").is_between(*date_span(chunk)))
                writes = [TableWrite("universe", frame)]
            writer.replace(writes, date_span(chunk), **identity(settings))
            per_date = frame.group_by("date").agg(pl.len().alias("n"))
            rows += frame.height
            if per_date.height:
                lo = int(per_date["n"].min() or 0)
                n_min = lo if n_min is None else min(n_min, lo)
                n_max = max(n_max, int(per_date["n"].max() or 0))
    # run totals on the range's last session only (not copied onto every session)
    on_last_session(
        context,
        {
            "dates": len(dates),
            "rows": rows,
            "assets_per_date_min": n_min or 0,
            "assets_per_date_max": n_max,
            "dataset": MetadataValue.text(uni_settings.dataset),
        },
    )
    return MaterializeResult()
