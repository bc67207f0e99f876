"""A fingerprint of every table of a DuckDB file, to assert that a refused run changed nothing.

`table_hashes(db)` maps each relation of the main schema (tables, views and the internal
`_forecast_state`/`model_settings`) to the SHA-256 of its rows sorted by every column, so two
calls compare equal exactly when no row was added, removed or changed (row order ignored).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import duckdb
import polars as pl


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
            if name == "model_settings":
                frame = frame.drop("created_at")
            frame = frame.sort(frame.columns) if frame.height else frame
            buf = io.BytesIO()
            frame.write_ipc(buf)
            out[name] = hashlib.sha256(buf.getvalue()).hexdigest()
        return out
    finally:
        con.close()


def assert_tables_unchanged(before: dict[str, str], db: str | Path) -> None:
    """Every table of `db` hashes as in `before` (and no table was added or dropped)."""
    after = table_hashes(db)
    changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    assert not changed, f"tables changed: {changed}"
