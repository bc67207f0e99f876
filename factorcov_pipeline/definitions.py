"""The one `Definitions` of the project: `dagster dev` (workspace.yaml) and `factorcov` load it."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from factorcov_pipeline.orchestration.assets import ALL_ASSETS
from factorcov_pipeline.orchestration.checks import ALL_CHECKS
from factorcov_pipeline.orchestration.parallel import chunked_backfills
from factorcov_pipeline.orchestration.resources import FactorcovSettings, storage_resource
from factorcov_pipeline.orchestration.schedules import daily_job, daily_schedule

defs = Definitions(
    assets=chunked_backfills(ALL_ASSETS),
    asset_checks=ALL_CHECKS,
    jobs=[daily_job],
    schedules=[daily_schedule],
    resources={"storage": storage_resource(), "model": FactorcovSettings()},
    # Every step of a run in one process, as `factorcov materialize` runs them: the default
    # multiprocess executor starts a Python process per step (16 steps, each importing numpy,
    # polars, numba and DuckDB), which made a UI run many times slower than the CLI; the steps
    # are sequential anyway (one DuckDB writer).
    executor=in_process_executor,
)
