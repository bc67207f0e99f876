"""Every FACTORCOV_* environment variable, parsed in one place with one-line errors.

Each accessor reads its variable when called (so a test or a long-lived process sees changes)
and returns a typed value or raises `EnvironmentVariableError` naming the variable, the value
(a short excerpt) and what it should be. `check_all()` parses every variable at once: the
`factorcov` command calls it first, so a bad value is refused before anything runs.

| variable | type | default |
| --- | --- | --- |
| FACTORCOV_DUCKDB | path of the DuckDB file | data/factorcov.duckdb |
| FACTORCOV_SETTINGS | path of a JSON/YAML settings file | none (the tutorial's settings) |
| FACTORCOV_PARTITIONS_START | an exchange session, YYYY-MM-DD | 2025-03-31 |
| FACTORCOV_LOCK_TIMEOUT | seconds, 0 .. 86400 | 120 |
| FACTORCOV_CHUNK_SESSIONS | sessions per write transaction, 1 .. 10000 | 84 |
| FACTORCOV_DUCKDB_MEMORY | a DuckDB memory size, e.g. 1536MB, 4GB | 1536MB |
| FACTORCOV_JIT | 0 (never), 1 (always) or unset (automatic) | automatic |
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable
from typing import Any

DATABASE = "FACTORCOV_DUCKDB"
SETTINGS = "FACTORCOV_SETTINGS"
PARTITIONS_START = "FACTORCOV_PARTITIONS_START"
LOCK_TIMEOUT = "FACTORCOV_LOCK_TIMEOUT"
CHUNK_SESSIONS = "FACTORCOV_CHUNK_SESSIONS"
DUCKDB_MEMORY = "FACTORCOV_DUCKDB_MEMORY"
JIT = "FACTORCOV_JIT"

DEFAULT_DATABASE = "data/factorcov.duckdb"
DEFAULT_LOCK_TIMEOUT = 120.0
# 84 sessions (a third of a year): each chunk costs its own queries, transaction and commit in
# every chunked step, and the first chunk's read and the last one's write overlap nothing
# (storage/read_ahead.py, storage/write_behind.py). Against 63: the tutorial's year 0.4 s and
# 10 years 5 s faster (benchmarks 3 and 8, alternated runs), 0.1 GiB more at the peak.
DEFAULT_CHUNK_SESSIONS = 84
DEFAULT_MEMORY_LIMIT = "1536MB"
MAX_LOCK_TIMEOUT = 86_400.0
MAX_CHUNK_SESSIONS = 10_000
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


class EnvironmentVariableError(ValueError):
    """A FACTORCOV_* variable has a value the pipeline cannot use; the message names it."""


def _raw(name: str) -> str | None:
    """The variable's value, or None when unset or blank."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def _refuse(name: str, value: str, should: str) -> EnvironmentVariableError:
    shown = value if len(value) <= 40 else value[:40] + "..."
    return EnvironmentVariableError(f"{name}={shown!r} {should}")


def database() -> str:
    return _raw(DATABASE) or DEFAULT_DATABASE


def settings_file() -> str | None:
    return _raw(SETTINGS)


def lock_timeout() -> float:
    raw = _raw(LOCK_TIMEOUT)
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise _refuse(LOCK_TIMEOUT, raw, "is not a number of seconds (e.g. 120)") from None
    if not (math.isfinite(value) and 0.0 <= value <= MAX_LOCK_TIMEOUT):
        raise _refuse(LOCK_TIMEOUT, raw, f"must be between 0 and {MAX_LOCK_TIMEOUT:.0f} seconds")
    return value


def chunk_sessions() -> int:
    raw = _raw(CHUNK_SESSIONS)
    if raw is None:
        return DEFAULT_CHUNK_SESSIONS
    try:
        value = int(raw.strip())
    except ValueError:
        raise _refuse(CHUNK_SESSIONS, raw, "is not a whole number of sessions (e.g. 84)") from None
    if not 1 <= value <= MAX_CHUNK_SESSIONS:
        raise _refuse(CHUNK_SESSIONS, raw, f"must be between 1 and {MAX_CHUNK_SESSIONS}")
    return value


def duckdb_memory() -> str:
    raw = _raw(DUCKDB_MEMORY)
    if raw is None:
        return DEFAULT_MEMORY_LIMIT
    if not _MEMORY.match(raw):
        raise _refuse(DUCKDB_MEMORY, raw, "is not a memory size such as 1536MB or 4GB")
    return raw.strip()


def jit_mode() -> str:
    """'auto', '0' (never) or '1' (always)."""
    raw = _raw(JIT)
    if raw is None or raw.strip().lower() == "auto":
        return "auto"
    mode = raw.strip().lower()
    if mode in ("0", "off", "false", "no"):
        return "0"
    if mode in ("1", "on", "true", "yes"):
        return "1"
    raise _refuse(JIT, raw, "must be 0 (never), 1 (always) or unset (automatic)")


def partitions_start(default: dt.date) -> dt.date:
    """The first partition: an exchange session (checked against the calendar)."""
    from factorcov_pipeline.core import calendar  # exchange-calendars: imported when needed

    raw = _raw(PARTITIONS_START)
    if raw is None:
        return default
    try:
        day = dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise _refuse(PARTITIONS_START, raw, "is not a date (YYYY-MM-DD)") from None
    if not calendar.is_session(day):
        raise _refuse(PARTITIONS_START, raw, f"is not a New York Stock Exchange session ({day:%A})")
    return day


def check_all() -> dict[str, Any]:
    """Parse every FACTORCOV_* variable; the first bad one raises. Returns the values."""
    from factorcov_pipeline.core import calendar

    parsers: dict[str, Callable[[], Any]] = {
        DATABASE: database,
        SETTINGS: settings_file,
        PARTITIONS_START: lambda: partitions_start(calendar.DEFAULT_START),
        LOCK_TIMEOUT: lock_timeout,
        CHUNK_SESSIONS: chunk_sessions,
        DUCKDB_MEMORY: duckdb_memory,
        JIT: jit_mode,
    }
    return {name: parse() for name, parse in parsers.items()}
