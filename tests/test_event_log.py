"""The shipped instance's event log (`orchestration/event_log.py`) records what Dagster's stock
SQLite storage records: the same events, materialised partitions and per-session check results,
and a failed batch leaves nothing behind."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

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
    """What the UI reads: events by type, asset and partition; materialised partitions; each
    check's status per partition."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        events = Counter(
            (
                entry.dagster_event.event_type_value,
                entry.dagster_event.asset_key.to_user_string()
                if entry.dagster_event.asset_key
                else None,
                entry.dagster_event.partition,
            )
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None
        )
        assets = sorted({key[1] for key in events if key[1]})
        partitions = {
            asset: sorted(instance.get_materialized_partitions(dg.AssetKey(asset)))
            for asset in assets
        }
        checks = {
            key.to_user_string(): sorted(
                (record.partition, record.status.value)
                for record in instance.event_log_storage.get_asset_check_execution_history(
                    key, limit=1000
                )
            )
            for check in ALL_CHECKS
            for key in check.check_keys
        }
        return {"run": run.status, "events": events, "partitions": partitions, "checks": checks}


def test_shipped_event_log_records_what_dagsters_stock_storage_records(tmp_path, monkeypatch):
    monkeypatch.delenv(EVENT_BATCH_SIZE_VAR, raising=False)
    stock = _summary(_record(tmp_path, "stock", STOCK_YAML, monkeypatch), monkeypatch)
    shipped_yaml = (REPO / "dagster.yaml").read_text()
    assert "FactorcovSqliteStorage" in shipped_yaml
    monkeypatch.delenv(EVENT_BATCH_SIZE_VAR, raising=False)
    ours = _summary(_record(tmp_path, "ours", shipped_yaml, monkeypatch), monkeypatch)
    assert os.environ[EVENT_BATCH_SIZE_VAR] == "1000"  # batches were on for our run
    assert ours == stock
    assert stock["run"] == dg.DagsterRunStatus.SUCCESS
    sessions = [str(d) for d in calendar.sessions(START, END)]
    assert stock["partitions"]["factor_volatility"] == sessions
    for key, records in ours["checks"].items():  # type: ignore[union-attr]
        succeeded = [p for p, status in records if status == "SUCCEEDED"]
        assert succeeded == sessions, key


def test_a_failed_batch_stores_none_of_its_events(tmp_path, monkeypatch):
    shipped_yaml = (REPO / "dagster.yaml").read_text()
    home = _record(tmp_path, "home", shipped_yaml, monkeypatch)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, FactorcovSqliteEventLogStorage)
        (run,) = instance.get_runs()
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
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    assert _summary(home, monkeypatch) == before
