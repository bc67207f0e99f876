"""A model made of the user's own factor returns (`universe.factor_returns`).

With a factor-return file the model is the file: its factor names are data (tickers, spaces,
quotes, unicode, anything), its `factor_group` column (optional; one group, `user`, without
it) gives the groups, and there is no universe, exposure or regression step. This module
turns the validated file (`core.userdata.load_factor_returns`) into the model's `FactorSet`
and refuses a session range the file does not cover, before any work is done.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.core.factors import FactorSet


@dataclass(frozen=True)
class UserFactorReturns:
    """The validated file (`date, factor, factor_group, factor_return`, sorted by date and
    factor), its factors (alphabetical, the covariance report's order) and its first and last
    session."""

    path: str
    frame: pl.DataFrame
    factors: FactorSet
    first: dt.date
    last: dt.date


# The wide report (`covariance_report`, the tutorial's `df_vcov`) has a column per factor
# beside these (`model`, the covariance model, since issue 22).
REPORT_COLUMNS = ("date", "factor", "model")
# PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes (two long names that share
# their first 63 bytes would become one column).
MAX_NAME_BYTES = 63
SHOWN = 5


def _shown(names: list[str]) -> str:
    more = f" ... and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(repr(n) for n in names[:SHOWN]) + more


def check_factor_names(source: str, names: list[str]) -> None:
    """Refuse, in one line naming the file and the names, factor names that cannot each be a
    column of the wide report in both stores (DuckDB and PostgreSQL), before anything is
    written:

    - control characters (NUL, newline, tab, ...): PostgreSQL text cannot hold NUL, and polars
      panicked on `"a\x00b"` after four tables had been written;
    - names equal up to case (`Mkt`, `MKT`): DuckDB compares column names case-insensitively
      and renamed the second `Mkt_1`, which failed the tie-out at the run's end;
    - the report's own columns `date`, `factor` and `model` (in any case), refused only at
      `covariance_report` before;
    - longer than 63 bytes of UTF-8: PostgreSQL truncates identifiers to 63 bytes;
    - `^`: the tutorial's `df_vcov` statement (`core/tieout.vcov_from_report`) cuts column
      names at `^`, so the tie-out could not find the factor.

    Empty names are refused when the column is read (`userdata._as_string`)."""
    problems = []
    control = [n for n in names if any(unicodedata.category(c) == "Cc" for c in n)]
    if control:
        problems.append(f"control characters in {_shown(control)}")
    reserved = [n for n in names if n.lower() in REPORT_COLUMNS]
    if reserved:
        problems.append(
            f"{_shown(reserved)} (the report's own columns are {', '.join(REPORT_COLUMNS)})"
        )
    by_case: defaultdict[str, list[str]] = defaultdict(list)
    for n in names:
        by_case[n.casefold()].append(n)
    clashes = [" = ".join(repr(n) for n in group) for group in by_case.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(clashes[:SHOWN]) + (" ..." if len(clashes) > SHOWN else "")
        problems.append(f"names equal up to case ({shown}): DuckDB's columns ignore case")
    long = [n for n in names if len(n.encode("utf-8")) > MAX_NAME_BYTES]
    if long:
        problems.append(
            f"longer than {MAX_NAME_BYTES} bytes (PostgreSQL's identifier limit): {_shown(long)}"
        )
    caret = [n for n in names if "^" in n]
    if caret:
        problems.append(f"'^' (the tutorial's report cuts column names there) in {_shown(caret)}")
    if problems:
        raise InputDataError(
            f"{source}: factor names that cannot be columns of the covariance report: "
            + "; ".join(problems)
            + ". Rename them in the file"
        )


@lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int, _size: int) -> UserFactorReturns:
    from factorcov_pipeline.core.userdata import load_factor_returns

    frame = load_factor_returns(path)
    groups = frame.select("factor", "factor_group").unique(subset="factor", keep="first")
    groups = groups.sort("factor")
    names = tuple(groups["factor"].to_list())
    check_factor_names(path, list(names))
    if frame.select("factor", "factor_group").unique().height != len(names):
        both = (
            frame.select("factor", "factor_group")
            .unique()
            .group_by("factor")
            .agg(pl.col("factor_group").sort())
            .filter(pl.col("factor_group").list.len() > 1)
            .sort("factor")
            .row(0)
        )
        raise InputDataError(
            f"{path}: factor {both[0]!r} has more than one factor_group ({both[1]}); "
            "give each factor one group"
        )
    factors = FactorSet(names, tuple(groups["factor_group"].to_list()))
    first, last = frame["date"].min(), frame["date"].max()
    assert isinstance(first, dt.date) and isinstance(last, dt.date)
    return UserFactorReturns(path, frame, factors, first, last)


def user_factor_returns(path: str) -> UserFactorReturns:
    """The validated factor-return file at `path`, read once per process while the file is
    unchanged (every asset and check of a run asks for the model's factors)."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{path}: factor-return file not found (universe.factor_returns)")
    st = p.stat()
    return _load(str(path), st.st_mtime_ns, st.st_size)


def check_range(user: UserFactorReturns, start: dt.date, end: dt.date) -> None:
    """Refuse a session range the file does not cover, naming the file's first and last
    sessions and the requested range: a range with no session of the file, or one that runs
    past its last session (its forecasts would silently stop). A range that starts before the
    file's first session is accepted: the recursions start at the first return."""
    span = f"the file covers {user.first} .. {user.last}; requested {start} .. {end}"
    if end < user.first or start > user.last:
        raise InputDataError(
            f"{user.path}: the requested range has no session of the factor-return file "
            f"({span}). Materialise a range inside the file's dates"
        )
    if end > user.last:
        raise InputDataError(
            f"{user.path}: the requested range runs past the file's last session {user.last} "
            f"({span}). End the range at {user.last} or add the missing sessions to the file"
        )
