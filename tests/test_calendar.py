"""The exchange calendar (core/calendar.py) and histories that start before 2006 (issue 21.2).

0.8.0 built exchange-calendars' XNYS from min(start, 2006-01-02) for each question, so a
look-back whose window began on a holiday before 2006 asked for a date before that calendar's
first session: `FACTORCOV_PARTITIONS_START=2003-03-03 factorcov materialize --start 2003-03-03
--end 2003-05-12` failed in factor_returns with exchange-calendars' raw DateOutOfBounds, after
universe and exposures were written. Now one session index serves every date from 1885 (the
library's rules; its own index drops its regular holidays before 1970), and a date outside it
is one line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.errors import InputDataError

D = dt.date


def test_the_index_is_the_librarys_own_from_1970():
    """From 1970 on, the sessions are exchange-calendars' own, date for date."""
    last = calendar.last_supported()
    lib = calendar.library_calendar(calendar.LIBRARY_SESSIONS_FROM, last)
    ours = calendar.sessions(calendar.LIBRARY_SESSIONS_FROM, last)
    assert ours == [ts.date() for ts in lib.sessions]
    assert len(ours) > 15_000


def test_holidays_before_1970_are_closed():
    """The library's own session index keeps New Year's Day, Christmas, ... before 1970 as
    sessions (pandas' holiday calendar starts in 1970); the index takes them from the rules,
    and the ad hoc closures of the library's list are closed too."""
    days = set(calendar.sessions(D(1885, 1, 1), D(1969, 12, 31)))
    weekdays = lambda month, day: [  # noqa: E731
        D(y, month, day) for y in range(1885, 1970) if D(y, month, day).weekday() < 5
    ]
    assert not days & set(weekdays(1, 1) + weekdays(7, 4) + weekdays(12, 25))
    closed = [
        *[D(1933, 3, d) for d in (6, 7, 8, 9, 10, 13, 14)],  # bank holiday
        D(1963, 11, 25),  # President Kennedy's funeral
        D(1963, 11, 28),  # Thanksgiving
        D(1950, 1, 2),  # New Year's Day on a Sunday, observed on Monday
        D(1929, 11, 1),
    ]
    assert not days & set(closed)
    assert {D(1929, 10, 29), D(1933, 3, 3), D(1933, 3, 15), D(1963, 11, 26)} <= days
    lib = calendar.library_calendar(D(1960, 1, 1), D(1960, 12, 31))
    assert D(1960, 1, 1) in {ts.date() for ts in lib.sessions}  # the library's own index


def test_previous_session_across_holidays_and_closures():
    # the 0.8.0 crash: two weeks before 2003-03-03 is Presidents' Day, a holiday
    assert calendar.previous_session(D(2003, 3, 3)) == D(2003, 2, 28)
    assert calendar.sessions(D(2003, 2, 17), D(2003, 2, 18)) == [D(2003, 2, 18)]
    assert calendar.previous_session(D(1933, 3, 15)) == D(1933, 3, 3)
    assert calendar.previous_session(D(2001, 9, 17)) == D(2001, 9, 10)
    # the first supported session still has one before it (the index starts a year earlier)
    first = calendar.sessions(calendar.FIRST_SUPPORTED, D(1885, 1, 31))[0]
    assert calendar.previous_session(first) < calendar.FIRST_SUPPORTED
    days = calendar.sessions(D(1990, 1, 1), D(2010, 12, 31))
    assert [calendar.previous_session(d) for d in days[1:]] == days[:-1]
    assert all(calendar.is_session(d) for d in days[:50])
    assert not calendar.is_session(D(2003, 2, 17))


@pytest.mark.parametrize(
    "call",
    [
        lambda: calendar.sessions(D(1700, 1, 1), D(1700, 2, 1)),
        lambda: calendar.sessions(D(2025, 1, 1), D(9999, 12, 31)),
        lambda: calendar.is_session(D(1, 1, 1)),
        lambda: calendar.previous_session(D(9999, 12, 31)),
    ],
)
def test_a_date_outside_the_calendar_is_one_line(call):
    with pytest.raises(calendar.CalendarRangeError) as err:
        call()
    assert isinstance(err.value, InputDataError)  # the command prints it in one line, exit 2
    text = str(err.value)
    assert "\n" not in text and "outside the New York Stock Exchange calendar" in text
    assert str(calendar.FIRST_SUPPORTED) in text and str(calendar.last_supported()) in text


def test_dates_past_the_horizon_come_from_the_rules():
    """A question past the partitions' horizon (`--end 2099-12-31`, refused by the command as
    in the future) is answered from the rules, as 0.8.0 did."""
    assert calendar.last_supported() < D(2099, 1, 1)
    assert calendar.is_session(D(2099, 12, 31))
    assert calendar.sessions(D(2099, 12, 24), D(2099, 12, 31)) == [
        D(2099, 12, 24), D(2099, 12, 28), D(2099, 12, 29), D(2099, 12, 30), D(2099, 12, 31)
    ]  # fmt: skip
    assert calendar.previous_session(D(2099, 12, 28)) == D(2099, 12, 24)


def test_check_supported_bounds():
    calendar.check_supported(calendar.FIRST_SUPPORTED, "x")
    calendar.check_supported(calendar.last_supported(), "x")
    for day in (calendar.FIRST_SUPPORTED - dt.timedelta(days=1), D(9999, 12, 31)):
        with pytest.raises(calendar.CalendarRangeError, match=f"--start {day} is outside"):
            calendar.check_supported(day, f"--start {day}")


# ---- whole runs from before 2006 (subprocesses: the partitions are built at import) ---------


def _materialize(tmp_path: Path, start: str, end: str) -> tuple[subprocess.CompletedProcess, Path]:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 60}}}))
    db = tmp_path / "fc.duckdb"
    env = {
        **os.environ,
        "FACTORCOV_DUCKDB": str(db),
        "FACTORCOV_PARTITIONS_START": start,
        "COLUMNS": "120",
    }
    for name in ("FACTORCOV_DATABASE_URL", "DAGSTER_HOME", "FACTORCOV_SETTINGS"):
        env.pop(name, None)
    argv = ["materialize", "--start", start, "--end", end, "--settings", str(settings)]
    code = "import sys; from factorcov_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True
    )
    return run, db


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2003-03-03", "2003-05-12"),  # the reproduction (50 sessions)
        # a 1990s start whose first look-back (two weeks) begins on New Year's Day
        ("1997-01-15", "1997-02-05"),
    ],
)
def test_a_history_before_2006_materialises(tmp_path, start, end):
    run, db = _materialize(tmp_path, start, end)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    days = calendar.sessions(D.fromisoformat(start), D.fromisoformat(end))
    with duckdb.connect(str(db), read_only=True) as con:
        stored = [r[0] for r in con.sql("SELECT DISTINCT date FROM universe ORDER BY 1").fetchall()]
        (returns,) = con.sql(
            "SELECT min(date), count(DISTINCT date) FROM factor_returns"
        ).fetchall()
        vols = np.array(con.sql("SELECT volatility FROM factor_volatility").fetchall())
    assert stored == days
    assert returns == (days[1], len(days) - 1)
    assert vols.size == 21 * (len(days) - 1) and np.isfinite(vols).all()
