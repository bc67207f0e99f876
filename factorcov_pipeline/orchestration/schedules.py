"""The daily schedule: after the US close (18:30 New York), catch up to the tick's session.

Each tick materialises, in ONE run, every session from the one after the last complete session
in the store (`catchup.last_complete_session`) up to the tick's session, so a deployment that
was off for a week, or a fresh install, is complete after the next tick. The run carries
Dagster's partition-range tags (`dagster/asset_partition_range_start`/`_end`), the same single
run that `factorcov materialize --start ... --end ...` makes. A tick on a weekday holiday, or
with nothing missing, is skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.catchup import missing_range
from factorcov_pipeline.orchestration.partitions import CRON, SESSIONS_START, TIMEZONE
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.storage import Store, StoreBusyError

# Seconds a tick waits for another process (a run) holding the DuckDB file.
TICK_LOCK_TIMEOUT = 20.0
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

daily_job = define_asset_job(
    "factorcov_daily",
    selection=AssetSelection.all(),
    description="Every asset and check of the factor covariance pipeline for a session range.",
)


def catch_up_request(
    storage: FactorcovStorage, tick_day: dt.date, first: dt.date = SESSIONS_START
) -> RunRequest | SkipReason:
    """The run that fills the store from its last complete session through `tick_day`."""
    if not calendar.is_session(tick_day):
        return SkipReason(f"{tick_day} is not a New York Stock Exchange session")
    configured = storage.store()
    # A run holds the file from its first step to its end: wait for it briefly, not the whole
    # FACTORCOV_LOCK_TIMEOUT (Dagster gives a schedule evaluation 60 s), then skip with the
    # reason; the next tick materialises every session still missing.
    store = Store(configured.path, lock_timeout=min(configured.lock_timeout, TICK_LOCK_TIMEOUT))
    try:
        gap = missing_range(store, tick_day, first)
    except StoreBusyError as err:
        return SkipReason(
            f"{err}. Skipped: the next tick, or Materialize on the daily job, fills every "
            f"session missing up to {tick_day}"
        )
    if gap is None:
        return SkipReason(f"every session up to {tick_day} is already materialised")
    start, end = gap
    return RunRequest(
        run_key=f"{start}..{end}",
        tags={RANGE_START_TAG: str(start), RANGE_END_TAG: str(end)},
    )


@schedule(
    job=daily_job,
    cron_schedule=CRON,
    execution_timezone=TIMEZONE,
    name="factorcov_after_close",
    description="At 18:30 New York on weekdays: materialise every session missing from the "
    "store up to today's, in one run.",
)
def daily_schedule(
    context: ScheduleEvaluationContext, storage: FactorcovStorage
) -> RunRequest | SkipReason:
    """The tick's session is the New York date of its scheduled time (18:30 after the close)."""
    tick_day = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE)).date()
    return catch_up_request(storage, tick_day)
