"""A fingerprint of every table of a DuckDB file, to assert that a refused run changed nothing.

`table_hashes(db)` maps each relation of the main schema (tables, views and the internal
`_forecast_state`/`model_settings`/`covariance_models`) to the SHA-256 of its rows sorted by every column, so two
calls compare equal exactly when no row was added, removed or changed (row order ignored).
`store_hashes(store)` does the same through a store (DuckDB or PostgreSQL) from the values
only, so the hashes of two stores holding the same rows are equal.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import polars as pl

from factorcov_pipeline.storage import BaseStore, quote_ident

# Tables whose `created_at` is the wall-clock time of a write, left out of the comparison.
TIMESTAMPED = ("model_settings", "covariance_models")


def table_hashes(db: str | Path) -> dict[str, str]:
    """{table name: SHA-256 of its sorted rows} for every table and view of `db`."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for name in names:
            frame = pl.from_arrow(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            if name in TIMESTAMPED:
                frame = frame.drop("created_at")
            out[name] = _frame_hash(frame)
        return out
    finally:
        con.close()


def assert_tables_unchanged(before: dict[str, str], db: str | Path) -> None:
    """Every table of `db` hashes as in `before` (and no table was added or dropped)."""
    after = table_hashes(db)
    changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    assert not changed, f"tables changed: {changed}"


def store_hashes(store: BaseStore, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """{table or view: SHA-256 of its column names and types and of polars' hash of each row,
    rows sorted by every column} for every relation of `store` but those in `skip`
    (model_settings and covariance_models without their creation times). From the values, not from Arrow's buffers: a
    string column read from PostgreSQL is laid out otherwise than the same read from DuckDB."""
    out = {}
    for name in store.table_names():
        if name in skip:
            continue
        frame = store.read(f"SELECT * FROM {quote_ident(name)}")
        if name in TIMESTAMPED:
            frame = frame.drop("created_at")
        out[name] = _frame_hash(frame)
    return out


def _frame_hash(frame: pl.DataFrame) -> str:
    """SHA-256 of the column names and types and of polars' hash of each row, rows sorted by
    every column: equal for equal values, however the rows were laid out in Arrow buffers (an
    IPC dump of the same values can differ with the read's chunking)."""
    frame = frame.sort(frame.columns) if frame.height else frame
    digest = hashlib.sha256(repr(frame.schema).encode())
    digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()
