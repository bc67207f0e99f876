"""The daily schedule catches up: one tick after a gap of several sessions (or on a fresh file)
materialises every missing session up to the tick's session in ONE run; the missing-predecessor
error names the first session of the gap and the command that fills it."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.assets import ALL_ASSETS
from factorcov_pipeline.orchestration.catchup import last_complete_session
from factorcov_pipeline.orchestration.checks import ALL_CHECKS
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.orchestration.schedules import daily_job, daily_schedule
from factorcov_pipeline.storage import Store

START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 5, 15))[:14]


@pytest.fixture
def settings(tmp_path) -> str:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 200}}}))
    return str(path)


def _tick(db: Path, day: dt.date) -> dg.RunRequest | dg.SkipReason:
    # a context manager: the storage resource holds a connection for its lifetime (the daemon
    # builds it the same way for each evaluation)
    with dg.build_schedule_context(
        scheduled_execution_time=pd.Timestamp(
            f"{day} 18:30", tz="America/New_York"
        ).to_pydatetime(),
        resources={"storage": FactorcovStorage(database=str(db))},
    ) as context:
        result = daily_schedule.evaluate_tick(context)
    if result.skip_message:
        return dg.SkipReason(result.skip_message)
    (request,) = result.run_requests
    return request


def _execute(db: Path, settings: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run the schedule's request as the daemon would: the job with the request's tags."""
    definitions = dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[daily_job],
        resources={
            "storage": FactorcovStorage(database=str(db)),
            "model": FactorcovSettings(settings_file=settings),
        },
    )
    instance = dg.DagsterInstance.ephemeral()
    result = definitions.resolve_job_def(daily_job.name).execute_in_process(
        instance=instance, tags=request.tags, raise_on_error=False
    )
    assert len(instance.get_runs()) == 1
    return result


def test_tick_after_a_gap_catches_up_in_one_run(tmp_path, settings):
    db = tmp_path / "fc.duckdb"
    assert run_range(
        START, SESSIONS[4], FactorcovStorage(database=str(db)), settings, logger=quiet_logger()
    ).success
    # the deployment was off for 8 sessions: the tick on SESSIONS[12] fills 5..12 in one run
    request = _tick(db, SESSIONS[12])
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key is None
    assert request.tags["dagster/asset_partition_range_start"] == str(SESSIONS[5])
    assert request.tags["dagster/asset_partition_range_end"] == str(SESSIONS[12])
    result = _execute(db, settings, request)
    assert result.success, failure_messages(result)
    store = Store(db)
    for table in ["universe", "factor_volatility", "covariance_report"]:
        days = store.stored_dates(table)
        assert days[-1] == SESSIONS[12] and set(SESSIONS[5:13]) <= set(days), table
    assert last_complete_session(store) == SESSIONS[12]
    # every asset materialised for every session of the gap, in that one run
    mats = {(e.asset_key.path[-1], e.partition) for e in result.get_asset_materialization_events()}
    assert len(mats) == len(ALL_ASSETS) * 8
    # the next tick the same day has nothing to do
    again = _tick(db, SESSIONS[12])
    assert isinstance(again, dg.SkipReason) and "already materialised" in again.skip_message


def test_first_tick_on_a_fresh_file_starts_at_the_first_partition(tmp_path):
    request = _tick(tmp_path / "fresh.duckdb", SESSIONS[9])
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == str(START)
    assert request.tags["dagster/asset_partition_range_end"] == str(SESSIONS[9])


def test_tick_on_a_holiday_is_skipped(tmp_path):
    # Good Friday 2025-04-18: the weekday cron fires, the exchange is closed
    skipped = _tick(tmp_path / "fc.duckdb", dt.date(2025, 4, 18))
    assert isinstance(skipped, dg.SkipReason) and "not a New York" in skipped.skip_message


def test_missing_predecessor_names_the_first_session_of_the_gap(tmp_path, settings):
    db = tmp_path / "fc.duckdb"
    storage = FactorcovStorage(database=str(db))
    assert run_range(START, SESSIONS[3], storage, settings, logger=quiet_logger()).success
    # "Latest" months later: the message names the whole gap 4..9, not only the day before
    result = run_range(SESSIONS[10], SESSIONS[10], storage, settings, logger=quiet_logger())
    assert not result.success
    message = " ".join(failure_messages(result))
    assert f"{SESSIONS[4]} .. {SESSIONS[9]} are not materialised" in message, message
    assert f"factorcov materialize --start {SESSIONS[4]} --end {SESSIONS[10]}" in message
    # following the message fills the gap: the command's range then succeeds
    assert run_range(SESSIONS[4], SESSIONS[10], storage, settings, logger=quiet_logger()).success


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write, as a run holds the file
print("READY", flush=True)
time.sleep(60)
"""


def test_tick_while_a_run_holds_the_file_is_skipped_with_the_reason(tmp_path, monkeypatch):
    """A run holds the DuckDB file from its first step to its end: a tick waits briefly
    (`TICK_LOCK_TIMEOUT`, well inside Dagster's 60 s for an evaluation, not the 120 s of
    FACTORCOV_LOCK_TIMEOUT) and is skipped, saying why and that the next tick catches up."""
    import subprocess
    import sys
    import time

    from factorcov_pipeline.orchestration import schedules

    db = tmp_path / "held.duckdb"
    Store(db).stored_dates("universe")  # creates the file
    monkeypatch.setattr(schedules, "TICK_LOCK_TIMEOUT", 1.0)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "READY"
        t0 = time.perf_counter()
        result = _tick(db, SESSIONS[3])
        waited = time.perf_counter() - t0
    finally:
        holder.kill()
        holder.wait()
    assert isinstance(result, dg.SkipReason), result
    assert "locked by another process" in (result.skip_message or "")
    assert f"every session missing up to {SESSIONS[3]}" in (result.skip_message or "")
    assert waited < 30, waited  # the tick's wait, not FACTORCOV_LOCK_TIMEOUT
    # once the file is free, the next tick requests the catch-up run
    request = _tick(db, SESSIONS[3])
    assert isinstance(request, dg.RunRequest)
