"""What a failed run leaves behind: every table says the same thing (issue 12.4).

A run writes step by step (universe, exposures, factor_returns, the forecasts ...), each chunk of
each step in one transaction. When a step fails, or a blocking check stops the run after its
asset wrote, the steps before it hold the run's new rows and the steps after it still hold rows
computed from the inputs the run replaced: forecasts that no longer follow from the stored
factor returns. After such a run, `remove_unfinished` deletes the range's rows of every selected
step that did not finish (the failed one included, whose finished chunks follow inputs that its
unfinished chunks do not), together with their recursion states, in one transaction. The file
is then consistent: each date's stored forecasts are computed from that date's stored inputs,
and a date whose forecasts were removed is simply not materialised (a later run completes it;
`resume.resume_point` refuses to continue from a missing predecessor).

The guarantee chosen is this one ("every table says the same thing"), not "nothing of the run is
visible": a run-wide transaction would hold the whole range (7.5 GB at 10 years x 10,000 assets)
in one uncommitted DuckDB transaction. A run that wrote nothing (refused input) removes nothing.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from factorcov_pipeline.storage import EXPOSURES_TABLE, Store

# The tables each asset writes (its own table first), and whether it keeps a recursion state.
ASSET_TABLES: dict[str, tuple[str, ...]] = {
    "universe": ("universe", "planted_factor_returns"),
    "exposures": (EXPOSURES_TABLE,),
    "factor_returns": (
        "factor_returns",
        "specific_returns",
        "regression_stats",
        "factor_return_gaps",
    ),
    "factor_volatility": ("factor_volatility", "volatility_regime"),
    "factor_correlation": ("factor_correlation",),
    "factor_covariance": ("factor_covariance",),
    "covariance_report": ("covariance_report",),
    "forecast_bias": ("forecast_bias", "forecast_outcomes"),
    "specific_risk": ("specific_risk",),
    "portfolio_risk": ("portfolio_risk", "portfolio_risk_contributions"),
    "risk_backtest": ("risk_backtest", "specific_risk_bias"),
    "model_leaderboard": ("model_leaderboard",),
}
STATE_ASSETS = ("factor_volatility", "factor_correlation", "specific_risk")


def materialized_assets(result: dg.ExecuteInProcessResult) -> set[str]:
    """The assets that finished (reported a materialisation) in the run."""
    return {
        ev.asset_key.to_user_string()
        for ev in result.all_events
        if ev.is_step_materialization and ev.asset_key is not None
    }


def remove_unfinished(
    result: dg.ExecuteInProcessResult,
    store: Store,
    start: dt.date,
    end: dt.date,
    selection: list[str] | None = None,
) -> list[str]:
    """After a failed run that wrote something, delete [start, end] from every selected step
    that did not finish; returns the tables that lost rows (empty after a success, or when
    nothing finished, i.e. nothing was written)."""
    if result.success:
        return []
    done = materialized_assets(result)
    if not done:
        return []
    selected = selection if selection is not None else list(ASSET_TABLES)
    unfinished = [a for a in selected if a in ASSET_TABLES and a not in done]
    if not unfinished:
        return []
    tables = [t for a in unfinished for t in ASSET_TABLES[a]]
    states = [a for a in unfinished if a in STATE_ASSETS]
    return store.remove(tables, (start, end), states)
