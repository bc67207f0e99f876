"""Holdings: validation of a holdings frame and its alignment on a risk model's asset axis.

Pure polars/numpy (reading the files is `api/holdings.py`). Holdings have columns
``asset_id, weight`` (one portfolio) or ``portfolio, asset_id, weight`` (standing portfolios).
Weights are used as given (not renormalised). Refused with a one-line `HoldingsError` naming the
source: a missing column, no rows, a ``weight`` column that is not of a numeric type (dates,
datetimes, booleans, text, structs: a date cast to a number is a count of days, not a weight),
an integer weight beyond 2^53 (not exactly a float64: 2^64 - 1 is usually -1 stored unsigned),
a null/NaN/infinite weight (naming the assets), an asset listed twice in a portfolio (naming
them), and, on a date, asset ids that are not in the model (naming them; ``drop_unknown`` leaves
them out and reports the weight dropped). Asset ids and sources are echoed with control
characters escaped (`printable`): an id holding a terminal escape sequence is shown, not run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.core.portfolio import RiskSnapshot


class HoldingsError(ValueError):
    """A holdings file is unusable; the message names the file and what is wrong."""


# Integers beyond this magnitude are not all exactly representable as float64 (53-bit mantissa).
EXACT_INTEGER = 2**53


def printable(text: object) -> str:
    """``text`` with every non-printable character (ANSI escapes, newlines, NUL, ...) written as
    its Python escape (``\\x1b``), so that a message echoing user data stays one plain line."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


def brief(items: Sequence[Any], shown: int = 5) -> str:
    """The first ``shown`` items, printable, and how many there are in all."""
    text = ", ".join(printable(i) for i in items[:shown])
    return text + (f" ... ({len(items)} in all)" if len(items) > shown else "")


def _numeric_weights(frame: pl.DataFrame, source: str) -> pl.Series:
    """The ``weight`` column as Float64, refusing a column that is not of a numeric type and
    integers that float64 cannot hold exactly."""
    w = frame["weight"]
    if w.dtype == pl.Null:  # every weight missing: the null check names the assets
        return w.cast(pl.Float64)
    if not w.dtype.is_numeric():
        raise HoldingsError(
            f"holdings {source}: column weight is not numeric (type {w.dtype}); "
            "weights must be numbers"
        )
    if w.dtype.is_integer():
        big = frame.filter((pl.col("weight") > EXACT_INTEGER) | (pl.col("weight") < -EXACT_INTEGER))
        if big.height:
            first = big.row(0, named=True)
            raise HoldingsError(
                f"holdings {source}: weight {first['weight']} of asset "
                f"{printable(first['asset_id'])} is an integer beyond 2^53, which a float64 "
                f"cannot hold exactly ({big.height} such weight(s); 2^64 - 1 is usually -1 "
                "stored as an unsigned integer)"
            )
    return w.cast(pl.Float64)


def validate_holdings(frame: pl.DataFrame, source: str, standing: bool = False) -> pl.DataFrame:
    """Checked holdings: ``(portfolio,) asset_id, weight`` with finite weights, no duplicate
    asset within a portfolio, at least one row. Refusals name ``source``."""
    needed = ["portfolio", "asset_id", "weight"] if standing else ["asset_id", "weight"]
    source = printable(source)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise HoldingsError(
            f"holdings {source}: missing column(s) {missing}; columns are "
            f"[{', '.join(repr(printable(c)) for c in frame.columns)}]"
        )
    if frame.height == 0:
        raise HoldingsError(f"holdings {source}: the file has no holdings (empty)")
    weight = _numeric_weights(frame, source)
    keys = needed[:-1]
    try:
        out = frame.select([pl.col(c).cast(pl.String) for c in keys]).with_columns(weight)
    except pl.exceptions.PolarsError:
        raise HoldingsError(
            f"holdings {source}: column(s) {keys} cannot be read as text (type "
            f"{', '.join(str(frame[c].dtype) for c in keys)})"
        ) from None
    empty_id = out.filter(
        pl.col("asset_id").is_null() | (pl.col("asset_id").str.strip_chars() == "")
    )
    if empty_id.height:
        raise HoldingsError(f"holdings {source}: {empty_id.height} row(s) with an empty asset_id")
    bad = out.filter(pl.col("weight").is_null() | ~pl.col("weight").is_finite())
    if bad.height:
        raise HoldingsError(
            f"holdings {source}: weight is missing, NaN or infinite for asset(s) "
            f"{brief(bad['asset_id'].to_list())}"
        )
    dup = out.group_by(keys).len().filter(pl.col("len") > 1).sort(keys)
    if dup.height:
        raise HoldingsError(
            f"holdings {source}: asset(s) listed more than once: {brief(dup['asset_id'].to_list())}"
        )
    return out


@dataclass
class AlignedHoldings:
    """Holdings on the model's asset axis: ``weights`` (P, N); ``unknown`` ids not in the
    model; ``dropped_weight`` (P,) their summed weight per portfolio (0 unless dropped)."""

    portfolios: list[str]
    weights: np.ndarray
    unknown: list[str]
    dropped_weight: np.ndarray


def align_holdings(
    model: RiskSnapshot, holdings: pl.DataFrame, day: dt.date, source: str, drop_unknown: bool
) -> AlignedHoldings:
    """Map validated holdings onto ``model``'s assets; unknown ids are refused (naming them)
    unless ``drop_unknown``."""
    source = printable(source)
    h = (
        holdings
        if "portfolio" in holdings.columns
        else holdings.with_columns(pl.lit("portfolio").alias("portfolio"))
    )
    names = list(dict.fromkeys(h["portfolio"].to_list()))
    ids = model.asset_ids
    apos = pl.DataFrame({"asset_id": ids, "_n": np.arange(len(ids))})
    ppos = pl.DataFrame({"portfolio": names, "_p": np.arange(len(names))})
    j = h.join(ppos, on="portfolio").join(apos, on="asset_id", how="left")
    unknown_rows = j.filter(pl.col("_n").is_null())
    unknown = sorted(set(unknown_rows["asset_id"].to_list()))
    if unknown and not drop_unknown:
        raise HoldingsError(
            f"holdings {source}: {len(unknown)} asset id(s) not in the model on {day}: "
            f"{brief(unknown)} (use --drop-unknown, or drop_unknown=True in the API, to leave "
            "them out)"
        )
    dropped = np.zeros(len(names))
    if unknown_rows.height:
        np.add.at(dropped, unknown_rows["_p"].to_numpy(), unknown_rows["weight"].to_numpy())
    known = j.filter(pl.col("_n").is_not_null())
    w = np.zeros((len(names), len(ids)))
    w[known["_p"].to_numpy(), known["_n"].to_numpy()] = known["weight"].to_numpy()
    return AlignedHoldings(names, w, unknown, dropped)
