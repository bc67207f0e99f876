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

from factorcov_pipeline.core.panel import long_to_matrix


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


def asset_panel(
    dates: Sequence[dt.date],
    exposures: pl.DataFrame,
    styles: Sequence[str],
    specific_returns: pl.DataFrame,
) -> AssetPanel:
    """Arrays of ``exposures`` (date, asset_id, market_cap, category, styles...) and
    ``specific_returns`` (date, asset_id, specific_return) for ``dates``; the asset axis is
    the sorted union of both frames' ids."""
    dates = list(dates)
    ids = pl.concat([exposures.select("asset_id"), specific_returns.select("asset_id")]).unique()
    asset_ids = np.sort(ids["asset_id"].to_numpy().astype(np.str_))
    names = asset_ids.tolist()
    caps = long_to_matrix(exposures, dates, names, "market_cap", key="asset_id")
    category_names = sorted(set(exposures["category"].drop_nulls().to_list()))
    coded = exposures.with_columns(
        pl.col("category")
        .replace_strict(category_names, list(range(len(category_names))), default=None)
        .cast(pl.Float64)
        .alias("_code")
    )
    codes = long_to_matrix(coded, dates, names, "_code", key="asset_id")
    categories = np.where(np.isfinite(codes), codes, -1).astype(np.int64)
    style_arr = (
        np.stack(
            [long_to_matrix(exposures, dates, names, s, key="asset_id") for s in styles], axis=2
        )
        if styles
        else np.zeros((len(dates), len(names), 0))
    )
    spec = long_to_matrix(specific_returns, dates, names, "specific_return", key="asset_id")
    return AssetPanel(dates, asset_ids, caps, categories, category_names, style_arr, spec)
