"""A model made of the user's own factor returns (`universe.factor_returns`).

With a factor-return file the model is the file: its factor names are data (tickers, spaces,
quotes, unicode, anything), its `factor_group` column (optional; one group, `user`, without
it) gives the groups, and there is no universe, exposure or regression step. This module
turns the validated file (`core.userdata.load_factor_returns`) into the model's `FactorSet`
and refuses a session range the file does not cover, before any work is done.
"""

from __future__ import annotations

import datetime as dt
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


@lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int, _size: int) -> UserFactorReturns:
    from factorcov_pipeline.core.userdata import load_factor_returns

    frame = load_factor_returns(path)
    groups = frame.select("factor", "factor_group").unique(subset="factor", keep="first")
    groups = groups.sort("factor")
    names = tuple(groups["factor"].to_list())
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
