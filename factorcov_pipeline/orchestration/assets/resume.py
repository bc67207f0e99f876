"""Where an EWMA recursion continues from, and which of its dates are published.

The recursion state (`_forecast_state`) is stored every `STATE_EVERY` sessions of a range and
at its last session, not after every session: serialising a state costs about 0.5 ms, which
was most of a 2,263-session run of a 5-factor model (py-spy). A daily run continues from the
previous session's state, which the previous run stored (its last session). A partition in
the middle of the history is re-materialised from the nearest stored state before it: the
returns in between are replayed (at most `STATE_EVERY - 1` sessions, read from
`factor_returns`) and not re-published. Running a block of dates in one call equals stepping
them one at a time bit for bit (ARCHITECTURE.md, "Forecaster state"), so the forecasts do not
depend on where the states were stored (tested). Of the stored states, each write keeps those
of the last `STATE_KEEP_RECENT_DAYS` days and, before them, the last of every span of
`STATE_KEEP_DAYS` days (`storage/contract.py`): a daily schedule stores one state per session,
and DuckDB's checkpoint rewrites every stored state of the table when one is added, so without
it the daily run slowed down and the file grew with every run.

Warm-up (`factor_cov_settings.warmup_length` = N): a forecast dated t is published when more
than N sessions with returns are in the history up to t; the recursions still see every
return from the first one on. Every published forecast carries `warm` (`warm_flags`): more
than W sessions with returns up to t, W from `core/warmup.py` (derived from the half-lives, or
N when `warmup_length` is set, so that with N every published row is warm).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.warmup import is_warm
from factorcov_pipeline.orchestration.assets.common import MissingUpstreamError, return_dates
from factorcov_pipeline.orchestration.catchup import gap_message
from factorcov_pipeline.storage import Store

# Sessions between stored recursion states, and the length of the blocks the recursions run
# in (below the compiled kernels' 500-date threshold: their first call in a process costs
# about 1 s, more than a 252-date block of numpy work at these sizes).
STATE_EVERY = 252


@dataclass(frozen=True)
class ResumePoint:
    """The stored state to start from (None: the history starts) and the dates to replay
    from it before the range (recomputed, not published)."""

    state: bytes | None
    replay: list[dt.date]


def resume_point(
    store: Store,
    asset: str,
    first: dt.date,
    warmup: int,
    end: dt.date | None = None,
    model: str | None = None,
    state_key: str | None = None,
) -> ResumePoint:
    """Where `asset`'s recursion continues from to produce the forecast of `first`: of
    covariance model `model` (its rows of the table `asset`), whose states are kept as
    `state_key` (default: `asset`; `models.Model.state_key`).

    The previous session's forecast must have been materialised (the asset depends on itself
    at t-1), unless it lies in the warm-up (not published by design); a recursion starts
    afresh only at the first date with factor returns. A missing predecessor is an error that
    names the whole gap and the one command that fills it through `end` (the range's end).
    """
    prev = calendar.previous_session(first)
    earlier = store.stored_dates("factor_returns", end=prev)
    if not earlier:
        return ResumePoint(None, [])
    if not store.stored_dates(asset, prev, prev, model=model) and len(earlier) > warmup:
        raise MissingUpstreamError(
            gap_message(store, asset, asset, prev, end or first, f"{asset} for {first}")
            + " (the EWMA recursion continues from the previous session's stored state)"
        )
    found = store.latest_state(state_key or asset, prev)
    if found is None:
        replay_from, blob = earlier[0], None
    else:
        replay_from, blob = found[0] + dt.timedelta(days=1), found[1]
    replay = (
        return_dates(store, calendar.sessions(replay_from, prev), asset)
        if replay_from <= prev
        else []
    )
    return ResumePoint(blob, replay)


def published(store: Store, days: list[dt.date], F: np.ndarray, warmup: int) -> np.ndarray:
    """Boolean mask of `days` whose forecasts are published: more than `warmup` sessions with
    returns up to and including the day (a row of `F` that is all NaN is a no-return day)."""
    if warmup <= 0 or not days:
        return np.ones(len(days), dtype=bool)
    before = len(store.stored_dates("factor_returns", end=days[0] - dt.timedelta(days=1)))
    observed = ~np.isnan(F).all(axis=1)
    return before + np.cumsum(observed) > warmup


def return_counts(store: Store, days: list[dt.date]) -> np.ndarray:
    """For each of `days` (ascending), the number of sessions with stored factor returns up to
    and including it (a session in `factor_return_gaps` adds none)."""
    if not days:
        return np.zeros(0, dtype=np.int64)
    stored = np.asarray(store.stored_dates("factor_returns", end=days[-1]), dtype="datetime64[D]")
    return np.searchsorted(stored, np.asarray(days, dtype="datetime64[D]"), side="right")


def warm_flags(store: Store, days: list[dt.date], warmup: int) -> np.ndarray:
    """`warm` of forecasts dated `days`: more than `warmup` sessions with returns up to each
    (`core.warmup.is_warm`)."""
    return is_warm(return_counts(store, days), warmup)


def with_warm(frame: pl.DataFrame, days: list[dt.date], flags: np.ndarray) -> pl.DataFrame:
    """`frame` (rows dated within `days`) with the Boolean column `warm` of its date."""
    warm_days = pl.Series([d for d, w in zip(days, flags, strict=True) if w], dtype=pl.Date)
    return frame.with_columns(pl.col("date").is_in(warm_days.implode()).alias("warm"))


def state_dates(days: list[dt.date], first: dt.date) -> set[int]:
    """Positions in `days` after which a state is stored: the end of every block of
    STATE_EVERY dates that lies in the range (from `first` on) and the last date."""
    ends = {min(i + STATE_EVERY, len(days)) - 1 for i in range(0, len(days), STATE_EVERY)}
    return {i for i in ends if days[i] >= first}
