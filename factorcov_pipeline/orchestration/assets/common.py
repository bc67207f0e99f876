"""What every asset shares: partitioning, the backfill policy, the model's factors, and the
lookup of a recursion's stored state."""

import datetime as dt
import logging
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
from dagster import BackfillPolicy, DagsterLogManager, Failure, MetadataValue

from factorcov_pipeline import environment
from factorcov_pipeline.core.factors import FactorSet, factor_set_for
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2
from factorcov_pipeline.core.user_factors import user_factor_returns
from factorcov_pipeline.orchestration.catchup import gap_message
from factorcov_pipeline.orchestration.partitions import trading_sessions
from factorcov_pipeline.storage import TABLE_COLUMNS, Store

# Every asset is partitioned by session and backfills a range in ONE run (the EWMA recursions
# need the dates in order, and one run avoids a process per date).
PARTITIONED = {
    "partitions_def": trading_sessions,
    "backfill_policy": BackfillPolicy.single_run(),
}

# Heavy assets (universe, exposures, regression) process a long range in chunks of this many
# sessions, each chunk one transaction, so memory stays bounded at 10 years x 10,000 assets.
CHUNK_SESSIONS = environment.chunk_sessions()  # FACTORCOV_CHUNK_SESSIONS
# Per-chunk bound on the cells of per-asset data (assets x (2 + styles)): 63 sessions at
# 10,000 assets x 19 styles. Since exposures are stored wide (no 500M long rows), a chunk's
# frames are small; larger chunks mean fewer transactions (each DuckDB commit and checkpoint
# costs about as much as writing 20 sessions; benchmark 5).
ROWS_PER_CHUNK = 14_000_000

# Sessions that have data but no factor returns (no asset with a return): written by the
# factor_returns asset, read by `return_dates` so that the EWMA recursions treat them as missing
# observations (pandas `ignore_na=False`: the weights decay, nothing is added).
GAP_TABLE = "factor_return_gaps"

CATEGORY_COLUMN = {"economic_sector": "sector", "industry_group": "industry_group"}


class MissingUpstreamError(Failure):
    """A partition's inputs (its own previous date, or an upstream date) are not materialised.

    A `dagster.Failure`, so that the UI shows the message itself first: a plain exception
    reaches the run's log as Dagster's "Error occurred while executing op ..." with the message
    further down, under the framework's stack ("View full message"). A Failure is the step's
    error (its description first, then its metadata: the command that fills the gap). Not
    retried: the gap is still there on a retry. Still raised and caught as an exception."""

    def __init__(self, message: str) -> None:
        command = re.search(r"`(factorcov materialize [^`]*)`", message)
        metadata = {"fill the gap": MetadataValue.text(command.group(1))} if command else {}
        super().__init__(description=message, metadata=metadata, allow_retries=False)


def model_factors(settings: FactorCovarianceReportSettingsV2) -> FactorSet:
    """The model's factors: Market, styles and categories as the settings define them, or,
    with `universe.factor_returns`, the factors of the user's file (names are data)."""
    path = settings.factor_model_settings.universe.factor_returns
    if path:
        return user_factor_returns(path).factors
    return factor_set_for(settings.factor_model_settings)


def user_model(settings: FactorCovarianceReportSettingsV2) -> bool:
    """The factor returns are the user's (`universe.factor_returns`): no universe, exposures
    or regression are computed."""
    return bool(settings.factor_model_settings.universe.factor_returns)


def category_column(settings: FactorCovarianceReportSettingsV2) -> str:
    return CATEGORY_COLUMN[settings.factor_model_settings.universe.trbc_level]


def settings_metadata(settings: FactorCovarianceReportSettingsV2) -> dict[str, Any]:
    return {
        "factor_cov_settings": MetadataValue.json(
            settings.factor_cov_settings.model_dump(mode="json")
        ),
        "non_default_settings": MetadataValue.json(settings.factor_cov_settings.non_default()),
    }


def date_span(dates: list[dt.date]) -> tuple[dt.date, dt.date]:
    return dates[0], dates[-1]


def require_dates(
    store: Store,
    table: str,
    dates: list[dt.date],
    needed_by: str,
    asset: str | None = None,
    end: dt.date | None = None,
    model: str | None = None,
) -> None:
    """Raise if any of `dates` has no rows in `table` (of covariance model `model` when given:
    an upstream partition is missing), naming the first session of the whole gap and the
    command that fills it; `asset` names the asset that writes `table` when the two names
    differ; `end` is the end of the range asked for (default: the last of `dates`)."""
    stored = set(store.stored_dates(table, min(dates), max(dates), model=model)) if dates else set()
    missing = [d for d in dates if d not in stored]
    if missing:
        raise MissingUpstreamError(
            gap_message(store, table, asset or table, missing[0], end or max(dates), needed_by)
        )


def stale_later_dates(
    store: Store, table: str, last: dt.date, log: logging.Logger | DagsterLogManager
) -> int:
    """How many stored dates after `last` were computed from the history this run replaces
    (logged as a warning: they must be re-materialised to follow the new history)."""
    stale = len(store.stored_dates(table, start=last + dt.timedelta(days=1)))
    if stale:
        log.warning(
            f"{stale} later date(s) of {table} were computed from the history this run "
            "replaced; re-materialise them"
        )
    return stale


def return_dates(store: Store, dates: list[dt.date], needed_by: str) -> list[dt.date]:
    """The dates of the range the EWMA recursions step through.

    Every session of the range from the first stored factor return on: a session with factor
    returns is an observation, a session recorded in GAP_TABLE (data but no returns) is a
    missing observation (a NaN row: decay, no update). A session that is neither has not been
    materialised upstream and is an error, never silently skipped.
    """
    all_returns = store.stored_dates("factor_returns")
    if not all_returns:
        return []
    wanted = [d for d in dates if d >= all_returns[0]]
    if not wanted:
        return []
    observed = set(all_returns) | set(store.stored_dates(GAP_TABLE))
    missing = [d for d in wanted if d not in observed]
    if missing:
        raise MissingUpstreamError(
            gap_message(store, "factor_returns", "factor_returns", missing[0], dates[-1], needed_by)
        )
    return wanted


def date_chunks(
    dates: list[dt.date], size: int = 0, rows_per_session: int = 0
) -> Iterator[list[dt.date]]:
    """Consecutive slices of `dates` of at most `size` (default CHUNK_SESSIONS) sessions, and
    of at most ROWS_PER_CHUNK rows when a session holds `rows_per_session` rows (so a 10,000-asset
    universe is written in smaller chunks than a 3,000-asset one)."""
    size = size or CHUNK_SESSIONS
    if rows_per_session > 0:
        size = max(1, min(size, ROWS_PER_CHUNK // rows_per_session))
    for i in range(0, len(dates), size):
        yield dates[i : i + size]


# Rows of a K x K table (correlation, covariance) per chunk of sessions: 2 million rows (about
# 100 MB in a frame). At 5 factors a 9-year range is one chunk (one transaction); at 72,
# 385 sessions. Fewer, larger transactions: each DuckDB commit costs about as much as
# writing tens of thousands of rows.
MATRIX_ROWS_PER_CHUNK = 2_000_000


def matrix_chunk_sessions(k: int) -> int:
    """Sessions per chunk of a K x K table (MATRIX_ROWS_PER_CHUNK rows)."""
    return max(1, MATRIX_ROWS_PER_CHUNK // max(1, k * k))


def read_panel(
    store: Store,
    table: str,
    start: dt.date,
    end: dt.date,
    names: tuple[str, ...],
    value: str,
    model: str | None = None,
) -> tuple[list[dt.date], np.ndarray]:
    """The dates stored in `table` in [start, end], ascending, and their `value` on the factor
    axis `names`: (T, K) for a table keyed by `factor`, (T, K, K) for one keyed by
    `factor_1, factor_2` in the SQL contract (`core.panel`; a missing factor is NaN), of
    covariance model `model` when given. A table not created yet has no dates."""
    frame = store.read_dates(table, start, end, model=model)
    # the distinct dates in polars, then a list: not a Python date per row (a 10-year K x K
    # table is a million rows, ~0.2 s per read, paid per covariance model and per reader)
    days = frame["date"].unique().sort().to_list() if frame.height else []
    if "factor_1" in TABLE_COLUMNS.get(table, frame.columns):
        return days, pairs_to_cube(frame, days, names, value)
    return days, long_to_matrix(frame, days, names, value)


def rows_per_session(settings: FactorCovarianceReportSettingsV2, factors: FactorSet) -> int:
    """Rough cells per session of the per-asset data (Market, the asset's category and every
    style for each asset), the memory measure `date_chunks` bounds by ROWS_PER_CHUNK."""
    return settings.factor_model_settings.universe.n_assets * (2 + len(factors.styles))
