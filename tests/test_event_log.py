"""The shipped instance's event log (`orchestration/event_log.py`) records what Dagster's stock
SQLite storage records: the same events, materialised partitions and per-session check results,
and a failed batch leaves nothing behind."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._record import copy

from factorcov_pipeline.cli import main
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.checks import ALL_CHECKS
from factorcov_pipeline.orchestration.event_log import (
    EVENT_BATCH_SIZE_VAR,
    FactorcovSqliteEventLogStorage,
)

REPO = Path(__file__).resolve().parents[1]
START = dt.date(2025, 3, 31)
END = calendar.sessions(START, dt.date(2025, 6, 30))[7]
STOCK_YAML = (
    "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\ntelemetry:\n  enabled: false\n"
)


def _record(tmp: Path, name: str, yaml_text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`factorcov materialize` of 8 sessions recorded in a fresh DAGSTER_HOME."""
    home = tmp / name
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml_text)
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 200}}}))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp / f"{name}.duckdb"))
    argv = ["materialize", "--start", str(START), "--end", str(END), "--settings", str(settings)]
    assert main(argv) == 0
    return home


def _summary(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """What the UI reads: the run's events in storage order with their storage ids (type,
    asset, partition); materialised partitions; each asset's last materialisation; each check's
    status per partition with the ids of its evaluation and of the materialisation it checked."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        records = instance.get_records_for_run(run.run_id, limit=100_000).records
        events = [
            (
                record.storage_id,
                entry.dagster_event.event_type_value,
                entry.dagster_event.asset_key.to_user_string()
                if entry.dagster_event.asset_key
                else None,
                entry.dagster_event.partition,
            )
            for record in records
            if (entry := record.event_log_entry).dagster_event is not None
        ]
        assert Counter(e[1] for e in events)["ASSET_CHECK_EVALUATION"] > 0
        assets = sorted({key[2] for key in events if key[2]})
        partitions = {
            asset: sorted(instance.get_materialized_partitions(dg.AssetKey(asset)))
            for asset in assets
        }
        last = {
            asset: (
                (record := instance.get_latest_materialization_event(dg.AssetKey(asset)))
                and (record.dagster_event.partition, record.timestamp > 0)  # type: ignore[union-attr]
            )
            for asset in assets
        }
        checks = {
            key.to_user_string(): sorted(
                (
                    record.partition,
                    record.status.value,
                    record.event.get_dagster_event().event_specific_data.target_materialization_data.storage_id  # type: ignore[union-attr]
                    if record.event and record.status.value != "PLANNED"
                    else None,
                )
                for record in instance.event_log_storage.get_asset_check_execution_history(
                    key, limit=1000
                )
            )
            for check in ALL_CHECKS
            for key in check.check_keys
        }
        return {
            "run": run.status,
            "events": events,
            "partitions": partitions,
            "last": last,
            "checks": checks,
        }


def test_shipped_event_log_records_what_dagsters_stock_storage_records(tmp_path, monkeypatch):
    monkeypatch.delenv(EVENT_BATCH_SIZE_VAR, raising=False)
    stock = _summary(_record(tmp_path, "stock", STOCK_YAML, monkeypatch), monkeypatch)
    shipped_yaml = (REPO / "deploy" / "dagster.yaml").read_text()
    assert "FactorcovSqliteStorage" in shipped_yaml
    monkeypatch.delenv(EVENT_BATCH_SIZE_VAR, raising=False)
    ours = _summary(_record(tmp_path, "ours", shipped_yaml, monkeypatch), monkeypatch)
    assert os.environ[EVENT_BATCH_SIZE_VAR] == "1000"  # batches were on for our run
    assert ours == stock
    assert stock["run"] == dg.DagsterRunStatus.SUCCESS
    sessions = [str(d) for d in calendar.sessions(START, END)]
    assert stock["partitions"]["factor_volatility"] == sessions
    for key, records in ours["checks"].items():  # type: ignore[union-attr]
        succeeded = [p for p, status, _ in records if status == "SUCCEEDED"]
        assert succeeded == sessions, key


@contextmanager
def _shipped_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dg.DagsterInstance, FactorcovSqliteEventLogStorage, dg.DagsterRun]]:
    """A run recorded with the shipped dagster.yaml: its instance, event log and run."""
    home = _record(tmp_path, "home", (REPO / "deploy" / "dagster.yaml").read_text(), monkeypatch)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, FactorcovSqliteEventLogStorage)
        (run,) = instance.get_runs()
        yield instance, storage, run


def test_a_failed_batch_stores_none_of_its_events(tmp_path, monkeypatch):
    with _shipped_home(tmp_path, monkeypatch) as (instance, storage, run):
        before = len(instance.all_logs(run.run_id))
        materialised = len(instance.get_materialized_partitions(dg.AssetKey("factor_volatility")))
        batch = [
            entry
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None
            and entry.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        ][:5]
        calls = {"n": 0}
        original = storage._store_asset_event

        def failing(conn, event, event_id):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("disk gone")
            original(conn, event, event_id)

        monkeypatch.setattr(storage, "_store_asset_event", failing)
        with pytest.raises(RuntimeError, match="disk gone"):
            storage.store_event_batch(batch)
        # the batch's rows were inserted into both shards before the asset row's update failed
        assert calls["n"] == 1
        assert len(instance.all_logs(run.run_id)) == before
        monkeypatch.setattr(storage, "_store_asset_event", original)
        storage.store_event_batch(batch)  # and a batch that succeeds is stored whole
        assert len(instance.all_logs(run.run_id)) == before + len(batch)
        assert (
            len(instance.get_materialized_partitions(dg.AssetKey("factor_volatility")))
            == materialised
        )
        statuses = {
            record.status
            for record in storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("factor_volatility"), "factor_volatility_valid"),
                limit=100,
            )
        }
        assert statuses == {AssetCheckExecutionRecordStatus.SUCCEEDED}


def test_a_home_written_by_dagsters_stock_storage_keeps_its_history(tmp_path, monkeypatch):
    """Same files, same layout: updating a DAGSTER_HOME's dagster.yaml to the shipped one keeps
    its runs and their events."""
    home = _record(tmp_path, "home", STOCK_YAML, monkeypatch)
    before = _summary(home, monkeypatch)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    assert _summary(home, monkeypatch) == before


def test_waiting_check_evaluations_are_stored_once_and_before_any_read(tmp_path, monkeypatch):
    """Check evaluations wait in memory (`FactorcovSqliteEventLogStorage.store_event`): a read
    stores them first; an evaluation without a planned row makes the multi-row update find too
    few rows, and then every waiting evaluation is stored Dagster's way, once (the failed
    batch's inserts rolled back)."""
    with _shipped_home(tmp_path, monkeypatch) as (instance, storage, run):
        before = len(instance.all_logs(run.run_id))
        check_key = dg.AssetCheckKey(dg.AssetKey("factor_volatility"), "factor_volatility_valid")
        (planned_one, *_) = [
            e
            for e in instance.all_logs(run.run_id)
            if e.dagster_event is not None
            and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
            and e.dagster_event.event_specific_data.asset_check_key == check_key  # type: ignore[union-attr]
        ]
        data = planned_one.get_dagster_event().event_specific_data
        unplanned = planned_one._replace(
            dagster_event=planned_one.get_dagster_event()._replace(
                event_specific_data=copy(data, partition="2030-01-02")
            )
        )
        storage.store_event(planned_one)  # a second evaluation of a planned partition
        storage.store_event(unplanned)
        assert len(storage._pending) == 2  # waiting, not stored yet
        logs = instance.all_logs(run.run_id)  # a read: stores them first
        assert not storage._pending
        assert len(logs) == before + 2
        history = storage.get_asset_check_execution_history(check_key, limit=1000)
        by_partition = Counter(record.partition for record in history)
        assert by_partition["2030-01-02"] == 1  # inserted by Dagster's own fallback
        assert set(by_partition.values()) == {1}
