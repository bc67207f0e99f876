"""The bias summary tables (`forecast_bias_summary`, `risk_backtest_summary`): computed from the
stored outcomes of the whole history, replaced as a whole by every run, and read back for the
assets' metadata (issue 21.5: what the UI shows is in SQL too).

A summary covers every stored outcome, not only the run's range: a daily run's summary is the
history's, as the full-sample statistic means. Runs of chunks that store outcomes concurrently
(`factorcov materialize --parallel`) could each read the outcomes before another's commit; so
after replacing the summary, a run reads the outcome table's row count and date span again and
recomputes while they changed (the last summary written then covers every outcome committed
before it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import polars as pl
from dagster import MetadataValue

from factorcov_pipeline.core.backtest import SAMPLE_ALL, SAMPLE_WARM, outcome_summary
from factorcov_pipeline.core.settings import DEFAULT_MODEL
from factorcov_pipeline.orchestration.metadata import table
from factorcov_pipeline.storage import Store, TableWrite, quote_ident
from factorcov_pipeline.storage.contract import MODEL_COLUMN, WHOLE_TABLE_SPAN

OUTCOME_COLUMNS = "date, portfolio, portfolio_kind, realised_return, predicted_risk, warm"
MAX_ROUNDS = 5
# Shown in the metadata, in this order.
SHOWN = (
    "portfolio",
    "portfolio_kind",
    "n_obs",
    "full_sample_bias",
    "band_low",
    "band_high",
    "n_windows_12m",
    "share_12m_inside_band",
    "min_12m_bias",
    "max_12m_bias",
    "first_date",
    "last_date",
)
LABELS = {
    SAMPLE_WARM: "after_warmup",  # the default reading
    SAMPLE_ALL: "all_dates",
}


def _fingerprint(store: Store, outcomes: str, model: str) -> tuple[Any, ...]:
    clause, params = store.model_clause(outcomes, model)
    row = store.read(
        f"SELECT count(*) AS n, min(date) AS a, max(date) AS b FROM {quote_ident(outcomes)} "
        f"WHERE 1 = 1{clause}",
        params,
    )
    return tuple(row.row(0))


def replace_summary(
    store: Store,
    outcomes: str,
    summary: str,
    identity: Mapping[str, Any],
    warm_of: Callable[[list[dt.date]], np.ndarray] | None = None,
    model: str = DEFAULT_MODEL,
) -> pl.DataFrame:
    """Replace covariance model `model`'s rows of `summary` with `core.backtest.outcome_summary`
    of its every row of `outcomes` (module docstring) and return them as stored (with the
    `model` column). ``identity``: the write's identity arguments (`assets.models.identity`).
    ``warm_of`` gives the warm flags of dates whose stored `warm` is NULL (rows written before
    the column existed)."""
    frame = pl.DataFrame()
    clause, params = store.model_clause(outcomes, model)
    for _ in range(MAX_ROUNDS):
        before = _fingerprint(store, outcomes, model)
        rows = store.read(
            f"SELECT {OUTCOME_COLUMNS} FROM {quote_ident(outcomes)} WHERE 1 = 1{clause} "
            "ORDER BY date, portfolio",
            params,
        )
        if warm_of is not None and rows.height and rows["warm"].null_count():
            unknown = rows.filter(pl.col("warm").is_null())["date"].unique().sort().to_list()
            flags = warm_of(unknown)
            known = pl.DataFrame(
                {"date": unknown, "_w": flags}, schema={"date": pl.Date, "_w": pl.Boolean}
            )
            rows = (
                rows.join(known, on="date", how="left", maintain_order="left")
                .with_columns(pl.col("warm").fill_null(pl.col("_w")))
                .drop("_w")
            )
        frame = outcome_summary(rows).with_columns(
            pl.lit(model, dtype=pl.String).alias(MODEL_COLUMN)
        )
        write = TableWrite(summary, frame, keys={MODEL_COLUMN: [model]})
        store.replace([write], WHOLE_TABLE_SPAN, **identity)
        if _fingerprint(store, outcomes, model) == before:
            break
    return frame


def metadata(summary: pl.DataFrame, name: str) -> dict[str, Any]:
    """The summary as metadata tables, one per sample, labelled `<name>_after_warmup` (the
    forecasts after their warm-up, the default reading) and `<name>_all_dates`."""
    out: dict[str, Any] = {}
    for sample, label in LABELS.items():
        part = summary.filter(pl.col("sample") == sample).select(SHOWN)
        if part.height:
            out[f"{name}_{label}"] = table(part)
    return out


def headline(summary: pl.DataFrame, portfolio: str, key: str) -> dict[str, Any]:
    """`<key>_after_warmup` and `<key>_all_dates`: one portfolio's full-sample bias statistic
    in each sample (omitted when undefined)."""
    out: dict[str, Any] = {}
    for sample, label in LABELS.items():
        row = summary.filter((pl.col("sample") == sample) & (pl.col("portfolio") == portfolio))
        if row.height and row["full_sample_bias"][0] is not None:
            out[f"{key}_{label}"] = float(row["full_sample_bias"][0])
    return out


def mean_bias(summary: pl.DataFrame, key: str) -> dict[str, Any]:
    """`<key>_after_warmup` / `_all_dates`: the mean full-sample bias statistic over the
    portfolios of each sample, and the largest number of outcomes it rests on."""
    out: dict[str, Any] = {}
    for sample, label in LABELS.items():
        part = summary.filter(pl.col("sample") == sample).drop_nulls("full_sample_bias")
        if part.height:
            out[f"{key}_{label}"] = float(part["full_sample_bias"].mean())  # type: ignore[arg-type]
            out[f"{key}_n_obs_{label}"] = int(part["n_obs"].max())  # type: ignore[arg-type]
    return out


def note(warmup: int, overridden: bool) -> MetadataValue:
    """What `after_warmup` means, for the UI."""
    source = "warmup_length" if overridden else "derived from the half-lives (core/warmup.py)"
    return MetadataValue.md(
        f"`*_after_warmup`: outcomes of forecasts made after their warm-up of {warmup} "
        f"session(s) with returns ({source}); `*_all_dates`: every outcome."
    )
