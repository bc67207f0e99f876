"""The Dagster instance `factorcov materialize` records its runs in.

Without DAGSTER_HOME: a throw-away in-memory instance (nothing recorded, fastest). With it: the
instance configured by `$DAGSTER_HOME/dagster.yaml`, so `dagster dev` shows the CLI's runs. The
repository ships that file (deploy/dagster.yaml, README "Dagster UI"); a DAGSTER_HOME that does not
exist, is not writable, or has no dagster.yaml is refused with one line saying what to do,
instead of Dagster's traceback or its multi-line notice (and its slower defaults) on every run.

`factorcov materialize` without `DAGSTER_HOME` (and the tests) run in a throw-away instance: its
event log vanishes with the process. Dagster's in-memory instance still indexes every
event in an in-memory SQLite database, and a range run emits one materialisation (and one
"planned" event per asset and check) for EVERY session of the range: over 2,263 sessions
that indexing is most of the run (profiled with py-spy: `SqlEventLogStorage.store_event`
and `_store_asset_check_evaluation_planned`, about 2-7 ms per event on this machine).

`throwaway_instance()` is Dagster's ephemeral instance whose event log does not index the
per-partition asset events (materialisations, planned materialisations, check evaluations and
planned check evaluations); every other event is stored as usual. The run itself is unchanged: every step
still emits every per-partition event, and the run's result (`ExecuteInProcessResult`) holds
all of them (tested equal to a run in Dagster's own ephemeral instance). A run recorded in
`DAGSTER_HOME` (what `dagster dev` shows) uses the real instance and stores every event, so
the UI shows every session as materialised.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import DagsterInstance
from dagster._core.events import DagsterEventType
from dagster._core.instance.types import InstanceType
from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
from dagster._core.run_coordinator import DefaultRunCoordinator
from dagster._core.storage.event_log import InMemoryEventLogStorage
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
from dagster._core.storage.root import TemporaryLocalArtifactStorage
from dagster._core.storage.runs import InMemoryRunStorage

ENV_HOME = "DAGSTER_HOME"

# Per-partition events nobody reads back from a throw-away instance.
UNINDEXED = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        # One per session and check (2,520 in the tutorial's year, 7 s of SQLite indexing).
        # Blocking checks act on the step's own events, and the run's result holds them all.
        DagsterEventType.ASSET_CHECK_EVALUATION,
    }
)


class _ThrowawayEventLogStorage(InMemoryEventLogStorage):
    """In-memory event log that skips indexing the per-partition asset events."""

    def store_event(self, event: Any) -> None:
        if event.is_dagster_event and event.dagster_event_type in UNINDEXED:
            return
        super().store_event(event)


def throwaway_instance() -> DagsterInstance:
    """Dagster's ephemeral instance (`create_ephemeral_instance`, same components) with an
    event log that does not index per-partition asset events."""
    return DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=_ThrowawayEventLogStorage(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )


class InstanceConfigError(ValueError):
    """DAGSTER_HOME is set but unusable; the message names the variable and the fix."""


def instance_from_env() -> DagsterInstance:
    home = os.environ.get(ENV_HOME)
    if not home:
        return throwaway_instance()
    path = Path(home)
    fix = "create it and copy the repository's deploy/dagster.yaml into it, or unset DAGSTER_HOME"
    if not path.is_absolute():
        raise InstanceConfigError(f"{ENV_HOME}={home} must be an absolute path ({fix})")
    if not path.is_dir():
        raise InstanceConfigError(f"{ENV_HOME}={home} is not a directory: {fix}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InstanceConfigError(f"{ENV_HOME}={home} is not writable by this user: {fix}")
    if not (path / "dagster.yaml").is_file():
        raise InstanceConfigError(
            f"{ENV_HOME}={home} has no dagster.yaml: copy the repository's deploy/dagster.yaml "
            "there (README, 'Dagster UI'), or unset DAGSTER_HOME"
        )
    return DagsterInstance.get()
