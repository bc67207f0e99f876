"""New York Stock Exchange sessions, from the maintained `exchange-calendars` package (XNYS).

Partitions are weekday windows with the exchange's weekday holidays excluded; the holidays come
from the calendar, not from a hand-written list.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

EXCHANGE = "XNYS"
DEFAULT_START = dt.date(2025, 3, 31)
DEFAULT_END = dt.date(2026, 3, 31)
# How far ahead the exclusions reach; the partitions stay open-ended, so the schedule has every
# session until then (exchange-calendars publishes holidays years ahead).
CALENDAR_HORIZON_YEARS = 5


@lru_cache(maxsize=8)
def _calendar(start: dt.date, end: dt.date) -> xcals.ExchangeCalendar:
    return xcals.get_calendar(EXCHANGE, start=pd.Timestamp(start), end=pd.Timestamp(end))


def _calendar_end(start: dt.date) -> dt.date:
    today = dt.date.today()
    return dt.date(max(today.year, start.year) + CALENDAR_HORIZON_YEARS, 12, 31)


def sessions(start: dt.date, end: dt.date) -> list[dt.date]:
    """All XNYS sessions in [start, end], as dates."""
    if end < start:
        return []
    lo = min(start, dt.date(2006, 1, 2))
    cal = _calendar(lo, max(end, _calendar_end(start)))
    idx = cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    return [ts.date() for ts in idx]


def is_session(day: dt.date) -> bool:
    return sessions(day, day) == [day]


def weekday_holidays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] on which the exchange is closed (the partitions' exclusions)."""
    open_days = set(sessions(start, end))
    days = pd.bdate_range(start, end)
    return [d.date() for d in days if d.date() not in open_days]


def previous_session(day: dt.date) -> dt.date:
    """The last session strictly before `day`."""
    prior = sessions(day - dt.timedelta(days=14), day - dt.timedelta(days=1))
    if not prior:
        raise ValueError(f"no exchange session in the two weeks before {day}")
    return prior[-1]
