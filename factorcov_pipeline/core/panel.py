"""Moving between long polars frames (date, factor, value) and dense (T, K) / (T, K, K) arrays."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl


def long_to_matrix(
    frame: pl.DataFrame,
    dates: Sequence[dt.date],
    names: Sequence[str],
    value: str,
    key: str = "factor",
) -> np.ndarray:
    """(T, K) array of `value` for `dates` x `names`; cells without a row are NaN."""
    out = np.full((len(dates), len(names)), np.nan)
    if frame.height == 0:
        return out
    date_pos = pl.DataFrame({"date": list(dates), "_t": np.arange(len(dates))})
    name_pos = pl.DataFrame({key: list(names), "_k": np.arange(len(names))})
    idx = frame.join(date_pos, on="date").join(name_pos, on=key)
    out[idx["_t"].to_numpy(), idx["_k"].to_numpy()] = idx[value].to_numpy()
    return out


def date_series(dates: Sequence[dt.date], n: int) -> pl.Series:
    """The dates as a polars Date series, checked to number `n`."""
    s = pl.Series("date", list(dates))
    if s.dtype != pl.Date:
        s = s.cast(pl.Date)
    if s.len() != n:
        raise ValueError(f"{s.len()} dates for arrays with {n} dates")
    return s


def name_series(names: Sequence[str], k: int) -> pl.Series:
    """The factor names as a polars String series, checked to be `k` unique names."""
    names = list(names)
    if len(names) != k:
        raise ValueError(f"{len(names)} factor names for arrays with {k} factors")
    if len(set(names)) != k:
        raise ValueError("factor names must be unique")
    return pl.Series("factor", names, dtype=pl.String)


def matrix_to_long(
    dates: Sequence[dt.date], names: Sequence[str], values: np.ndarray, value: str
) -> pl.DataFrame:
    """Long frame (date, factor, value) of a (T, K) array, date-major, factors in input order."""
    values = np.asarray(values, dtype=np.float64)
    t, k = values.shape
    d = date_series(dates, t)
    n = name_series(names, k)
    return pl.DataFrame(
        {
            "date": d.gather(np.repeat(np.arange(t), k)),
            "factor": n.gather(np.tile(np.arange(k), t)),
            value: values.reshape(-1),
        }
    )


def pairs_to_cube(
    frame: pl.DataFrame, dates: Sequence[dt.date], names: Sequence[str], value: str
) -> np.ndarray:
    """(T, K, K) array from a long frame (date, factor_1, factor_2, value); missing cells NaN."""
    out = np.full((len(dates), len(names), len(names)), np.nan)
    if frame.height == 0:
        return out
    date_pos = pl.DataFrame({"date": list(dates), "_t": np.arange(len(dates))})
    pos1 = pl.DataFrame({"factor_1": list(names), "_i": np.arange(len(names))})
    pos2 = pl.DataFrame({"factor_2": list(names), "_j": np.arange(len(names))})
    idx = frame.join(date_pos, on="date").join(pos1, on="factor_1").join(pos2, on="factor_2")
    out[idx["_t"].to_numpy(), idx["_i"].to_numpy(), idx["_j"].to_numpy()] = idx[value].to_numpy()
    return out


def cube_to_pairs(
    dates: Sequence[dt.date], names: Sequence[str], values: np.ndarray, value: str
) -> pl.DataFrame:
    """Long frame (date, factor_1, factor_2, value) of a (T, K, K) array, full K x K per date,
    row-major."""
    values = np.asarray(values, dtype=np.float64)
    t, k, k2 = values.shape
    if k != k2:
        raise ValueError(f"(T, K, K) expected, got {values.shape}")
    d = date_series(dates, t)
    n = name_series(names, k)
    return pl.DataFrame(
        {
            "date": d.gather(np.repeat(np.arange(t), k * k)),
            "factor_1": n.gather(np.tile(np.repeat(np.arange(k), k), t)).alias("factor_1"),
            "factor_2": n.gather(np.tile(np.arange(k), t * k)).alias("factor_2"),
            value: values.reshape(-1),
        }
    )
