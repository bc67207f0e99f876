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
| FACTORCOV_DATABASE_URL | postgresql://user[:password]@host[:port]/database | unset (DuckDB) |
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DATABASE = "FACTORCOV_DUCKDB"
SETTINGS = "FACTORCOV_SETTINGS"
PARTITIONS_START = "FACTORCOV_PARTITIONS_START"
LOCK_TIMEOUT = "FACTORCOV_LOCK_TIMEOUT"
CHUNK_SESSIONS = "FACTORCOV_CHUNK_SESSIONS"
DUCKDB_MEMORY = "FACTORCOV_DUCKDB_MEMORY"
JIT = "FACTORCOV_JIT"
DATABASE_URL = "FACTORCOV_DATABASE_URL"

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


# DuckDB keeps its write-ahead log next to the file, named after it (`<file>.wal`), and spills
# to `<file>.tmp/`: the file's name must leave room for the longest of these suffixes.
DUCKDB_SUFFIXES = (".wal", ".tmp")
# When the file's directory does not exist yet, the usual limits (Linux: NAME_MAX, PATH_MAX).
NAME_MAX = 255
PATH_MAX = 4096


def _name_max(path: Path) -> int:
    """The longest file name (bytes) the file system of `path`'s nearest existing directory
    allows."""
    for folder in (path.parent, *path.parent.parents):
        if folder.is_dir():
            try:
                return int(os.pathconf(folder, "PC_NAME_MAX"))
            except (OSError, ValueError):
                return NAME_MAX
    return NAME_MAX


def database() -> str:
    """FACTORCOV_DUCKDB: a path whose every part the file system can name, with room for the
    files DuckDB names after it (`<file>.wal`, `<file>.tmp`): a longer name failed mid-run
    ('File name too long')."""
    raw = _raw(DATABASE)
    if raw is None:
        return DEFAULT_DATABASE
    path = Path(raw)
    limit = _name_max(path)
    suffix = max(len(x) for x in DUCKDB_SUFFIXES)
    name = len(os.fsencode(path.name))
    if name + suffix > limit:
        raise _refuse(
            DATABASE,
            raw,
            f"has a file name of {name} bytes: at most {limit - suffix} (the file system's "
            f"{limit}, less DuckDB's '.wal' suffix)",
        )
    longest = max((len(os.fsencode(p)) for p in path.parent.parts), default=0)
    if longest > limit:
        raise _refuse(DATABASE, raw, f"has a folder name of {longest} bytes: at most {limit}")
    if len(os.fsencode(str(path.absolute()))) + suffix >= PATH_MAX:
        raise _refuse(DATABASE, raw, f"is a path longer than the file system's {PATH_MAX} bytes")
    return raw


def hide_password(url: str) -> str:
    """`url` with the password of its user part replaced by `***` (for messages); works on URLs
    that do not parse (the user part is what precedes the last '@' before the path)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", url, flags=re.DOTALL)
    if not m or "@" not in m.group(2):
        return url
    userinfo, host = m.group(2).rsplit("@", 1)
    user, has_password, _ = userinfo.partition(":")
    return f"{m.group(1)}{user}{':***' if has_password else ''}@{host}{m.group(3)}"


def database_url() -> str | None:
    """FACTORCOV_DATABASE_URL: None when unset; otherwise a postgresql:// URL that parses (host,
    port), refused in one line naming the variable (the password never shown)."""
    raw = _raw(DATABASE_URL)
    if raw is None:
        return None
    url = raw.strip()
    shown = hide_password(url)
    form = "postgresql://user[:password]@host[:port]/database"
    if not url.startswith(("postgresql://", "postgres://")):
        raise _refuse(DATABASE_URL, shown, f"is not a PostgreSQL URL ({form})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parses the port: ValueError when it is not a number)
    except ValueError as err:
        raise _refuse(DATABASE_URL, shown, f"is not a valid URL ({err}; {form})") from None
    return url


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
    try:
        calendar.check_supported(day, f"{PARTITIONS_START}={raw!r}")
    except calendar.CalendarRangeError as err:
        raise EnvironmentVariableError(str(err)) from None
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
        DATABASE_URL: database_url,
    }
    return {name: parse() for name, parse in parsers.items()}
