"""Untrusted, read-only queries (`factorcov sql`, `factorcov show`) through either store.

`BaseStore.connect_query_only()` yields a `QueryConnection`: a connection on which a user's SQL
can run but cannot write anything, read other files or change settings (DuckDB: read-only file,
external access disabled, configuration locked; PostgreSQL: a READ ONLY transaction that accepts
one query only, with a statement timeout). `terminal.py` and `session_view.py` format what it
returns and know nothing of the backend.

Column kinds are DuckDB's type ids (`DuckDBPyType.id`: "double", "date", "varchar", "list", ...)
for both stores, so that the formatting (numbers right-aligned, leading dates and names repeated
in every block of a wide table) is one code path; the PostgreSQL store maps its Arrow types onto
them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

# Kinds whose Arrow form converts to the right Python value; every other kind is converted to
# text by the database itself (or to JSON for nested values in JSON output).
NATIVE_KINDS = {
    "boolean", "tinyint", "smallint", "integer", "bigint", "utinyint", "usmallint", "uinteger",
    "ubigint", "float", "double", "decimal", "date", "varchar", "timestamp", "timestamp_s",
    "timestamp_ms", "timestamp_ns", "timestamp with time zone",
}  # fmt: skip
KEY_KINDS = {"varchar", "date", "timestamp", "timestamp with time zone", "enum", "uuid"}
NESTED_KINDS = {"list", "struct", "map", "array", "union"}
WHOLE_NUMBER_KINDS = {"hugeint", "uhugeint", "bignum", "varint"}
NUMERIC_KINDS = {
    "tinyint", "smallint", "integer", "bigint", "utinyint", "usmallint", "uinteger", "ubigint",
    "float", "double", "decimal", *WHOLE_NUMBER_KINDS,
}  # fmt: skip

READ_ONLY_HINT = (
    "factorcov sql is read-only: it runs one query on the pipeline's tables, and cannot "
    "write, read other files, attach databases, load extensions or change settings"
)


class QueryTimeoutError(RuntimeError):
    """A query ran longer than the timeout it was given and was stopped."""


@dataclass(frozen=True)
class OpenQuery:
    """A query bound but not yet run: its columns, their kinds and how to read them.

    `parse[j]` converts a non-null value of column j (e.g. `json.loads` for nested values sent
    as JSON text); `reader()` runs the query once and streams its rows as Arrow record batches.
    """

    columns: list[str]
    kinds: list[str]
    parse: list[Callable[[Any], Any] | None]
    reader: Callable[[], Iterable[pa.RecordBatch]]

    def batches(self, limit: int | None) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
        """(rows in the batch, the batch's rows still within `limit` as Python tuples); only
        the kept rows are held in memory."""
        kept = 0
        for batch in self.reader():
            room = batch.num_rows if limit is None else max(0, min(batch.num_rows, limit - kept))
            columns = []
            for col, fn in zip(batch.slice(0, room).columns, self.parse, strict=True):
                values = col.to_pylist()
                columns.append([None if v is None else fn(v) for v in values] if fn else values)
            kept += room
            yield batch.num_rows, list(zip(*columns, strict=True)) if room else []


def quote(name: str) -> str:
    """A column name as a quoted SQL identifier (the same rule in DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def cast_projection(
    columns: Sequence[str], kinds: Sequence[str], nested_as_json: bool, to_json: str, text: str
) -> tuple[list[str] | None, list[Callable[[Any], Any] | None]]:
    """The select list that sends every non-native column as the database's own text
    (`CAST(col AS text)`) or, for nested values when `nested_as_json`, as JSON text
    (`to_json`), and the parser of each column; None when no column needs it (or when the
    result repeats a column name, so that a projection by name is impossible: Arrow's form then)."""
    exprs: list[str] = []
    parse: list[Callable[[Any], Any] | None] = []
    for name, kind in zip(columns, kinds, strict=True):
        col = quote(name)
        if kind in NATIVE_KINDS:
            exprs.append(col)
            parse.append(None)
        elif kind in NESTED_KINDS and nested_as_json:
            exprs.append(f"CAST({to_json}({col}) AS {text}) AS {col}")
            parse.append(json.loads)
        else:
            exprs.append(f"CAST({col} AS {text}) AS {col}")
            parse.append(int if kind in WHOLE_NUMBER_KINDS and nested_as_json else None)
    if all(e == quote(n) for e, n in zip(exprs, columns, strict=True)):
        return None, parse
    if len(set(columns)) != len(columns):
        return None, [None] * len(columns)
    return exprs, parse


class QueryConnection(ABC):
    """A read-only connection for untrusted SQL (`BaseStore.connect_query_only`)."""

    #: the exceptions a query can raise (its SQL is wrong, or it was refused)
    errors: tuple[type[BaseException], ...]

    @abstractmethod
    def open(self, sql: str, nested_as_json: bool = False) -> OpenQuery | None:
        """Bind the user's `sql` (one query). None for a statement without a result."""

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of a trusted standard-SQL query with `?` placeholders."""

    @abstractmethod
    def has_table(self, name: str) -> bool:
        """A table or view of that name is in the store's schema."""

    @abstractmethod
    def describe_error(self, err: BaseException) -> str:
        """One of `errors` as one line: the database's message, with a hint when the
        statement was refused because the connection is read-only."""
