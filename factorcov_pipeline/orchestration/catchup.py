"""Gaps in the stored history: what is missing, and the one command that fills it.

The daily schedule (`schedules.py`) materialises the gap from the last complete session up to
the tick's session in one run, and the missing-predecessor errors of the assets
(`assets/common.py`) name the first session of the gap, not only the day before the one asked
for: following the message fills the whole gap at once.
"""

from __future__ import annotations

import datetime as dt

from factorcov_pipeline.core import calendar
from factorcov_pipeline.storage import Store

# A session is complete when the end of the forecast chain holds it: the covariance report
# (it has a row from the second session on; forecast_bias only once a 21-session window exists,
# so it cannot mark completion). Runs write their range in dependency order, so a report row
# means every upstream asset holds that session.
COMPLETION_TABLES = ("covariance_report",)


def next_session(day: dt.date) -> dt.date:
    """The first exchange session strictly after `day`."""
    return calendar.sessions(day + dt.timedelta(days=1), day + dt.timedelta(days=14))[0]


def last_complete_session(store: Store) -> dt.date | None:
    """The last session every asset has stored (None on a fresh file)."""
    lasts = []
    for table in COMPLETION_TABLES:
        days = store.stored_dates(table)
        if not days:
            return None
        lasts.append(days[-1])
    return min(lasts)


def missing_range(store: Store, through: dt.date, first: dt.date) -> tuple[dt.date, dt.date] | None:
    """The sessions from the one after the last complete session (or `first`, the partitions'
    start, on a fresh file) through `through`; None when nothing is missing."""
    last = last_complete_session(store)
    start = first if last is None else max(first, next_session(last))
    if start > through:
        return None
    return start, through


def fill_command(start: dt.date, end: dt.date) -> str:
    """The one command that materialises [start, end] (every asset and check, one run)."""
    return f"factorcov materialize --start {start} --end {end}"


def gap_message(
    store: Store, table: str, asset: str, missing: dt.date, end: dt.date, needed_by: str
) -> str:
    """One sentence naming the whole gap of `table` that contains `missing`, and the command
    that fills it through `end` (the end of the range that was asked for)."""
    before = store.stored_dates(table, end=missing - dt.timedelta(days=1))
    gap_start = next_session(before[-1]) if before else missing
    n = len(calendar.sessions(gap_start, missing))
    stored = f"{asset} is stored up to {before[-1]}" if before else f"{asset} has no earlier dates"
    return (
        f"{needed_by} needs {asset} for {missing}, but {stored}: the {n} session(s) "
        f"{gap_start} .. {missing} are not materialised. Fill the gap in one run with "
        f"`{fill_command(gap_start, end)}` (or materialise {gap_start} .. {end} from the UI)."
    )
