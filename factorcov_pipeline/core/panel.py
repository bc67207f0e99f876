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


def matrix_to_long(
    dates: Sequence[dt.date], names: Sequence[str], values: np.ndarray, value: str
) -> pl.DataFrame:
    """Long frame (date, factor, value) of a (T, K) array."""
    t, k = values.shape
    return pl.DataFrame(
        {
            "date": pl.Series(np.repeat(np.asarray(dates, dtype="datetime64[D]"), k)).cast(pl.Date),
            "factor": np.tile(np.asarray(names, dtype=object), t).tolist(),
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
    """Long frame (date, factor_1, factor_2, value) of a (T, K, K) array, full K x K per date."""
    t, k, _ = values.shape
    arr_names = np.asarray(names, dtype=object)
    return pl.DataFrame(
        {
            "date": pl.Series(np.repeat(np.asarray(dates, dtype="datetime64[D]"), k * k)).cast(
                pl.Date
            ),
            "factor_1": np.tile(np.repeat(arr_names, k), t).tolist(),
            "factor_2": np.tile(np.tile(arr_names, k), t).tolist(),
            value: values.reshape(-1),
        }
    )
