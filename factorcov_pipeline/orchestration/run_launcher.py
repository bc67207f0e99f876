"""Dagster's run launcher with a run-worker health check, so that run monitoring fails dead runs.

Why: the shipped instance (deploy/dagster.yaml) starts one run at a time (`max_concurrent_runs:
1`). A run whose process dies without a word (SIGKILL, the kernel's out-of-memory killer, a power
loss) stays STARTED in Dagster's run storage for ever, and every later run (a UI backfill, a
schedule tick) waits in the queue behind it ("1 runs are currently in progress. Maximum is 1").

Dagster's answer is run monitoring (dagster.yaml `run_monitoring`): the daemon asks the
instance's run launcher, every `poll_interval_seconds`, whether each STARTED run's worker is
alive (`RunLauncher.check_run_worker_health`), and marks a run whose worker is not as failed
(dagster/_daemon/monitoring/run_monitoring.py, `monitor_started_run`). Dagster's launchers for
containers implement that check; its `DefaultRunLauncher` (runs as local processes, what `dagster
dev` uses) does not (`supports_check_run_worker_health` is False), so monitoring alone would only
time out runs that never start. Its code server does fail a run whose worker process it started
and saw exit, but not a run recorded by `factorcov materialize` (no code server involved) nor
any run once the code server itself is gone (power loss, `dagster dev` killed).

`FactorcovRunLauncher` is `DefaultRunLauncher` plus that check. Every run executed in one
process, as all of factorcov's are (the `in_process_executor`, `execute_in_process`), records
its process id in Dagster's own engine events ("Started process for run (pid: N)" from the run
worker, "Executing steps in process (pid: N)" from the in-process executor, metadata `pid`). A
run is dead when its process (`recorded_worker`) no longer exists, is a zombie, or is a newer
process that re-used the id (it started after the event was written). A run that has not recorded a
process yet is left alone (reported RUNNING). The check sees processes of its own machine, so
it belongs to an instance whose runs all run on the machine of its daemon: the SQLite instance
of deploy/dagster.yaml (its files are local). deploy/dagster-postgres.yaml, shared between
machines, keeps Dagster's stock launcher.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import DagsterEventType, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

# /proc's process start times count clock ticks since boot, whose time /proc/stat gives in whole
# seconds and which drifts with clock adjustments: a process started before an event may appear
# up to this much after it (a pid is re-used only after the kernel has cycled through pid_max).
START_TIME_SLACK_SECONDS = 10.0


# Dagster's engine events that name the process executing a run (metadata `pid`): the run
# worker a launcher started (dagster/_grpc/impl.py, dagster/_cli/api.py; a resumed run records a
# new one) and the in-process executor (dagster/_core/executor/in_process.py), the only one an
# `execute_in_process` run (`factorcov materialize`) records. Under a multiprocess executor each
# step's child process records the latter too, so of those the run's first is its own process.
WORKER_STARTED = "Started process for run (pid:"
STEPS_IN_PROCESS = "Executing steps in process (pid:"


def recorded_worker(instance: Any, run_id: str) -> tuple[int, float] | None:
    """The (pid, event timestamp) of the process executing run `run_id`: the latest run worker
    it recorded, else the first process that executed its steps; None when it has recorded
    neither yet."""
    workers: list[tuple[int, float]] = []
    executors: list[tuple[int, float]] = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        message = (entry.dagster_event.message or "") if entry.dagster_event else ""
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        pid = (getattr(data, "metadata", None) or {}).get("pid")
        if pid is None or not str(pid.value).isdigit():
            continue
        if message.startswith(WORKER_STARTED):
            workers.append((int(pid.value), entry.timestamp))
        elif message.startswith(STEPS_IN_PROCESS):
            executors.append((int(pid.value), entry.timestamp))
    if workers:
        return workers[-1]
    return executors[0] if executors else None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def process_state(pid: int) -> tuple[str, float | None] | None:
    """(state letter, start time as a Unix timestamp or None) of process `pid` on this machine,
    or None when there is no such process. Linux's /proc; elsewhere a signal-0 probe (the state
    is then "?" and the start time unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        stat = ""
    if stat:
        # "pid (comm) state ..." where comm may hold spaces or parentheses: split after the last ")"
        fields = stat[stat.rindex(")") + 2 :].split()
        state, start_ticks = fields[0], int(fields[19])
        boot = _boot_time()
        started = None if boot is None else boot + start_ticks / os.sysconf("SC_CLK_TCK")
        return state, started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, owned by someone else
    return "?", None


def worker_health(instance: Any, run: DagsterRun) -> CheckRunHealthResult:
    """Whether the process that executes `run` is alive on this machine."""
    recorded = recorded_worker(instance, run.run_id)
    if recorded is None:
        return CheckRunHealthResult(
            WorkerStatus.RUNNING, "the run has not recorded its process yet"
        )
    pid, since = recorded
    state = process_state(pid)
    gone = (
        f"The process that ran this run (pid {pid}) no longer exists: it was killed (SIGKILL, "
        "out of memory) or the machine stopped. The run is marked failed so that the run queue "
        "moves on; materialise its sessions again (a re-run of a range is a clean run)."
    )
    if state is None or state[0] in ("Z", "X", "x"):
        return CheckRunHealthResult(WorkerStatus.FAILED, gone, run_worker_id=str(pid))
    started = state[1]
    if started is not None and started > since + START_TIME_SLACK_SECONDS:
        reused = f"{gone} (pid {pid} now belongs to a process started after the run's)"
        return CheckRunHealthResult(WorkerStatus.FAILED, reused, run_worker_id=str(pid))
    return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))


class FactorcovRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` (runs as processes of this machine, through the code server) that
    also tells run monitoring whether a run's process is alive (module docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        return worker_health(self._instance, run)
