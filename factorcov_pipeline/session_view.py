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

import duckdb
import numpy as np

from factorcov_pipeline.textgrid import fold, grid

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


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = con.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return bool(rows)


def _nearest(con: duckdb.DuckDBPyConnection, day: dt.date) -> str:
    before, after = con.execute(
        "SELECT max(date) FILTER (WHERE date < ?), min(date) FILTER (WHERE date > ?) "
        "FROM factor_volatility",
        [day, day],
    ).fetchall()[0]
    if before is None and after is None:
        return "the file holds no forecast dates"
    parts = [f"{before} (before)" if before else "none before"]
    parts.append(f"{after} (after)" if after else "none after")
    return "nearest stored dates: " + ", ".join(parts)


def load_session(
    con: duckdb.DuckDBPyConnection, day: dt.date, factors: Sequence[str] | None, source: str
) -> SessionForecast:
    """The stored volatilities and correlations of session `day` (only `factors` when given).

    Raises `ShowError` naming the nearest stored dates when `day` has no forecast, and the
    stored factors when a name in `factors` is not one of them.
    """
    if not _exists(con, "factor_volatility") or not _exists(con, "factor_correlation"):
        raise ShowError(f"{source} holds no forecasts yet: run `factorcov materialize` first")
    vol_rows = con.execute(
        "SELECT factor, volatility FROM factor_volatility WHERE date = ?", [day]
    ).fetchall()
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
    if _exists(con, "factor_returns"):
        groups.update(
            (f, g or "")
            for f, g in con.execute(
                "SELECT factor, any_value(factor_group) FROM factor_returns GROUP BY factor"
            ).fetchall()
            if f in index
        )
    corr_rows = con.execute(
        "SELECT factor_1, factor_2, correlation FROM factor_correlation WHERE date = ?", [day]
    ).fetchall()
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
