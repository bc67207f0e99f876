"""`factorcov materialize`: every asset and check of a session range through Dagster in ONE
run (a single-run backfill), with a progress line per step and a summary.

Runs are recorded in the Dagster instance of `DAGSTER_HOME` when it is set (so `dagster dev`
shows them), otherwise in a throw-away instance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import time
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from factorcov_pipeline import environment
from factorcov_pipeline.cli import process
from factorcov_pipeline.cli.common import UsageError, console, parse_date
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.settings import load_settings


def resolve_range(
    start: str | None, end: str | None, first_session: dt.date, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The session range to materialise; refuses dates before the partitions start, non-sessions,
    reversed ranges and sessions whose partition does not exist yet: a session after `today`
    (New York's date, the exchange's) has no data and no partition, so `--end` in the future
    is refused (the default end is the tutorial's last session, or a year after the start,
    capped at today)."""
    today = today or dt.datetime.now(ZoneInfo("America/New_York")).date()
    s = parse_date(start, "--start") if start else first_session
    if end:
        e = parse_date(end, "--end")
    elif first_session == calendar.DEFAULT_START:
        e = calendar.DEFAULT_END
    else:
        e = calendar.sessions(first_session, first_session + dt.timedelta(days=365))[-1]
    if s < first_session:
        raise UsageError(
            f"--start {s} is before the first partition {first_session} "
            f"(set FACTORCOV_PARTITIONS_START to an earlier session to extend the history)"
        )
    for day, flag in ((s, "--start"), (e, "--end")):
        if not calendar.is_session(day):
            near = calendar.sessions(day - dt.timedelta(days=7), day + dt.timedelta(days=7))
            before = [d for d in near if d < day][-1:]
            after = [d for d in near if d > day][:1]
            raise UsageError(
                f"{flag} {day} ({day:%A}) is not a New York Stock Exchange session; "
                f"nearest sessions: {', '.join(str(d) for d in before + after)}"
            )
    if e < s:
        raise UsageError(f"--end {e} is before --start {s}")
    if e > today:
        if end:
            raise UsageError(
                f"--end {e} is in the future (today is {today} in New York): its partition "
                "does not exist yet; end at today's session or earlier"
            )
        past = calendar.sessions(s, today)
        if not past:
            raise UsageError(f"--start {s} is in the future (today is {today} in New York)")
        e = past[-1]
    return s, e


def run(args: argparse.Namespace) -> int:
    # Imported here so `factorcov --help` and argument errors stay fast; the collector is paused
    # meanwhile, and what they built is frozen in the command's own process (cli/process.py).
    with process.imports():
        from factorcov_pipeline.orchestration.instance import (
            InstanceConfigError,
            instance_from_env,
        )
        from factorcov_pipeline.orchestration.interrupts import deferred, pending, signals_seen
        from factorcov_pipeline.orchestration.partitions import SESSIONS_START
        from factorcov_pipeline.orchestration.resources import storage_resource
        from factorcov_pipeline.orchestration.runner import (
            assets_for,
            checks_skipped_for,
            interrupt_signal,
            planned_checks,
            run_range,
            was_interrupted,
        )

    start, end = resolve_range(args.start, args.end, SESSIONS_START)
    settings_file = args.settings or environment.settings_file() or ""
    settings = load_settings(settings_file or None)  # fail fast with a clear message
    try:
        instance = instance_from_env()
    except InstanceConfigError as err:  # an unusable DAGSTER_HOME: one line, exit 2
        raise UsageError(str(err)) from None
    user_returns = settings.factor_model_settings.universe.factor_returns
    if user_returns:  # a range the user's file does not cover is refused before any work
        from factorcov_pipeline.core.user_factors import check_range, user_factor_returns

        check_range(user_factor_returns(user_returns), start, end)
    storage = storage_resource()
    store = storage.store()
    # Before anything is written: a DuckDB file (or a new one), built with these settings.
    store.check_identity(settings.fingerprint(), settings.models_json())
    n_sessions = len(calendar.sessions(start, end))
    console.print(
        f"factorcov: materialising {n_sessions} session(s) {start} .. {end} "
        f"into {store.path}" + (f" with settings {settings_file}" if settings_file else "")
    )
    t0 = time.perf_counter()
    planned = planned_checks(assets_for(settings), checks_skipped_for(settings))
    progress = _ProgressLogger()
    with signals_seen():  # every signal of the command, read by `pending()`
        if args.parallel > 1:  # chunked runs on several processes (orchestration/parallel.py)
            from factorcov_pipeline.orchestration.parallel import run_parallel

            try:
                result = run_parallel(
                    start, end, storage, settings_file, args.parallel, None, console.print
                )
            except KeyboardInterrupt:  # the parent waits for its workers: stopped there
                signo = (pending() or [signal.SIGINT])[-1]
                console.print(
                    f"factorcov: interrupted ({signal.Signals(signo).name}) after "
                    f"{time.perf_counter() - t0:.1f} s; the chunks that finished are stored, "
                    "the others wrote nothing; run again to complete"
                )
                return 128 + int(signo)
            signo: int | None = None
            if not result.success:
                during = pending()
                signo = during[-1] if during else signal.SIGINT if was_interrupted(result) else None
            with deferred():
                return _report(result, signo, planned, progress, store, start, end, t0)
        # Signals are deferred outside the run's steps until the command returns (see
        # `interrupts.deferred`): one that lands after the last step neither cuts the summary
        # nor turns a completed run into an "interrupted" one.
        with deferred():
            result = run_range(
                start,
                end,
                storage,
                settings_file,
                instance,
                progress.logger_def(),
                selection=assets_for(settings),
                skip_checks=checks_skipped_for(settings),
                # a throw-away instance's events vanish with the process: no figures to draw
                figures=not instance.is_ephemeral,
            )
            return _report(
                result, interrupt_signal(result), planned, progress, store, start, end, t0
            )


def _report(
    result: Any,
    signo: int | None,
    planned: list[Any],
    progress: _ProgressLogger,
    store: Any,
    start: dt.date,
    end: dt.date,
    t0: float,
) -> int:
    """What the run did, and the exit code: 128 + the signal for an interrupted run (130 for
    SIGINT, 143 for SIGTERM, as shells report), 1 for a failed one or one that stored no
    forecast, 0 for a completed one, also when a signal arrived after its last step (said)."""
    from factorcov_pipeline.orchestration.interrupts import pending
    from factorcov_pipeline.orchestration.partitions import SESSIONS_START
    from factorcov_pipeline.orchestration.runner import (
        check_outcomes,
        check_tally,
        failure_messages,
        removed_tables,
    )

    elapsed = time.perf_counter() - t0
    if signo is not None:
        # Each chunk is one transaction: the interrupted one rolled back, earlier ones are whole.
        console.print(
            f"factorcov: interrupted ({signal.Signals(signo).name}) after {elapsed:.1f} s; "
            "nothing of the interrupted chunk was written; run again to complete"
        )
        return 128 + int(signo)
    # every check the run was to evaluate: passed when it passed on every session; a check
    # whose step failed or never ran did not pass
    tally = check_tally(result, planned)
    passed = sum(1 for outcome in tally.values() if outcome == "passed")
    not_run = [name for name, outcome in tally.items() if outcome == "not run"]
    counted = f"{passed}/{len(tally)}"
    if not_run:
        counted += f" ({len(not_run)} not run)"
    if not result.success:
        for message in failure_messages(result):
            console.print(f"[red]failed[/red] {message}")
        for name, evs in check_outcomes(result).items():
            bad = [e for e in evs if not e.passed]
            if bad:
                console.print(
                    f"[red]check failed[/red] {name} on {len(bad)} session(s), first "
                    f"{bad[0].partition}: {bad[0].description}"
                )
        if not_run:
            console.print(
                f"factorcov: checks not run (an earlier step failed): {', '.join(not_run)}"
            )
        removed = removed_tables(result)
        if removed:
            console.print(
                f"factorcov: removed the rows of {start} .. {end} from {', '.join(removed)}: "
                "they followed from the inputs this run replaced; fix the cause and run again"
            )
        console.print(f"factorcov: run failed after {elapsed:.1f} s; checks passed: {counted}")
        return 1
    n_sessions = len(calendar.sessions(start, end))
    summary = store.read(
        "SELECT count(DISTINCT date) AS dates, count(DISTINCT factor) AS factors, "
        "min(date) AS first, max(date) AS last FROM factor_volatility "
        "WHERE date BETWEEN ? AND ?",
        [start, end],
    )
    if summary["dates"][0] == 0 and end > SESSIONS_START:
        # A run that stored nothing is not a success (issue 12.1), whatever the checks said.
        console.print(
            f"[red]failed[/red] the run stored no forecast for {start} .. {end}: "
            "no factor returns in the range (see factor_return_gaps)"
        )
        return 1
    table = Table(title="factorcov summary", show_header=False)
    # names are never shortened: a long path or URL folds onto the next line
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")
    from factorcov_pipeline.storage import Store

    table.add_row("DuckDB file" if isinstance(store, Store) else "PostgreSQL", store.location)
    table.add_row("sessions materialised", f"{n_sessions} ({start} .. {end})")
    row = summary.row(0, named=True)
    table.add_row("forecast dates stored", f"{row['dates']} ({row['first']} .. {row['last']})")
    table.add_row("factors", str(row["factors"]))
    table.add_row("checks passed", counted)
    if progress.warnings:
        table.add_row("warnings", f"{len(progress.warnings)} (printed above)")
    table.add_row("wall time", f"{elapsed:.1f} s")
    console.print(table)
    late = pending()  # after the last step (Python lost it, or it was deferred)
    if late:
        console.print(
            f"factorcov: {signal.Signals(late[-1]).name} arrived while the run was finishing; "
            "the run completed: every step finished and its rows are stored"
        )
    return 0


class _ProgressLogger:
    """A Dagster logger that prints one line per finished step, with its duration."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        # a check records one evaluation per session: summarised in one line per check step
        self.checks: dict[str, list[Any]] = {}
        # the run's warnings (degenerate regressions, stored returns turned into gaps, ...),
        # printed as they come and counted in the summary
        self.warnings: list[str] = []

    def check_line(self, step: str) -> None:
        evaluations = self.checks.pop(step, [])
        if not evaluations:
            return
        name = evaluations[0].asset_check_key.name
        failed = [e for e in evaluations if not e.passed]
        if failed:
            console.print(
                f"  [red]FAIL[/red]  check {name} on {len(failed)} of {len(evaluations)} "
                f"session(s), first {failed[0].partition}"
            )
        else:
            console.print(f"  [green]pass[/green]  check {name} ({len(evaluations)} session(s))")

    def logger_def(self) -> Any:
        import logging

        import dagster as dg

        outer = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                meta = getattr(record, "dagster_meta", None) or {}
                event = meta.get("dagster_event")
                step = meta.get("step_key")
                if event is None:
                    if step is not None and record.levelno == logging.WARNING:
                        # the message as the step logged it, without Dagster's prefix
                        message = str(meta.get("orig_message") or record.getMessage())
                        outer.warnings.append(message)
                        console.print(f"  [yellow]warning[/yellow] {message}")
                    return
                if step is None:
                    return
                kind = event.event_type_value
                if kind == "STEP_START":
                    outer.started[step] = time.perf_counter()
                elif kind == "STEP_SUCCESS":
                    outer.check_line(step)
                    took = time.perf_counter() - outer.started.get(step, time.perf_counter())
                    console.print(
                        f"  [green]done[/green]  {step:<50} {took:7.2f} s"
                        f"   peak memory so far {_peak_rss_gib():5.2f} GiB"
                    )
                elif kind == "STEP_FAILURE":
                    outer.check_line(step)
                    console.print(f"  [red]fail[/red]  {step}")
                elif kind == "ASSET_CHECK_EVALUATION":
                    outer.checks.setdefault(step, []).append(event.event_specific_data)

        @dg.logger
        def progress_logger(_init_context: object) -> logging.Logger:
            log = logging.getLogger("factorcov.progress")
            log.setLevel(logging.DEBUG)
            log.propagate = False
            log.handlers = [_Handler()]  # this command's logger (a process may run several)
            return log

        return progress_logger


def _peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
