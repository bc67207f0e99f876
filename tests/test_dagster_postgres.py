"""Dagster's instance on PostgreSQL (deploy/dagster-postgres.yaml through dagster-postgres) and
the chunked backfill policy for the UI, against a real throwaway server."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.assets import ALL_ASSETS
from factorcov_pipeline.orchestration.parallel import (
    IN_DATE_ORDER,
    PER_DATE,
    chunked_backfills,
    run_parallel,
)
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import (
    FactorcovPostgres,
    FactorcovSettings,
    FactorcovStorage,
)
from factorcov_pipeline.orchestration.runner import failure_messages

sys.path.insert(0, str(Path(__file__).parent))
from pg_server import postgres_server

REPO = Path(__file__).resolve().parents[1]
SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=20))[:8]


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


def test_parallel_runs_are_recorded_in_a_postgres_instance(pg, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    dagster_db = pg.create_database("dagster").replace("postgresql://", "postgresql+psycopg2://")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_db)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 200}}}))
    url = pg.create_database("data")
    result = run_parallel(
        SESSIONS[0], SESSIONS[-1], FactorcovPostgres(url=url), str(settings), 2, 4, progress=None
    )
    assert result.success, failure_messages(result)  # type: ignore[arg-type]
    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = instance.get_runs()
        # 2 chunks x 4 per-chunk stages + the recursions' run + risk_backtest's run, all
        # recorded by concurrent workers
        assert len(runs) == len(result.outcomes) == 10
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        key = dg.AssetKey("universe")
        assert instance.get_latest_materialization_event(key) is not None
        assert instance.get_settings("concurrency")["runs"]["max_concurrent_runs"] == 2
    finally:
        instance.dispose()


def test_chunked_backfill_policy_for_the_ui(monkeypatch):
    assert [a.backfill_policy for a in chunked_backfills(ALL_ASSETS)] == [
        a.backfill_policy for a in ALL_ASSETS
    ]
    chunked = chunked_backfills(ALL_ASSETS, run_sessions=63)
    previous = dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )
    for asset, original in zip(chunked, ALL_ASSETS, strict=True):
        key = next(iter(asset.keys))
        name = key.to_user_string()
        if name in PER_DATE:
            assert asset.backfill_policy == dg.BackfillPolicy.multi_run(63), name
            assert asset.dependency_keys == original.dependency_keys, name
        else:  # runs in date order: after its own previous session
            assert name in IN_DATE_ORDER
            assert asset.backfill_policy == dg.BackfillPolicy.single_run(), name
            assert asset.dependency_keys == original.dependency_keys | {key}, name
            assert asset.get_partition_mapping(key) == previous, name
        for parent in original.dependency_keys:  # every other dep stays same-session
            assert asset.get_partition_mapping(parent) is None, (name, parent)
    assert {next(iter(a.keys)).to_user_string() for a in ALL_ASSETS} == PER_DATE | IN_DATE_ORDER
    assert {"factor_volatility", "factor_correlation"} <= IN_DATE_ORDER
    defs = dg.Definitions(
        assets=chunked, resources={"storage": FactorcovStorage(), "model": FactorcovSettings()}
    )
    defs.resolve_all_job_defs()  # loads as a code location would
    monkeypatch.setenv("FACTORCOV_BACKFILL_RUN_SESSIONS", "0")
    with pytest.raises(ValueError, match="FACTORCOV_BACKFILL_RUN_SESSIONS='0' is not a positive"):
        chunked_backfills(ALL_ASSETS)
