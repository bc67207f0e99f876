"""A backfill launched the way the UI launches it, end to end, on the shipped PostgreSQL instance.

deploy/dagster-postgres.yaml (runs, event log and run queue on a throwaway PostgreSQL server,
`max_concurrent_runs: 2`), the pipeline's tables in another database of that server,
`FACTORCOV_BACKFILL_RUN_SESSIONS=10`. The backfill of 26 sessions is submitted through Dagster's
GraphQL mutation `launchPartitionBackfill` (what the UI's Materialize dialog sends) against the
workspace of workspace.yaml, loaded as `dagster dev` loads it (a code server process). Then
Dagster's own daemon code runs it: the backfill daemon's iteration (`execute_backfill_iteration`)
and the run queue's (`QueuedRunCoordinatorDaemon.run_iteration`), which launch each run in its
own process through the instance's run launcher, until the backfill is done.

Asserted: the range fans out into the runs `parallel.chunked_backfills` documents (the
`PER_DATE` assets in runs of at most 10 sessions, universe + exposures as 10 + 10 + 6 sessions
at once; the `IN_DATE_ORDER` assets in runs each starting after the run of the sessions before it
ended), every session of every asset is materialised exactly once, at most 2 runs execute at
once and 2 did, every run and the backfill succeed, and the stored tables hash equal to a
sequential `factorcov materialize` of the same range.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster_graphql.test.utils import execute_dagster_graphql

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.assets import ALL_ASSETS
from factorcov_pipeline.orchestration.parallel import IN_DATE_ORDER, PER_DATE
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.storage.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_stores
from pg_server import postgres_server
from tablehash import store_hashes

REPO = Path(__file__).resolve().parents[1]
# 26 sessions: forecast_bias has 21-session windows to store (25 return dates)
SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=50))[:26]
RUN_SESSIONS = 10
MAX_CONCURRENT = 2  # deploy/dagster-postgres.yaml
# forecast_bias's rolling moments are summed per written chunk (tests/test_parallel.py): equal
# to 1e-12 there, bit for bit elsewhere
CLOSE = frozenset({"forecast_bias"})

LAUNCH = """
mutation Launch($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end] intervals that contain one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """A failed run's assets, range and step errors, for the assertion message."""
    errors = [
        f"{e.step_key}: {e.dagster_event.step_failure_data.error.message.strip()}"
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if e.dagster_event is not None and e.dagster_event.step_failure_data.error is not None
    ]
    span = [run.tags.get(f"dagster/asset_partition_range_{x}") for x in ("start", "end")]
    assets = sorted(k.to_user_string() for k in run.asset_selection or ())
    return f"{assets} {span}: {'; '.join(errors) or run.status}"


@contextmanager
def _code_server_stopped(timeout: float = 60.0) -> Iterator[None]:
    """Wait, after the block, for the processes it started (the workspace's code server and
    its helpers) to exit, and kill those still there after `timeout` s: a code server whose
    instance database went away while it was shutting down (the PostgreSQL fixture stops the
    server right after a failed test) hung forever."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    try:
        yield
    finally:
        started = [p for p in me.children(recursive=True) if p.pid not in before]
        _, alive = psutil.wait_procs(started, timeout=timeout)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=10)


def _run_backfill(backfill_id: str, context: WorkspaceProcessContext, deadline: float) -> None:
    """The daemon's two loops, without their 30 s / 5 s sleeps: the backfill iteration
    (requests runs as partitions materialise) and the run queue (launches queued runs up to
    the concurrency limit), until the backfill leaves REQUESTED."""
    instance = context.instance
    queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
    log = logging.getLogger("factorcov.test_ui_backfill")
    while time.monotonic() < deadline:
        list(execute_backfill_iteration(context, log))
        list(queue.run_iteration(context))
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        if backfill.status != BulkActionStatus.REQUESTED:
            return
        time.sleep(0.5)
    raise AssertionError(f"the backfill did not finish in time: {backfill.status}")


def test_a_ui_backfill_fans_out_into_concurrent_chunked_runs_equal_to_sequential(
    pg, tmp_path, monkeypatch
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 200}}}))
    backfilled = pg.create_database("ui")
    # inherited by the code server and by every run's process
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL",
        pg.create_database("dagster").replace("postgresql://", "postgresql+psycopg2://"),
    )
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", backfilled)
    monkeypatch.setenv("FACTORCOV_SETTINGS", str(settings))
    monkeypatch.setenv("FACTORCOV_BACKFILL_RUN_SESSIONS", str(RUN_SESSIONS))
    monkeypatch.setenv("FACTORCOV_CHUNK_SESSIONS", str(RUN_SESSIONS))
    names = [next(iter(a.keys)).to_user_string() for a in ALL_ASSETS]

    instance = dg.DagsterInstance.get()
    try:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        # what the queue daemon enforces: the file's concurrency.runs over the coordinator's own
        queue_config = instance.get_concurrency_config().run_queue_config
        assert queue_config is not None and queue_config.max_concurrent_runs == MAX_CONCURRENT
        target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
        with _code_server_stopped(), WorkspaceProcessContext(instance, target) as context:
            result = execute_dagster_graphql(
                context.create_request_context(),
                LAUNCH,
                {
                    "backfillParams": {
                        "assetSelection": [{"path": [n]} for n in names],
                        "partitionNames": [str(d) for d in SESSIONS],
                    }
                },
            )
            launched = result.data["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]
            _run_backfill(backfill_id, context, time.monotonic() + 600)
        backfill = instance.get_backfill(backfill_id)
        records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        failed = [
            _failure(instance, r.dagster_run) for r in records if not r.dagster_run.is_success
        ]
        assert backfill is not None and not failed, failed
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        runs = [
            (
                {k.to_user_string() for k in r.dagster_run.asset_selection or ()},
                calendar.sessions(
                    dt.date.fromisoformat(
                        r.dagster_run.tags["dagster/asset_partition_range_start"]
                    ),
                    dt.date.fromisoformat(r.dagster_run.tags["dagster/asset_partition_range_end"]),
                ),
                r,
            )
            for r in records
        ]
        # universe + exposures: the range in runs of 10 sessions (10, 10, 6), requested at once
        chunked = [SESSIONS[i : i + RUN_SESSIONS] for i in range(0, len(SESSIONS), RUN_SESSIONS)]
        assert sorted(d for a, d, _ in runs if a == {"universe", "exposures"}) == chunked
        for name in names:
            mine = sorted(((d, r) for a, d, r in runs if name in a), key=lambda dr: dr[0][0])
            # every session of the range exactly once, none outside it
            assert sorted(d for days, _ in mine for d in days) == SESSIONS, name
            if name in PER_DATE:
                assert all(len(days) <= RUN_SESSIONS for days, _ in mine), name
            else:  # in date order: a run starts after the run of the sessions before it ended
                assert name in IN_DATE_ORDER
                for (_, before), (_, after) in itertools.pairwise(mine):
                    assert after.start_time >= before.end_time, name
        # what each run reads was materialised before it started: the same sessions of its
        # parents in other runs, and for the IN_DATE_ORDER assets every earlier session too
        # (of its parents, in its run or not, and of its own)
        stored = {
            name: {
                dt.date.fromisoformat(str(e.partition_key)): e.timestamp
                for e in instance.fetch_materializations(dg.AssetKey(name), limit=1000).records
            }
            for name in names
        }
        parents = {
            next(iter(a.keys)).to_user_string(): {k.to_user_string() for k in a.dependency_keys}
            for a in ALL_ASSETS
        }
        for assets, days, record in runs:
            for name in assets:
                needs = [(p, d) for p in parents[name] - assets for d in days]
                if name in IN_DATE_ORDER:
                    earlier = [d for d in SESSIONS if d < days[0]]
                    needs += [(p, d) for p in parents[name] | {name} for d in earlier]
                late = [(p, str(d)) for p, d in needs if stored[p][d] > record.start_time]
                assert not late, (name, str(days[0]), late[:3])
        # several runs at a time, never more than the limit
        intervals = [(r.start_time, r.end_time) for _, _, r in runs]
        assert _overlap(intervals) == MAX_CONCURRENT, intervals
    finally:
        instance.dispose()

    # the same range through `factorcov materialize`, one sequential run, unrecorded
    from factorcov_pipeline.orchestration.assets import common

    monkeypatch.setattr(common, "CHUNK_SESSIONS", RUN_SESSIONS)  # the same written spans
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.delenv("FACTORCOV_BACKFILL_RUN_SESSIONS")
    sequential = pg.create_database("seq")
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", sequential)
    argv = ["materialize", "--start", str(SESSIONS[0]), "--end", str(SESSIONS[-1])]
    assert cli.main(argv) == 0
    a, b = PostgresStore(sequential), PostgresStore(backfilled)
    skip = CLOSE | {"_forecast_state"}
    assert store_hashes(a, skip=skip) == store_hashes(b, skip=skip)
    counts = assert_same_stores(a, b, close=CLOSE, unequal=frozenset({"_forecast_state"}))
    assert counts["factor_covariance"] == (len(SESSIONS) - 1) * 21 * 21
    assert counts["forecast_bias"] > 0
    # The recursions' resume states are stored at the end of each run and of each chunk within
    # a run, so their dates follow the runs' spans; the states at the range's last session (what
    # the next daily run continues from) are the sequential run's, bit for bit.
    seq, ui = (
        {(r["asset"], r["date"]): bytes(r["state"]) for r in s.read(
            "SELECT asset, date, state FROM _forecast_state").iter_rows(named=True)}
        for s in (a, b)
    )  # fmt: skip
    last = [k for k in seq if k[1] == SESSIONS[-1]]
    assert {n for n, _ in last} == {"factor_volatility", "factor_correlation", "specific_risk"}
    for key in last:
        assert _same_state(key[0], ui[key], seq[key]), key
    assert {d for _, d in ui} <= set(SESSIONS)


def _same_state(asset: str, left: bytes, right: bytes) -> bool:
    """The same recursion state. The EWMA states bit for bit; the specific risk state per asset
    id, bit for bit: its asset axis grows in the order assets first appear in a chunk, which
    follows how the runs were chunked (the forecasts, compared above, do not depend on it)."""
    if asset != "specific_risk":
        return left == right
    import numpy as np

    from factorcov_pipeline.core.specific_risk import SpecificRiskState

    def canonical(blob: bytes) -> list[np.ndarray]:
        st = SpecificRiskState.from_bytes(blob)
        order = np.argsort(st.asset_ids, kind="stable")
        out = [st.config, np.asarray(st.asset_ids)[order]]
        out += [a[..., order] for a in (st.n_obs, st.nw_s, st.nw_w, st.lag_buffer, st.last_var)]
        out += [st.var_ewma.s[order], st.var_ewma.w[order]]
        if st.vra_ewma is not None:
            out += [np.atleast_1d(st.vra_ewma.s), np.atleast_1d(st.vra_ewma.w)]
        return out

    a, b = canonical(left), canonical(right)
    return len(a) == len(b) and all(
        x.shape == y.shape
        and (np.array_equal(x, y) if x.dtype.kind in "UO" else np.array_equal(x, y, equal_nan=True))
        for x, y in zip(a, b, strict=True)
    )
