"""`specific_risk`: each asset's annualised specific volatility forecast (USE4 section 5),
continued from the stored recursion state."""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.core.asset_panel import AssetPanel, asset_panel
from factorcov_pipeline.core.specific_risk import SpecificRiskForecaster, SpecificRiskState
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import (
    PARTITIONED,
    date_chunks,
    model_factors,
    require_dates,
    return_dates,
    stale_later_dates,
)
from factorcov_pipeline.orchestration.metadata import on_last_session, per_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import Store, TableWrite, quote_ident

ASSET = "specific_risk"
EMPTY = pl.DataFrame(schema={"date": pl.Date, "asset_id": pl.String, "specific_risk": pl.Float64})


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
            settings_json=settings.fingerprint(),
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

    def read_chunk(chunk: list[dt.date]) -> AssetPanel:
        expo, spec = read_inputs(store, styles, chunk[0], chunk[-1])
        return asset_panel(chunk, expo, styles, spec)

    # chunk k + 1 is read while chunk k is computed and chunk k - 1 stored (storage/read_ahead.py,
    # storage/write_behind.py); bounded memory, each chunk one call and one transaction
    with store.write_behind() as writer:
        for chunk, panel in store.read_ahead(date_chunks(days), read_chunk):
            fc, state = forecaster.run(
                state,
                panel.asset_ids,
                panel.specific_returns,
                panel.caps,
                panel.categories,
                panel.styles,
            )
            keep = [t for t, day in enumerate(chunk) if day >= ret_dates[0]]
            if not keep:  # replayed sessions only
                continue
            risk = fc.specific_risk[keep]
            t_idx, n_idx = np.nonzero(np.isfinite(risk))  # date-major, assets in id order
            out = pl.DataFrame(
                {
                    "date": pl.Series(np.asarray([chunk[t] for t in keep], "datetime64[D]")[t_idx]),
                    "asset_id": panel.asset_ids[n_idx].tolist(),
                    "specific_risk": risk[t_idx, n_idx],
                }
            ).cast(EMPTY.schema)
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
                settings_json=settings.fingerprint(),
            )
            rows += out.height
            last = out.filter(pl.col("date") == chunk[-1])
    stale = stale_later_dates(store, ASSET, dates[-1], context.log)
    assert last is not None
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
            **meta,
        },
    )
    return MaterializeResult()
