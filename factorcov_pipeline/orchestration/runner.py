"""Run every asset and check for a session range in ONE in-process Dagster run.

Used by the `factorcov materialize` command and by the tests; the Dagster UI and the schedule
run the same job (`factorcov_daily`) through the webserver/daemon instead.
"""

import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Sequence
from typing import Any, Literal

import dagster as dg

from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2
from factorcov_pipeline.orchestration.assets import ALL_ASSETS
from factorcov_pipeline.orchestration.checks import ALL_CHECKS
from factorcov_pipeline.orchestration.consistency import remove_unfinished
from factorcov_pipeline.orchestration.instance import throwaway_instance
from factorcov_pipeline.orchestration.interrupts import (
    deferred,
    interrupted_by_error,
    signals_seen,
)
from factorcov_pipeline.orchestration.metadata import without_figures
from factorcov_pipeline.orchestration.resources import (
    FactorcovPostgres,
    FactorcovSettings,
    FactorcovStorage,
)
from factorcov_pipeline.orchestration.schedules import daily_job
from factorcov_pipeline.storage.duckdb import holding_connections


def run_range(
    start: dt.date,
    end: dt.date,
    storage: FactorcovStorage | FactorcovPostgres,
    settings_file: str = "",
    instance: dg.DagsterInstance | None = None,
    logger: dg.LoggerDefinition | None = None,
    selection: list[str] | None = None,
    skip_checks: Sequence[str] = (),
    figures: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialise `selection` (default: every asset) for [start, end], with the checks of those
    assets but `skip_checks` (check names, see `checks_skipped_for`). `figures=False` for a run
    nobody will see (a throw-away instance): its metadata has no figures
    (`metadata.without_figures`); every table, number and check is the same."""
    loggers: dict[str, Any] = {"progress": logger} if logger is not None else {}
    if selection is None and not skip_checks:
        job = daily_job
    else:
        chosen = (
            dg.AssetSelection.all() if selection is None else dg.AssetSelection.assets(*selection)
        )
        skipped = [k for c in ALL_CHECKS for k in c.check_keys if k.name in set(skip_checks)]
        if skipped:
            chosen = chosen - dg.AssetSelection.checks(*skipped)
        job = dg.define_asset_job("factorcov_selection", selection=chosen)
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[job],
        resources={
            "storage": storage,
            "model": FactorcovSettings(settings_file=settings_file),
            # Every asset returns a MaterializeResult (its rows are in the store), so no output
            # is ever handed to an IO manager; Dagster's default one is still built for each
            # run, and its filesystem paths (universal_pathlib) cost 0.1-0.2 s of a daily run.
            "io_manager": dg.mem_io_manager,
        },
        loggers=loggers,
    )
    # One DuckDB connection for the whole in-process run rather than one per step: opening the
    # file reads its catalog and closing it checkpoints the log, about 25 ms each, 21 times
    # per run. Each write is still its own transaction; the file is released when the run ends.
    # Signals are deferred outside the run's steps (`interrupts.deferred`): one that lands
    # after the last step cannot cut the tear-down or the removal below in half, and the
    # result says what the run did.
    drawing = contextlib.nullcontext() if figures else without_figures()
    with deferred():
        with holding_connections(), signals_seen() as seen, drawing:
            result = defs.resolve_job_def(job.name).execute_in_process(
                instance=instance or throwaway_instance(),
                run_config={"loggers": {name: {} for name in loggers}} if loggers else None,
                tags={
                    "dagster/asset_partition_range_start": str(start),
                    "dagster/asset_partition_range_end": str(end),
                },
                raise_on_error=False,
            )
        SIGNALS[result.run_id] = seen
        # A failed run leaves every table consistent (orchestration/consistency.py). Not after
        # an interruption: every chunk written is whole, and running again completes the range.
        if not was_interrupted(result):
            REMOVED[result.run_id] = remove_unfinished(
                result, storage.store(), start, end, selection
            )
    return result


def planned_checks(
    selection: list[str] | None, skip_checks: Sequence[str] = ()
) -> list[dg.AssetCheckKey]:
    """The checks of the selected assets (None: all) but `skip_checks`, in definition order:
    what a run of that selection evaluates when every step runs."""
    chosen = None if selection is None else set(selection)
    return [
        key
        for check in ALL_CHECKS
        for key in check.check_keys
        if (chosen is None or key.asset_key.to_user_string() in chosen)
        and key.name not in set(skip_checks)
    ]


# The SIGINT/SIGTERM numbers delivered during each in-process run, by run id (None: the run
# was not in the main thread, where signals are observed).
SIGNALS: dict[str, list[int] | None] = {}


def interrupt_signal(result: Any) -> int | None:
    """The signal that interrupted the run of `result`, or None when it was not interrupted.

    Where the run's signals were observed, they decide: the last one delivered, whatever error
    the step reports (DuckDB turns the interruption into a RuntimeError). A run that succeeded
    although a signal arrived (Python lost the exception) was not interrupted. Otherwise (a
    parallel run's parent, a run outside the main thread) the steps' errors decide (SIGINT)."""
    if result.success:
        return None
    seen = SIGNALS.get(result.run_id)
    if seen is not None:
        return seen[-1] if seen else None
    return int(signal.SIGINT) if interrupted_by_error(list(result.all_events)) else None


def was_interrupted(result: Any) -> bool:
    """The run stopped because of SIGINT/SIGTERM: a signal was delivered while it ran, or a
    step failed with the error an interruption raises (Dagster maps SIGTERM to SIGINT in a run
    and raises DagsterExecutionInterruptedError in the running step)."""
    return interrupt_signal(result) is not None


# Tables whose rows of the range a failed run removed, by run id (see `removed_tables`).
REMOVED: dict[str, list[str]] = {}


def removed_tables(result: dg.ExecuteInProcessResult) -> list[str]:
    """The tables that lost the range's rows because the run failed after writing."""
    return REMOVED.get(result.run_id, [])


# Steps that compute nothing when the factor returns are the user's (`universe.factor_returns`).
# Assets that need the asset-level model (universe, exposures, specific returns): with user
# factor returns they have nothing to compute.
FACTOR_MODEL_ONLY = ("universe", "exposures", "specific_risk", "portfolio_risk", "risk_backtest")


def assets_for(settings: FactorCovarianceReportSettingsV2) -> list[str] | None:
    """The assets a run materialises: every asset (None), or, with user factor returns, every
    asset but `FACTOR_MODEL_ONLY` (they would store nothing; not selecting them spares their
    steps and per-session events). The settings identity stored with the file keeps a user
    model's file from ever holding rows of those tables."""
    if not settings.factor_model_settings.universe.factor_returns:
        return None
    return [a.key.to_user_string() for a in ALL_ASSETS if a.key.path[-1] not in FACTOR_MODEL_ONLY]


# Checks of the cross-sectional regression: with user factor returns there is none (no
# sectors to sum to zero, no regression to be degenerate), so they are not run.
REGRESSION_CHECKS = ("factor_returns_zero_sum", "regression_degenerate_cases")


def checks_skipped_for(settings: FactorCovarianceReportSettingsV2) -> tuple[str, ...]:
    """The checks a run of `settings` leaves out: the regression's, for user factor returns."""
    return REGRESSION_CHECKS if settings.factor_model_settings.universe.factor_returns else ()


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """The user-facing error of each failed step (the exception raised inside the asset)."""
    out = []
    for ev in result.get_step_failure_events():
        err = ev.step_failure_data.error
        if err is None:
            continue
        while err.cause is not None and "dagster._core.errors" in (err.cls_name or ""):
            err = err.cause
        cause = err.cause or err
        out.append(f"{ev.step_key}: {cause.cls_name}: {cause.message.strip()}")
    return out


def check_outcomes(
    result: dg.ExecuteInProcessResult,
) -> dict[str, list[dg.AssetCheckEvaluation]]:
    """Each check's evaluations in the run (one per session of the range), by check name."""
    out: dict[str, list[dg.AssetCheckEvaluation]] = {}
    for evaluation in result.get_asset_check_evaluations():
        out.setdefault(evaluation.asset_check_key.name, []).append(evaluation)
    return out


CheckOutcome = Literal["passed", "failed", "not run"]


def check_tally(result: Any, planned: Sequence[dg.AssetCheckKey]) -> dict[str, CheckOutcome]:
    """The outcome of every check the run was to evaluate (`planned`, plus any other it
    evaluated), by name: `passed` when it was evaluated and passed on every session and its
    step succeeded; `failed` when an evaluation failed or its step failed (an error in the
    check, e.g. a database that a failed background checkpoint invalidated); `not run` when it
    was never evaluated (its step did not start: an upstream step failed). Counting only the
    evaluations printed "(2/2 checks passed)" for a run in which three check steps had failed
    (issue 21.7)."""
    evaluations = check_outcomes(result)
    failed_steps = {ev.step_key for ev in result.get_step_failure_events()}
    keys = list(dict.fromkeys([*planned, *(e[0].asset_check_key for e in evaluations.values())]))
    out: dict[str, CheckOutcome] = {}
    for key in keys:
        evs = evaluations.get(key.name, [])
        step = f"{key.asset_key.to_python_identifier()}_{key.name}"
        if step in failed_steps or any(not e.passed for e in evs):
            out[key.name] = "failed"
        elif evs:
            out[key.name] = "passed"
        else:
            out[key.name] = "not run"
    return out


def quiet_logger() -> dg.LoggerDefinition:
    """A logger that drops everything (tests)."""

    @dg.logger
    def _quiet(_ctx: Any) -> logging.Logger:
        log = logging.getLogger("factorcov.quiet")
        log.handlers = [logging.NullHandler()]
        log.propagate = False
        return log

    return _quiet
