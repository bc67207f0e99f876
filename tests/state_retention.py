"""The retention rule of `_forecast_state` (storage/contract.py), written out in Python for the
tests to compare the stores' SQL with."""

from __future__ import annotations

import datetime as dt

EPOCH = dt.date(1970, 1, 1)


def kept_states(dates: list[dt.date], span_days: int, recent_days: int) -> list[dt.date]:
    """Of the state dates `dates`, those the rule keeps: every date of the last `recent_days`
    days up to the latest, and the last date of each span of `span_days` days before."""
    latest = max(dates)
    last_of_span: dict[int, dt.date] = {}
    for d in dates:
        span = (d - EPOCH).days // span_days
        last_of_span[span] = max(d, last_of_span.get(span, d))
    recent = {d for d in dates if d >= latest - dt.timedelta(days=recent_days)}
    return sorted(recent | set(last_of_span.values()))
