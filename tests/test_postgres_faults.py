"""Concurrency and crashes on PostgreSQL (a real throwaway server, tests/pg_server.py).

The writer is a real subprocess running `run_range` into PostgreSQL. To stop it at a known point
it wraps `PostgresStore._exec` (looked up at call time) so that right after the `DELETE` of the
chosen table inside `replace`'s transaction it prints a marker and sleeps; production code is
unchanged. While it sits there, a reader must get its answer at once (MVCC: no waiting) and see
every old row; SIGKILL then leaves the database with the old rows, and the next run completes
the range. A second test polls while a normal run commits chunk after chunk: every date it sees
is complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import FactorcovPostgres, FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store
from factorcov_pipeline.storage.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_stores, dump
from pg_server import postgres_server

REPO = Path(__file__).resolve().parents[1]
SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=40))[:16]
MID = SESSIONS[8]

CHILD = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from factorcov_pipeline.storage import postgres
    from factorcov_pipeline.orchestration.resources import FactorcovPostgres
    from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range

    url, settings, start, end, pause_table = sys.argv[1:6]
    original = postgres.PostgresStore._exec

    def paused(con, sql, params=None):
        original(con, sql, params)
        if pause_table and sql.startswith(f'DELETE FROM "{pause_table}"'):
            print("PAUSED", flush=True)
            time.sleep(120)

    postgres.PostgresStore._exec = staticmethod(paused)
    result = run_range(
        dt.date.fromisoformat(start), dt.date.fromisoformat(end),
        FactorcovPostgres(url=url), settings, logger=quiet_logger(),
    )
    print("OK" if result.success else "FAILED " + " | ".join(failure_messages(result)), flush=True)
    """
)


def start_child(url: str, settings: str, start: dt.date, end: dt.date, pause: str = "", **env):
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    environ.pop("FACTORCOV_PARTITIONS_START", None)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, settings, str(start), str(end), pause],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environ,
        cwd=REPO,
    )


def wait_for(proc: subprocess.Popen, marker: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if line.startswith(marker):
            return
    proc.kill()
    raise AssertionError(f"child never printed {marker!r}")


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pgf") / "settings.json"
    path.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 300}}}))
    return str(path)


def per_date_counts(store: PostgresStore, table: str) -> dict[dt.date, int]:
    frame = store.read(f"SELECT date, count(*) AS n FROM {table} GROUP BY date")
    return dict(frame.iter_rows())


@pytest.mark.parametrize("pause", ["universe", "factor_volatility"])
def test_sigkill_mid_write_keeps_old_rows_readers_never_wait_next_run_completes(
    pg, settings, tmp_path, pause
):
    url = pg.create_database("kill")
    store = PostgresStore(url)
    first = run_range(SESSIONS[0], MID, FactorcovPostgres(url=url), settings, logger=quiet_logger())
    assert first.success, failure_messages(first)
    before = dump(store)
    child = start_child(url, settings, SESSIONS[0], SESSIONS[-1], pause=pause)
    try:
        wait_for(child, "PAUSED")  # the old rows are deleted inside the child's open transaction
        t0 = time.perf_counter()
        during = per_date_counts(store, pause)
        waited = time.perf_counter() - t0
        assert waited < 5.0, waited  # answered from the snapshot, not after the writer
        assert during == per_date_counts_from(before[pause])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    after = dump(store)
    # the killed transaction's tables keep their old rows; with the pause in the first write
    # (universe) nothing at all changed, later the earlier assets' commits stand
    same_transaction = {
        "universe": list(before),
        "factor_volatility": ["factor_volatility", "volatility_regime", "_forecast_state"],
    }[pause]
    for name in same_transaction:
        assert after[name].equals(before[name]), name
    # the next run completes the range, equal to an uninterrupted run into a DuckDB file
    result = run_range(
        SESSIONS[0], SESSIONS[-1], FactorcovPostgres(url=url), settings, logger=quiet_logger()
    )
    assert result.success, failure_messages(result)
    duck = tmp_path / "reference.duckdb"
    ref = run_range(
        SESSIONS[0],
        SESSIONS[-1],
        FactorcovStorage(database=str(duck)),
        settings,
        logger=quiet_logger(),
    )
    assert ref.success
    assert_same_stores(Store(duck), store)


def per_date_counts_from(frame) -> dict[dt.date, int]:
    counts = frame.group_by("date").len()
    return dict(counts.iter_rows())


def test_a_reader_polling_during_a_run_sees_only_whole_partitions(pg, settings):
    url = pg.create_database("poll")
    store = PostgresStore(url)
    # 2 sessions per transaction: many commits for the reader to fall between
    child = start_child(url, settings, SESSIONS[0], SESSIONS[-1], FACTORCOV_CHUNK_SESSIONS="2")
    seen: list[dict[str, dict[dt.date, int]]] = []
    slowest = 0.0
    tables = ("universe", "exposures_wide", "factor_volatility", "factor_covariance")
    while child.poll() is None:
        t0 = time.perf_counter()
        snap = {}
        for table in tables:
            try:
                snap[table] = per_date_counts(store, table)
            except Exception:  # the table is not created yet
                snap[table] = {}
        slowest = max(slowest, time.perf_counter() - t0)
        seen.append(snap)
        time.sleep(0.05)
    out = child.stdout.read() if child.stdout else ""
    assert "OK" in out, out
    final = {t: per_date_counts(store, t) for t in tables}
    distinct = {tuple(sorted((t, len(s[t])) for t in tables)) for s in seen}
    assert len(distinct) >= 3, "the reader never saw the run in progress"
    for snap in seen:
        for table in tables:
            for day, n in snap[table].items():
                assert n == final[table][day], (table, day, n, final[table][day])
    assert slowest < 5.0
