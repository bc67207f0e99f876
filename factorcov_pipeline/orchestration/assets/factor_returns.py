"""`factor_returns`: the daily constrained cross-sectional regression (or user factor returns)."""

import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.core.regression import estimate_factor_returns
from factorcov_pipeline.orchestration.assets.common import (
    GAP_TABLE,
    PARTITIONED,
    category_column,
    date_chunks,
    date_span,
    model_factors,
    require_dates,
    rows_per_session,
)
from factorcov_pipeline.orchestration.partitions import (
    SESSIONS_START,
    partition_dates,
    previous_and_same_mapping,
)
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import EXPOSURES_TABLE, Store, TableWrite, quote_ident

EMPTY_FACTOR_RETURNS = pl.DataFrame(
    schema={
        "date": pl.Date,
        "factor": pl.String,
        "factor_group": pl.String,
        "factor_return": pl.Float64,
    }
)


def gap_frame(days: list, reason: str) -> pl.DataFrame:
    """Rows of the no-observation table: sessions with data but no factor returns."""
    return pl.DataFrame(
        {"date": days, "reason": [reason] * len(days)},
        schema={"date": pl.Date, "reason": pl.String},
    )


EMPTY_REGRESSION_STATS = pl.DataFrame(
    schema={
        "date": pl.Date,
        "n_assets": pl.Int32,
        "r_squared": pl.Float64,
        "n_clipped": pl.Int32,
        "thin_categories": pl.Int32,
        "degenerate": pl.Boolean,
    }
)

EMPTY_SPECIFIC_RETURNS = pl.DataFrame(
    schema={"date": pl.Date, "asset_id": pl.String, "specific_return": pl.Float64}
)


def regression_input(
    store: Store, dates: list, styles: tuple[str, ...], category: str
) -> pl.DataFrame:
    """Returns of each date joined with the previous session's caps, category and exposures."""
    sessions = calendar.sessions(calendar.previous_session(dates[0]), dates[-1])
    prev_of = pl.DataFrame({"date": sessions[1:], "prev_date": sessions[:-1]})
    rets = (
        store.read_dates("universe", dates[0], dates[-1], "date, asset_id, asset_return")
        .filter(pl.col("asset_return").is_not_null())
        .join(prev_of, on="date")
    )
    if rets.height == 0:
        return rets
    prev_dates = sorted(set(rets["prev_date"].to_list()))
    require_dates(
        store,
        EXPOSURES_TABLE,
        prev_dates,
        "factor_returns (exposures of the previous session)",
        asset="exposures",
    )
    lo, hi = prev_dates[0], prev_dates[-1]
    lagged = store.read_dates(
        "universe", lo, hi, f"date AS prev_date, asset_id, market_cap, {category}"
    )
    style_cols = ", ".join(quote_ident(s) for s in styles)
    style_wide = store.read_dates(
        EXPOSURES_TABLE, lo, hi, f"date AS prev_date, asset_id{', ' if styles else ''}{style_cols}"
    )
    return (
        rets.join(lagged, on=["prev_date", "asset_id"], how="inner")
        .join(style_wide, on=["prev_date", "asset_id"], how="inner")
        .drop("prev_date")
        .sort(["date", "asset_id"])
    )


@asset(
    **PARTITIONED,
    deps=[AssetDep("universe"), AssetDep("exposures", partition_mapping=previous_and_same_mapping)],
    group_name="factor_model",
    kinds={"numpy", "duckdb"},
)
def factor_returns(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Factor returns of each session by constrained weighted least squares.

    Returns of date t on exposures of the previous session, weights sqrt(market cap), with the
    cap-weighted sum of sector factor returns constrained to zero and solved exactly
    (`core.regression`). Also stores specific returns and per-date statistics. When the user
    supplies factor returns (`universe.factor_returns`), those are stored instead.
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    factors = model_factors(settings)
    uni = settings.factor_model_settings.universe
    if uni.factor_returns:
        from factorcov_pipeline.core.userdata import load_factor_returns

        full = load_factor_returns(uni.factor_returns)
        file_factors = set(full["factor"].unique().to_list())
        if file_factors != set(factors.names):
            raise InputDataError(
                f"{uni.factor_returns}: the file's factors do not match the model's "
                f"(settings factor_model_settings.exposures): missing "
                f"{sorted(set(factors.names) - file_factors)}, not in the model "
                f"{sorted(file_factors - set(factors.names))}. Restrict the model with the "
                "style/trbc groups' `factors` subsets, or supply every factor"
            )
        fr = full.filter(pl.col("date").is_between(dates[0], dates[-1]))
        if fr.height == 0 and any(d > SESSIONS_START for d in dates):
            raise InputDataError(
                f"{uni.factor_returns}: no factor return in {dates[0]} .. {dates[-1]} (the file "
                f"covers {full['date'].min()} .. {full['date'].max()}); refusing to replace the "
                "stored factor returns and forecasts of the range with nothing"
            )
        # Sessions inside the file's span without rows are no-observation days (EWMA decays).
        first, last = full["date"].min(), full["date"].max()
        observed = set(fr["date"].to_list())
        gaps = [d for d in dates if first <= d <= last and d not in observed]  # type: ignore[operator]
        store.replace(
            [
                TableWrite("factor_returns", fr),
                TableWrite(GAP_TABLE, gap_frame(gaps, "no row in the factor-return file")),
            ],
            date_span(dates),
            settings_json=settings.fingerprint(),
        )
        return MaterializeResult(
            metadata={
                "dates_with_returns": fr["date"].n_unique(),
                "no_observation_days": len(gaps),
                "source": MetadataValue.path(uni.factor_returns),
            }
        )
    n_dates, n_gaps, r2, min_assets = 0, 0, [], []
    universe_dates = set(store.stored_dates("universe", dates[0], dates[-1]))
    for chunk in date_chunks(dates, rows_per_session=rows_per_session(settings, factors)):
        data = regression_input(store, chunk, factors.styles, category_column(settings))
        result = (
            estimate_factor_returns(
                data,
                factors,
                settings.factor_model_settings.modelconstruction,
                category_column(settings),
            )
            if data.height
            else None
        )
        # Sessions with a universe but no regression (no asset with a return, e.g. a session
        # missing from the user's file and carried forward) are no-observation days: nothing
        # in factor_returns, one row in GAP_TABLE, and the EWMA assets decay through them.
        fitted = set() if result is None else set(result.stats["date"].to_list())
        gaps = [d for d in chunk if d in universe_dates and d not in fitted]
        n_gaps += len(gaps)
        gap_write = TableWrite(GAP_TABLE, gap_frame(gaps, "no asset return in the universe"))
        if result is None:  # the base date, or only no-return sessions: nothing to regress
            # Every table this step owns is replaced for the chunk's dates, also here: a date
            # whose returns became empty keeps no regression_stats row of an earlier run.
            writes = [
                TableWrite("factor_returns", EMPTY_FACTOR_RETURNS),
                TableWrite("specific_returns", EMPTY_SPECIFIC_RETURNS),
                TableWrite("regression_stats", EMPTY_REGRESSION_STATS),
                gap_write,
            ]
        else:
            writes = [
                TableWrite("factor_returns", result.factor_returns),
                TableWrite("specific_returns", result.specific_returns),
                TableWrite("regression_stats", result.stats),
                gap_write,
            ]
            n_dates += result.stats.height
            r2.append(float(result.stats["r_squared"].mean() or 0.0))
            min_assets.append(int(result.stats["n_assets"].min() or 0))
        store.replace(writes, date_span(chunk), settings_json=settings.fingerprint())
    return MaterializeResult(
        metadata={
            "dates_with_returns": n_dates,
            "no_observation_days": n_gaps,
            "mean_r_squared": float(sum(r2) / len(r2)) if r2 else 0.0,
            "min_assets": min(min_assets) if min_assets else 0,
            "first_session": str(SESSIONS_START),
        }
    )
