"""Degenerate regression dates, named: which dates are exactly fitted or have a category with
no asset or with one asset (from `regression_stats`, core/regression.py).

`regression_stats` records per date: `exactly_fitted` (no more assets than factors, or
R^2 = 1: every specific return is 0), `empty_categories` (category factors with no asset:
factor return 0) and `single_asset_categories` (that asset's specific return is 0 by
construction). Used by the `factor_returns` asset's warning and the
`regression_degenerate_cases` check (orchestration/degenerate.py).
"""

from __future__ import annotations

import datetime as dt

import polars as pl


def brief_dates(dates: list[dt.date], shown: int = 5) -> str:
    """The first few dates of a list for a message ("2025-04-01, 2025-04-02 ...")."""
    return ", ".join(str(d) for d in dates[:shown]) + (" ..." if len(dates) > shown else "")


CASES = {
    "exactly_fitted": "exactly fitted (n_assets <= factors or R^2 = 1; specific returns 0)",
    "empty_categories": "categories with no asset (factor return 0)",
    "single_asset_categories": "categories with one asset (its specific return is 0)",
}


def degenerate_cases(stats: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Per case, the dates (and for the category cases the categories) where it occurs."""
    out: dict[str, pl.DataFrame] = {}
    if stats.height == 0 or "exactly_fitted" not in stats.columns:
        return out
    fitted = stats.filter(pl.col("exactly_fitted").fill_null(False))
    if fitted.height:
        out["exactly_fitted"] = fitted.select("date", "n_assets", "r_squared").sort("date")
    for col in ("empty_categories", "single_asset_categories"):
        hit = stats.filter(pl.col(col).is_not_null()).select("date", col).sort("date")
        if hit.height:
            out[col] = hit
    return out


def describe(cases: dict[str, pl.DataFrame]) -> list[str]:
    """One line per case: how many dates, the first dates and, for categories, their names."""
    lines = []
    for case, frame in cases.items():
        dates: list[dt.date] = frame["date"].to_list()
        line = f"{len(dates)} date(s) {CASES[case]}: {brief_dates(dates)}"
        if case != "exactly_fitted":
            names = sorted({n for v in frame[case].to_list() for n in v.split("; ")})
            line += f" [{'; '.join(names)}]"
        lines.append(line)
    return lines
