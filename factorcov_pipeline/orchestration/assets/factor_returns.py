"""`factor_returns`: the daily constrained cross-sectional regression (or user factor returns)."""

import datetime as dt

import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.degenerate import brief_dates, degenerate_cases, describe
from factorcov_pipeline.core.regression import estimate_factor_returns
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2
from factorcov_pipeline.core.user_factors import check_range, user_factor_returns
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets.common import (
    GAP_TABLE,
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
from factorcov_pipeline.orchestration.metadata import on_last_session, per_session
from factorcov_pipeline.orchestration.partitions import (
    SESSIONS_START,
    partition_dates,
)
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
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


def stored_returns(store: Store, dates: list[dt.date]) -> dict[dt.date, int]:
    """The factor returns stored for each session of `dates` before this run (read before the
    first write replaces them)."""
    if not store.stored_dates("factor_returns", dates[0], dates[-1]):
        return {}
    counts = (
        store.read_dates("factor_returns", dates[0], dates[-1], "date")
        .group_by("date")
        .agg(pl.len().alias("n"))
    )
    return dict(zip(counts["date"].to_list(), counts["n"].to_list(), strict=True))


def warn_returns_lost(
    context: AssetExecutionContext, before: dict[dt.date, int], lost: list[dt.date], why: str
) -> dict[str, int]:
    """Say loudly (the run's output and Dagster's log) that this run turned sessions whose
    factor returns were stored into gaps, naming them and how many stored returns went: a
    refresh file with returns on one session of 21 did it to 20 sessions with exit 0 and no
    word (issue 21.7). The run still stores what its input says (the file is the truth), and
    the forecasts from those sessions on decay through the gaps."""
    if not lost:
        return {"stored_sessions_turned_into_gaps": 0, "stored_returns_removed": 0}
    rows = sum(before[d] for d in lost)
    context.log.warning(
        f"factor_returns: this run turned {len(lost)} session(s) that had stored factor "
        f"returns into gaps (factor_return_gaps), removing {rows} stored factor return(s): "
        f"{brief_dates(lost)}; {why}. The forecasts decay through them; if the input lost "
        "those returns by mistake, fix it and run the range again"
    )
    return {"stored_sessions_turned_into_gaps": len(lost), "stored_returns_removed": rows}


def gap_reasons(store: Store, gaps: list[dt.date]) -> pl.DataFrame:
    """Why each session of `gaps` (it has a universe but no regression) has no factor returns:
    no asset has a return, or returns whose assets have no exposures on the previous session
    (e.g. the asset ids changed between the runs that stored the two sessions)."""
    if not gaps:
        return gap_frame([], "")
    counts = store.read(
        "SELECT date, count(asset_return) AS n FROM universe WHERE date BETWEEN ? AND ? "
        "GROUP BY date",
        [gaps[0], gaps[-1]],
    )
    with_returns = dict(zip(counts["date"].to_list(), counts["n"].to_list(), strict=True))
    reasons = [
        f"returns of {with_returns[d]} asset(s), none with exposures on the previous session "
        f"{calendar.previous_session(d)} (asset ids changed?)"
        if with_returns.get(d, 0)
        else "no asset return in the universe"
        for d in gaps
    ]
    return pl.DataFrame(
        {"date": gaps, "reason": reasons}, schema={"date": pl.Date, "reason": pl.String}
    )


EMPTY_REGRESSION_STATS = pl.DataFrame(
    schema={
        "date": pl.Date,
        "n_assets": pl.Int32,
        "r_squared": pl.Float64,
        "n_clipped": pl.Int32,
        "thin_categories": pl.Int32,
        "degenerate": pl.Boolean,
        "exactly_fitted": pl.Boolean,
        "empty_categories": pl.String,
        "single_asset_categories": pl.String,
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
        end=dates[-1],
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


def _store_user_factor_returns(
    context: AssetExecutionContext,
    settings: FactorCovarianceReportSettingsV2,
    store: Store,
    dates: list[dt.date],
) -> MaterializeResult:
    """Store the user's factor returns of the range (the file is the model: its factors are
    whatever it names). A range the file does not cover is refused before anything is
    written; a session inside the file's span without rows is a no-observation day."""
    user = user_factor_returns(str(settings.factor_model_settings.universe.factor_returns))
    check_range(user, dates[0], dates[-1])
    fr = user.frame.filter(pl.col("date").is_between(dates[0], dates[-1]))
    observed = set(fr["date"].to_list())
    gaps = [d for d in dates if user.first <= d <= user.last and d not in observed]
    before = stored_returns(store, dates)
    lost = warn_returns_lost(
        context,
        before,
        [d for d in gaps if d in before],
        f"the factor-return file {user.path} has no row for them",
    )
    store.replace(
        [
            TableWrite("factor_returns", fr),
            TableWrite(GAP_TABLE, gap_frame(gaps, "no row in the factor-return file")),
        ],
        date_span(dates),
        **identity(settings),
    )
    on_last_session(
        context,
        {
            "dates_with_returns": len(observed),
            "no_observation_days": len(gaps),
            "factors": user.factors.k,
            "source": MetadataValue.path(user.path),
            **lost,
        },
    )
    return MaterializeResult()


@asset(
    **PARTITIONED,
    deps=[AssetDep("universe"), AssetDep("exposures")],
    group_name="factor_model",
    kinds={"numpy", "duckdb"},
)
@one_connection
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
    if user_model(settings):
        return _store_user_factor_returns(context, settings, store, dates)
    factors = model_factors(settings)
    n_dates, n_gaps, min_assets, degenerate = 0, 0, [], []
    universe_dates = set(store.stored_dates("universe", dates[0], dates[-1]))
    before = stored_returns(store, dates)
    lost: list[dt.date] = []
    reasons: list[pl.DataFrame] = []
    chunks = date_chunks(dates, rows_per_session=rows_per_session(settings, factors))

    def read_chunk(chunk: list[dt.date]) -> pl.DataFrame:
        return regression_input(store, chunk, factors.styles, category_column(settings))

    # chunk k + 1 is read while chunk k is computed and chunk k - 1 stored
    # (storage/read_ahead.py, storage/write_behind.py)
    with store.write_behind() as writer:
        for chunk, data in store.read_ahead(chunks, read_chunk):
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
            gap_rows = gap_reasons(store, gaps)
            lost += [d for d in gaps if d in before]
            reasons.append(gap_rows.filter(pl.col("date").is_in([d for d in gaps if d in before])))
            gap_write = TableWrite(GAP_TABLE, gap_rows)
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
                degenerate.append(result.stats)
                min_assets.append(int(result.stats["n_assets"].min() or 0))
            writer.replace(writes, date_span(chunk), **identity(settings))
    lost_reasons = pl.concat(reasons)["reason"].to_list() if reasons else []
    unmatched = sum(1 for r in lost_reasons if r.startswith("returns of"))
    why = [
        f"{len(lost_reasons) - unmatched} without any asset return in the universe",
        f"{unmatched} whose assets with returns have no exposures on the previous session "
        "(asset ids changed?)",
    ]
    lost_counts = warn_returns_lost(
        context, before, lost, "; ".join(w for w in why if not w.startswith("0 "))
    )
    cases = describe(degenerate_cases(pl.concat(degenerate) if degenerate else pl.DataFrame()))
    for line in cases:  # never silent: shown by `factorcov materialize` and the run's log
        context.log.warning(f"factor_returns: degenerate regression: {line}")
    per, figures = views.regression(store, dates)
    per_session(context, per)
    on_last_session(
        context,
        {
            "degenerate_cases": MetadataValue.md("\n".join(f"- {c}" for c in cases) or "none"),
            "dates_with_returns": n_dates,
            "no_observation_days": n_gaps,
            **lost_counts,
            "min_assets": min(min_assets) if min_assets else 0,
            "first_session": str(SESSIONS_START),
            **figures,
        },
    )
    return MaterializeResult()
