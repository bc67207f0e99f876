"""Materialisation metadata the UI renders: images, tables, and numbers per session.

- Numbers go on EACH partition's materialisation with that session's own value
  (`context.add_asset_metadata(..., partition_key=...)`, dagster's per-partition metadata of a
  range step), so Dagster's automatic metadata plots draw a time series, not a flat line.
- Figures (PNG inside markdown) and tables go on the range's LAST session only: a backfill of
  2,520 sessions then stores a handful of images, not thousands, and the UI stays fast. The
  latest materialisation of an asset (what its page shows first) always carries them.
- A run nobody will look at draws no figure (`without_figures`): `factorcov materialize`
  without DAGSTER_HOME runs in a throw-away instance whose events vanish with the process, and
  drawing was a third of a daily run (matplotlib's import 0.3 s, six PNGs 0.4 s). Every number,
  table and check is the same; only the images are left out.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, TableRecord, TableSchema

# False while a run nobody will see is executed (`without_figures`); a ContextVar, so that it
# holds for the steps of that run only (the in-process executor runs them in the caller's thread).
_FIGURES: ContextVar[bool] = ContextVar("factorcov_draw_figures", default=True)


def figures_wanted() -> bool:
    """Whether this run's figures are drawn: always, except inside `without_figures`."""
    return _FIGURES.get()


@contextmanager
def without_figures() -> Iterator[None]:
    """Within this block, the assets put no figure in their metadata (module docstring)."""
    token = _FIGURES.set(False)
    try:
        yield
    finally:
        _FIGURES.reset(token)


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
    by_key = {str(day): dict(e) for day, e in values.items() if str(day) in keys}
    if not _add_in_one_pass(context, by_key):
        for key, entries in by_key.items():
            context.add_asset_metadata(entries, partition_key=key)


def _add_in_one_pass(context: AssetExecutionContext, by_key: Mapping[str, dict]) -> bool:
    """What `context.add_asset_metadata(m, partition_key=k)` does for every k, in one pass.

    Why: in dagster 1.13 each call lists every partition key of the step's range (to check that
    `k` is in it) and rebuilds the step's immutable metadata record with every entry so far, so
    a call per session costs O(range) and a range O(range^2): 10.8 of 33 s (profiled) for the
    2,263 sessions of a user factor file. The keys here are checked once against the range
    (`per_session`), and the record is built once with the same handles
    (`AssetMetadataHandle(asset_key, partition_key)`) and the same merge (new keys win) as
    `with_additional_asset_metadata`. Relies on dagster internals (pinned < 1.14); when they are
    not there, returns False and the caller uses the public API. Tested: each session's
    materialisation carries its own values (tests/test_ui_instance.py).
    """
    try:
        from dagster._core.execution.context.metadata_logging import (
            AssetMetadataHandle,
            OutputMetadataAccumulator,
        )

        step = context._step_execution_context
        current = step._metadata_accumulator.per_output_metadata
    except (ImportError, AttributeError):
        return False
    asset_key = context.asset_key
    merged = dict(current)
    for key, entries in by_key.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **entries}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)
    return True


def on_last_session(context: AssetExecutionContext, metadata: Mapping[str, Any]) -> None:
    """Figures, tables and settings on the range's last session only."""
    context.add_asset_metadata(dict(metadata), partition_key=context.partition_keys[-1])
