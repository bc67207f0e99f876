"""`factorcov show DATE`: one session's factor volatilities and correlation matrix, readable in
a terminal of 100 columns.

Plain Python (no Dagster); the numbers are read by `api/session.py`. The volatilities are
listed highest first and numbered; the numbers label the rows and columns of the correlation
matrix below them (so the table doubles as the matrix's legend and no factor name is
shortened), and a matrix wider than the terminal is printed in blocks of columns
(`terminal.grid`). The numbers are read from `factor_volatility`
and `factor_correlation` as stored (annualised volatilities, see the README's SQL contract).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import numpy as np

from factorcov_pipeline.render.textgrid import fold, grid

VOL_DECIMALS = 6
CORR_DECIMALS = 3


class SessionView(Protocol):
    """One session's forecasts (`api.session.SessionForecast`), factors ordered by volatility,
    highest first; `correlation[i, j]` is the correlation of `factors[i]` and `factors[j]`."""

    date: dt.date
    factors: list[str]
    groups: list[str]
    volatility: np.ndarray
    correlation: np.ndarray


def render_session(forecast: SessionView, width: int, source: str) -> str:
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
