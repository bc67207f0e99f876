"""Materialisation metadata the UI renders: images, tables, and numbers per session.

- Numbers go on EACH partition's materialisation with that session's own value
  (`context.add_asset_metadata(..., partition_key=...)`, dagster's per-partition metadata of a
  range step), so Dagster's automatic metadata plots draw a time series, not a flat line.
- Figures (PNG inside markdown) and tables go on the range's LAST session only: a backfill of
  2,520 sessions then stores a handful of images, not thousands, and the UI stays fast. The
  latest materialisation of an asset (what its page shows first) always carries them.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, TableRecord, TableSchema

_TYPES = {pl.Float64: "float", pl.Float32: "float", pl.Date: "date", pl.String: "string"}


def image(png: bytes, title: str) -> MetadataValue:
    """A PNG rendered by the UI: markdown with a data URI (dagster renders markdown metadata)."""
    encoded = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def table(frame: pl.DataFrame, float_digits: int = 6, max_rows: int = 200) -> MetadataValue:
    """A polars frame as Dagster table metadata (typed columns, one record per row)."""
    shown = frame.head(max_rows).with_columns(pl.selectors.float().round_sig_figs(float_digits))
    schema = TableSchema.from_name_type_dict(
        {
            name: _TYPES.get(dtype, "int" if dtype.is_integer() else "string")
            for name, dtype in shown.schema.items()
        }
    )
    records = [
        TableRecord({k: _cell(v) for k, v in row.items()}) for row in shown.iter_rows(named=True)
    ]
    return MetadataValue.table(records=records, schema=schema)


def per_session(
    context: AssetExecutionContext, values: Mapping[dt.date, Mapping[str, float | int]]
) -> None:
    """Each session's own numbers on that session's materialisation (sessions of the range
    only; a session with no value gets none)."""
    keys = set(context.partition_keys)
    for day, entries in values.items():
        key = str(day)
        if key in keys:
            context.add_asset_metadata(dict(entries), partition_key=key)


def on_last_session(context: AssetExecutionContext, metadata: Mapping[str, Any]) -> None:
    """Figures, tables and settings on the range's last session only."""
    context.add_asset_metadata(dict(metadata), partition_key=context.partition_keys[-1])
