"""The `Store` interface: what the assets, checks and command need from a database.

Two implementations: `storage.duckdb.Store` (one DuckDB file, the default) and
`storage.postgres.PostgresStore` (a PostgreSQL database, `FACTORCOV_DATABASE_URL`). The Dagster
resources in `orchestration/resources.py` return one of them; nothing outside `storage/` knows
which. Queries sent through `read` are standard SQL with `?` placeholders (`JOIN ... USING`,
`lag() OVER`, `sum`, `stddev_pop`, `UNION ALL`; no `GROUP BY ALL`, no DuckDB casts): each store
translates the placeholders to its driver's style.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import polars as pl

from factorcov_pipeline.core.settings import DEFAULT_MODEL
from factorcov_pipeline.storage.contract import (
    DATE_COLUMN,
    MODEL_COLUMN,
    TableWrite,
    ViewDef,
    quote_ident,
)
from factorcov_pipeline.storage.query import QueryConnection
from factorcov_pipeline.storage.read_ahead import Chunk, Data, read_ahead, read_meanwhile
from factorcov_pipeline.storage.write_behind import write_behind


class BaseStore(ABC):
    """A database holding every table of the SQL contract, the forecaster state and the
    settings identity.

    Contract of every implementation (tested on both in tests/test_postgres*.py):
    `replace` is ONE transaction (a reader sees a partition's old rows or its new rows, never
    half; a process killed mid-write leaves the old rows), identifiers are quoted and values
    bound as parameters, and reads of the same rows give the same values bit for bit.
    """

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data is, for messages (a file path, or a URL without its password)."""

    @abstractmethod
    def read(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """The result of a standard-SQL query with `?` placeholders, as polars (via Arrow)."""

    @abstractmethod
    def connect_query_only(self, timeout: float = 0.0) -> AbstractContextManager[QueryConnection]:
        """A connection for untrusted SQL (`factorcov sql`, `factorcov show`) that cannot
        write anything, read other files or change settings; a query running longer than
        `timeout` seconds (0: no limit) is stopped. A store that cannot be opened raises
        `StoreFileError` or `StoreBusyError` (one line)."""

    @abstractmethod
    def read_dates(
        self,
        table: str,
        start: dt.date,
        end: dt.date,
        columns: str = "*",
        order: str = "",
        model: str | None = None,
    ) -> pl.DataFrame:
        """Rows of `table` with date in [start, end] (empty frame if the table is missing),
        only covariance model `model`'s when given (`model_clause`)."""

    @abstractmethod
    def stored_dates(
        self,
        table: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        model: str | None = None,
    ) -> list[dt.date]:
        """The distinct dates stored in `table`, optionally only those in [start, end] and only
        covariance model `model`'s (`model_clause`)."""

    @abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether a table or view `name` exists in the store's schema."""

    def has_rows_before(self, table: str, day: dt.date, model: str | None = None) -> bool:
        """Whether `table` holds rows dated before `day` (of covariance model `model` when
        given); one row is looked up, not the history."""
        if not self.has_table(table):
            return False
        clause, params = self.model_clause(table, model)
        date_col = DATE_COLUMN.get(table, "date")
        frame = self.read(
            f"SELECT 1 AS one FROM {quote_ident(table)} WHERE {date_col} < ?{clause} LIMIT 1",
            [day, *params],
        )
        return frame.height > 0

    @abstractmethod
    def _column_exists(self, table: str, column: str) -> bool:
        """Whether `table` exists and has `column` (one catalog lookup)."""

    def has_column(self, table: str, column: str) -> bool:
        """Whether `table` has `column`; a column once found is remembered (columns are only
        ever added), one not found is looked up again (a write may add it)."""
        known: set[tuple[str, str]] = self.__dict__.setdefault("_known_columns", set())
        if (table, column) in known:
            return True
        if self._column_exists(table, column):
            known.add((table, column))
            return True
        return False

    def model_clause(self, table: str, model: str | None, alias: str = "") -> tuple[str, list[Any]]:
        """` AND model = ?` and its parameter, restricting a query of `table` to covariance
        model `model` (nothing when `model` is None). A table written before several models
        existed has no `model` column until its next write: its rows are all the `default`
        model's (` AND 1 = 0` for any other model)."""
        if model is None:
            return "", []
        prefix = f"{alias}." if alias else ""
        if self.has_column(table, MODEL_COLUMN):
            return f" AND {prefix}{MODEL_COLUMN} = ?", [model]
        return ("", []) if model == DEFAULT_MODEL else (" AND 1 = 0", [])

    @abstractmethod
    def read_state(self, asset: str, day: dt.date) -> bytes | None:
        """The forecaster state `asset` stored for `day`, or None."""

    @abstractmethod
    def latest_state(self, asset: str, on_or_before: dt.date) -> tuple[dt.date, bytes] | None:
        """The last stored recursion state of `asset` dated on or before `on_or_before`."""

    @abstractmethod
    def replace(
        self,
        writes: Sequence[TableWrite],
        dates: tuple[dt.date, dt.date],
        state: Mapping[str, Mapping[dt.date, bytes]] | None = None,
        settings_json: str | None = None,
        views: Sequence[ViewDef] = (),
        models: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the rows of dates in [start, end] of every table in `writes` (only those of
        each write's `keys`), the state and the views, checking the settings identity, all in
        ONE transaction. `models` (name -> settings JSON of each covariance model in force)
        are checked against `covariance_models`; those the writes' `model` keys name and the
        table does not list yet are added to it in the same transaction."""

    # Whether `write_behind` stores chunks on a background thread (the DuckDB store: DuckDB
    # inserts without holding Python's lock). PostgreSQL keeps writing in the step's thread.
    writes_in_background: bool = False

    def write_behind(self) -> AbstractContextManager[Any]:
        """A writer with this store's `replace` for a step's loop over chunks: with
        `writes_in_background`, chunk k is stored while the step computes chunk k + 1
        (`storage.write_behind`); every chunk is stored when the block ends."""
        if self.writes_in_background:
            self._before_background()
        return write_behind(self.replace, self.writes_in_background)

    # Whether `read_ahead` reads the next chunk on a background thread (the DuckDB store: a
    # second connection of the same database, its scans without Python's lock). PostgreSQL
    # reads in the step's thread.
    reads_in_background: bool = False

    def read_ahead(
        self, chunks: Iterable[Chunk], read: Callable[[Chunk], Data]
    ) -> Iterator[tuple[Chunk, Data]]:
        """``(chunk, read(chunk))`` for a step's loop over chunks: with
        `reads_in_background`, chunk k + 1 is read while the step computes chunk k
        (`storage.read_ahead`). `read` must not read the step's own table."""
        if self.reads_in_background:
            self._before_background()
        return read_ahead(chunks, read, self.reads_in_background)

    def read_meanwhile(
        self, read: Callable[[], Data]
    ) -> AbstractContextManager[Callable[[], Data]]:
        """`read()` started now (on a background thread with `reads_in_background`) while the
        block works; the block calls what it yields for the result (`storage.read_ahead`)."""
        if self.reads_in_background:
            self._before_background()
        return read_meanwhile(read, self.reads_in_background)

    def _before_background(self) -> None:  # noqa: B027 (a hook; nothing to open by default)
        """Called in the step's thread before a background writer or reader starts: what the
        background connection should share is opened here (`Store`)."""

    @abstractmethod
    def remove(
        self, tables: Sequence[str], dates: tuple[dt.date, dt.date], state_assets: Sequence[str]
    ) -> list[str]:
        """Delete the rows of dates in [start, end] from `tables` and the recursion states of
        `state_assets` in ONE transaction (after a failed run, `orchestration.consistency`);
        returns the tables that had rows there."""

    @abstractmethod
    def check_identity(self, settings_json: str, models: Mapping[str, str] | None = None) -> None:
        """Before a run writes anything: refuse a store made with other settings, or holding
        data but no settings row, or a covariance model of `models` (name -> settings JSON)
        that it holds with other settings (`SettingsMismatchError`). Read-only."""

    @abstractmethod
    def stored_models(self) -> dict[str, str]:
        """The covariance models the store holds (`covariance_models`): name -> settings
        JSON, in the order they were added; empty before the table exists."""

    @abstractmethod
    def stored_settings(self) -> str | None:
        """The settings JSON the database was built with, or None before the first write."""

    @abstractmethod
    def table_names(self) -> list[str]:
        """Every table and view of the store's schema, sorted (tests, tools)."""
