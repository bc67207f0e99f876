"""Degenerate regression dates, never silent: the run's warning and a check's metadata.

`regression_stats` records per date (core/regression.py): `exactly_fitted` (no more assets
than factors, or R^2 = 1: every specific return is 0), `empty_categories` (category factors
with no asset: factor return 0) and `single_asset_categories` (that asset's specific return
is 0 by construction). The `factor_returns` asset logs one warning naming them, and the
non-blocking check `regression_degenerate_cases` (severity WARN) names them in its
description and metadata (it passes: the numbers are defined), so the UI and `factorcov
materialize` show them.
"""

import datetime as dt

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from factorcov_pipeline.orchestration.assets import factor_returns
from factorcov_pipeline.orchestration.assets.common import brief_dates, user_model
from factorcov_pipeline.orchestration.partitions import partition_dates, trading_sessions
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage

CASES = {
    "exactly_fitted": "exactly fitted (n_assets <= factors or R^2 = 1; specific returns 0)",
    "empty_categories": "categories with no asset (factor return 0)",
    "single_asset_categories": "categories with one asset (its specific return is 0)",
}


def degenerate_cases(stats: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Per case, the dates (and for the category cases the categories) where it occurs."""
    out: dict[str, pl.DataFrame] = {}
    if stats.height == 0 or "exactly_fitted" not in stats.columns:
        return out
    fitted = stats.filter(pl.col("exactly_fitted").fill_null(False))
    if fitted.height:
        out["exactly_fitted"] = fitted.select("date", "n_assets", "r_squared").sort("date")
    for col in ("empty_categories", "single_asset_categories"):
        hit = stats.filter(pl.col(col).is_not_null()).select("date", col).sort("date")
        if hit.height:
            out[col] = hit
    return out


def describe(cases: dict[str, pl.DataFrame]) -> list[str]:
    """One line per case: how many dates, the first dates and, for categories, their names."""
    lines = []
    for case, frame in cases.items():
        dates: list[dt.date] = frame["date"].to_list()
        line = f"{len(dates)} date(s) {CASES[case]}: {brief_dates(dates)}"
        if case != "exactly_fitted":
            names = sorted({n for v in frame[case].to_list() for n in v.split("; ")})
            line += f" [{'; '.join(names)}]"
        lines.append(line)
    return lines


@asset_check(asset=factor_returns, partitions_def=trading_sessions, blocking=False)
def regression_degenerate_cases(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """Names the dates of the range that are exactly fitted, have a category without assets
    or a category with one asset (the numbers are defined, but partly by construction)."""
    settings = model.load()
    if user_model(settings):
        return AssetCheckResult(
            passed=True, description="user-supplied factor returns: no regression"
        )
    dates = partition_dates(context)
    stats = storage.store().read_dates("regression_stats", dates[0], dates[-1])
    cases = degenerate_cases(stats)
    lines = describe(cases)
    metadata: dict[str, object] = {f"{case}_dates": len(f) for case, f in cases.items()}
    if lines:
        metadata["details"] = MetadataValue.md("\n".join(f"- {line}" for line in lines))
    # Informational: the numbers are defined (minimum-norm / zero returns by construction), so
    # the check passes, with every case named in its description and metadata (and the
    # factor_returns step logs a warning); a small universe would otherwise always "fail".
    return AssetCheckResult(
        passed=True,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(lines) if lines else "no degenerate regression date",
        metadata=metadata,
    )
