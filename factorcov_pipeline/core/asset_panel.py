"""Long per-asset frames -> dense (T, N) / (T, N, S) arrays on one asset axis.

The specific risk recursion takes one block of dates with a fixed asset axis; the stored tables
are long (one row per date and asset):

    | date | asset_id | specific_return |          specific returns
    | date | asset_id | category | <style> ... |   exposures_wide (+ market_cap from universe)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass
class AssetPanel:
    """``asset_ids`` (N,), sorted; ``caps`` (T, N) NaN where absent; ``categories`` (T, N)
    codes into ``category_names`` (-1 where absent); ``styles`` (T, N, S);
    ``specific_returns`` (T, N) NaN where none."""

    dates: list[dt.date]
    asset_ids: np.ndarray
    caps: np.ndarray
    categories: np.ndarray
    category_names: list[str]
    styles: np.ndarray
    specific_returns: np.ndarray


def _cells(
    frame: pl.DataFrame, dates: list[dt.date], asset_ids: pl.Series
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """The rows of `frame` on the axes and their (date, asset) cells: the inner join on both
    axes of `core.panel.long_to_matrix`, done once for all of a frame's columns."""
    date_pos = pl.DataFrame({"date": dates, "_t": np.arange(len(dates))})
    asset_pos = pl.DataFrame({"asset_id": asset_ids, "_k": np.arange(len(asset_ids))})
    rows = frame.join(date_pos, on="date").join(asset_pos, on="asset_id")
    return rows, rows["_t"].to_numpy(), rows["_k"].to_numpy()


def _matrix(shape: tuple[int, int], t: np.ndarray, k: np.ndarray, values: pl.Series) -> np.ndarray:
    """(T, N) array of the values at cells (t, k), NaN elsewhere (nulls are NaN)."""
    out = np.full(shape, np.nan)
    out[t, k] = values.cast(pl.Float64).to_numpy()
    return out


def asset_panel(
    dates: Sequence[dt.date],
    exposures: pl.DataFrame,
    styles: Sequence[str],
    specific_returns: pl.DataFrame,
) -> AssetPanel:
    """Arrays of ``exposures`` (date, asset_id, market_cap, category, styles...) and
    ``specific_returns`` (date, asset_id, specific_return) for ``dates``; the asset axis is
    the sorted union of both frames' ids. Each frame is joined to the axes once; its columns
    are then placed with numpy (the cells of `core.panel.long_to_matrix`, column by column)."""
    dates = list(dates)
    ids = pl.concat([exposures.select("asset_id"), specific_returns.select("asset_id")]).unique()
    asset_ids = np.sort(ids["asset_id"].to_numpy().astype(np.str_))
    names = pl.Series("asset_id", asset_ids.tolist(), dtype=pl.String)
    shape = (len(dates), len(asset_ids))
    category_names = sorted(exposures["category"].drop_nulls().unique().to_list())
    categories = np.full(shape, -1, dtype=np.int64)
    caps = np.full(shape, np.nan)
    style_arr = np.full((*shape, len(styles)), np.nan)
    if exposures.height:
        rows, t, k = _cells(exposures, dates, names)
        caps = _matrix(shape, t, k, rows["market_cap"])
        code = rows["category"].replace_strict(
            category_names, list(range(len(category_names))), default=None, return_dtype=pl.Int64
        )
        known = code.is_not_null().to_numpy()
        categories[t[known], k[known]] = code.drop_nulls().to_numpy()
        for j, s in enumerate(styles):
            style_arr[:, :, j] = _matrix(shape, t, k, rows[s])
    spec = np.full(shape, np.nan)
    if specific_returns.height:
        rows, t, k = _cells(specific_returns, dates, names)
        spec = _matrix(shape, t, k, rows["specific_return"])
    return AssetPanel(dates, asset_ids, caps, categories, category_names, style_arr, spec)
