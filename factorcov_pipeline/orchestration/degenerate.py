"""Degenerate regression dates, never silent: the run's warning and a check's metadata.

`regression_stats` records per date (core/regression.py): `exactly_fitted` (no more assets
than factors, or R^2 = 1: every specific return is 0), `empty_categories` (category factors
with no asset: factor return 0) and `single_asset_categories` (that asset's specific return
is 0 by construction). The `factor_returns` asset logs one warning naming them, and the
non-blocking check `regression_degenerate_cases` names them per session in its
description and metadata (it passes: the numbers are defined), so the UI and `factorcov
materialize` show them.
"""

import datetime as dt
from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckSeverity,
    Output,
    asset_check,
)

from factorcov_pipeline.core.degenerate import CASES, degenerate_cases
from factorcov_pipeline.orchestration.assets import factor_returns
from factorcov_pipeline.orchestration.assets.common import user_model
from factorcov_pipeline.orchestration.check_results import Verdict, session_evaluations
from factorcov_pipeline.orchestration.partitions import partition_dates, trading_sessions
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)

WARN = AssetCheckSeverity.WARN  # informational: the numbers are defined


@asset_check(asset=factor_returns, partitions_def=trading_sessions, blocking=False)
@one_connection
def regression_degenerate_cases(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """Names, per session, whether it is exactly fitted, has a category without assets or a
    category with one asset (the numbers are defined, but partly by construction)."""
    settings = model.load()
    dates = partition_dates(context)
    what = "no degenerate regression"
    if user_model(settings):
        skip = Verdict(True, {}, "user-supplied factor returns: no regression")
        yield from session_evaluations(context, dict.fromkeys(dates, skip), what, WARN)
        return
    stats = storage.store().read_dates("regression_stats", dates[0], dates[-1])
    found: dict[dt.date, list[str]] = {d: [] for d in dates}
    for case, frame in degenerate_cases(stats).items():
        for row in frame.iter_rows(named=True):
            detail = f" [{row[case]}]" if case != "exactly_fitted" else ""
            found.setdefault(row["date"], []).append(CASES[case] + detail)
    # Informational: the numbers are defined (minimum-norm / zero returns by construction), so
    # the check passes, with every case named in its description and metadata (and the
    # factor_returns step logs a warning); a small universe would otherwise always "fail".
    verdicts = {
        d: Verdict(True, {"degenerate_cases": len(found[d])}, "; ".join(found[d]) or None)
        for d in dates
    }
    yield from session_evaluations(context, verdicts, what, WARN)
