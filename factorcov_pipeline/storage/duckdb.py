"""DuckDB storage (the default store): transactional partition writes and the model's identity.

Plain Python (no Dagster), used by the Dagster resource in `orchestration/resources.py`.

Why not `DuckDBPolarsIOManager`: with duckdb 2.x it cannot load tables (it calls the removed
`.arrow()`), its delete-then-insert is two autocommit statements (a crash between them loses the
partition), and it inserts by column position. Here every write of a partition (or a range of
partitions) is one transaction: old rows of those dates deleted and new rows inserted together,
matched by column name (`INSERT ... BY NAME`). A crash at any point leaves either the old rows or
the new ones (DuckDB's write-ahead log is replayed or discarded on the next open).

DuckDB allows one writing process per file; a second process gets "Could not set lock on file".
`connect()` retries with backoff for `lock_timeout` seconds and then raises `StoreBusyError`
naming the file, so two runs started at once serialise instead of failing at random.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from factorcov_pipeline.storage.base import BaseStore
from factorcov_pipeline.storage.contract import (
    DATE_COLUMN,
    SETTINGS_TABLE,
    STATE_TABLE,
    TABLE_COLUMNS,
    SettingsMismatchError,
    StoreBusyError,
    TableWrite,
    ViewDef,
    _diff_settings,
    quote_ident,
)

DEFAULT_DATABASE = "data/factorcov.duckdb"
ENV_DATABASE = "FACTORCOV_DUCKDB"
ENV_MEMORY = "FACTORCOV_DUCKDB_MEMORY"
DEFAULT_MEMORY_LIMIT = "1536MB"


def query_polars(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> pl.DataFrame:
    """The result of a query as polars, through Arrow (duckdb 2 has no `.pl()` on a
    connection's result). Through a relation (`con.sql`), not `con.execute(...)`: DuckDB then
    hands its result chunks to Arrow without the extra copy of the rows a DB-API cursor makes
    (about 3x faster on millions of rows, and half the peak memory of a read at scale). A
    statement without a result gives an empty frame."""
    rel = con.sql(sql, params=list(params) if params else None)
    if rel is None:
        return pl.DataFrame()
    frame = pl.from_arrow(rel.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> None:
    """Execute a statement whose result is not needed and finish it (duckdb 2 refuses further
    work on a connection with an unfinished result)."""
    con.execute(sql, list(params or [])).fetchall()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """The first row of a query (or None), with the result fully consumed."""
    rows = con.execute(sql, list(params or [])).fetchall()
    return rows[0] if rows else None


def _is_lock_error(err: Exception) -> bool:
    text = str(err)
    return "Could not set lock" in text or "Conflicting lock" in text


class Store(BaseStore):
    """One DuckDB file holding every table of the pipeline."""

    def __init__(self, path: str | os.PathLike[str], lock_timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        # DuckDB's own default is 80% of RAM; joins over 10 years of exposures then take GiBs.
        # With a limit it spills to disk instead (FACTORCOV_DUCKDB_MEMORY, e.g. "4GB").
        self.memory_limit = os.environ.get(ENV_MEMORY) or DEFAULT_MEMORY_LIMIT

    @classmethod
    def from_env(cls, lock_timeout: float = 120.0) -> Store:
        return cls(os.environ.get(ENV_DATABASE) or DEFAULT_DATABASE, lock_timeout)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (bounded) while another process holds the file."""
        if read_only and not self.path.exists():
            raise FileNotFoundError(
                f"DuckDB file {self.path} does not exist yet: run a materialisation first"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(
                    str(self.path), read_only=read_only, config={"memory_limit": self.memory_limit}
                )
                break
            except duckdb.IOException as err:
                if not _is_lock_error(err):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"DuckDB file {self.path} is locked by another process (a run is writing) "
                        f"and stayed locked for {self.lock_timeout:.0f} s; try again when it ends"
                    ) from err
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield con
        finally:
            con.close()

    # ---- reads -------------------------------------------------------------------------

    def table_type(self, con: duckdb.DuckDBPyConnection, name: str) -> str | None:
        """'BASE TABLE' or 'VIEW' for a relation of the main schema, None if there is none."""
        row = _one(
            con,
            "SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_name = ?",
            [name],
        )
        return None if row is None else str(row[0])

    def table_exists(self, con: duckdb.DuckDBPyConnection, table: str) -> bool:
        """A table or view named `table` exists."""
        return self.table_type(con, table) is not None

    def read(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return query_polars(con, sql, params)

    def read_dates(
        self, table: str, start: dt.date, end: dt.date, columns: str = "*", order: str = ""
    ) -> pl.DataFrame:
        """Rows of `table` with date in [start, end] (empty frame if the table is missing)."""
        date_col = DATE_COLUMN.get(table, "date")
        with self.connect() as con:
            if not self.table_exists(con, table):
                return pl.DataFrame()
            sql = f"SELECT {columns} FROM {quote_ident(table)} WHERE {date_col} BETWEEN ? AND ?"
            if order:
                sql += f" ORDER BY {order}"
            return query_polars(con, sql, [start, end])

    def stored_dates(
        self, table: str, start: dt.date | None = None, end: dt.date | None = None
    ) -> list[dt.date]:
        """The distinct dates stored in `table`, optionally only those in [start, end].

        Pass the range whenever the caller needs only some dates: DuckDB then skips the row
        groups outside it (min/max zone maps on the date column, which is written in date
        order), so a daily run's lookups do not scan the whole history (benchmark 4).
        """
        date_col = DATE_COLUMN.get(table, "date")
        where, params = [], []
        if start is not None:
            where.append(f"{date_col} >= ?")
            params.append(start)
        if end is not None:
            where.append(f"{date_col} <= ?")
            params.append(end)
        sql = f"SELECT DISTINCT {date_col} FROM {quote_ident(table)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.connect() as con:
            if not self.table_exists(con, table):
                return []
            rows = con.execute(sql + " ORDER BY 1", params).fetchall()
        return [r[0] for r in rows]

    def read_state(self, asset: str, day: dt.date) -> bytes | None:
        with self.connect() as con:
            if not self.table_exists(con, STATE_TABLE):
                return None
            row = _one(
                con, f"SELECT state FROM {STATE_TABLE} WHERE asset = ? AND date = ?", [asset, day]
            )
        return None if row is None else bytes(row[0])

    # ---- writes ------------------------------------------------------------------------

    def _ensure_table(self, con: duckdb.DuckDBPyConnection, table: str, incoming: str) -> None:
        """Create `table` from the contract (fixed columns) and the incoming frame (the rest)."""
        contract = TABLE_COLUMNS.get(table, {})
        frame_cols = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {incoming}").fetchall()]
        if not self.table_exists(con, table):
            cols = dict(contract)
            for name, dtype in frame_cols:
                cols.setdefault(name, dtype)
            ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in cols.items())
            _run(con, f"CREATE TABLE {quote_ident(table)} ({ddl})")
            return
        existing = {r[0] for r in con.execute(f"DESCRIBE {quote_ident(table)}").fetchall()}
        incoming_names = {n for n, _ in frame_cols}
        if incoming_names != existing:
            missing = sorted(existing - incoming_names)
            extra = sorted(incoming_names - existing)
            raise ValueError(
                f"table {table} in {self.path} has other columns than this write "
                f"(missing {missing}, unexpected {extra}); the model changed: "
                f"use a new DuckDB file (FACTORCOV_DUCKDB) or delete {self.path}"
            )

    def replace(
        self,
        writes: Sequence[TableWrite],
        dates: tuple[dt.date, dt.date],
        state: Mapping[str, Mapping[dt.date, bytes]] | None = None,
        settings_json: str | None = None,
        views: Sequence[ViewDef] = (),
    ) -> None:
        """Replace the rows of dates in [start, end] of every table in `writes`, atomically.

        All tables, the forecaster state, the settings identity and the `views` over the
        written tables are written in ONE transaction: either all of it lands or none of it (a
        killed process leaves the old rows).
        """
        start, end = dates
        with self.connect() as con:
            _run(con, "BEGIN TRANSACTION")
            try:
                if settings_json is not None:
                    self._check_settings(con, settings_json)
                for i, w in enumerate(writes):
                    name = f"_incoming_{i}"
                    con.register(name, w.frame.to_arrow())
                    self._ensure_table(con, w.table, name)
                    date_col = DATE_COLUMN.get(w.table, "date")
                    _run(
                        con,
                        f"DELETE FROM {quote_ident(w.table)} WHERE {date_col} BETWEEN ? AND ?",
                        [start, end],
                    )
                    if w.frame.height:
                        _run(
                            con, f"INSERT INTO {quote_ident(w.table)} BY NAME SELECT * FROM {name}"
                        )
                    con.unregister(name)
                for view in views:
                    self._replace_view(con, view)
                if state:
                    _run(
                        con,
                        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (asset VARCHAR, date DATE, state BLOB)",
                    )
                    for asset, by_date in state.items():
                        _run(
                            con,
                            f"DELETE FROM {STATE_TABLE} WHERE asset = ? AND date BETWEEN ? AND ?",
                            [asset, start, end],
                        )
                        con.executemany(
                            f"INSERT INTO {STATE_TABLE} VALUES (?, ?, ?)",
                            [[asset, d, b] for d, b in by_date.items()],
                        )
                _run(con, "COMMIT")
            except BaseException:
                _run(con, "ROLLBACK")
                raise

    def _replace_view(self, con: duckdb.DuckDBPyConnection, view: ViewDef) -> None:
        """Create or replace `view`; a table of that name from an older layout is migrated
        (`ViewDef.migrate_sql`) and dropped first, in the caller's transaction."""
        if self.table_type(con, view.name) == "BASE TABLE":
            if view.migrate_sql is None:
                raise ValueError(
                    f"{self.path}: {view.name} is a table, but this version stores it as a view; "
                    f"use a new DuckDB file (FACTORCOV_DUCKDB) or delete {self.path}"
                )
            _run(con, view.migrate_sql)
            _run(con, f"DROP TABLE {quote_ident(view.name)}")
        _run(con, f"CREATE OR REPLACE VIEW {quote_ident(view.name)} AS {view.sql}")

    # ---- the model's identity ----------------------------------------------------------

    def _check_settings(self, con: duckdb.DuckDBPyConnection, settings_json: str) -> None:
        _run(
            con,
            f"CREATE TABLE IF NOT EXISTS {SETTINGS_TABLE} (settings_json VARCHAR, created_at TIMESTAMP)",
        )
        row = _one(con, f"SELECT settings_json FROM {SETTINGS_TABLE} LIMIT 1")
        if row is None:
            _run(
                con, f"INSERT INTO {SETTINGS_TABLE} VALUES (?, current_timestamp)", [settings_json]
            )
            return
        if row[0] != settings_json:
            diffs = _diff_settings(json.loads(row[0]), json.loads(settings_json))
            raise SettingsMismatchError(
                f"{self.path} holds forecasts made with other settings; differing: "
                + "; ".join(diffs)
                + f". To start afresh, point FACTORCOV_DUCKDB at a new file or delete {self.path}; "
                "to continue this file, use the settings it was built with "
                "(SELECT settings_json FROM model_settings)."
            )

    def stored_settings(self) -> str | None:
        with self.connect() as con:
            if not self.table_exists(con, SETTINGS_TABLE):
                return None
            row = _one(con, f"SELECT settings_json FROM {SETTINGS_TABLE} LIMIT 1")
        return None if row is None else str(row[0])

    @property
    def location(self) -> str:
        return str(self.path)

    def table_names(self) -> list[str]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "ORDER BY 1"
            ).fetchall()
        return [str(r[0]) for r in rows]
