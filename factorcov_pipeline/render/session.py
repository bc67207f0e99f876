"""`factorcov show DATE`: one session's factor volatilities and correlation matrix, readable in
a terminal of 100 columns.

Plain Python (no Dagster). The volatilities are listed highest first and numbered; the numbers
label the rows and columns of the correlation matrix below them (so the table doubles as the
matrix's legend and no factor name is shortened), and a matrix wider than the terminal is
printed in blocks of columns (`terminal.grid`). The numbers are read from `factor_volatility`
and `factor_correlation` as stored (annualised volatilities, see the README's SQL contract).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factorcov_pipeline.render.textgrid import fold, grid
from factorcov_pipeline.storage.query import QueryConnection

VOL_DECIMALS = 6
CORR_DECIMALS = 3


class ShowError(ValueError):
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


def _nearest(con: QueryConnection, day: dt.date) -> str:
    before, after = con.rows(
        "SELECT max(date) FILTER (WHERE date < ?) AS before, "
        "min(date) FILTER (WHERE date > ?) AS after FROM factor_volatility",
        [day, day],
    )[0]
    if before is None and after is None:
        return "the file holds no forecast dates"
    parts = [f"{before} (before)" if before else "none before"]
    parts.append(f"{after} (after)" if after else "none after")
    return "nearest stored dates: " + ", ".join(parts)


def load_session(
    con: QueryConnection, day: dt.date, factors: Sequence[str] | None, source: str
) -> SessionForecast:
    """The stored volatilities and correlations of session `day` (only `factors` when given).

    Raises `ShowError` naming the nearest stored dates when `day` has no forecast, and the
    stored factors when a name in `factors` is not one of them.
    """
    if not con.has_table("factor_volatility") or not con.has_table("factor_correlation"):
        raise ShowError(f"{source} holds no forecasts yet: run `factorcov materialize` first")
    vol_rows = con.rows("SELECT factor, volatility FROM factor_volatility WHERE date = ?", [day])
    if not vol_rows:
        raise ShowError(f"no forecast stored for {day} in {source}; {_nearest(con, day)}")
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
    if con.has_table("factor_returns"):  # a factor has one group: min() is standard SQL
        groups.update(
            (f, g or "")
            for f, g in con.rows(
                "SELECT factor, min(factor_group) AS factor_group FROM factor_returns "
                "GROUP BY factor"
            )
            if f in index
        )
    corr_rows = con.rows(
        "SELECT factor_1, factor_2, correlation FROM factor_correlation WHERE date = ?", [day]
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


def render_session(forecast: SessionForecast, width: int, source: str) -> str:
    """The volatility table (numbered, highest first) and the correlation matrix labelled by
    those numbers, every line at most `width` characters."""
    k = len(forecast.factors)
    codes = [str(i + 1) for i in range(k)]
    out = fold(f"Session {forecast.date}: {k} factor(s), forecasts stored in {source}", width)
    out += [
        "",
        *fold(
            "Volatility forecasts (annualised), highest first; # labels the correlation matrix",
            width,
        ),
    ]
    rows = [
        [code, name, group, f"{vol:.{VOL_DECIMALS}f}", f"{100 * vol:.2f}"]
        for code, name, group, vol in zip(
            codes, forecast.factors, forecast.groups, forecast.volatility, strict=True
        )
    ]
    out += grid(
        ["#", "factor", "group", "volatility", "in %"],
        rows,
        [True, False, False, True, True],
        width,
        keys=2,  # a long factor name folds rather than the table splitting
    )
    out += ["", *fold("Correlation forecasts (rows and columns: # above)", width)]
    values = np.char.mod(f"%.{CORR_DECIMALS}f", forecast.correlation)
    matrix = [[code, *row] for code, row in zip(codes, values.tolist(), strict=True)]
    out += grid(
        ["#", *codes],
        matrix,
        [True] * (k + 1),
        width,
        keys=1,
        block_title=lambda a, b: f"(columns {codes[a - 1]}-{codes[b - 1]} of {k})",
    )
    return "\n".join(out) + "\n"
