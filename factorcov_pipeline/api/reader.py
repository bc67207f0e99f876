"""Trusted, parameterised reads as polars frames over a store's read-only connection.

`BaseStore.connect_query_only()` yields a `storage.query.QueryConnection` (DuckDB: the file
opened read-only and locked down; PostgreSQL: one READ ONLY transaction). Its `rows()` gives
Python tuples; the read layer wants columns, so `StoreReader.frame` reads a query's result as
Arrow and hands it to polars (no per-value Python objects, float64 bit for bit).

On PostgreSQL one failed statement aborts the whole transaction; a `RiskModel` keeps its
transaction open for its lifetime, so each statement runs inside a savepoint that is rolled
back on error (PostgreSQL docs, SAVEPOINT): a bad `RiskModel.sql(...)` does not break the calls
after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa

from factorcov_pipeline.storage.duckdb import DuckDBQueryConnection, query_polars
from factorcov_pipeline.storage.query import QueryConnection

T = TypeVar("T")


class StoreReader:
    """Reads of one open `QueryConnection`; ``location`` names the store in messages."""

    def __init__(self, con: QueryConnection, location: str) -> None:
        self.con = con
        self.location = location
        self._postgres = not isinstance(con, DuckDBQueryConnection)

    @contextmanager
    def _statement(self) -> Iterator[None]:
        """A savepoint around one statement on PostgreSQL (nothing on DuckDB)."""
        if not self._postgres:
            yield
            return
        raw: Any = getattr(self.con, "con")  # noqa: B009 (the driver connection; see module doc)
        with raw.cursor() as cur:
            cur.execute("SAVEPOINT factorcov_read")
        try:
            yield
        except BaseException:
            with raw.cursor() as cur:
                cur.execute("ROLLBACK TO SAVEPOINT factorcov_read")
            raise
        with raw.cursor() as cur:
            cur.execute("RELEASE SAVEPOINT factorcov_read")

    def run(self, action: Callable[[], T]) -> T:
        """``action()`` as one statement (inside a savepoint on PostgreSQL)."""
        with self._statement():
            return action()

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """The result of a trusted standard-SQL query with ``?`` placeholders, as polars."""
        if not self._postgres:
            assert isinstance(self.con, DuckDBQueryConnection)
            return query_polars(self.con.con, sql, list(params))
        from factorcov_pipeline.storage.postgres import to_dollar_params

        raw: Any = getattr(self.con, "con")  # noqa: B009

        def read() -> pa.Table:
            with raw.cursor() as cur:
                cur.execute(to_dollar_params(sql), tuple(params) if params else None)
                return cur.fetch_arrow_table()

        out = pl.from_arrow(self.run(read))
        assert isinstance(out, pl.DataFrame)
        return out

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a trusted query as Python tuples."""
        return self.run(lambda: self.con.rows(sql, list(params)))

    def has_table(self, name: str) -> bool:
        """A table or view of that name is in the store's schema."""
        return self.run(lambda: self.con.has_table(name))

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` (empty when there is no such table or view)."""
        rows = self.rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        return [str(r[0]) for r in rows]
