"""Faults: a run killed with SIGKILL inside a partition write, a second run and a reader while a
run holds the DuckDB file, and SQL-looking names from user data through the whole pipeline.

The writer is a real subprocess running `run_range`. To kill it at a known point it wraps the
storage module's statement runner (`storage._run`, looked up at call time) so that right after
the `DELETE` of the chosen table (inside `Store.replace`'s transaction, before the `INSERT`) it
prints a marker and sleeps; production code is unchanged.
"""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.orchestration.runner import failure_messages
from factorcov_pipeline.storage import Store, StoreBusyError

sys.path.insert(0, str(Path(__file__).parent))
from test_userdata_pipeline import (
    END,
    SESSIONS,
    START,
    assert_unchanged,
    run,
    settings_file,
    snapshot,
    user_frame,
)

REPO = Path(__file__).resolve().parents[1]
MID = SESSIONS[8]

CHILD = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from factorcov_pipeline.storage import duckdb as storage
    from factorcov_pipeline.orchestration.resources import FactorcovStorage
    from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range

    db, settings, start, end, pause_table = sys.argv[1:6]
    original = storage._run

    def paused(con, sql, params=None):
        original(con, sql, params)
        if pause_table and sql.startswith(f'DELETE FROM "{pause_table}"'):
            print("PAUSED", flush=True)
            time.sleep(120)

    storage._run = paused
    result = run_range(
        dt.date.fromisoformat(start), dt.date.fromisoformat(end),
        FactorcovStorage(database=db, lock_timeout_seconds=60.0), settings,
        logger=quiet_logger(),
    )
    print("OK" if result.success else "FAILED " + " | ".join(failure_messages(result)), flush=True)
    """
)


def start_child(db: Path, settings: str, start: dt.date, end: dt.date, pause: str = ""):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FACTORCOV_PARTITIONS_START", None)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), settings, str(start), str(end), pause],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )


def wait_for(proc: subprocess.Popen, marker: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if line.startswith(marker):
            return line.strip()
    proc.kill()
    raise AssertionError(f"child never printed {marker!r}")


@pytest.fixture()
def stored(tmp_path):
    """A DuckDB file with [START, MID] materialised from a user dataset, and that dataset
    rewritten with different (valid) returns, so a rerun would change the stored rows."""
    data = tmp_path / "universe.parquet"
    frame = user_frame(n_assets=120)
    frame.write_parquet(data)
    settings = settings_file(tmp_path, str(data))
    db = tmp_path / "fc.duckdb"
    result = run(db, settings, START, MID)
    assert result.success, failure_messages(result)
    frame.with_columns(pl.col("total_return") * 0.5).write_parquet(data)
    return db, settings


def test_sigkill_inside_a_partition_write_keeps_the_old_rows(stored):
    db, settings = stored
    before = snapshot(db)
    child = start_child(db, settings, START, MID, pause="universe")
    wait_for(child, "PAUSED")  # old universe rows deleted inside the open transaction
    # while the writer holds the file: a reader and a second run get a clear busy message
    with (
        pytest.raises(StoreBusyError, match="locked by another process"),
        Store(db, lock_timeout=0.5).connect(read_only=True),
    ):
        pass
    second = run(db, settings, START, MID)
    assert not second.success
    assert "locked by another process" in " ".join(failure_messages(second))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    # the file opens; the partition's previous rows are intact (the transaction never landed)
    assert_unchanged(before, db)
    # the next run completes the partition with the new rows
    result = run(db, settings, START, MID)
    assert result.success, failure_messages(result)
    after = Store(db).read("SELECT * FROM universe ORDER BY date, asset_id")
    old = before["universe"]
    assert after.select("date", "asset_id").equals(old.select("date", "asset_id"))
    np.testing.assert_allclose(
        after["asset_return"].to_numpy(), 0.5 * old["asset_return"].to_numpy(), rtol=1e-15
    )


def test_cli_sql_reader_while_a_run_writes_gets_a_busy_message(stored, capsys, monkeypatch):
    db, settings = stored
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    monkeypatch.setenv("FACTORCOV_LOCK_TIMEOUT", "0.5")
    child = start_child(db, settings, START, MID, pause="factor_volatility")
    try:
        wait_for(child, "PAUSED")
        code = cli.main(["sql", "SELECT count(*) FROM factor_volatility"])
        out = capsys.readouterr()
        assert code != 0
        assert "locked by another process" in out.out + out.err
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # after the kill, a reader sees the old rows of every partition (not half of them)
    with Store(db).connect(read_only=True) as con:
        n = con.execute("SELECT count(DISTINCT date) FROM factor_volatility").fetchall()[0][0]
    assert n == len([d for d in SESSIONS if START < d <= MID])


def test_two_runs_at_once_serialise_and_neither_mixes_rows(tmp_path):
    data = tmp_path / "universe.parquet"
    user_frame(n_assets=120).write_parquet(data)
    settings = settings_file(tmp_path, str(data))
    reference = tmp_path / "reference.duckdb"
    assert run(reference, settings, START, MID).success
    db = tmp_path / "shared.duckdb"
    children = [start_child(db, settings, START, MID) for _ in range(2)]
    outputs = [c.communicate(timeout=300)[0] for c in children]
    assert all("OK" in out for out in outputs), outputs
    for table, frame in snapshot(reference).items():
        got = snapshot(db)[table]
        assert got.columns == frame.columns and got.height == frame.height, table
        value = [c for c in frame.columns if c != "model"][-1]  # the model name is a key
        key = [c for c in frame.columns if c != value]
        assert got.select(key).equals(frame.select(key)), table
        np.testing.assert_allclose(got[value].to_numpy(), frame[value].to_numpy(), rtol=1e-10)


def test_sql_looking_names_are_stored_as_data(tmp_path):
    """Asset ids with quotes, semicolons and SQL keywords go through every asset unchanged."""
    names = ["O'Reilly; DROP TABLE universe", 'x"); DELETE FROM exposures; --', "SELECT"]
    frame = user_frame(n_assets=120)
    ids = frame["asset_id"].unique().sort().to_list()[: len(names)]
    frame = frame.with_columns(pl.col("asset_id").replace(dict(zip(ids, names, strict=True))))
    data = tmp_path / "universe.csv"
    frame.write_csv(data)
    settings = settings_file(tmp_path, str(data))
    db = tmp_path / "fc.duckdb"
    result = run(db, settings, START, END)
    assert result.success, failure_messages(result)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    store = Store(db)
    for table in ("universe", "exposures", "specific_returns"):
        stored = set(store.read(f"SELECT DISTINCT asset_id FROM {table}")["asset_id"].to_list())
        assert set(names) <= stored, table
    n = store.read("SELECT count(*) AS n FROM universe WHERE asset_id = ?", [names[0]])["n"][0]
    assert n == frame.filter(pl.col("asset_id") == names[0]).height
    assert store.read("SELECT count(*) AS n FROM covariance_report")["n"][0] > 0


def test_sp500_settings_file_is_valid():
    from factorcov_pipeline.core.factors import factor_set_for
    from factorcov_pipeline.core.settings import load_settings

    settings = load_settings(REPO / "examples" / "sp500-settings.json")
    factors = factor_set_for(settings.factor_model_settings)
    assert factors.styles == ("Momentum", "Size", "Volatility")
    assert len(factors.sectors) == 10 and factors.k == 14
    assert json.loads((REPO / "examples" / "sp500-settings.json").read_text())
