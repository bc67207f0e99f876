"""A run whose process is SIGKILLed must not block Dagster's run queue (issue 21, item 7).

The shipped instance (deploy/dagster.yaml) starts one run at a time. Before run monitoring, a
recorded run killed without a word (SIGKILL, the out-of-memory killer, a power loss) stayed
STARTED for ever and every later run stayed QUEUED ("1 runs are currently in progress. Maximum
is 1"). Now the daemon's run monitoring asks `FactorcovRunLauncher` whether each started run's
process is alive and fails a dead run, and the queue moves on.

End to end, against `dagster dev` (webserver + daemon) with the shipped instance file, one test
(fails on the 0.8.0 instance file: the new run stays QUEUED):
- a `factorcov materialize` recorded in DAGSTER_HOME, SIGKILLed mid-run, then a run launched
  from the UI: the killed run is FAILED and the new run SUCCEEDS within a bounded time;
- a UI-launched run, with the whole `dagster dev` (webserver, daemon, code server, run worker)
  SIGKILLed mid-run (a power loss), `dagster dev` started again: same.
(A UI run worker killed alone is failed by Dagster's code server, which watches the processes it
started, as long as the code server lives.)
And the health check alone: a live process, a dead one, a zombie, a re-used process id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus

from factorcov_pipeline.orchestration import run_launcher
from factorcov_pipeline.orchestration.run_launcher import FactorcovRunLauncher, worker_health

sys.path.insert(0, str(Path(__file__).parent / "browser"))
from dagster_dev import (
    SHIPPED_INSTANCE,
    DagsterDev,
    launch_range_run,
    runs,
    start_dagster_dev,
    stop_dagster_dev,
    wait_for_run,
)

# A range long enough to be killed in the middle (about 10 s of run at 300 assets).
LONG = ("2025-03-31", "2025-06-30")
SHORT = ("2025-03-31", "2025-04-02")
# The shipped monitoring polls every 5 s and the queue every 1 s: a dead run is failed and the
# next run started within seconds; the next run then takes its own 10-25 s on a loaded 2-core
# machine (process start included). Before run monitoring it stayed QUEUED for ever.
BOUND_SECONDS = 90
FACTORCOV = str(Path(sys.executable).parent / "factorcov")


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def _recorded_pid(home: Path, run_id: str) -> int:
    with _instance(home) as instance:
        recorded = run_launcher.recorded_worker(instance, run_id)
    assert recorded is not None, run_id
    return recorded[0]


def _queue_moves_on(dev: DagsterDev, dead_run: str) -> None:
    """A run launched from the UI after the kill: the dead run is failed with the launcher's
    message and the new run succeeds, within BOUND_SECONDS of the launch."""
    t0 = time.monotonic()
    new_run = launch_range_run(dev, *SHORT)
    done = wait_for_run(dev, new_run, ("SUCCESS", "FAILURE", "CANCELED"), timeout=BOUND_SECONDS)
    waited = time.monotonic() - t0
    assert done["status"] == "SUCCESS", dev.tail()
    assert waited <= BOUND_SECONDS, waited
    assert wait_for_run(dev, dead_run, ("FAILURE",), timeout=5)["status"] == "FAILURE"
    with _instance(dev.home) as instance:
        messages = [e.message or "" for e in instance.all_logs(dead_run)]
    assert any("no longer exists" in m for m in messages), messages[-5:]
    print(f"queue moved on: new run succeeded {waited:.1f} s after its launch")


def _kill_a_cli_run(dev: DagsterDev) -> str:
    """`factorcov materialize` recorded in the instance, SIGKILLed mid-run (as the OOM killer
    would) once its run is STARTED and has recorded its process; returns the run id."""
    cli = subprocess.Popen(
        [FACTORCOV, "materialize", "--start", LONG[0], "--end", LONG[1]],
        env=dev.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    started: list[dict] = []
    while not started and time.monotonic() < deadline and cli.poll() is None:
        started = [r for r in runs(dev) if r["status"] == "STARTED"]
        time.sleep(0.2)
    assert started, "the CLI run never showed as STARTED"
    run_id = started[0]["runId"]
    while cli.poll() is None:
        with _instance(dev.home) as instance:
            if run_launcher.recorded_worker(instance, run_id):
                break
        time.sleep(0.2)
    assert cli.poll() is None, "the CLI run ended before it could be killed: lengthen LONG"
    assert _recorded_pid(dev.home, run_id) == cli.pid
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    return run_id


def _status(dev: DagsterDev, run_id: str) -> str:
    return next(r["status"] for r in runs(dev) if r["runId"] == run_id)


def test_sigkilled_runs_do_not_block_the_queue(tmp_path, monkeypatch):
    """A killed CLI run, then a UI run whose whole `dagster dev` is killed (one `dagster dev`
    for both, to keep the suite short)."""
    dev = start_dagster_dev(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(dev.home))  # this process reads the instance too
    try:
        # started as the README starts it (repo root, DAGSTER_HOME elsewhere): no notice that a
        # dagster.yaml in the current folder is ignored (the instance file lives in deploy/)
        assert "will not be used to configure Dagster" not in dev.log.read_text()

        # 1. A recorded `factorcov materialize`, SIGKILLed mid-run.
        dead_cli_run = _kill_a_cli_run(dev)
        assert _status(dev, dead_cli_run) == "STARTED"  # what the queue saw before the fix
        _queue_moves_on(dev, dead_cli_run)

        # 2. A UI run, and a power loss: every process of `dagster dev` at once, the run
        # worker included.
        run_id = launch_range_run(dev, *LONG)
        wait_for_run(dev, run_id, ("STARTED",), timeout=180)
        pid = _recorded_pid(dev.home, run_id)  # recorded before RUN_START for a launched run
    finally:
        stop_dagster_dev(dev, kill=True)
    deadline = time.monotonic() + 10
    while run_launcher.process_state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_launcher.process_state(pid) is None, "the run worker survived the kill"
    with _instance(dev.home) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    # the machine is back: `dagster dev` on the same home and DuckDB file
    dev = start_dagster_dev(tmp_path, home=dev.home, database=dev.database, log_name="again.log")
    try:
        _queue_moves_on(dev, run_id)
    finally:
        stop_dagster_dev(dev)


# The health check alone (no daemon): the process a run recorded, alive or not.


@dg.asset
def _one() -> int:
    return 1


@pytest.fixture
def recorded_run(tmp_path, monkeypatch):
    """An instance with the shipped configuration and one run executed in this process."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (home / "dagster.yaml").write_text(SHIPPED_INSTANCE.read_text())
    with _instance(home) as instance:
        result = dg.materialize([_one], instance=instance)
        yield instance, instance.get_run_by_id(result.run_id)


def _record_pid(instance: dg.DagsterInstance, run: dg.DagsterRun, pid: int, how: str) -> None:
    """An engine event as Dagster writes it: a run worker started, or steps executed, in `pid`."""
    message = {
        "worker": f"Started process for run (pid: {pid}).",
        "steps": f"Executing steps in process (pid: {pid})",
    }[how]
    instance.report_engine_event(message, run, EngineEventData.in_process(pid))


def test_health_of_the_recorded_process(recorded_run):
    instance, run = recorded_run
    assert isinstance(instance.run_launcher, FactorcovRunLauncher)
    assert instance.run_monitoring_enabled
    # the in-process executor recorded this process: alive
    assert run_launcher.recorded_worker(instance, run.run_id)[0] == os.getpid()
    assert worker_health(instance, run).status == WorkerStatus.RUNNING

    # a process that has exited and been reaped: dead
    gone = subprocess.Popen(["true"])
    gone.wait()
    _record_pid(instance, run, gone.pid, "worker")
    health = worker_health(instance, run)
    assert health.status == WorkerStatus.FAILED and "no longer exists" in health.msg

    # killed but not yet reaped by its parent (a zombie): dead
    zombie = subprocess.Popen(["sleep", "60"])
    try:
        zombie.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (run_launcher.process_state(zombie.pid) or ("",))[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _record_pid(instance, run, zombie.pid, "worker")
        assert worker_health(instance, run).status == WorkerStatus.FAILED
    finally:
        zombie.wait()


def test_the_runs_own_process_not_a_step_child(recorded_run):
    """Under a multiprocess executor each step's child records "Executing steps in process"
    too: the run's own process is the first of those (a child that has exited is not the run),
    and a run worker's own event, when there is one, wins."""
    instance, run = recorded_run
    child = subprocess.Popen(["true"])
    child.wait()
    _record_pid(instance, run, child.pid, "steps")  # after this process's own event
    assert run_launcher.recorded_worker(instance, run.run_id)[0] == os.getpid()
    assert worker_health(instance, run).status == WorkerStatus.RUNNING
    _record_pid(instance, run, child.pid, "worker")
    assert run_launcher.recorded_worker(instance, run.run_id)[0] == child.pid
    assert worker_health(instance, run).status == WorkerStatus.FAILED


def test_a_reused_process_id_is_not_the_run(recorded_run, monkeypatch):
    instance, run = recorded_run
    # this process, recorded by a run an hour before it started: the id was re-used
    an_hour_ago = time.time() - 3600
    monkeypatch.setattr(run_launcher, "recorded_worker", lambda *_: (os.getpid(), an_hour_ago))
    health = worker_health(instance, run)
    assert health.status == WorkerStatus.FAILED and "started after" in health.msg
    # a run that has recorded no process yet is left alone
    monkeypatch.setattr(run_launcher, "recorded_worker", lambda *_: None)
    assert worker_health(instance, run).status == WorkerStatus.RUNNING
