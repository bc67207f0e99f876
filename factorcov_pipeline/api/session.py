"""One session's factor volatilities and correlations as `factorcov show` prints them
(`render/session.py` formats them): the numbers of ``factor_volatility`` and
``factor_correlation`` as stored, factors by volatility, highest first (ties by name)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factorcov_pipeline.api.errors import RiskModelError
from factorcov_pipeline.api.model import RiskModel
from factorcov_pipeline.api.risk_models import nearest_text


class ShowError(RiskModelError):
    """The session or a factor asked for is not stored; the message names what is."""


@dataclass(frozen=True)
class SessionForecast:
    """One session's forecasts, factors ordered by volatility (highest first).

    `correlation[i, j]` is the correlation of `factors[i]` and `factors[j]`.
    """

    date: dt.date
    factors: list[str]
    groups: list[str]
    volatility: np.ndarray
    correlation: np.ndarray


def load_session(model: RiskModel, day: dt.date, factors: Sequence[str] | None) -> SessionForecast:
    """The stored volatilities and correlations of session `day` (only `factors` when given).

    Raises `ShowError` naming the nearest stored dates when `day` has no forecast, and the
    stored factors when a name in `factors` is not one of them.
    """
    read, source = model.reader, model.location
    if not read.has_table("factor_volatility") or not read.has_table("factor_correlation"):
        raise ShowError(f"{source} holds no forecasts yet: run `factorcov materialize` first")
    vclause, vparams = model.model_clause("factor_volatility")
    vol_rows = read.rows(
        f"SELECT factor, volatility FROM factor_volatility WHERE date = ?{vclause}",
        [day, *vparams],
    )
    if not vol_rows:
        near = read.rows(
            "SELECT max(date) FILTER (WHERE date < ?) AS before, "
            f"min(date) FILTER (WHERE date > ?) AS after FROM factor_volatility "
            f"WHERE date IS NOT NULL{vclause}",
            [day, day, *vparams],
        )[0]
        dates = [d for d in near if d is not None]
        raise ShowError(
            f"no forecast stored for {day} in {source}; {nearest_text(sorted(dates), day)}"
        )
    stored = {name: float(vol) for name, vol in vol_rows}
    if factors:
        unknown = [f for f in factors if f not in stored]
        if unknown:
            raise ShowError(
                f"--factors: {', '.join(repr(f) for f in unknown)} not stored for {day}; "
                f"stored factors: {', '.join(sorted(stored))}"
            )
        names = list(dict.fromkeys(factors))
    else:
        names = list(stored)
    # highest volatility first; ties by name so the order is reproducible
    names.sort(key=lambda f: (-stored[f], f))
    index = {f: i for i, f in enumerate(names)}
    groups = dict.fromkeys(names, "")
    groups.update((f, g) for f, g in model.factor_groups().items() if f in index)
    cclause, cparams = model.model_clause("factor_correlation")
    corr_rows = read.rows(
        f"SELECT factor_1, factor_2, correlation FROM factor_correlation WHERE date = ?{cclause}",
        [day, *cparams],
    )
    k = len(names)
    corr = np.full((k, k), np.nan)
    kept = [(index[a], index[b], c) for a, b, c in corr_rows if a in index and b in index]
    if kept:
        i, j, c = (np.array(x) for x in zip(*kept, strict=True))
        corr[i.astype(int), j.astype(int)] = c.astype(float)
    if np.isnan(corr).any():
        raise ShowError(
            f"factor_correlation in {source} lacks pairs of the factors stored for {day} "
            "in factor_volatility: re-run `factorcov materialize` for that date"
        )
    vol = np.array([stored[f] for f in names])
    return SessionForecast(day, names, [groups[f] for f in names], vol, corr)
