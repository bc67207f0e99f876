"""One asset check evaluation per session of a run's partition range.

Why this module exists: `AssetCheckResult.to_asset_check_evaluation` (dagster 1.13,
`_core/definitions/asset_checks/asset_check_result.py`) records a partitioned check's result
with a partition only when the step runs ONE partition. A step that runs a range records it with
`partition=None`, so the instance's check-status cache (`_core/storage/asset_check_state.py`)
sees the range's PLANNED rows (one per partition, written by `AssetCheckEvaluationPlanned`)
never evaluated and resolves them to SKIPPED when the run ends.

The supported way around it: a check's compute may yield `dagster.AssetCheckEvaluation` events
directly (`_core/execution/plan/compute.py` accepts them, `execute_step.py` records each one and
raises `DagsterAssetCheckFailedError` after the step when any blocking ERROR evaluation failed).
The event log updates the PLANNED row of (check, run, partition) with each evaluation
(`SqlEventLogStorage._update_asset_check_evaluation`), and the status cache marks a partition
SUCCEEDED/FAILED when the evaluation targets that partition's latest materialisation
(`AssetCheckPartitionInfo.is_current`). So every evaluation carries its partition and the
storage id of that partition's latest materialisation, and the check's op output (which
downstream steps of a blocking check wait for) is yielded after them, as
`_process_user_event` does for an `AssetCheckResult`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    Output,
)

# The type of `AssetCheckEvaluation.target_materialization_data`, a public field whose class
# dagster does not export at the top level.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

# Per-session metadata must stay small: a range of 2,520 sessions records 2,520 evaluations.
MetadataScalar = float | int | bool | str


@dataclass(frozen=True)
class Verdict:
    """One session's outcome of a check: passed or not, why, and a few numbers."""

    passed: bool
    metadata: Mapping[str, MetadataScalar] = field(default_factory=dict)
    description: str | None = None


def _latest_materialisations(
    context: AssetCheckExecutionContext, asset_key: AssetKey, keys: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialisation record of each partition in `keys` (newest first, paged: one
    query per page instead of one per partition)."""
    wanted = set(keys)
    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    cursor = None
    page = max(len(keys), 100)
    while wanted - found.keys():
        result = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys),
            limit=page,
            cursor=cursor,
        )
        for record in result.records:
            pk = record.partition_key
            if pk in wanted and pk not in found:
                found[pk] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id,
                    run_id=record.run_id,
                    timestamp=record.timestamp,
                )
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def session_evaluations(
    context: AssetCheckExecutionContext,
    verdicts: Mapping[dt.date, Verdict],
    description: str,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
) -> Iterator[AssetCheckEvaluation | Output]:
    """Yield one evaluation per session of the run's range (the check's compute yields these).

    Every session of the range must have a verdict: a session left out would stay SKIPPED in
    the UI, which is exactly what this module exists to prevent.
    """
    (spec,) = context.check_specs
    keys = list(context.partition_keys)
    missing = [k for k in keys if dt.date.fromisoformat(k) not in verdicts]
    if missing:
        raise RuntimeError(
            f"check {spec.name} gave no verdict for {len(missing)} session(s) of its range, "
            f"first {missing[0]}"
        )
    targets = _latest_materialisations(context, spec.asset_key, keys)
    failed = [k for k in keys if not verdicts[dt.date.fromisoformat(k)].passed]
    if failed:
        context.log.error(
            f"{spec.name} failed on {len(failed)} of {len(keys)} session(s): "
            + ", ".join(failed[:10])
            + (" ..." if len(failed) > 10 else "")
        )
    for key in keys:
        verdict = verdicts[dt.date.fromisoformat(key)]
        yield AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=verdict.passed,
            metadata=dict(verdict.metadata),
            target_materialization_data=targets.get(key),
            severity=severity,
            description=verdict.description or description,
            blocking=spec.blocking,
            partition=key,
        )
    (output,) = context.op_def.output_defs
    yield Output(None, output_name=output.name)
