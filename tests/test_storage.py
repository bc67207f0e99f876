"""Storage: one transaction per write, by column name, rollback on error, lock retry."""

import datetime as dt
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from factorcov_pipeline.storage import Store, StoreBusyError, TableWrite

D1, D2 = dt.date(2025, 4, 1), dt.date(2025, 4, 2)


def _fr(day: dt.date, value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [day, day],
            "factor": ["Market", "Size"],
            "factor_group": ["market", "style"],
            "factor_return": [value, -value],
        }
    )


def test_replace_is_idempotent_and_matches_columns_by_name(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1))
    reordered = _fr(D1, 0.02).select(["factor_return", "factor", "date", "factor_group"])
    store.replace([TableWrite("factor_returns", reordered)], (D1, D1))
    store.replace([TableWrite("factor_returns", reordered)], (D1, D1))
    got = store.read("SELECT * FROM factor_returns ORDER BY factor")
    assert got.columns == ["date", "factor", "factor_group", "factor_return"]
    assert got["factor_return"].to_list() == [0.02, -0.02]


def test_a_failing_write_leaves_the_old_rows(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D2))
    bad = _fr(D1, 0.05).with_columns(pl.lit("x").alias("unexpected"))
    with pytest.raises(ValueError, match="unexpected"):
        store.replace(
            [TableWrite("factor_returns", _fr(D1, 0.03)), TableWrite("factor_returns", bad)],
            (D1, D2),
        )
    assert store.read("SELECT factor_return FROM factor_returns ORDER BY factor")[
        "factor_return"
    ].to_list() == [0.01, -0.01]


def test_names_with_quotes_are_data(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    evil = "O'Reilly; DROP TABLE universe"
    frame = pl.DataFrame(
        {"date": [D1], "factor": [evil], "factor_group": ["style"], "factor_return": [1.0]}
    )
    store.replace([TableWrite("factor_returns", frame)], (D1, D1))
    assert store.read("SELECT factor FROM factor_returns")["factor"].to_list() == [evil]


def test_settings_identity(tmp_path):
    from factorcov_pipeline.storage import SettingsMismatchError

    store = Store(tmp_path / "s.duckdb")
    store.replace(
        [TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1), settings_json='{"a": {"b": 1}}'
    )
    with pytest.raises(SettingsMismatchError, match=r"a\.b: stored 1, now 2"):
        store.replace(
            [TableWrite("factor_returns", _fr(D1, 0.09))], (D1, D1), settings_json='{"a": {"b": 2}}'
        )
    assert store.read("SELECT max(factor_return) AS m FROM factor_returns")["m"][0] == 0.01


def test_a_locked_file_gives_a_clear_busy_error(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(path)!r})
            print("locked", flush=True)
            time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(StoreBusyError, match="locked by another process"),
            Store(path, lock_timeout=0.5).connect(read_only=True),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone the file opens and the rows are intact
    assert Store(path).read("SELECT count(*) AS n FROM factor_returns")["n"][0] == 2


def test_a_write_with_other_columns_is_refused_and_leaves_the_old_rows(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1))
    bad = _fr(D1, 0.5).rename({"factor_return": "not_a_column"})
    with pytest.raises(ValueError, match=r"other columns than this write.*'not_a_column'"):
        store.replace([TableWrite("factor_returns", bad)], (D1, D1))
    assert store.read("SELECT * FROM factor_returns ORDER BY factor").equals(_fr(D1, 0.01))


def test_an_older_table_gains_a_contract_column_added_later(tmp_path):
    """A file written before regression_stats had its degenerate-case columns: the next write
    adds them (NULL on the old rows) instead of refusing the file."""
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        con.execute(
            "CREATE TABLE regression_stats (date DATE, n_assets INTEGER, r_squared DOUBLE, "
            "n_clipped INTEGER, thin_categories INTEGER, degenerate BOOLEAN)"
        )
        con.execute("INSERT INTO regression_stats VALUES (?, 10, 0.5, 0, 0, false)", [D1])
    new = pl.DataFrame(
        {
            "date": [D2],
            "n_assets": [11],
            "r_squared": [0.6],
            "n_clipped": [0],
            "thin_categories": [0],
            "degenerate": [False],
            "exactly_fitted": [False],
            "empty_categories": [""],
            "single_asset_categories": [""],
        },
        schema_overrides={"n_assets": pl.Int32, "n_clipped": pl.Int32, "thin_categories": pl.Int32},
    )
    store.replace([TableWrite("regression_stats", new)], (D2, D2))
    got = store.read("SELECT * FROM regression_stats ORDER BY date")
    assert got.columns == list(new.columns)
    assert got["exactly_fitted"].to_list() == [None, False]
    assert got["n_assets"].to_list() == [10, 11]


def _wal_bytes(store: Store) -> int:
    frame = store.read("SELECT wal_size FROM pragma_database_size()")
    size = frame["wal_size"][0]
    number, unit = size.split()
    return int(float(number) * {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[unit])


def _wide(day: dt.date, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [day] * n,
            "asset_id": [f"A{i}" for i in range(n)],
            "x": [float(i) for i in range(n)],
        }
    )


def test_a_background_checkpoint_moves_the_log_while_the_run_goes_on(tmp_path):
    """`checkpoint_in_background` empties the write-ahead log on another thread while the held
    connection keeps reading and writing; the close joins it and every row is stored."""
    import time

    from factorcov_pipeline.storage.duckdb import checkpoint_in_background, holding_connections

    store = Store(tmp_path / "s.duckdb")
    with holding_connections():
        store.replace([TableWrite("rows", _wide(D1, 50_000))], (D1, D1))
        assert _wal_bytes(store) > 100_000  # the rows are in the log, not yet in the file
        checkpoint_in_background()
        store.replace([TableWrite("factor_returns", _fr(D2, 0.01))], (D2, D2))  # meanwhile
        deadline = time.monotonic() + 30
        while _wal_bytes(store) > 10_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _wal_bytes(store) <= 10_000  # at most the small write made meanwhile
        checkpoint_in_background()  # a second one, still under way at the close, is joined
        store.replace([TableWrite("rows", _wide(D2, 10))], (D2, D2))
    assert store.read("SELECT count(*) AS n FROM rows")["n"][0] == 50_010
    assert store.read("SELECT * FROM factor_returns")["factor_return"].to_list() == [0.01, -0.01]


def test_a_transaction_open_during_a_background_checkpoint_commits_and_lasts(tmp_path):
    """A write transaction open while the background checkpoint runs: its rows are not lost
    (they reach the log at its commit) and are in the file after the close and a reopen."""
    from factorcov_pipeline.storage.duckdb import (
        _CHECKPOINTS,
        checkpoint_in_background,
        holding_connections,
    )

    store = Store(tmp_path / "s.duckdb")
    with holding_connections():
        store.replace([TableWrite("rows", _wide(D1, 20_000))], (D1, D1))
        with store.connect() as con:
            other = con.cursor()
            other.execute("BEGIN TRANSACTION")
            other.execute("INSERT INTO rows VALUES (DATE '2025-04-02', 'B', 1.0)")
            checkpoint_in_background()
            (thread,) = _CHECKPOINTS.get().values()
            thread.join()
            other.execute("COMMIT")
            other.close()
    reopened = Store(tmp_path / "s.duckdb")
    assert reopened.read("SELECT count(*) AS n FROM rows")["n"][0] == 20_001


def test_a_failed_background_checkpoint_is_left_to_the_close():
    """The background thread swallows DuckDB's error (the close checkpoints) and closes its
    cursor either way."""
    import duckdb

    from factorcov_pipeline.storage.duckdb import _checkpoint

    class Failing:
        closed = False

        def execute(self, sql):
            raise duckdb.IOException(f"{sql}: no space left on device")

        def close(self):
            self.closed = True

    cursor = Failing()
    _checkpoint(cursor)  # type: ignore[arg-type]
    assert cursor.closed


def test_a_background_writer_joins_the_runs_open_database(tmp_path):
    """Inside `holding_connections`, the step's thread opens the held connection before a
    background writer starts: the writer's connection joins the open database, so its write
    stays in the log (no close of a last connection checkpointed it) and the file is opened
    once, not once per thread."""
    from factorcov_pipeline.storage.duckdb import holding_connections

    store = Store(tmp_path / "s.duckdb")
    store.replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1))  # the file exists
    with holding_connections():
        with store.write_behind() as writer:
            writer.replace([TableWrite("rows", _wide(D1, 20_000))], (D1, D1))
        assert _wal_bytes(store) > 100_000
    assert store.read("SELECT count(*) AS n FROM rows")["n"][0] == 20_000
