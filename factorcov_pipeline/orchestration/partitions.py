"""Daily partitions: New York Stock Exchange sessions, open-ended from a configurable start.

Weekday windows whose cron carries the time of day the schedule fires (18:30 New York, after the
close), with the exchange's weekday holidays excluded (from exchange-calendars, `core.calendar`).
The start is `FACTORCOV_PARTITIONS_START` (default 2025-03-31, the tutorial's base date).
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetCheckExecutionContext,
    AssetExecutionContext,
    TimeWindowPartitionsDefinition,
)

from factorcov_pipeline import environment
from factorcov_pipeline.core import calendar

ENV_START = environment.PARTITIONS_START
TIMEZONE = "America/New_York"
# Minute, hour: the daily window (and the schedule's tick) starts at 18:30 New York time.
CRON = "30 18 * * 1-5"
DATE_FORMAT = "%Y-%m-%d"
WINDOW_START = dt.time(18, 30)


def partitions_start() -> dt.date:
    """FACTORCOV_PARTITIONS_START (`factorcov_pipeline.environment`), default 2025-03-31."""
    return environment.partitions_start(calendar.DEFAULT_START)


def build_partitions(start: dt.date) -> TimeWindowPartitionsDefinition:
    holidays = calendar.weekday_holidays(start, calendar.last_supported())
    return TimeWindowPartitionsDefinition(
        start=dt.datetime.combine(start, dt.time()).strftime(DATE_FORMAT),
        fmt=DATE_FORMAT,
        cron_schedule=CRON,
        timezone=TIMEZONE,
        end_offset=1,
        # An exclusion must equal a window's start exactly: the holiday at the cron's 18:30.
        exclusions=[dt.datetime.combine(d, WINDOW_START) for d in holidays],
    )


SESSIONS_START = partitions_start()
trading_sessions = build_partitions(SESSIONS_START)


def partition_dates(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[dt.date]:
    """The sessions of the run's partition range (one date for a daily run, many for a backfill)."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]
