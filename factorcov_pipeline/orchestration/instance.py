"""The Dagster instance `factorcov materialize` records its runs in.

Without DAGSTER_HOME: a throw-away in-memory instance (nothing recorded, fastest). With it: the
instance configured by `$DAGSTER_HOME/dagster.yaml`, so `dagster dev` shows the CLI's runs. The
repository ships that file (deploy/dagster.yaml, README "Dagster UI"); a DAGSTER_HOME that does not
exist, is not writable, or has no dagster.yaml is refused with one line saying what to do,
instead of Dagster's traceback or its multi-line notice (and its slower defaults) on every run.
So is a dagster.yaml Dagster cannot build an instance from (not YAML, an unknown key, a wrong
value, a `storage: custom`, `run_launcher` or `run_coordinator` naming a module or class that
does not exist): one line naming the file and the problem, before anything runs.

`factorcov materialize` without `DAGSTER_HOME` (and the tests) run in a throw-away instance: its
event log vanishes with the process. Dagster's in-memory instance still indexes every
event in an in-memory SQLite database, and a range run emits one materialisation (and one
"planned" event per asset and check) for EVERY session of the range: over 2,263 sessions
that indexing is most of the run (profiled with py-spy: `SqlEventLogStorage.store_event`
and `_store_asset_check_evaluation_planned`, about 2-7 ms per event on this machine).

`throwaway_instance()` is Dagster's ephemeral instance whose event log does not index the
per-partition asset events (materialisations, planned materialisations, check evaluations and
planned check evaluations); every other event is stored as usual. So its asset tables stay
empty, and the questions each step asks them (the data versions of its upstream assets: asset
records and the latest observation of each, two SQL queries per upstream asset, 0.13 s of a
daily run; each check's latest materialisations of its asset) are answered "none" without a
query, as long as no event of an asset was stored. The run itself is unchanged: every step
still emits every per-partition event, and the run's result (`ExecuteInProcessResult`) holds
all of them (tested equal to a run in Dagster's own ephemeral instance). A run recorded in
`DAGSTER_HOME` (what `dagster dev` shows) uses the real instance and stores every event, so
the UI shows every session as materialised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dagster._core.event_api import EventLogCursor, EventRecordsResult
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
    """In-memory event log that skips indexing the per-partition asset events, and answers the
    asset questions of a step from memory while it holds no asset event (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.asset_events = False  # an event of an asset was stored: ask SQLite
        self.observations = False  # likewise an asset observation

    def store_event(self, event: Any) -> None:
        if event.is_dagster_event:
            if event.dagster_event_type in UNINDEXED:
                return
            if event.dagster_event.asset_key is not None:
                self.asset_events = True
            if event.dagster_event_type == DagsterEventType.ASSET_OBSERVATION:
                self.observations = True
        super().store_event(event)

    def get_asset_records(self, asset_keys: Sequence[AssetKey] | None = None) -> Sequence[Any]:
        """No asset row exists until an asset event is stored: none, without a query."""
        if not self.asset_events:
            return []
        return super().get_asset_records(asset_keys)

    def fetch_observations(
        self,
        records_filter: AssetKey | AssetRecordsFilter,
        limit: int,
        cursor: str | None = None,
        ascending: bool = False,
    ) -> EventRecordsResult:
        """No observation is stored until one is: none, without a query."""
        if not self.observations:
            return _no_records(limit, cursor)
        return super().fetch_observations(records_filter, limit, cursor, ascending)

    def fetch_materializations(
        self,
        records_filter: AssetKey | AssetRecordsFilter,
        limit: int,
        cursor: str | None = None,
        ascending: bool = False,
    ) -> EventRecordsResult:
        """Materialisations are not stored (`UNINDEXED`): none until an asset event is (a check
        asks for its asset's latest materialisations, `check_results`), without a query."""
        if not self.asset_events:
            return _no_records(limit, cursor)
        return super().fetch_materializations(records_filter, limit, cursor, ascending)


def _no_records(limit: int, cursor: str | None) -> EventRecordsResult:
    """What SQLite's event log returns when no record matches
    (`SqlEventLogStorage._get_event_records_result`)."""
    return EventRecordsResult(
        [], cursor=cursor or EventLogCursor.from_storage_id(-1).to_string(), has_more=limit == 0
    )


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
    config = path / "dagster.yaml"
    if not config.is_file():
        raise InstanceConfigError(
            f"{ENV_HOME}={home} has no dagster.yaml: copy the repository's deploy/dagster.yaml "
            "there (README, 'Dagster UI'), or unset DAGSTER_HOME"
        )
    try:
        instance = DagsterInstance.get()
        # built when first used (the UI's runs use them): a bad entry is refused here too
        instance.run_coordinator  # noqa: B018
        instance.run_launcher  # noqa: B018
    except Exception as err:  # whatever Dagster raises for its configuration: one line
        raise InstanceConfigError(
            f"{config} ({ENV_HOME}) is not a usable Dagster instance configuration: "
            f"{describe_config_error(err)} (fix it, copy the repository's dagster.yaml there, "
            "or unset DAGSTER_HOME)"
        ) from None
    return instance


def describe_config_error(err: BaseException) -> str:
    """Dagster's error about its instance configuration as one line: a YAML error with its line
    and column, each configuration error without the expected schema (hundreds of characters)
    or stack trace that Dagster appends."""
    import yaml

    if isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return _one_line(f"not valid YAML: {problem}{where}")
    errors = getattr(err, "errors", None)  # DagsterInvalidConfigError: its EvaluationErrors
    if errors:
        return "; ".join(_one_line(_config_message(e.message)) for e in errors)
    args = err.args
    if len(args) == 3 and isinstance(args[1], str) and isinstance(args[2], type):
        # dagster's check that a configured class is of the kind its section needs
        return f"{args[1]} is not a {args[2].__name__}"
    text = str(err).removeprefix("Failure condition: ")  # dagster's check errors
    if isinstance(err, OSError) or not text:
        text = f"{type(err).__name__}: {text}"
    return _one_line(text)


def _config_message(message: str) -> str:
    message = message.split("Stack Trace:")[0]
    message = message.replace("dagster._config.errors.PostProcessingError: ", "")
    message = message.replace(" You must provide this value in your run config.", "")
    message = re.sub(
        r"Post processing at path (\S+) of original value .*? failed:\s*", r"\1: ", message
    )
    message = message.replace(
        " In order for this execution to succeed it must be set in this environment.", ""
    )
    return re.sub(r'\s*Expected: ".*', "", message, flags=re.DOTALL)


def _one_line(text: str) -> str:
    return " ".join(text.split())
