"""What a risk report must be read with (issue 21, items 3 and 4): the warnings of
`RiskReport.warnings`, printed by `factorcov risk` on stderr and listed under ``"warnings"``.

From the stored tables of the date, for the assets held (a non-zero weight in the portfolio or
the benchmark):

* ``specific_risk.reason`` not NULL: the asset's specific risk was not estimated from its own
  returns (the only asset of its category, an exactly fitted model, too little history, ...);
* a specific risk below `NEAR_ZERO_SPECIFIC` (annualised): not an estimate of anything (an
  exactly fitted regression gives specific returns of 0 and specific risks of ~1e-17);
* ``regression_stats.exactly_fitted`` on the date: as many factors as assets with returns, so
  specific returns are 0 by construction;
* ``warm`` false on ``factor_covariance`` (the date) or ``specific_risk`` (held assets): the
  forecast is within its warm-up.

Columns a file does not have (``reason``, ``warm``: files written before they existed) give no
warning; NULL in ``warm`` is not a warm-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl

from factorcov_pipeline.api.reader import StoreReader
from factorcov_pipeline.core.holdings import brief, printable
from factorcov_pipeline.core.specific_risk import REASON_WORDS

# An annualised specific volatility below this is not an estimate (1e-4 % a year; real assets
# have 10-60 %, the exactly fitted case ~1e-17).
NEAR_ZERO_SPECIFIC = 1e-6


def risk_warnings(
    read: StoreReader,
    day: dt.date,
    held: Sequence[str],
    cov_clause: tuple[str, list[Any]] = ("", []),
) -> list[str]:
    """The warnings of a report on ``day`` for the ``held`` asset ids (module docstring);
    ``cov_clause`` selects the covariance model (``AND model = ?`` and its parameter)."""
    out: list[str] = []
    clause, params = cov_clause
    if "warm" in read.columns("factor_covariance"):
        n = read.rows(
            f"SELECT count(*) FROM factor_covariance WHERE date = ?{clause} AND warm = FALSE",
            [day, *params],
        )[0][0]
        if n:
            out.append(
                f"{day} is within the factor covariance's warm-up (factor_covariance.warm is "
                "false): its factor risk is not yet a reliable forecast"
            )
    stats = read.columns("regression_stats")
    if "exactly_fitted" in stats:
        fitted = read.rows(
            "SELECT count(*) FROM regression_stats WHERE date = ? AND exactly_fitted = TRUE",
            [day],
        )[0][0]
        if fitted:
            out.append(
                f"the factor regression of {day} is exactly fitted (as many factors as assets "
                "with returns; regression_stats.exactly_fitted): specific returns are 0 by "
                "construction and specific risks are not estimates"
            )
    spec_cols = read.columns("specific_risk")
    extra = [c for c in ("reason", "warm") if c in spec_cols]
    spec = read.frame(
        "SELECT asset_id, specific_risk"
        + "".join(f", {c}" for c in extra)
        + " FROM specific_risk WHERE date = ? ORDER BY asset_id",
        [day],
    ).filter(pl.col("asset_id").is_in(list(held)))
    if "reason" in extra:
        why = spec.filter(pl.col("reason").is_not_null())
        for reason, ids in (
            why.group_by("reason", maintain_order=True).agg("asset_id").sort("reason").iter_rows()
        ):
            words = REASON_WORDS.get(reason)
            out.append(
                f"specific risk on {day} not estimated from the asset's own returns "
                f"({printable(reason)}{': ' + words if words else ''}) for {len(ids)} held "
                f"asset(s): {brief(ids)}"
            )
    tiny = spec.filter(pl.col("specific_risk") < NEAR_ZERO_SPECIFIC)
    if tiny.height:
        out.append(
            f"specific risk below {NEAR_ZERO_SPECIFIC:g} on {day} for {tiny.height} held "
            f"asset(s): {brief(tiny['asset_id'].to_list())} (an exactly fitted model? such a "
            "value is not an estimate)"
        )
    if "warm" in extra:
        cold = spec.filter(pl.col("warm").not_())  # NULL is not a warm-up
        if cold.height:
            out.append(
                f"specific risk on {day} is within its warm-up (specific_risk.warm is false) "
                f"for {cold.height} held asset(s): {brief(cold['asset_id'].to_list())}"
            )
    return out
