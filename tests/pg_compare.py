"""Table-by-table, bit-for-bit comparison of two stores (DuckDB file or PostgreSQL database)."""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from factorcov_pipeline.storage import BaseStore, quote_ident


def dump(store: BaseStore) -> dict[str, pl.DataFrame]:
    """Every table and view of a store, rows sorted by every column (order-free comparison).

    `model_settings.created_at` and `covariance_models.created_at` are the wall-clock time of
    a write: they are left out.
    """
    out = {}
    for name in store.table_names():
        cols = {"model_settings": "settings_json", "covariance_models": "model, settings_json"}
        cols = cols.get(name, "*")
        frame = store.read(f"SELECT {cols} FROM {quote_ident(name)}")
        out[name] = frame.sort(frame.columns) if frame.height else frame
    return out


def assert_same_bits(a: pl.DataFrame, b: pl.DataFrame, what: str) -> None:
    """Same columns, dtypes and rows; float columns equal bit for bit (NaN payloads and the
    sign of zero included)."""
    assert a.columns == b.columns, (what, a.columns, b.columns)
    assert a.dtypes == b.dtypes, (what, a.dtypes, b.dtypes)
    assert a.height == b.height, (what, a.height, b.height)
    for col in a.columns:
        sa, sb = a[col], b[col]
        if sa.dtype.is_float():
            assert sa.is_null().equals(sb.is_null()), (what, col)
            xa = sa.fill_null(0.0).to_numpy().astype(np.float64)
            xb = sb.fill_null(0.0).to_numpy().astype(np.float64)
            assert np.array_equal(xa.view(np.uint64), xb.view(np.uint64)), (what, col)
        else:
            assert sa.equals(sb, check_names=True), (what, col)


def assert_same_stores(
    a: BaseStore,
    b: BaseStore,
    close: frozenset[str] = frozenset(),
    unequal: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """Every table of `a` is in `b` and equal bit for bit, and vice versa (tables in `close`:
    same rows, values to 1e-12 relative; tables in `unequal`: present in both, compared by the
    caller); returns row counts."""
    da, db = dump(a), dump(b)
    assert sorted(da) == sorted(db), (sorted(da), sorted(db))
    for name in da:
        if name in unequal:
            continue
        if name in close:
            assert_frame_equal(da[name], db[name], check_exact=False, rtol=1e-12, atol=0)
        else:
            assert_same_bits(da[name], db[name], name)
    return {name: frame.height for name, frame in da.items()}


def fingerprint(url: str) -> dict[str, object]:
    """What a statement could change in a PostgreSQL database, over ONE connection (a test
    that compares it before and after each of many statements would otherwise open a
    connection per table): per relation of the default schema its row count and an MD5 of its
    rows' text, sorted (row order ignored); the replication slots, the roles with their
    superuser and REPLICATION attributes, and the number of large objects."""
    import adbc_driver_postgresql.dbapi as pg_dbapi

    out: dict[str, object] = {}
    with pg_dbapi.connect(url) as con, con.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY 1"
        )
        names = [r[0] for r in cur.fetchall()]
        for name in names:
            cur.execute(
                "SELECT count(*), md5(coalesce(string_agg(h, ',' ORDER BY h), '')) "
                f"FROM (SELECT md5(t::text) AS h FROM {quote_ident(name)} AS t) AS rows"
            )
            out[name] = cur.fetchall()[0]
        for what, sql in (
            ("slots", "SELECT slot_name FROM pg_replication_slots ORDER BY 1"),
            ("roles", "SELECT rolname, rolsuper, rolreplication FROM pg_roles ORDER BY 1"),
            ("large objects", "SELECT count(*) FROM pg_largeobject_metadata"),
        ):
            cur.execute(sql)
            out[what] = cur.fetchall()
        con.rollback()
    return out
