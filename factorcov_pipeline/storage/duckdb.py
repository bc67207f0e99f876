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
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from factorcov_pipeline import environment
from factorcov_pipeline.storage.base import BaseStore
from factorcov_pipeline.storage.contract import (
    ADDED_COLUMN_VALUES,
    DATE_COLUMN,
    MODEL_COLUMN,
    MODELS_COLUMNS,
    MODELS_TABLE,
    SETTINGS_TABLE,
    STATE_REMOVAL_SQL,
    STATE_TABLE,
    TABLE_COLUMNS,
    SettingsMismatchError,
    StoreBusyError,
    TableWrite,
    ViewDef,
    _diff_settings,
    delete_sql,
    distinct_dates_sql,
    key_values,
    models_mismatch,
    quote_ident,
    state_pruning_sql,
    state_removal_params,
    stored_identity,
    table_columns_in_order,
)
from factorcov_pipeline.storage.query import (
    READ_ONLY_HINT,
    OpenQuery,
    QueryConnection,
    cast_projection,
)

DEFAULT_DATABASE = environment.DEFAULT_DATABASE
ENV_DATABASE = environment.DATABASE
ENV_MEMORY = environment.DUCKDB_MEMORY
DEFAULT_MEMORY_LIMIT = environment.DEFAULT_MEMORY_LIMIT
# How a refused settings identity says to start afresh.
_AFRESH = "point FACTORCOV_DUCKDB at a new file"

# Run on a read-only connection before untrusted SQL (`Store.connect_query_only`), in this
# order: the last statement makes every setting, these included, unchangeable.
QUERY_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_persistent_secrets = false",
    "SET python_enable_replacements = false",
    "SET lock_configuration = true",
)


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


class StoreFileError(ValueError):
    """The DuckDB path is not a DuckDB database file (nor a file to be created)."""


# A DuckDB database file starts with an 8-byte checksum and then the magic bytes "DUCK"
# (duckdb/src/storage/storage_info.cpp: MainHeader::MAGIC_BYTES, at offset 8).
DUCKDB_MAGIC = b"DUCK"
MAGIC_OFFSET = 8


def check_database_file(path: Path) -> None:
    """Refuse a path that exists but is not a DuckDB database: DuckDB 2 opens e.g. a Parquet
    file as an in-memory database without error, and every write then silently vanishes
    (issue 12.5). A path that does not exist yet is fine (the file is created)."""
    if not path.exists():
        if path.is_symlink():
            raise StoreFileError(f"DuckDB file {path} is a dangling symbolic link")
        return
    if path.is_dir():
        raise StoreFileError(f"DuckDB file {path} is a directory, not a DuckDB database file")
    if not path.is_file():
        raise StoreFileError(f"DuckDB file {path} is not a regular file")
    try:
        with path.open("rb") as f:
            head = f.read(MAGIC_OFFSET + len(DUCKDB_MAGIC))
    except OSError as err:
        raise StoreFileError(f"DuckDB file {path} cannot be read: {err.strerror}") from None
    if head[MAGIC_OFFSET:] != DUCKDB_MAGIC:
        what = "an empty file" if not head else f"starts with {head[:8]!r}"
        raise StoreFileError(
            f"{path} is not a DuckDB database file ({what}; FACTORCOV_DUCKDB must name a DuckDB "
            "file written by factorcov, or a file that does not exist yet)"
        )


# Connections this process has open, by file (see `Store.connect`), changed under `_OPEN_LOCK`
# (a step's background writer opens its own, `storage.write_behind`).
_OPEN: Counter[Path] = Counter()
_OPEN_LOCK = threading.Lock()


def _count_open(key: Path, change: int) -> None:
    with _OPEN_LOCK:
        _OPEN[key] += change


# Open connections by file while `holding_connections()` is active (per thread / task).
_HELD: ContextVar[dict[Path, duckdb.DuckDBPyConnection] | None] = ContextVar(
    "factorcov_held_duckdb_connections", default=None
)


@contextmanager
def holding_connections() -> Iterator[None]:
    """Within this block, `Store.connect()` reuses one read-write connection per file.

    Why: opening a DuckDB file reads its catalog, about 13 ms for the tutorial's 100 MB file
    (measured), and a run of the tutorial's year opened it about 150 times (4 s of a 20 s run).
    A run holds one connection from its first step to its end: `factorcov materialize` through
    `orchestration.runner.run_range`, a run launched from the UI or the schedule through the
    storage resource's lifetime (`orchestration.resources.FactorcovStorage`); a step outside a
    run holds one for the step (`orchestration.resources.one_connection`). Other processes
    (`factorcov sql`, a notebook) wait until the run ends, at most FACTORCOV_LOCK_TIMEOUT.
    Transactions are unchanged: each write is still its own BEGIN ... COMMIT on that
    connection. Nested blocks share the outer block's connections.
    """
    if _HELD.get() is not None:
        yield
        return
    held: dict[Path, duckdb.DuckDBPyConnection] = {}
    checkpoints: dict[Path, threading.Thread] = {}
    token, checkpoints_token = _HELD.set(held), _CHECKPOINTS.set(checkpoints)
    try:
        yield
    finally:
        _HELD.reset(token)
        _CHECKPOINTS.reset(checkpoints_token)
        # a checkpoint under way finishes before the connection closes (closing it closes the
        # checkpoint's cursor: "Connection already closed", seen in CI), also when a signal
        # arrives meanwhile: that one is raised after the close
        interrupt: BaseException | None = None
        for thread in checkpoints.values():
            while thread.is_alive():
                try:
                    thread.join()
                except BaseException as err:  # SIGINT/SIGTERM as an exception
                    interrupt = err
        for key, con in held.items():
            _count_open(key, -1)
            con.close()
        if interrupt is not None:
            raise interrupt


# Checkpoints under way on a background thread, by file (`checkpoint_in_background`), joined
# before `holding_connections` closes the file's connection.
_CHECKPOINTS: ContextVar[dict[Path, threading.Thread] | None] = ContextVar(
    "factorcov_background_checkpoints", default=None
)


def checkpoint_in_background() -> None:
    """Checkpoint each file held by `holding_connections` on a background thread, unless a
    checkpoint of it is already under way.

    Why: closing a run's connection checkpoints the file (DuckDB moves the write-ahead log
    into the database file): 80-100 ms at the end of a daily run after 10 years, on the run's
    critical path (benchmark 4). Started when a step has stored its rows
    (`orchestration.resources.one_connection`), the checkpoint runs without Python's lock
    while the next step computes and draws, and the close has little left to move. DuckDB 2
    checkpoints while other transactions are open (their changes reach the log when they
    commit), and a commit meanwhile waits for the checkpoint (both checked, and tested in
    tests/test_storage.py); a checkpoint that fails anyway is left to the close. The
    checkpoint is DuckDB's own crash-safe operation: what is stored does not change.
    """
    held, checkpoints = _HELD.get(), _CHECKPOINTS.get()
    if held is None or checkpoints is None:
        return
    for key, con in held.items():
        running = checkpoints.get(key)
        if running is not None and running.is_alive():
            continue
        thread = threading.Thread(
            target=_checkpoint, args=(con.cursor(),), name="factorcov-checkpoint"
        )
        checkpoints[key] = thread  # before it starts: a signal in between cannot orphan it
        thread.start()


def _checkpoint(cursor: duckdb.DuckDBPyConnection) -> None:
    try:
        cursor.execute("CHECKPOINT").fetchall()
    except duckdb.Error:
        pass  # the close checkpoints instead
    finally:
        cursor.close()


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> None:
    """Execute a statement whose result is not needed and finish it (duckdb 2 refuses further
    work on a connection with an unfinished result)."""
    con.execute(sql, list(params or [])).fetchall()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    """The first row of a query (or None), with the result fully consumed."""
    rows = con.execute(sql, list(params or [])).fetchall()
    return rows[0] if rows else None


def _commit(con: duckdb.DuckDBPyConnection) -> None:
    """COMMIT. When it fails (e.g. "No space left on device" while DuckDB writes its log), the
    error raised is DuckDB's own, with the file named by the caller's context."""
    _run(con, "COMMIT")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """ROLLBACK after a failure, never masking it: a COMMIT that failed (a full disk) has
    already ended the transaction, and the ROLLBACK's own "no transaction is active" would
    replace the real error (issue 12.10). Any error of the rollback itself is dropped: the
    original exception is re-raised by the caller, and an unfinished transaction is discarded
    by DuckDB when the connection closes."""
    with suppress(duckdb.Error):
        _run(con, "ROLLBACK")


@contextmanager
def _absent_table(table: str) -> Iterator[None]:
    """Swallow DuckDB's error for a read of `table` when the table does not exist (the caller
    then returns its empty result), and no other error. Cheaper than asking the catalog first:
    a daily run made 60 such lookups at ~1.3 ms each (information_schema is a view over every
    catalog entry), and a read of an existing table never raises."""
    try:
        yield
    except duckdb.CatalogException as err:
        if f"Table with name {table} does not exist" not in str(err):
            raise


def _written_models(writes: Sequence[TableWrite]) -> set[str]:
    """The covariance models whose rows `writes` replace (their `model` keys)."""
    return {str(m) for w in writes for m in w.keys.get(MODEL_COLUMN, ())}


def _is_lock_error(err: Exception) -> bool:
    text = str(err)
    return "Could not set lock" in text or "Conflicting lock" in text


def _first_line(err: BaseException) -> str:
    """An error's message on one line (DuckDB's messages may span several)."""
    return " ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())


class DuckDBQueryConnection(QueryConnection):
    """`Store.connect_query_only`'s connection: untrusted SQL on the locked-down file."""

    errors = (duckdb.Error,)

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout: float) -> None:
        self.con = con
        self.timeout = timeout
        self.timed_out = False

    def interrupt(self) -> None:
        """Stop the running query (the timeout's timer thread)."""
        self.timed_out = True
        self.con.interrupt()

    def open(self, sql: str, nested_as_json: bool = False) -> OpenQuery | None:
        """Bind `sql`. Values of types Arrow does not carry faithfully (BIT, INTERVAL,
        UHUGEINT, ...) come as DuckDB's own text; nested values (lists, structs, maps) as
        DuckDB's text, or as JSON data when `nested_as_json` (a projection of the relation,
        which keeps its row order)."""
        rel = self.con.sql(sql)
        if rel is None:
            return None
        names = list(rel.columns)
        kinds = [str(t.id) for t in rel.types]
        exprs, parse = cast_projection(names, kinds, nested_as_json, "to_json", "VARCHAR")
        if exprs is not None:
            rel = rel.project(", ".join(exprs))
        return OpenQuery(names, kinds, parse, rel.to_arrow_reader)

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params or [])).fetchall()

    def has_table(self, name: str) -> bool:
        return bool(
            self.rows(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_name = ?",
                [name],
            )
        )

    def describe_error(self, err: BaseException) -> str:
        """DuckDB's message and hint, without the caret-marked query echo."""
        if self.timed_out and isinstance(err, duckdb.InterruptException):
            return f"the query was stopped after {self.timeout:g} s (--timeout)"
        lines = [ln.strip() for ln in str(err).splitlines()]
        kept = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
        text = " ".join(kept) or type(err).__name__
        if (
            isinstance(err, duckdb.PermissionException)
            or "read-only mode" in text
            or "configuration has been locked" in text
        ):
            text += f" ({READ_ONLY_HINT})"
        return text


class Store(BaseStore):
    """One DuckDB file holding every table of the pipeline."""

    writes_in_background = True  # a second connection of the same database (storage.write_behind)
    reads_in_background = True  # likewise (storage.read_ahead)

    def __init__(self, path: str | os.PathLike[str], lock_timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        # DuckDB's own default is 80% of RAM; joins over 10 years of exposures then take GiBs.
        # With a limit it spills to disk instead (FACTORCOV_DUCKDB_MEMORY, e.g. "4GB").
        self.memory_limit = environment.duckdb_memory()

    @classmethod
    def from_env(cls, lock_timeout: float = 120.0) -> Store:
        return cls(environment.database(), lock_timeout)

    def _before_background(self) -> None:
        """Inside `holding_connections`, open the held connection first: a background thread's
        connection (`write_behind`, `read_ahead`) then joins this process's open database.
        Opened first by the background thread, the file was opened (its catalog read, ~16 ms)
        and, that connection being the only one, checkpointed and closed after its write: a
        daily run's first write took 44 ms, the same write 10 ms once the file is open."""
        if _HELD.get() is not None:
            with self.connect():
                pass

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (bounded) while another process holds the file.

        Inside `holding_connections()` (one Dagster step) every `connect()` to this file
        returns the same read-write connection, closed when the step ends.
        """
        if read_only and not self.path.exists():
            raise FileNotFoundError(
                f"DuckDB file {self.path} does not exist yet: run a materialisation first"
            )
        key = self.path.resolve()
        held = _HELD.get()
        if held is not None and key in held:
            yield held[key]
            return
        if not _OPEN[key]:
            # Only while this process has no connection to the file: the check opens and closes
            # the file, and closing any descriptor of a file drops every POSIX (fcntl) lock the
            # process holds on it, DuckDB's included (found by tests/test_faults.py: another
            # process could then open the file in the middle of a write).
            check_database_file(self.path)
        if held is None:
            con = self._open(read_only)
            _count_open(key, 1)
            try:
                yield con
            finally:
                _count_open(key, -1)
                con.close()
            return
        held[key] = self._open(read_only=False)
        _count_open(key, 1)
        yield held[key]

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
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
            except duckdb.Error as err:
                if not (isinstance(err, duckdb.IOException) and _is_lock_error(err)):
                    if read_only:  # a reader: one line naming the file
                        raise StoreFileError(
                            f"cannot open {self.path} as a DuckDB database: {_first_line(err)}"
                        ) from None
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"DuckDB file {self.path} is locked by another process: another "
                        "process holds the file (a run writing it, or a reader such as a "
                        f"DuckDB shell) and it stayed locked for {self.lock_timeout:.0f} s "
                        "(FACTORCOV_LOCK_TIMEOUT); try again when it ends"
                    ) from err
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        return con

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

    @contextmanager
    def connect_query_only(self, timeout: float = 0.0) -> Iterator[DuckDBQueryConnection]:
        """A read-only connection locked down for untrusted SQL (`factorcov sql`).

        `read_only` alone protects only this file: `ATTACH 'other.duckdb' (READ_WRITE)` (or a
        hard link of this file), `COPY ... TO`, `EXPORT DATABASE`, `INSTALL`/`LOAD` and
        `read_csv('/etc/passwd')` still work. Disabling external access makes DuckDB refuse
        every file but the open database, and locking the configuration makes it refuse any
        `SET`/`RESET` that would lift that (DuckDB docs, "Securing DuckDB"; each statement is
        tested in tests/test_sql_lockdown.py). DuckDB may still spill a query larger than memory
        to its own temporary directory (`<file>.tmp`, removed on close). A query still running
        `timeout` seconds (0: no limit) after the connection opened is interrupted.

        A file that cannot be opened as a DuckDB database raises `StoreFileError` (one line).
        """
        with self.connect(read_only=True) as con:
            try:
                for statement in QUERY_LOCKDOWN:
                    _run(con, statement)
            except duckdb.Error as err:
                raise StoreFileError(
                    f"cannot open {self.path} as a DuckDB database: {_first_line(err)}"
                ) from None
            query_con = DuckDBQueryConnection(con, timeout)
            timer = threading.Timer(timeout, query_con.interrupt) if timeout > 0 else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                yield query_con
            finally:
                if timer is not None:
                    timer.cancel()

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
        only covariance model `model`'s when given."""
        date_col = DATE_COLUMN.get(table, "date")
        clause, params = self.model_clause(table, model)
        sql = f"SELECT {columns} FROM {quote_ident(table)} WHERE {date_col} BETWEEN ? AND ?"
        sql += clause
        if order:
            sql += f" ORDER BY {order}"
        with self.connect() as con, _absent_table(table):
            return query_polars(con, sql, [start, end, *params])
        return pl.DataFrame()

    def stored_dates(
        self,
        table: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        model: str | None = None,
    ) -> list[dt.date]:
        """The distinct dates stored in `table`, optionally only those in [start, end] and of
        covariance model `model`.

        Pass the range whenever the caller needs only some dates: DuckDB then skips the row
        groups outside it (min/max zone maps on the date column, which is written in date
        order), so a daily run's lookups do not scan the whole history (benchmark 4).
        """
        sql, params = distinct_dates_sql(table, start, end, self.model_clause(table, model))
        with self.connect() as con, _absent_table(table):
            return [r[0] for r in con.execute(sql, params).fetchall()]
        return []

    def has_table(self, name: str) -> bool:
        with self.connect() as con:
            return self.table_exists(con, name)

    def _column_exists(self, table: str, column: str) -> bool:
        with self.connect() as con:
            return (
                _one(
                    con,
                    "SELECT 1 FROM duckdb_columns() WHERE database_name = current_database() "
                    "AND schema_name = 'main' AND table_name = ? AND column_name = ?",
                    [table, column],
                )
                is not None
            )

    def read_state(self, asset: str, day: dt.date) -> bytes | None:
        row = None
        with self.connect() as con, _absent_table(STATE_TABLE):
            row = _one(
                con, f"SELECT state FROM {STATE_TABLE} WHERE asset = ? AND date = ?", [asset, day]
            )
        return None if row is None else bytes(row[0])

    def latest_state(self, asset: str, on_or_before: dt.date) -> tuple[dt.date, bytes] | None:
        """The last stored recursion state of `asset` dated on or before `on_or_before`."""
        row = None
        with self.connect() as con, _absent_table(STATE_TABLE):
            # the date first, then its state: ordering the rows with their states read every
            # stored state of the asset (10 ms a lookup after 10 years, benchmark 4)
            day = _one(
                con,
                f"SELECT max(date) FROM {STATE_TABLE} WHERE asset = ? AND date <= ?",
                [asset, on_or_before],
            )
            if day is not None and day[0] is not None:
                row = _one(
                    con,
                    f"SELECT date, state FROM {STATE_TABLE} WHERE asset = ? AND date = ? LIMIT 1",
                    [asset, day[0]],
                )
        return None if row is None else (row[0], bytes(row[1]))

    # ---- writes ------------------------------------------------------------------------

    def _ensure_table(self, con: duckdb.DuckDBPyConnection, table: str, incoming: str) -> None:
        """Create `table` from the contract (fixed columns) and the incoming frame (the rest)."""
        contract = TABLE_COLUMNS.get(table, {})
        frame_cols = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {incoming}").fetchall()]
        # the table's columns, none if it does not exist, in one catalog lookup (the
        # information_schema lookup and a DESCRIBE took twice as long; a DESCRIBE of a missing
        # table cannot be tried: its error would abort the caller's transaction)
        existing = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ?",
                [table],
            ).fetchall()
        }
        if not existing:
            ddl = ", ".join(
                f"{quote_ident(c)} {t}" for c, t in table_columns_in_order(table, frame_cols)
            )
            _run(con, f"CREATE TABLE {quote_ident(table)} ({ddl})")
            return
        incoming_names = {n for n, _ in frame_cols}
        added = [c for c in contract if c in incoming_names and c not in existing]
        if added and existing <= incoming_names:
            # A contract column added by a later release (e.g. regression_stats'
            # degenerate-case columns in 0.3): older files gain it, NULL for their old rows,
            # or the value of ADDED_COLUMN_VALUES (`model`: 'default').
            for c in added:
                name = quote_ident(c)
                value = ADDED_COLUMN_VALUES.get(c)
                default = f" DEFAULT {value}" if value is not None else ""
                _run(
                    con,
                    f"ALTER TABLE {quote_ident(table)} ADD COLUMN {name} {contract[c]}{default}",
                )
                if value is not None:  # the old rows have it; new rows name their own
                    _run(con, f"ALTER TABLE {quote_ident(table)} ALTER COLUMN {name} DROP DEFAULT")
            existing |= set(added)
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
        models: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the rows of dates in [start, end] of every table in `writes`, atomically.

        All tables, the forecaster state, the settings identity (and the covariance models'
        in `covariance_models`) and the `views` over the written tables are written in ONE
        transaction: either all of it lands or none of it (a killed process leaves the old
        rows). A write with `keys` replaces only the rows with those values (one covariance
        model's). `state={asset: {}}` deletes that asset's states of the range without writing
        new ones (the empty path: the forecasts of the range are deleted in the same
        transaction, so no state outlives its forecast).
        """
        start, end = dates
        writes = [w.with_model_key() for w in writes]
        with self.connect() as con:
            _run(con, "BEGIN TRANSACTION")
            try:
                if settings_json is not None:
                    self._check_settings(con, settings_json)
                if models:
                    self._check_models(con, models, _written_models(writes))
                for i, w in enumerate(writes):
                    name = f"_incoming_{i}"
                    con.register(name, w.frame.to_arrow())
                    self._ensure_table(con, w.table, name)
                    sql, _ = delete_sql(w.table, w.keys)
                    _run(con, sql, [start, end, *key_values(w.keys)])
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
                        if by_date:  # an empty mapping deletes the range's states only
                            con.executemany(
                                f"INSERT INTO {STATE_TABLE} VALUES (?, ?, ?)",
                                [[asset, d, b] for d, b in by_date.items()],
                            )
                            _run(con, state_pruning_sql(), [asset, asset])
                _commit(con)
            except BaseException:
                _rollback(con)
                raise

    def remove(
        self, tables: Sequence[str], dates: tuple[dt.date, dt.date], state_assets: Sequence[str]
    ) -> list[str]:
        """Delete the rows of dates in [start, end] from `tables` and the recursion states of
        `state_assets`, in ONE transaction; returns the tables that had rows there.

        Used after a failed run (`orchestration.consistency`): the steps that did not finish
        lose the range's rows, so that no stored forecast stands on inputs other than the ones
        now stored.
        """
        start, end = dates
        removed: list[str] = []
        with self.connect() as con:
            _run(con, "BEGIN TRANSACTION")
            try:
                for table in tables:
                    if self.table_type(con, table) != "BASE TABLE":
                        continue
                    date_col = DATE_COLUMN.get(table, "date")
                    where = f"{date_col} BETWEEN ? AND ?"
                    n = _one(con, f"SELECT count(*) FROM {quote_ident(table)} WHERE {where}", dates)
                    if n and n[0]:
                        _run(con, f"DELETE FROM {quote_ident(table)} WHERE {where}", [start, end])
                        removed.append(table)
                if state_assets and self.table_exists(con, STATE_TABLE):
                    for asset in state_assets:
                        _run(con, STATE_REMOVAL_SQL, state_removal_params(asset, start, end))
                _commit(con)
            except BaseException:
                _rollback(con)
                raise
        return removed

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

    def _identity(self, con: duckdb.DuckDBPyConnection) -> str | None:
        """The stored settings JSON, None without a `model_settings` table or row; a relation
        edited by hand is refused in one line (`contract.stored_identity`)."""
        kind = self.table_type(con, SETTINGS_TABLE)
        values: list[Any] = []
        if kind == "BASE TABLE":
            try:
                rows = con.execute(f"SELECT settings_json FROM {SETTINGS_TABLE} LIMIT 2")
                values = [r[0] for r in rows.fetchall()]
            except duckdb.Error as err:
                raise SettingsMismatchError(
                    f"{self.path}: {SETTINGS_TABLE} cannot be read ("
                    + str(err).strip().splitlines()[0]
                    + f"): restore it from a backup, or {_AFRESH}"
                ) from None
        return stored_identity(kind, values, str(self.path), _AFRESH)

    def _models(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """`covariance_models` as name -> settings JSON (empty without the table)."""
        if self.table_type(con, MODELS_TABLE) != "BASE TABLE":
            return {}
        rows = con.execute(
            f"SELECT model, settings_json FROM {MODELS_TABLE} ORDER BY created_at, model"
        ).fetchall()
        return {str(m): str(j) for m, j in rows}

    def _check_models(
        self, con: duckdb.DuckDBPyConnection, models: Mapping[str, str], written: set[str]
    ) -> None:
        """Refuse a model of `models` stored with other settings; add those of `written` the
        table does not list yet (in the caller's transaction: with their first rows)."""
        stored = self._models(con)
        refused = models_mismatch(str(self.path), stored, models)
        if refused:
            raise SettingsMismatchError(refused)
        new = [m for m in models if m in written and m not in stored]
        if not new:
            return
        ddl = ", ".join(f"{c} {t}" for c, t in MODELS_COLUMNS.items())
        _run(con, f"CREATE TABLE IF NOT EXISTS {MODELS_TABLE} ({ddl})")
        for name in new:
            _run(
                con,
                f"INSERT INTO {MODELS_TABLE} VALUES (?, ?, current_timestamp)",
                [name, models[name]],
            )

    def stored_models(self) -> dict[str, str]:
        with self.connect() as con:
            return self._models(con)

    def _check_settings(self, con: duckdb.DuckDBPyConnection, settings_json: str) -> None:
        stored = self._identity(con)
        if stored is None:
            _run(
                con,
                f"CREATE TABLE IF NOT EXISTS {SETTINGS_TABLE} "
                "(settings_json VARCHAR, created_at TIMESTAMP)",
            )
            self._refuse_unidentified(con)
            _run(
                con, f"INSERT INTO {SETTINGS_TABLE} VALUES (?, current_timestamp)", [settings_json]
            )
            return
        if stored != settings_json:
            raise SettingsMismatchError(self._mismatch(stored, settings_json))

    def _mismatch(self, stored: str, current: str) -> str:
        diffs = _diff_settings(json.loads(stored), json.loads(current))
        return (
            f"{self.path} holds forecasts made with other settings; differing: "
            + "; ".join(diffs)
            + f". To start afresh, point FACTORCOV_DUCKDB at a new file or delete {self.path}; "
            "to continue this file, use the settings it was built with "
            "(SELECT settings_json FROM model_settings)."
        )

    def _refuse_unidentified(self, con: duckdb.DuckDBPyConnection) -> None:
        """A file that holds data but no settings row (`model_settings` deleted or emptied by
        hand) cannot take ANY settings as its identity: the stored forecasts and recursion
        states were made with settings nobody can check any more, and adopting the run's would
        mix two models in one file (issue 12.6)."""
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_type = 'BASE TABLE' AND table_name <> ?",
                [SETTINGS_TABLE],
            ).fetchall()
        ]
        with_rows = [t for t in tables if _one(con, f"SELECT 1 FROM {quote_ident(t)} LIMIT 1")]
        if with_rows:
            raise SettingsMismatchError(
                f"{self.path} holds data ({', '.join(sorted(with_rows)[:4])}"
                f"{' ...' if len(with_rows) > 4 else ''}) but no {SETTINGS_TABLE} row, so the "
                "settings it was built with are unknown; restore the row from a backup, or "
                "point FACTORCOV_DUCKDB at a new file"
            )

    def check_identity(self, settings_json: str, models: Mapping[str, str] | None = None) -> None:
        """Before a run writes anything: refuse a path that is not a DuckDB file, a file made
        with other settings, a file with data but no settings row, and a covariance model of
        `models` the file holds with other settings. Read-only; a file that does not exist
        yet passes."""
        check_database_file(self.path)
        if not self.path.exists():
            return
        with self.connect(read_only=True) as con:
            stored = self._identity(con)
            if stored is None:
                self._refuse_unidentified(con)
            elif stored != settings_json:
                raise SettingsMismatchError(self._mismatch(stored, settings_json))
            if models:
                refused = models_mismatch(str(self.path), self._models(con), models)
                if refused:
                    raise SettingsMismatchError(refused)

    def stored_settings(self) -> str | None:
        with self.connect() as con:
            return self._identity(con)

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
