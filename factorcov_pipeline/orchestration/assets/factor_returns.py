"""`factor_returns`: the daily constrained cross-sectional regression (or user factor returns)."""

import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.regression import estimate_factor_returns
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    category_column,
    date_span,
    model_factors,
    require_dates,
)
from factorcov_pipeline.orchestration.partitions import (
    SESSIONS_START,
    partition_dates,
    previous_and_same_mapping,
)
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import Store, TableWrite


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
        store, "exposures", prev_dates, "factor_returns (exposures of the previous session)"
    )
    lo, hi = prev_dates[0], prev_dates[-1]
    lagged = store.read_dates(
        "universe", lo, hi, f"date AS prev_date, asset_id, market_cap, {category}"
    )
    style_long = store.read(
        "SELECT date AS prev_date, asset_id, factor, exposure FROM exposures "
        "WHERE date BETWEEN ? AND ? AND factor IN (SELECT unnest(?::VARCHAR[]))",
        [lo, hi, list(styles)],
    )
    style_wide = style_long.pivot(on="factor", index=["prev_date", "asset_id"], values="exposure")
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

        fr = load_factor_returns(uni.factor_returns).filter(
            pl.col("date").is_between(dates[0], dates[-1])
        )
        writes = [TableWrite("factor_returns", fr)]
        meta = {"source": MetadataValue.path(uni.factor_returns)}
    else:
        data = regression_input(store, dates, factors.styles, category_column(settings))
        if data.height == 0:
            result = None
        else:
            result = estimate_factor_returns(
                data,
                factors,
                settings.factor_model_settings.modelconstruction,
                category_column(settings),
            )
        if result is None:
            empty = {"date": pl.Date}
            writes = [
                TableWrite(
                    "factor_returns",
                    pl.DataFrame(
                        schema={
                            **empty,
                            "factor": pl.String,
                            "factor_group": pl.String,
                            "factor_return": pl.Float64,
                        }
                    ),
                ),
                TableWrite(
                    "specific_returns",
                    pl.DataFrame(
                        schema={**empty, "asset_id": pl.String, "specific_return": pl.Float64}
                    ),
                ),
            ]
            meta = {"note": "no returns in this range (base date): nothing to regress"}
        else:
            writes = [
                TableWrite("factor_returns", result.factor_returns),
                TableWrite("specific_returns", result.specific_returns),
                TableWrite("regression_stats", result.stats),
            ]
            meta = {
                "mean_r_squared": float(result.stats["r_squared"].mean() or 0.0),
                "min_assets": int(result.stats["n_assets"].min() or 0),
            }
    store.replace(writes, date_span(dates), settings_json=settings.fingerprint())
    n_dates = writes[0].frame["date"].n_unique() if writes[0].frame.height else 0
    return MaterializeResult(
        metadata={"dates_with_returns": n_dates, **meta, "first_session": str(SESSIONS_START)}
    )
