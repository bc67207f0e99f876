"""The Dagster instance of a run that nobody will look at again.

`factorcov materialize` without `DAGSTER_HOME` (and the tests) run in a throw-away instance:
its event log vanishes with the process. Dagster's in-memory instance still indexes every
event in an in-memory SQLite database, and a range run emits one materialisation (and one
"planned" event per asset and check) for EVERY session of the range: over 2,263 sessions
that indexing is most of the run (profiled with py-spy: `SqlEventLogStorage.store_event`
and `_store_asset_check_evaluation_planned`, about 2-7 ms per event on this machine).

`throwaway_instance()` is Dagster's ephemeral instance whose event log does not index the
per-partition asset events (materialisations, planned materialisations and planned check
evaluations); every other event is stored as usual. The run itself is unchanged: every step
still emits every per-partition event, and the run's result (`ExecuteInProcessResult`) holds
all of them (tested equal to a run in Dagster's own ephemeral instance). A run recorded in
`DAGSTER_HOME` (what `dagster dev` shows) uses the real instance and stores every event, so
the UI shows every session as materialised.
"""

from __future__ import annotations

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

# Per-partition events nobody reads back from a throw-away instance.
UNINDEXED = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
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
