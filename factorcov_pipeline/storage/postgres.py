"""PostgreSQL storage: the same SQL contract, tables and transactions as the DuckDB file, in a
PostgreSQL database shared by every process (`FACTORCOV_DATABASE_URL=postgresql://...`).

Through ADBC (`adbc-driver-postgresql`, the Apache Arrow project's libpq driver): bulk loads are
`COPY ... FROM STDIN (FORMAT binary)` of the Arrow columns (`adbc_ingest`), never row by row, and
reads come back as Arrow (binary protocol), so float64 values travel bit for bit both ways.

Every `replace` is one transaction (the driver's connection is not in autocommit): the dates'
old rows deleted, the new rows copied, the views, the forecaster state and the settings
identity, then COMMIT. Readers never wait for it and never see half of it: PostgreSQL's MVCC
gives each statement a snapshot of committed rows (READ COMMITTED), and the write takes no lock
that blocks a SELECT (row locks on the deleted rows only; a view is re-created, which would take
an exclusive lock, only when its definition changed). Several processes may write different
date ranges at once (parallel backfills); the first creation of a table or of the settings
identity is serialised by a transaction-scoped advisory lock so two writers cannot both create
it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as pg_dbapi
import polars as pl
import pyarrow as pa

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
    SUMMARY_TABLES,
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
    quote_literal,
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

ENV_DATABASE_URL = "FACTORCOV_DATABASE_URL"
# How a refused settings identity says to start afresh.
_AFRESH = f"point {ENV_DATABASE_URL} at a new database"

# The contract's DuckDB type names and their PostgreSQL equivalents.
PG_TYPES = {
    "DATE": "DATE",
    "VARCHAR": "VARCHAR",
    "DOUBLE": "DOUBLE PRECISION",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMP",
    "BLOB": "BYTEA",
}
# PostgreSQL's data types (information_schema) as Arrow types, for the binary COPY.
ARROW_TYPES = {
    "date": pa.date32(),
    "character varying": pa.string(),
    "text": pa.string(),
    "double precision": pa.float64(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "bytea": pa.binary(),
    "timestamp without time zone": pa.timestamp("us"),
}
# Text key columns that order a table's rows within a date (after the date), when present.
SORT_KEYS = ("asset_id", "factor", "factor_1", "factor_2", "portfolio")
# PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
MAX_IDENT_BYTES = 63
# Key of the advisory lock that serialises table/settings creation between writers.
_DDL_LOCK = 0x66636F76  # "fcov"


def redact(url: str) -> str:
    """The URL without its password (for messages and logs); also for a URL that does not
    parse (`environment.hide_password`)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "Invalid IPv6 URL"
        return environment.hide_password(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def to_dollar_params(sql: str) -> str:
    """Translate the standard `?` placeholders of the store's queries into PostgreSQL's `$n`,
    leaving `?` inside string literals and quoted identifiers alone."""
    out, n = [], 0
    for token in re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", sql):
        if token.startswith(("'", '"')):
            out.append(token)
            continue
        pieces = token.split("?")
        for i, piece in enumerate(pieces):
            if i:
                n += 1
                out.append(f"${n}")
            out.append(piece)
    return "".join(out)


def _pg_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_floating(arrow_type):
        return "DOUBLE PRECISION"
    if pa.types.is_int32(arrow_type) or pa.types.is_int16(arrow_type):
        return "INTEGER"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BYTEA"
    return "VARCHAR"


def _to_arrow(frame: pl.DataFrame) -> pa.Table:
    """The frame as Arrow with plain `string`/`binary` columns (libpq's COPY writer takes
    those; polars hands out string views)."""
    table = frame.to_arrow()
    fields = []
    for field in table.schema:
        t = field.type
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
            t = pa.binary()
        fields.append(pa.field(field.name, t))
    return table.cast(pa.schema(fields))


# PostgreSQL type names (`POSTGRESQL:type` of ADBC's Arrow fields) as the query kinds of
# `storage.query` (DuckDB's type ids); a type not listed keeps its own name and comes as
# PostgreSQL's text (interval, uuid, json, bytea, ...), arrays (`_int4`, ...) are lists.
PG_KINDS = {
    "float8": "double",
    "float4": "float",
    "int8": "bigint",
    "int4": "integer",
    "int2": "smallint",
    "bool": "boolean",
    "date": "date",
    "varchar": "varchar",
    "text": "varchar",
    "bpchar": "varchar",
    "name": "varchar",
    "timestamp": "timestamp",
    "timestamptz": "timestamp with time zone",
    "numeric": "decimal",
}
# SQLSTATEs of statements refused by the read-only transaction or missing privileges.
_REFUSED_STATES = {"25006", "42501", "0A000"}
# First words of statements that are not queries (for the message only: PostgreSQL's DECLARE
# CURSOR is what refuses them).
_COMMANDS = {
    "abort", "alter", "analyze", "begin", "call", "checkpoint", "close", "cluster", "comment",
    "commit", "copy", "create", "deallocate", "declare", "delete", "discard", "do", "drop", "end",
    "execute", "explain", "fetch", "grant", "import", "insert", "listen", "load", "lock", "merge",
    "move", "notify", "prepare", "reassign", "refresh", "reindex", "release", "reset", "revoke",
    "rollback", "savepoint", "security", "set", "show", "start", "truncate", "unlisten", "update",
    "vacuum",
}  # fmt: skip
# Powers a role used for untrusted queries must not have, directly or through a role it is a
# member of, because their effects outlive the READ ONLY transaction that is rolled back
# (`PostgresStore.connect_query_only`): superuser (it can lift every restriction from inside a
# query, even `SET SESSION AUTHORIZATION`: `set_config('session_authorization', ...)`),
# REPLICATION (replication slots are not transactional) and the predefined roles that touch
# the server's files or programs or signal other sessions.
UNSAFE_ROLES = {
    "pg_read_server_files": "reads the server's files",
    "pg_write_server_files": "writes the server's files",
    "pg_execute_server_program": "runs programs on the server",
    "pg_signal_backend": "cancels and terminates other sessions",
    "pg_checkpoint": "runs CHECKPOINT",
    "pg_create_subscription": "creates subscriptions",
}
READER_HINT = (
    "point FACTORCOV_DATABASE_URL at a role that may only read, e.g. CREATE ROLE "
    "factorcov_reader LOGIN PASSWORD '...'; GRANT pg_read_all_data TO factorcov_reader "
    "(or GRANT SELECT ON ALL TABLES IN SCHEMA public TO factorcov_reader)"
)


class UnsafeReaderError(StoreBusyError):
    """`factorcov sql` / `show` refuse a PostgreSQL user whose query could change the server
    for good (a superuser, ...); the message says which power and what to use instead. A
    `StoreBusyError`, so the command prints it in one line (exit 2)."""


def unsafe_powers(con: pg_dbapi.Connection) -> list[str]:
    """What the session's user can do beyond reading that a rollback does not undo: the
    attributes superuser and REPLICATION and the predefined roles of `UNSAFE_ROLES`, held
    directly or through membership (which a query could SET ROLE to), as phrases for a
    message; empty for a role that may only read."""
    with con.cursor() as cur:
        cur.execute(
            "SELECT rolname, rolsuper, rolreplication, rolname = session_user AS own "
            "FROM pg_roles WHERE pg_has_role(session_user, oid, 'MEMBER') "
            "ORDER BY rolname = session_user DESC, rolname"
        )
        roles = cur.fetch_arrow_table().to_pylist()
    if roles and roles[0]["own"] and roles[0]["rolsuper"]:
        return ["is a superuser"]  # (a superuser is a member of every role)
    powers: list[str] = []
    for r in roles:
        via = "" if r["own"] else f" (through role {r['rolname']})"
        if r["rolsuper"]:
            powers.append(f"is a superuser{via}")
        if r["rolreplication"]:
            powers.append(f"has REPLICATION{via}: replication slots outlive a rollback")
        if r["rolname"] in UNSAFE_ROLES:
            powers.append(f"is a member of {r['rolname']} ({UNSAFE_ROLES[r['rolname']]})")
    return powers


def _session_user(con: pg_dbapi.Connection) -> str:
    with con.cursor() as cur:
        cur.execute("SELECT session_user AS u")
        return str(cur.fetch_arrow_table().to_pylist()[0]["u"])


def _pg_message(err: BaseException) -> tuple[str, str]:
    """(SQLSTATE, PostgreSQL's own message) of a driver error, without the driver's prefix
    and the echo of the query."""
    text = str(err)
    state = str(getattr(err, "sqlstate", "") or "")
    if not state:
        found = re.search(r"SQLSTATE: ([0-9A-Z]{5})", text)
        state = found.group(1) if found else ""
    found = re.search(r"ERROR:\s+(.*)", text)
    if not state and found:  # a streamed result's error carries no SQLSTATE
        if "read-only transaction" in found.group(1):
            state = "25006"
        elif "permission denied" in found.group(1):
            state = "42501"
    message = found.group(1).strip() if found else text.strip().splitlines()[0]
    hint = re.search(r"HINT:\s+(.*)", text)
    if hint:
        message += f" (hint: {hint.group(1).strip()})"
    return state, message


def _first_keyword(sql: str) -> str:
    """The statement's first word, past comments, blanks and opening parentheses."""
    rest = sql
    while True:
        stripped = rest.lstrip().lstrip("(")
        if stripped.startswith("--"):
            rest = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        elif stripped.startswith("/*"):
            rest = stripped.split("*/", 1)[1] if "*/" in stripped else ""
        else:
            word = re.match(r"[A-Za-z_]+", stripped)
            return word.group(0).lower() if word else ""


_TOKEN = re.compile(
    r"'(?:[^']|'')*'?"  # string literal
    r'|"(?:[^"]|"")*"?'  # quoted identifier
    r"|(\$[A-Za-z_0-9]*\$)"  # opening dollar quote (its body is skipped below)
    r"|--[^\n]*"  # line comment
    r"|/\*"  # block comment (nested, skipped below)
    r"|;"
    r"|[^'\"$;/-]+|."
)


def strip_final_semicolons(sql: str) -> str:
    """`sql` without the semicolons that end it (followed by nothing but blanks and comments),
    as psql and DuckDB accept them; PostgreSQL's DECLARE CURSOR would refuse them. Semicolons
    inside literals, quoted names, dollar quotes and comments are not statement ends."""
    cut: int | None = None  # where the trailing run of semicolons/blanks/comments starts
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        assert m is not None  # the last alternative matches any character
        token, end = m.group(0), m.end()
        if m.group(1):  # $tag$ ... $tag$
            close = sql.find(m.group(1), end)
            end = len(sql) if close < 0 else close + len(m.group(1))
        elif token == "/*":
            depth = 1
            while depth and end < len(sql):
                if sql.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif sql.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        if token == ";":
            cut = pos if cut is None else cut
        elif not (token.isspace() or token.startswith(("--", "/*"))):
            cut = None
        pos = end
    return sql if cut is None else sql[:cut]


def _kind(field: pa.Field) -> str:
    meta = field.metadata or {}
    typname = meta.get(b"POSTGRESQL:type", b"").decode()
    if typname.startswith("_") or pa.types.is_list(field.type):
        return "list"
    return PG_KINDS.get(typname, typname or str(field.type))


class QueryStreamError(RuntimeError):
    """The server's error while a result streams (Arrow reports it as OSError/ArrowInvalid)."""


class PostgresQueryConnection(QueryConnection):
    """`PostgresStore.connect_query_only`'s connection: one READ ONLY transaction in which the
    user's SQL must be ONE query. Each query is first declared as a cursor
    (`DECLARE ... CURSOR FOR <sql>`), which PostgreSQL accepts for a single SELECT / VALUES /
    TABLE / WITH ... SELECT only: `SET ROLE`, `COPY ... TO PROGRAM`, DDL, DML and a second
    statement after `;` are refused before anything runs, and the transaction refuses every
    write (`transaction_read_only`) that a query could still attempt through a function."""

    errors = (pg_dbapi.Error, QueryStreamError)

    def __init__(self, con: pg_dbapi.Connection, timeout: float) -> None:
        self.con = con
        self.timeout = timeout
        self._open: list[pg_dbapi.Cursor] = []

    def _cursor(self) -> pg_dbapi.Cursor:
        cur = self.con.cursor()
        self._open.append(cur)
        return cur

    def close(self) -> None:
        """Close the cursors (a result still being streamed included)."""
        for cur in self._open:
            with suppress(pg_dbapi.Error):
                cur.close()
        self._open.clear()

    def open(self, sql: str, nested_as_json: bool = False) -> OpenQuery | None:
        body = strip_final_semicolons(sql).strip()
        if not body:
            return None
        body += "\n"  # a trailing -- comment must not swallow what the driver appends
        cur = self._cursor()
        cur.execute("DECLARE factorcov_query NO SCROLL CURSOR FOR\n" + body)
        cur.execute("CLOSE factorcov_query")
        schema = cur.adbc_execute_schema(body)
        names = list(schema.names)
        kinds = [_kind(f) for f in schema]
        exprs, parse = cast_projection(names, kinds, nested_as_json, "to_json", "text")
        if exprs is not None:
            body = f"SELECT {', '.join(exprs)} FROM (\n{body}) AS factorcov_query\n"
        parse = [
            (lambda v: decimal.Decimal(v)) if k == "decimal" and fn is None else fn
            for k, fn in zip(kinds, parse, strict=True)
        ]

        def reader() -> Iterator[pa.RecordBatch]:
            cur.execute(body)
            stream = cur.fetch_record_batch()
            while True:
                try:
                    batch = stream.read_next_batch()
                except StopIteration:
                    return
                except (OSError, pa.ArrowException) as err:  # the server's error, mid-stream
                    raise QueryStreamError(str(err)) from None
                yield batch

        return OpenQuery(names, kinds, parse, reader)

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self._cursor()
        cur.execute(to_dollar_params(sql), tuple(params) if params else None)
        table = cur.fetch_arrow_table()
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True))

    def has_table(self, name: str) -> bool:
        return bool(
            self.rows(
                "SELECT 1 AS one FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = ?",
                [name],
            )
        )

    def describe_error(self, err: BaseException) -> str:
        state, message = _pg_message(err)
        if "canceling statement due to statement timeout" in message:
            return f"the query was stopped after {self.timeout:g} s (--timeout)"
        if "cannot insert multiple commands" in message:
            return f"one statement at a time: a second statement after ';' ({READ_ONLY_HINT})"
        sql_text = re.search(r"CURSOR FOR\n(.*)", str(err), flags=re.DOTALL)
        first = _first_keyword(sql_text.group(1)) if sql_text else ""
        if state == "42601" and first in _COMMANDS:
            return f"{first.upper()} is not a query: {message} ({READ_ONLY_HINT})"
        if state in _REFUSED_STATES:
            return f"{message} ({READ_ONLY_HINT})"
        return message


class PostgresStore(BaseStore):
    """Every table of the pipeline in one PostgreSQL database (its default schema)."""

    def __init__(self, url: str, lock_timeout: float = 120.0) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"{ENV_DATABASE_URL}={redact(url)!r} is not a PostgreSQL URL "
                "(postgresql://user[:password]@host[:port]/database)"
            )
        self.url = url
        # A write that waits longer than this for a lock (another writer of the same dates)
        # fails with StoreBusyError instead of hanging.
        self.lock_timeout = lock_timeout

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def path(self) -> str:
        """Where the data is (the DuckDB store's attribute name, used in messages)."""
        return self.location

    @contextmanager
    def connect(self) -> Iterator[pg_dbapi.Connection]:
        """A short-lived connection (not in autocommit: statements run in one transaction until
        `commit()`)."""
        try:
            con = pg_dbapi.connect(self.url)
        except pg_dbapi.Error as err:
            raise StoreBusyError(
                f"cannot connect to PostgreSQL at {self.location}: "
                + str(err).strip().splitlines()[0]
            ) from err
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def connect_query_only(self, timeout: float = 0.0) -> Iterator[PostgresQueryConnection]:
        """A connection for untrusted SQL (`factorcov sql`, `factorcov show`): one
        `READ ONLY` transaction (rolled back at the end), a statement timeout of `timeout`
        seconds (0: none) and a lock timeout of the store's `lock_timeout` (a reader waits that
        long behind a writer's exclusive lock, e.g. a view being re-created). Only single
        queries run (`PostgresQueryConnection`).

        The URL's user must be a role that may only read (`unsafe_powers`, else
        `UnsafeReaderError`): a read-only transaction refuses writes to tables, but not what
        is not transactional (a replication slot, a signal to another session, a server
        file), and a superuser cannot be confined inside a session at all: PostgreSQL lets it
        switch back from `SET ROLE` and even from `SET SESSION AUTHORIZATION` within a query
        (`set_config('role' | 'session_authorization', ...)`, tests/test_postgres_query.py).
        What such a role could still write (a large object) is rolled back with the
        transaction. The schema search path of the URL's user is kept."""
        try:
            con = pg_dbapi.connect(self.url, autocommit=True)
        except pg_dbapi.Error as err:
            raise StoreBusyError(
                f"cannot connect to PostgreSQL at {self.location}: {_pg_message(err)[1]}"
            ) from err
        try:
            try:
                powers = unsafe_powers(con)
                if powers:
                    raise UnsafeReaderError(
                        f"factorcov sql and show refuse to query {self.location} as "
                        f"{_session_user(con)}, which {'; '.join(powers)}: a query could "
                        f"change the server for good; {READER_HINT}"
                    )
                self._exec(con, "BEGIN TRANSACTION READ ONLY")
                self._exec(con, f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
                self._exec(con, f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                (check,) = self._rows(con, "SELECT current_setting('transaction_read_only') AS ro")
                if check["ro"] != "on":  # never run untrusted SQL in a writable transaction
                    raise StoreBusyError(f"{self.location}: the transaction is not read-only")
            except pg_dbapi.Error as err:
                raise StoreBusyError(
                    f"cannot open a read-only transaction on PostgreSQL at {self.location}: "
                    + _pg_message(err)[1]
                ) from err
            query_con = PostgresQueryConnection(con, timeout)
            try:
                yield query_con
            finally:
                query_con.close()
        finally:
            # an error here is dropped: PostgreSQL discards the transaction on close
            with suppress(pg_dbapi.Error):
                self._exec(con, "ROLLBACK")
            con.close()

    # ---- reads -------------------------------------------------------------------------

    @staticmethod
    def _query(con: pg_dbapi.Connection, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with con.cursor() as cur:
            cur.execute(to_dollar_params(sql), tuple(params) if params else None)
            return cur.fetch_arrow_table()

    @staticmethod
    def _exec(con: pg_dbapi.Connection, sql: str, params: Sequence[Any] | None = None) -> None:
        with con.cursor() as cur:
            cur.execute(to_dollar_params(sql), tuple(params) if params else None)

    def _rows(
        self, con: pg_dbapi.Connection, sql: str, params: Sequence[Any] | None = None
    ) -> list:
        return self._query(con, sql, params).to_pylist()

    def _column_types(self, con: pg_dbapi.Connection, table: str) -> dict[str, str]:
        """Column name -> PostgreSQL data type of `table` in the default schema, in table
        order (empty if there is no such table)."""
        rows = self._rows(
            con,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        return {r["column_name"]: r["data_type"] for r in rows}

    def _columns(self, con: pg_dbapi.Connection, table: str) -> list[str]:
        return list(self._column_types(con, table))

    def table_type(self, con: pg_dbapi.Connection, name: str) -> str | None:
        """'BASE TABLE' or 'VIEW' for a relation of the default schema, None if there is none."""
        rows = self._rows(
            con,
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?",
            [name],
        )
        return str(rows[0]["table_type"]) if rows else None

    def table_names(self) -> list[str]:
        with self.connect() as con:
            rows = self._rows(
                con,
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY 1",
            )
        return [str(r["table_name"]) for r in rows]

    def read(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        with self.connect() as con:
            frame = pl.from_arrow(self._query(con, sql, params))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def read_dates(
        self,
        table: str,
        start: dt.date,
        end: dt.date,
        columns: str = "*",
        order: str = "",
        model: str | None = None,
    ) -> pl.DataFrame:
        """Rows of `table` with date in [start, end] (empty frame if the table is missing).

        Without an explicit `order` the rows come in the table's key order (date, then the
        asset or factor columns present, byte order), the order the DuckDB file returns them in
        (it keeps insertion order, and the writers insert sorted by date and asset, the report
        alphabetically): a heap table re-written in place has no stable physical order, and
        sums over a date's rows must add up in the same order on both stores to give the same
        bits.
        """
        date_col = DATE_COLUMN.get(table, "date")
        with self.connect() as con:
            existing = self._columns(con, table)
            if not existing:
                return pl.DataFrame()
            if MODEL_COLUMN in existing:
                self._note_model_column(con, table)
            clause, params = self.model_clause(table, model)
            if not order:
                keys = [c for c in SORT_KEYS if c in existing]
                order = ", ".join(
                    [quote_ident(date_col)] + [f'{quote_ident(k)} COLLATE "C"' for k in keys]
                )
            sql = f"SELECT {columns} FROM {quote_ident(table)} WHERE {date_col} BETWEEN ? AND ?"
            sql += clause + f" ORDER BY {order}"
            frame = pl.from_arrow(self._query(con, sql, [start, end, *params]))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def stored_dates(
        self,
        table: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        model: str | None = None,
    ) -> list[dt.date]:
        with self.connect() as con:
            if self.table_type(con, table) is None:
                return []
            if model is not None:
                self._note_model_column(con, table)
            sql, params = distinct_dates_sql(table, start, end, self.model_clause(table, model))
            rows = self._rows(con, sql, params)
        return [r["d"] for r in rows]

    def _note_model_column(self, con: pg_dbapi.Connection, table: str) -> None:
        """Look up on this connection whether `table` has the `model` column (`has_column`
        would open another connection)."""
        known: set[tuple[str, str]] = self.__dict__.setdefault("_known_columns", set())
        if (table, MODEL_COLUMN) not in known and MODEL_COLUMN in self._columns(con, table):
            known.add((table, MODEL_COLUMN))

    def has_table(self, name: str) -> bool:
        with self.connect() as con:
            return self.table_type(con, name) is not None

    def _column_exists(self, table: str, column: str) -> bool:
        with self.connect() as con:
            return column in self._columns(con, table)

    def read_state(self, asset: str, day: dt.date) -> bytes | None:
        with self.connect() as con:
            if self.table_type(con, STATE_TABLE) is None:
                return None
            rows = self._rows(
                con,
                f"SELECT state FROM {STATE_TABLE} WHERE asset = ? AND date = ?",
                [asset, day],
            )
        return None if not rows else bytes(rows[0]["state"])

    def latest_state(self, asset: str, on_or_before: dt.date) -> tuple[dt.date, bytes] | None:
        with self.connect() as con:
            if self.table_type(con, STATE_TABLE) is None:
                return None
            rows = self._rows(
                con,
                f"SELECT date, state FROM {STATE_TABLE} WHERE asset = ? AND date <= ? "
                "ORDER BY date DESC LIMIT 1",
                [asset, on_or_before],
            )
        return None if not rows else (rows[0]["date"], bytes(rows[0]["state"]))

    def stored_settings(self) -> str | None:
        with self.connect() as con:
            return self._identity(con)

    def _identity(self, con: pg_dbapi.Connection) -> str | None:
        """The stored settings JSON, None without a `model_settings` table or row; a relation
        edited by hand is refused in one line (`contract.stored_identity`)."""
        kind = self.table_type(con, SETTINGS_TABLE)
        values: list[Any] = []
        if kind == "BASE TABLE":
            try:
                rows = self._rows(con, f"SELECT settings_json FROM {SETTINGS_TABLE} LIMIT 2")
            except pg_dbapi.Error as err:
                raise SettingsMismatchError(
                    f"{self.location}: {SETTINGS_TABLE} cannot be read ({_pg_message(err)[1]}): "
                    f"restore it from a backup, or {_AFRESH}"
                ) from None
            values = [r["settings_json"] for r in rows]
        return stored_identity(kind, values, self.location, _AFRESH)

    # ---- writes ------------------------------------------------------------------------

    def _ddl_lock(self, con: pg_dbapi.Connection) -> None:
        """Serialise creations between writers until this transaction ends: after it, a
        statement sees what the previous holder committed (READ COMMITTED)."""
        self._exec(con, f"SELECT pg_advisory_xact_lock({_DDL_LOCK})")

    def _ensure_table(self, con: pg_dbapi.Connection, table: str, incoming: pa.Table) -> pa.Table:
        """Create `table` from the contract (fixed columns) and the incoming frame (the rest),
        with an index on its date column; refuse a write whose columns differ from the table's.

        Returns the incoming rows cast to the table's column types (binary COPY needs the exact
        type: an Int64 count into an INTEGER column is cast, refused if it overflows), as
        DuckDB's INSERT casts implicitly."""
        for name in incoming.column_names:
            if len(name.encode()) > MAX_IDENT_BYTES:
                raise ValueError(
                    f"column name {name!r} of table {table} is longer than PostgreSQL's "
                    f"{MAX_IDENT_BYTES}-byte identifier limit; shorten the factor name"
                )
        existing = self._columns(con, table)
        if not existing:
            self._ddl_lock(con)
            existing = self._columns(con, table)
        if not existing:
            cols = table_columns_in_order(
                table, [(f.name, _pg_type(f.type)) for f in incoming.schema]
            )
            ddl = ", ".join(f"{quote_ident(c)} {PG_TYPES.get(t, t)}" for c, t in cols)
            date_col = DATE_COLUMN.get(table, "date")
            self._exec(con, f"CREATE TABLE {quote_ident(table)} ({ddl})")
            self._exec(
                con,
                f"CREATE INDEX {quote_ident(table + '_' + date_col)} "
                f"ON {quote_ident(table)} ({quote_ident(date_col)})",
            )
            existing = self._columns(con, table)
        incoming_names = set(incoming.column_names)
        contract = TABLE_COLUMNS.get(table, {})
        added = [c for c in contract if c in incoming_names and c not in existing]
        if added and set(existing) <= incoming_names:
            # A contract column added by a later release (e.g. `warm` and `reason` in 0.9):
            # older databases gain it, NULL for their old rows, as the DuckDB store does
            # (under the DDL lock: concurrent chunked runs add it once).
            self._ddl_lock(con)
            existing = self._columns(con, table)
            for c in [c for c in added if c not in existing]:
                # the old rows take ADDED_COLUMN_VALUES' value (`model`: 'default'; a constant
                # default is stored once, not written into every row), new rows their own
                value = ADDED_COLUMN_VALUES.get(c)
                default = f" DEFAULT {value}" if value is not None else ""
                self._exec(
                    con,
                    f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(c)} "
                    f"{PG_TYPES[contract[c]]}{default}",
                )
                if value is not None:
                    self._exec(
                        con,
                        f"ALTER TABLE {quote_ident(table)} ALTER COLUMN {quote_ident(c)} "
                        "DROP DEFAULT",
                    )
            existing = self._columns(con, table)
        if incoming_names != set(existing):
            missing = sorted(set(existing) - incoming_names)
            extra = sorted(incoming_names - set(existing))
            raise ValueError(
                f"table {table} in {self.location} has other columns than this write "
                f"(missing {missing}, unexpected {extra}); the model changed: "
                f"use a new database ({ENV_DATABASE_URL}) or drop its tables"
            )
        types = self._column_types(con, table)
        incoming = incoming.select([c for c in types if c in incoming_names])  # table order
        schema = pa.schema(
            [pa.field(f.name, ARROW_TYPES.get(types[f.name], f.type)) for f in incoming.schema]
        )
        return incoming.cast(schema)

    def replace(
        self,
        writes: Sequence[TableWrite],
        dates: tuple[dt.date, dt.date],
        state: Mapping[str, Mapping[dt.date, bytes]] | None = None,
        settings_json: str | None = None,
        views: Sequence[ViewDef] = (),
        models: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the rows of dates in [start, end] of every table in `writes` (only those
        of each write's `keys`), atomically: one transaction (DELETE, COPY of the Arrow rows,
        views, state, settings identity and covariance models)."""
        start, end = dates
        writes = [w.with_model_key() for w in writes]
        copied: dict[str, int] = {}
        with self.connect() as con:
            try:
                self._exec(con, f"SET LOCAL lock_timeout = '{int(self.lock_timeout * 1000)}ms'")
                if settings_json is not None:
                    self._check_settings(con, settings_json)
                if models:
                    written = {str(m) for w in writes for m in w.keys.get(MODEL_COLUMN, ())}
                    self._check_models(con, models, written)
                with con.cursor() as cur:
                    for w in writes:
                        incoming = self._ensure_table(con, w.table, _to_arrow(w.frame))
                        if w.table in SUMMARY_TABLES:
                            # replaced as a whole: concurrent chunked runs take turns (a
                            # second DELETE then sees the first's rows; under READ COMMITTED
                            # both inserts would otherwise stay)
                            self._exec(
                                con,
                                f"LOCK TABLE {quote_ident(w.table)} IN SHARE ROW EXCLUSIVE MODE",
                            )
                        sql, _ = delete_sql(w.table, w.keys)
                        self._exec(con, sql, [start, end, *key_values(w.keys)])
                        if incoming.num_rows:
                            cur.adbc_ingest(w.table, incoming, mode="append")
                            copied[w.table] = copied.get(w.table, 0) + incoming.num_rows
                for view in views:
                    self._replace_view(con, view)
                if state:
                    self._write_state(con, state, start, end)
                con.commit()
                self._refresh_statistics(con, copied)
            except pg_dbapi.Error as err:
                con.rollback()
                if "55P03" in str(err) or "lock timeout" in str(err):
                    raise StoreBusyError(
                        f"PostgreSQL at {self.location}: another writer held the rows of "
                        f"{start} .. {end} for longer than {self.lock_timeout:.0f} s"
                    ) from err
                raise
            except BaseException:
                con.rollback()
                raise

    def _refresh_statistics(self, con: pg_dbapi.Connection, copied: Mapping[str, int]) -> None:
        """ANALYZE, after the commit, each table this write at least doubled (or that was never
        analysed): the next step queries it at once, long before autovacuum's ANALYZE (a
        minute's nap at least), and the planner's estimates for a table grown from nothing
        (one row assumed per page) chose plans that ran `risk_backtest`'s join of specific
        returns and risk for 100 s instead of 5 s over the tutorial's year. Doubling keeps it
        to a few ANALYZEs per table in a long backfill (chunks 1, 2, 4, 8, ...). Statistics
        are an optimisation: a table another session holds (`SKIP_LOCKED`) or an error here
        leaves the committed write as it is."""
        if not copied:
            return
        try:
            names = ", ".join(quote_literal(t) for t in sorted(copied))
            rows = self._rows(
                con,
                "SELECT relname AS t, reltuples AS n FROM pg_class WHERE relkind = 'r' "
                f"AND relnamespace = current_schema()::regnamespace AND relname IN ({names})",
            )
            stale = [r["t"] for r in rows if r["n"] <= 0 or copied[r["t"]] >= r["n"]]
            if stale:
                tables = ", ".join(quote_ident(t) for t in sorted(stale))
                self._exec(con, f"ANALYZE (SKIP_LOCKED) {tables}")
                con.commit()
        except pg_dbapi.Error:
            con.rollback()

    def _write_state(
        self,
        con: pg_dbapi.Connection,
        state: Mapping[str, Mapping[dt.date, bytes]],
        start: dt.date,
        end: dt.date,
    ) -> None:
        if self.table_type(con, STATE_TABLE) is None:
            self._ddl_lock(con)
            self._exec(
                con,
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
                "(asset VARCHAR, date DATE, state BYTEA, PRIMARY KEY (asset, date))",
            )
        for asset, by_date in state.items():
            self._exec(
                con,
                f"DELETE FROM {STATE_TABLE} WHERE asset = ? AND date BETWEEN ? AND ?",
                [asset, start, end],
            )
            if not by_date:  # an empty mapping deletes the range's states only
                continue
            rows = pa.table(
                {
                    "asset": pa.array([asset] * len(by_date), pa.string()),
                    "date": pa.array(list(by_date), pa.date32()),
                    "state": pa.array([bytes(b) for b in by_date.values()], pa.binary()),
                }
            )
            with con.cursor() as cur:
                cur.adbc_ingest(STATE_TABLE, rows, mode="append")
            self._exec(con, state_pruning_sql(), [asset, asset])

    def _replace_view(self, con: pg_dbapi.Connection, view: ViewDef) -> None:
        """Create `view`, or re-create it when its definition changed (an exclusive lock that
        readers of the view would wait for, so never done when nothing changed: the SQL's hash
        is kept as the view's comment)."""
        kind = self.table_type(con, view.name)
        if kind == "BASE TABLE":
            raise ValueError(
                f"{self.location}: {view.name} is a table, but this version stores it as a view; "
                f"use a new database ({ENV_DATABASE_URL}) or drop the table"
            )
        digest = hashlib.sha256(view.sql.encode()).hexdigest()
        if kind == "VIEW":
            rows = self._rows(
                con,
                "SELECT obj_description(to_regclass(?), 'pg_class') AS c",
                [quote_ident(view.name)],
            )
            if rows and rows[0]["c"] == digest:
                return
        self._ddl_lock(con)
        name = quote_ident(view.name)
        self._exec(con, f"DROP VIEW IF EXISTS {name}")
        self._exec(con, f"CREATE VIEW {name} AS {view.sql}")
        self._exec(con, f"COMMENT ON VIEW {name} IS {quote_literal(digest)}")

    def remove(
        self, tables: Sequence[str], dates: tuple[dt.date, dt.date], state_assets: Sequence[str]
    ) -> list[str]:
        start, end = dates
        removed: list[str] = []
        with self.connect() as con:
            try:
                for table in tables:
                    if self.table_type(con, table) != "BASE TABLE":
                        continue
                    date_col = DATE_COLUMN.get(table, "date")
                    where = f"{date_col} BETWEEN ? AND ?"
                    rows = self._rows(
                        con, f"SELECT count(*) AS n FROM {quote_ident(table)} WHERE {where}", dates
                    )
                    if rows[0]["n"]:
                        self._exec(con, f"DELETE FROM {quote_ident(table)} WHERE {where}", dates)
                        removed.append(table)
                if state_assets and self.table_type(con, STATE_TABLE) is not None:
                    for asset in state_assets:
                        self._exec(con, STATE_REMOVAL_SQL, state_removal_params(asset, start, end))
                con.commit()
            except BaseException:
                con.rollback()
                raise
        return removed

    # ---- the model's identity ----------------------------------------------------------

    def check_identity(self, settings_json: str, models: Mapping[str, str] | None = None) -> None:
        with self.connect() as con:
            stored = self._identity(con)
            if stored is None:
                self._refuse_unidentified(con)
            elif stored != settings_json:
                raise SettingsMismatchError(self._mismatch(stored, settings_json))
            if models:
                refused = models_mismatch(self.location, self._models(con), models)
                if refused:
                    raise SettingsMismatchError(refused)

    def _models(self, con: pg_dbapi.Connection) -> dict[str, str]:
        """`covariance_models` as name -> settings JSON (empty without the table)."""
        if self.table_type(con, MODELS_TABLE) != "BASE TABLE":
            return {}
        rows = self._rows(
            con,
            f'SELECT model, settings_json FROM {MODELS_TABLE} ORDER BY created_at, model COLLATE "C"',
        )
        return {str(r["model"]): str(r["settings_json"]) for r in rows}

    def stored_models(self) -> dict[str, str]:
        with self.connect() as con:
            return self._models(con)

    def _check_models(
        self, con: pg_dbapi.Connection, models: Mapping[str, str], written: set[str]
    ) -> None:
        """Refuse a model of `models` stored with other settings; add those of `written` the
        table does not list yet, under the DDL lock (concurrent chunked runs add a model
        once), in the caller's transaction."""
        stored = self._models(con)
        refused = models_mismatch(self.location, stored, models)
        if refused:
            raise SettingsMismatchError(refused)
        if not [m for m in models if m in written and m not in stored]:
            return
        self._ddl_lock(con)
        ddl = ", ".join(f"{c} {PG_TYPES[t]}" for c, t in MODELS_COLUMNS.items())
        self._exec(con, f"CREATE TABLE IF NOT EXISTS {MODELS_TABLE} ({ddl})")
        stored = self._models(con)  # another writer may have added some meanwhile
        refused = models_mismatch(self.location, stored, models)
        if refused:
            raise SettingsMismatchError(refused)
        for name in [m for m in models if m in written and m not in stored]:
            self._exec(
                con,
                f"INSERT INTO {MODELS_TABLE} VALUES (?, ?, localtimestamp)",
                [name, models[name]],
            )

    def _refuse_unidentified(self, con: pg_dbapi.Connection) -> None:
        """A database with data but no settings row cannot take ANY settings as its identity
        (the stored forecasts were made with settings nobody can check any more)."""
        tables = [
            r["table_name"]
            for r in self._rows(
                con,
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
                "AND table_name <> ?",
                [SETTINGS_TABLE],
            )
        ]
        with_rows = [
            t for t in tables if self._rows(con, f"SELECT 1 AS one FROM {quote_ident(t)} LIMIT 1")
        ]
        if with_rows:
            raise SettingsMismatchError(
                f"{self.location} holds data ({', '.join(sorted(with_rows)[:4])}"
                f"{' ...' if len(with_rows) > 4 else ''}) but no {SETTINGS_TABLE} row, so the "
                "settings it was built with are unknown; restore the row from a backup, or "
                f"point {ENV_DATABASE_URL} at a new database"
            )

    def _mismatch(self, stored: str, current: str) -> str:
        diffs = _diff_settings(json.loads(stored), json.loads(current))
        return (
            f"{self.location} holds forecasts made with other settings; differing: "
            + "; ".join(diffs)
            + f". To start afresh, point {ENV_DATABASE_URL} at a new database; "
            "to continue this one, use the settings it was built with "
            "(SELECT settings_json FROM model_settings)."
        )

    def _check_settings(self, con: pg_dbapi.Connection, settings_json: str) -> None:
        stored = self._identity(con)
        if stored is None:
            self._ddl_lock(con)  # another writer may create it meanwhile: look again after
            if self.table_type(con, SETTINGS_TABLE) is None:
                self._exec(
                    con,
                    f"CREATE TABLE IF NOT EXISTS {SETTINGS_TABLE} "
                    "(settings_json VARCHAR, created_at TIMESTAMP)",
                )
            stored = self._identity(con)
            if stored is None:
                self._refuse_unidentified(con)
                self._exec(
                    con,
                    f"INSERT INTO {SETTINGS_TABLE} VALUES (?, localtimestamp)",
                    [settings_json],
                )
                return
        if stored != settings_json:
            raise SettingsMismatchError(self._mismatch(stored, settings_json))
