"""The `factorcov` command.

    factorcov materialize [--start DATE] [--end DATE] [--settings FILE]
    factorcov sql "SELECT ..." [--format table|csv|json|markdown] [--limit N]
                                        (read-only query of the DuckDB file or PostgreSQL)
    factorcov show DATE [--factors ...] (a session's volatilities and correlation matrix)
    factorcov settings [--settings FILE] (print the settings in force as JSON)
    factorcov risk --portfolio FILE --date D [--benchmark FILE] [--format table|json|csv]

`materialize` runs every asset and check for the session range through Dagster in ONE run
(a single-run backfill), into the DuckDB file of `FACTORCOV_DUCKDB`, shows progress and ends with
a summary. Runs are recorded in the Dagster instance of `DAGSTER_HOME` when it is set (so
`dagster dev` shows them), otherwise in a throw-away instance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from factorcov_pipeline import environment
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.core.settings import SettingsError, load_settings
from factorcov_pipeline.environment import EnvironmentVariableError
from factorcov_pipeline.storage import (
    BaseStore,
    SettingsMismatchError,
    StoreBusyError,
    StoreFileError,
)

console = Console(stderr=False, highlight=False, soft_wrap=True)
# `factorcov sql` / `show`: a query still running after this many seconds is stopped.
DEFAULT_QUERY_TIMEOUT = 600.0


class UsageError(ValueError):
    """A command-line argument is invalid; the message says which and why."""


def _parse_date(value: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date (YYYY-MM-DD)") from None


def resolve_range(
    start: str | None, end: str | None, first_session: dt.date, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The session range to materialise; refuses dates before the partitions start, non-sessions,
    reversed ranges and sessions whose partition does not exist yet: a session after `today`
    (New York's date, the exchange's) has no data and no partition, so `--end` in the future
    is refused (the default end is the tutorial's last session, or a year after the start,
    capped at today)."""
    today = today or dt.datetime.now(ZoneInfo("America/New_York")).date()
    s = _parse_date(start, "--start") if start else first_session
    if end:
        e = _parse_date(end, "--end")
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


def _materialize(args: argparse.Namespace) -> int:
    # Imported here so `factorcov --help` and argument errors stay fast.

    from factorcov_pipeline.orchestration.instance import InstanceConfigError, instance_from_env
    from factorcov_pipeline.orchestration.interrupts import signals_seen
    from factorcov_pipeline.orchestration.partitions import SESSIONS_START
    from factorcov_pipeline.orchestration.resources import storage_resource
    from factorcov_pipeline.orchestration.runner import (
        assets_for,
        check_outcomes,
        checks_skipped_for,
        failure_messages,
        removed_tables,
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
    store.check_identity(settings.fingerprint())
    n_sessions = len(calendar.sessions(start, end))
    console.print(
        f"factorcov: materialising {n_sessions} session(s) {start} .. {end} "
        f"into {store.path}" + (f" with settings {settings_file}" if settings_file else "")
    )
    t0 = time.perf_counter()
    with signals_seen() as seen:
        if args.parallel > 1:  # chunked runs on several processes (orchestration/parallel.py)
            from factorcov_pipeline.orchestration.parallel import run_parallel

            result = run_parallel(
                start, end, storage, settings_file, args.parallel, None, console.print
            )
        else:
            result = run_range(
                start,
                end,
                storage,
                settings_file,
                instance,
                _ProgressLogger().logger_def(),
                selection=assets_for(settings),
                skip_checks=checks_skipped_for(settings),
            )
    elapsed = time.perf_counter() - t0
    if not result.success and (seen or was_interrupted(result)):
        # Each chunk is one transaction: the interrupted one rolled back, earlier ones are whole.
        signo = seen[-1] if seen else signal.SIGINT
        console.print(
            f"factorcov: interrupted ({signal.Signals(signo).name}) after {elapsed:.1f} s; "
            "nothing of the interrupted chunk was written; run again to complete"
        )
        return 128 + int(signo)  # 130 for SIGINT, 143 for SIGTERM, as shells report
    if seen and result.success:  # Python lost the step's exception (see `interrupts`)
        console.print(
            f"factorcov: {signal.Signals(seen[-1]).name} arrived while the run was finishing; "
            "the run completed"
        )
    # one evaluation per check and session: a check passed when it passed on every session
    checks = check_outcomes(result)
    passed = sum(1 for evs in checks.values() if all(e.passed for e in evs))
    if not result.success:
        for message in failure_messages(result):
            console.print(f"[red]failed[/red] {message}")
        for name, evs in checks.items():
            bad = [e for e in evs if not e.passed]
            if bad:
                console.print(
                    f"[red]check failed[/red] {name} on {len(bad)} session(s), first "
                    f"{bad[0].partition}: {bad[0].description}"
                )
        removed = removed_tables(result)
        if removed:
            console.print(
                f"factorcov: removed the rows of {start} .. {end} from {', '.join(removed)}: "
                "they followed from the inputs this run replaced; fix the cause and run again"
            )
        console.print(
            f"factorcov: run failed after {elapsed:.1f} s ({passed}/{len(checks)} checks passed)"
        )
        return 1
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
    table.add_row("DuckDB file", str(store.path))
    table.add_row("sessions materialised", f"{n_sessions} ({start} .. {end})")
    row = summary.row(0, named=True)
    table.add_row("forecast dates stored", f"{row['dates']} ({row['first']} .. {row['last']})")
    table.add_row("factors", str(row["factors"]))
    table.add_row("checks passed", f"{passed}/{len(checks)}")
    table.add_row("wall time", f"{elapsed:.1f} s")
    console.print(table)
    return 0


class _ProgressLogger:
    """A Dagster logger that prints one line per finished step, with its duration."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        # a check records one evaluation per session: summarised in one line per check step
        self.checks: dict[str, list[Any]] = {}

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
                        console.print(f"  [yellow]warning[/yellow] {record.getMessage()}")
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
            if not log.handlers:
                log.addHandler(_Handler())
            return log

        return progress_logger


def _peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _query_store(args: argparse.Namespace) -> BaseStore:
    """The store `factorcov sql` / `show` read: PostgreSQL when FACTORCOV_DATABASE_URL is set,
    else the DuckDB file (`storage.store_from_env`)."""
    from factorcov_pipeline.storage import store_from_env

    if args.timeout < 0:
        raise UsageError(f"--timeout {args.timeout:g} is negative (0: no limit)")
    try:
        return store_from_env(lock_timeout=args.wait)
    except ValueError as err:  # a FACTORCOV_DATABASE_URL that is not a PostgreSQL URL
        raise UsageError(str(err)) from None


def _sql(args: argparse.Namespace) -> int:
    from factorcov_pipeline import terminal, textgrid

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit {args.limit} is negative (0 shows every row)")
    limit = args.limit
    if limit is None and args.format == "table":
        limit = terminal.DEFAULT_TABLE_LIMIT
    limit = limit or None
    store = _query_store(args)
    with store.connect_query_only(timeout=args.timeout) as con:
        try:
            note = terminal.print_query(
                con, args.query, args.format, limit, textgrid.terminal_width()
            )
        except con.errors as err:
            raise UsageError(f"SQL: {con.describe_error(err)}") from None
    if note:
        print(f"factorcov: {note}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    from factorcov_pipeline import session_view, terminal, textgrid

    day = _parse_date(args.date, "DATE")
    store = _query_store(args)
    with store.connect_query_only(timeout=args.timeout) as con:
        try:
            forecast = session_view.load_session(con, day, args.factors, store.location)
        except session_view.ShowError as err:
            raise UsageError(str(err)) from None
        except con.errors as err:
            raise UsageError(f"reading {store.location}: {con.describe_error(err)}") from None
    text = session_view.render_session(forecast, textgrid.terminal_width(), store.location)
    terminal.write_stdout(text)
    return 0


def _settings(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings or environment.settings_file())
    print(settings.model_dump_json(indent=2))
    return 0


def _risk(args: argparse.Namespace) -> int:
    from factorcov_pipeline import risk_command
    from factorcov_pipeline.portfolio_risk import HoldingsError, NoForecastError

    day = _parse_date(args.date, "--date")
    try:
        return risk_command.run(args, day)
    except (HoldingsError, NoForecastError) as err:
        raise UsageError(str(err)) from None


def _add_risk_parser(sub: Any) -> None:
    risk = sub.add_parser("risk", help="risk report of a portfolio at a date")
    risk.add_argument("--portfolio", required=True, help="CSV/Parquet file: asset_id, weight")
    risk.add_argument("--date", required=True, help="the forecast date (YYYY-MM-DD)")
    risk.add_argument("--benchmark", help="CSV/Parquet file: asset_id, weight")
    risk.add_argument("--format", choices=["table", "json", "csv"], default="table")
    risk.add_argument(
        "--drop-unknown",
        action="store_true",
        help="leave out asset ids not in the model on the date (reports the weight dropped)",
    )
    risk.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the file")
    risk.set_defaults(func=_risk)


def _add_reader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait while a run holds the file (PostgreSQL: an exclusive lock)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_QUERY_TIMEOUT,
        help=f"stop a query running longer than this many seconds "
        f"(default {DEFAULT_QUERY_TIMEOUT:g}; 0: no limit)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorcov", description="Factor covariance forecasts on Dagster and DuckDB."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    mat = sub.add_parser(
        "materialize", help="materialise every asset and check for a session range"
    )
    mat.add_argument("--start", help="first session (default: the partitions' start, 2025-03-31)")
    mat.add_argument("--end", help="last session (default: 2026-03-31, the tutorial's year)")
    mat.add_argument(
        "--settings", help="JSON/YAML settings file (default: the tutorial's settings)"
    )
    mat.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="backfill as chunked runs on N processes (needs FACTORCOV_DATABASE_URL)",
    )
    mat.set_defaults(func=_materialize)
    sql = sub.add_parser(
        "sql", help="run a read-only SQL query on the store (DuckDB file or PostgreSQL)"
    )
    sql.add_argument("query")
    sql.add_argument(
        "--format",
        choices=("table", "csv", "json", "markdown"),
        default="table",
        help="table (default, for reading), or csv / json (a list of objects) / markdown",
    )
    sql.add_argument(
        "--limit",
        "--rows",
        type=int,
        default=None,
        help="rows to show (default: 1000 in a table, all otherwise; 0: all)",
    )
    _add_reader_options(sql)
    sql.set_defaults(func=_sql)
    show = sub.add_parser(
        "show", help="print a session's factor volatilities and correlation matrix"
    )
    show.add_argument("date", help="the session (YYYY-MM-DD)")
    show.add_argument("--factors", nargs="+", help="only these factors (names as stored)")
    _add_reader_options(show)
    show.set_defaults(func=_show)
    st = sub.add_parser("settings", help="print the settings in force as JSON")
    st.add_argument("--settings")
    st.set_defaults(func=_settings)
    _add_risk_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Dagster's beta/preview notices and duckdb's copy notice are for developers, not users.
    warnings.filterwarnings("ignore", message=".*(beta|preview|deprecated).*", category=Warning)
    warnings.filterwarnings(
        "ignore", message="Arrow output on a DB-API result", category=UserWarning
    )
    args = build_parser().parse_args(argv)
    try:
        environment.check_all()  # every FACTORCOV_* variable, before anything runs
        return int(args.func(args))
    except (
        UsageError,
        SettingsError,
        SettingsMismatchError,
        EnvironmentVariableError,
        InputDataError,
        StoreBusyError,
        StoreFileError,
        FileNotFoundError,
    ) as err:
        print(f"factorcov: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGINT before or after the run (nothing was being written)
        print("factorcov: interrupted; nothing was written", file=sys.stderr)
        return 128 + int(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
