"""New York Stock Exchange sessions, from the maintained `exchange-calendars` package (XNYS).

Partitions are weekday windows with the exchange's weekday holidays excluded; the holidays come
from the calendar's rules, not from a hand-written list.

One session index serves every question (sessions in a range, the previous session, is a day a
session): weekdays from `BUILD_START` to the horizon without the XNYS calendar's regular
holidays (its `regular_holidays.holidays(start, end)`) and ad hoc closures (`adhoc_holidays`).
The calendar's own session index is not used because it leaves out every regular holiday
before 1970: it is built with pandas' `CustomBusinessDay(calendar=...)`, which asks the holiday
calendar for its holidays without dates, and pandas' `AbstractHolidayCalendar` then starts
them at 1970-01-01 (exchange-calendars 4.13 with pandas 3: New Year's Day 1885 .. 1969 were
sessions). From 1970 on the two indexes are equal (tests/test_calendar.py). The library's
rules do not model the Saturday sessions the exchange held until 1952, nor closures it does
not list (1914).

A history's first partition must lie in [`FIRST_SUPPORTED`, `last_supported()`]
(`check_supported`); a question about a date the index cannot answer (before `BUILD_START`,
after `LAST_POSSIBLE`) raises `CalendarRangeError`, one line.
The index starts a year before `FIRST_SUPPORTED`, so that the look-backs of the first
partitions (the previous session, forecast_bias's 21-session windows) stay inside it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from factorcov_pipeline.core.errors import InputDataError

EXCHANGE = "XNYS"
DEFAULT_START = dt.date(2025, 3, 31)
DEFAULT_END = dt.date(2026, 3, 31)
# How far ahead the exclusions reach; the partitions stay open-ended, so the schedule has every
# session until then (exchange-calendars publishes holidays years ahead).
CALENDAR_HORIZON_YEARS = 5
# The earliest date a history may start. exchange-calendars builds XNYS from any date, its
# rules extrapolated backwards (its maintainers warn that early dates are less accurate); the
# NYSE holiday histories in use start in 1885 (pandas_market_calendars issue 135).
FIRST_SUPPORTED = dt.date(1885, 1, 1)
# The session index starts a year earlier, for the first partitions' look-backs.
BUILD_START = dt.date(FIRST_SUPPORTED.year - 1, 1, 1)
# The calendar's own session index is right from this date on (module docstring).
LIBRARY_SESSIONS_FROM = dt.date(1970, 1, 1)
# The last date any question may ask about (pandas' timestamps end in April 2262): past the
# horizon the sessions come from the rules alone (e.g. `--end 2099-12-31`, refused as in the
# future rather than as outside the calendar).
LAST_POSSIBLE = dt.date(2261, 12, 31)


class CalendarRangeError(InputDataError):
    """A date outside the range the exchange calendar covers; the message names it."""


def last_supported(today: dt.date | None = None) -> dt.date:
    """The last date the calendar covers: the end of the year `CALENDAR_HORIZON_YEARS` after
    today's (the exchange publishes its holidays a few years ahead)."""
    today = today or dt.date.today()
    return dt.date(today.year + CALENDAR_HORIZON_YEARS, 12, 31)


def check_supported(day: dt.date, what: str) -> None:
    """Refuse a date a user gave (`what` names it, e.g. "--end 9999-12-31") that lies outside
    [`FIRST_SUPPORTED`, `last_supported()`], in one line."""
    last = last_supported()
    if not FIRST_SUPPORTED <= day <= last:
        raise CalendarRangeError(
            f"{what} is outside the New York Stock Exchange calendar's range "
            f"{FIRST_SUPPORTED} .. {last} (exchange-calendars' XNYS rules; the end is "
            f"{CALENDAR_HORIZON_YEARS} years ahead)"
        )


def library_calendar(start: dt.date, end: dt.date) -> xcals.ExchangeCalendar:
    """exchange-calendars' XNYS calendar over [start, end] (its rules and its own sessions)."""
    return xcals.get_calendar(EXCHANGE, start=pd.Timestamp(start), end=pd.Timestamp(end))


@lru_cache(maxsize=4)
def _session_index(end: dt.date) -> np.ndarray:
    """Every session in [`BUILD_START`, end] as sorted `datetime64[D]` (module docstring).
    Only the calendar's rules are used, which do not depend on the range it is built for: it
    is built for its last year (the build computes a schedule, 0.5 s for 25 years)."""
    cal = library_calendar(dt.date(end.year, 1, 1), end)
    lo, hi = pd.Timestamp(BUILD_START), pd.Timestamp(end)
    rules = cal.regular_holidays
    closed = pd.DatetimeIndex(cal.adhoc_holidays)
    if rules is not None:
        closed = closed.union(pd.DatetimeIndex(rules.holidays(lo, hi)))
    days = pd.bdate_range(lo, hi, freq="C", holidays=closed.tolist())
    return days.values.astype("datetime64[D]")


def _index(last: dt.date) -> np.ndarray:
    """The session index through `last`: up to the horizon (`last_supported`), or to the end
    of `last`'s year when a question reaches past it."""
    _bounds(last)
    horizon = last_supported()
    return _session_index(horizon if last <= horizon else dt.date(last.year, 12, 31))


def _bounds(day: dt.date) -> None:
    """Refuse a date outside what the index can answer (a look-back before `BUILD_START`,
    a date past `LAST_POSSIBLE`), in one line."""
    if not BUILD_START <= day <= LAST_POSSIBLE:
        raise CalendarRangeError(
            f"date {day} is outside the New York Stock Exchange calendar's range "
            f"{FIRST_SUPPORTED} .. {last_supported()}"
        )


def sessions(start: dt.date, end: dt.date) -> list[dt.date]:
    """All XNYS sessions in [start, end], as dates."""
    if end < start:
        return []
    _bounds(start)
    idx = _index(end)
    lo = int(np.searchsorted(idx, np.datetime64(start, "D"), "left"))
    hi = int(np.searchsorted(idx, np.datetime64(end, "D"), "right"))
    return idx[lo:hi].tolist()


def is_session(day: dt.date) -> bool:
    _bounds(day)
    idx = _index(day)
    at = int(np.searchsorted(idx, np.datetime64(day, "D"), "left"))
    return at < idx.size and idx[at] == np.datetime64(day, "D")


def weekday_holidays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] on which the exchange is closed (the partitions' exclusions)."""
    open_days = set(sessions(start, end))
    days = pd.bdate_range(start, end)
    return [d.date() for d in days if d.date() not in open_days]


def previous_session(day: dt.date) -> dt.date:
    """The last session strictly before `day` (however long the exchange was closed)."""
    _bounds(day)
    idx = _index(day)
    at = int(np.searchsorted(idx, np.datetime64(day, "D"), "left"))
    if at == 0:
        raise CalendarRangeError(
            f"no New York Stock Exchange session before {day} in the calendar "
            f"(it starts at {BUILD_START})"
        )
    return idx[at - 1].tolist()
