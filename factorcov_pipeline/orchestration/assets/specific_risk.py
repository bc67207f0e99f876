"""`specific_risk`: each asset's annualised specific volatility forecast (USE4 section 5),
continued from the stored recursion state."""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.asset_panel import AssetPanel, asset_panel
from factorcov_pipeline.core.regression import NAME_SEPARATOR
from factorcov_pipeline.core.specific_risk import (
    REASONS,
    UNINFORMATIVE_EXACT_FIT,
    UNINFORMATIVE_SINGLE_ASSET,
    SpecificRiskForecaster,
    SpecificRiskState,
)
from factorcov_pipeline.core.warmup import SPECIFIC, warmups
from factorcov_pipeline.orchestration import views
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    model_factors,
    require_dates,
    return_dates,
    stale_later_dates,
)
from factorcov_pipeline.orchestration.assets.models import identity
from factorcov_pipeline.orchestration.metadata import on_last_session, per_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import Store, TableWrite, quote_ident

ASSET = "specific_risk"
SCHEMA = {
    "date": pl.Date,
    "asset_id": pl.String,
    "specific_risk": pl.Float64,
    "warm": pl.Boolean,
    "reason": pl.String,
}
EMPTY = pl.DataFrame(schema=SCHEMA)
REASON_NAMES = np.array([None, *(REASONS[c] for c in sorted(REASONS))], dtype=object)


def read_inputs(
    store: Store, styles: tuple[str, ...], start: dt.date, end: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Exposures (with the universe's market caps) and specific returns of [start, end]."""
    cols = ", ".join(f"e.{quote_ident(s)}" for s in styles)
    expo = store.read(
        "SELECT e.date, e.asset_id, e.category, u.market_cap"
        + (f", {cols}" if cols else "")
        + " FROM exposures_wide e JOIN universe u USING (date, asset_id)"
        " WHERE e.date BETWEEN ? AND ?",
        [start, end],
    )
    spec = store.read_dates("specific_returns", start, end, "date, asset_id, specific_return")
    return expo, spec


def uninformative_returns(store: Store, panel: AssetPanel, single_assets: bool) -> np.ndarray:
    """(T, N) codes of the panel's specific returns that are 0 by construction
    (`core/specific_risk.py`): every return of a date `regression_stats` records as exactly
    fitted, and, when ``single_assets`` (no `thin_category_shrinkage`), the return of the only
    regressed asset of a category (its category at the previous session, the regression's
    exposures: `regression_stats.single_asset_categories`)."""
    days = panel.dates
    codes = np.zeros(panel.specific_returns.shape, dtype=np.int8)
    stats = store.read_dates("regression_stats", days[0], days[-1])
    if stats.height == 0 or "exactly_fitted" not in stats.columns:
        return codes  # a file written before 0.3 records no degenerate dates
    has = np.isfinite(panel.specific_returns)
    pos = {d: t for t, d in enumerate(days)}
    fitted = [pos[d] for d in stats.filter(pl.col("exactly_fitted"))["date"] if d in pos]
    codes[fitted] = np.where(has[fitted], UNINFORMATIVE_EXACT_FIT, 0)
    single = (
        stats.filter(pl.col("single_asset_categories").is_not_null())
        .select("date", pl.col("single_asset_categories").str.split(NAME_SEPARATOR))
        .explode("single_asset_categories")
        .rename({"single_asset_categories": "category"})
    )
    if not single_assets or single.height == 0:
        return codes
    flagged = single["date"].unique().to_list()
    prev_of = {d: calendar.previous_session(d) for d in flagged}  # a loop over dates
    single = single.with_columns(
        pl.col("date").replace_strict(prev_of, return_dtype=pl.Date).alias("prev")
    )
    names = single["category"].unique().to_list()
    marks = ", ".join("?" for _ in names)
    members = store.read(
        "SELECT date AS prev, asset_id, category FROM exposures_wide "
        f"WHERE date BETWEEN ? AND ? AND category IN ({marks})",
        [single["prev"].min(), single["prev"].max(), *names],
    )
    hit = single.join(members, on=["prev", "category"])
    if hit.height == 0:
        return codes
    ids = pl.DataFrame(
        {"asset_id": panel.asset_ids.tolist(), "_k": np.arange(len(panel.asset_ids))}
    )
    hit = hit.join(ids, on="asset_id")
    t = np.array([pos[d] for d in hit["date"].to_list()], dtype=np.int64)
    k = hit["_k"].to_numpy()
    regressed = has[t, k] & (codes[t, k] == 0)  # the one asset of the category with a return
    codes[t[regressed], k[regressed]] = UNINFORMATIVE_SINGLE_ASSET
    return codes


def _log_reasons(
    context: AssetExecutionContext, reasons: dict[str, int], missing: list[dt.date]
) -> None:
    """The run's log says which forecasts are not estimated from the assets' own returns
    (the `reason` column), and loudly when a date has no forecast at all."""
    if missing:
        context.log.warning(
            f"specific_risk: no forecast on {len(missing)} date(s) "
            f"({', '.join(str(d) for d in missing[:3])}{' ...' if len(missing) > 3 else ''}): "
            "no present asset has an informative specific return (all were missing or 0 by "
            "construction so far; rows stored with "
            "specific_risk NULL and their reason)"
        )
    degenerate = {
        k: v for k, v in reasons.items() if k in ("exactly_fitted", "single_asset_category")
    }
    if degenerate:
        context.log.warning(
            "specific_risk: forecasts not estimated from the asset's own returns because its "
            "returns are 0 by construction: "
            + ", ".join(f"{k} {v} asset-date(s)" for k, v in degenerate.items())
            + " (column reason)"
        )
    history = {k: v for k, v in reasons.items() if k not in degenerate}
    if history:
        context.log.info(
            "specific_risk: forecasts with too little own history (structural model): "
            + ", ".join(f"{k} {v} asset-date(s)" for k, v in history.items())
        )


@asset(
    **PARTITIONED,
    deps=[
        AssetDep("factor_returns"),
        AssetDep("exposures"),
    ],
    group_name="specific_risk",
    kinds={"numpy", "duckdb"},
)
@one_connection
def specific_risk(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Annualised specific volatility of every asset with an exposure on the date: EWMA of
    squared specific returns (optional Newey-West), blended with a structural model for short
    histories, shrunk toward the size decile's cap-weighted mean, regime-adjusted
    (`specific_risk_settings`; USE4 notes section 5). A daily run reads only the previous
    session's stored state (the range's last); a missing predecessor is an error.
    """
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    styles = model_factors(settings).styles
    sr = settings.specific_risk_settings
    meta = {"specific_risk_settings": MetadataValue.json(sr.model_dump(mode="json"))}
    user_returns = bool(settings.factor_model_settings.universe.factor_returns)
    # user-supplied factor returns: no regression, so no specific returns to forecast from
    ret_dates = [] if user_returns else return_dates(store, dates, ASSET)
    if not ret_dates:
        store.replace(
            [TableWrite(ASSET, EMPTY)],
            (dates[0], dates[-1]),
            state={ASSET: {}},  # forecasts and recursion states of the range go together
            **identity(settings),
        )
        on_last_session(context, {"dates": 0, "dagster/row_count": 0, **meta})
        return MaterializeResult()
    # Continue from the nearest stored state at or before the previous session, replaying the
    # sessions after it (not re-published): states are stored at each chunk's end, not every
    # session (a state of 3,000 assets is ~100 kB). Blocks equal day-by-day steps bit for bit
    # (tests/test_specific_risk.py), so where states were stored does not change a forecast.
    point = resume.resume_point(store, ASSET, ret_dates[0], 0, dates[-1])
    state = SpecificRiskState.from_bytes(point.state) if point.state is not None else None
    days = point.replay + ret_dates
    require_dates(store, "exposures_wide", days, ASSET, "exposures")
    forecaster = SpecificRiskForecaster(sr)
    rows, last = 0, None
    lambdas: list[float] = []
    per: dict[dt.date, dict[str, float]] = {}  # each session's own numbers (UI time series)

    single_assets = settings.factor_model_settings.modelconstruction.thin_category_shrinkage == 0
    warm_after = warmups(settings)[SPECIFIC]
    reasons: dict[str, int] = {}
    missing: list[dt.date] = []  # dates without any forecast (no informative return yet)

    def read_chunk(chunk: list[dt.date]) -> tuple[AssetPanel, np.ndarray]:
        expo, spec = read_inputs(store, styles, chunk[0], chunk[-1])
        panel = asset_panel(chunk, expo, styles, spec)
        return panel, uninformative_returns(store, panel, single_assets)

    # chunk k + 1 is read while chunk k is computed and chunk k - 1 stored (storage/read_ahead.py,
    # storage/write_behind.py); bounded memory, each chunk one call and one transaction
    with store.write_behind() as writer:
        for chunk, (panel, uninformative) in store.read_ahead(date_chunks(days), read_chunk):
            fc, state = forecaster.run(
                state,
                panel.asset_ids,
                panel.specific_returns,
                panel.caps,
                panel.categories,
                panel.styles,
                uninformative,
            )
            keep = [t for t, day in enumerate(chunk) if day >= ret_dates[0]]
            if not keep:  # replayed sessions only
                continue
            risk = fc.specific_risk[keep]
            why = fc.reason[keep]
            # a row per present asset (date-major, assets in id order); NULL specific risk
            # where no forecast could be made (its reason says why)
            t_idx, n_idx = np.nonzero(why >= 0)
            kept_days = [chunk[t] for t in keep]
            code = why[t_idx, n_idx]
            out = pl.DataFrame(
                {
                    "date": pl.Series(np.asarray(kept_days, "datetime64[D]")[t_idx]),
                    "asset_id": panel.asset_ids[n_idx].tolist(),
                    "specific_risk": risk[t_idx, n_idx],
                    "warm": resume.warm_flags(store, kept_days, warm_after)[t_idx],
                    "reason": pl.Series(REASON_NAMES[code].tolist(), dtype=pl.String),
                }
            ).cast(SCHEMA)  # type: ignore[arg-type]
            out = out.with_columns(pl.col("specific_risk").fill_nan(None))
            none = (why >= 0).any(axis=1) & ~np.isfinite(risk).any(axis=1)
            missing += [d for d, m in zip(kept_days, none, strict=True) if m]
            for c, n in zip(*np.unique(code[code > 0], return_counts=True), strict=True):
                reasons[REASONS[int(c)]] = reasons.get(REASONS[int(c)], 0) + int(n)
            lambdas.extend(float(v) for v in fc.vra_multiplier[keep])
            finite = np.isfinite(risk)
            for i, t in enumerate(keep):  # a session without forecasts gets no numbers
                if finite[i].any():
                    per[chunk[t]] = {
                        "median_specific_risk": float(np.median(risk[i, finite[i]])),
                        "vra_multiplier": float(fc.vra_multiplier[t]),
                    }
            writer.replace(
                [TableWrite(ASSET, out)],
                (chunk[keep[0]], chunk[-1]),
                state={ASSET: {chunk[-1]: state.to_bytes()}},
                **identity(settings),
            )
            rows += out.height
            last = out.filter(pl.col("date") == chunk[-1])
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    assert last is not None
    _log_reasons(context, reasons, missing)
    per_session(context, per)
    on_last_session(
        context,
        {
            "dates": len(ret_dates),
            "dagster/row_count": rows,
            "continued_from_state": point.state is not None,
            "replayed_sessions": len(point.replay),
            "last_date_median_specific_risk": float(last["specific_risk"].median() or np.nan),
            "last_vra_multiplier": lambdas[-1],
            "later_dates_now_stale": stale,
            "not_from_own_returns": MetadataValue.json(reasons),
            "dates_without_forecast": len(missing),
            **views.specific_risk(store, dates[-1]),
            **meta,
        },
    )
    return MaterializeResult()
