"""The `factorcov` command.

    factorcov materialize [--start DATE] [--end DATE] [--settings FILE]
    factorcov sql "SELECT ..."          (read-only query of the DuckDB file)
    factorcov settings [--settings FILE] (print the settings in force as JSON)

`materialize` runs every asset and check for the session range through Dagster in ONE run
(a single-run backfill), into the DuckDB file of `FACTORCOV_DUCKDB`, shows progress and ends with
a summary. Runs are recorded in the Dagster instance of `DAGSTER_HOME` when it is set (so
`dagster dev` shows them), otherwise in a throw-away instance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.settings import SettingsError, load_settings
from factorcov_pipeline.storage import StoreBusyError

console = Console(stderr=False, highlight=False, soft_wrap=True)


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
    reversed ranges and sessions whose partition does not exist yet."""
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
    return s, e


def _materialize(args: argparse.Namespace) -> int:
    # Imported here so `factorcov --help` and argument errors stay fast.
    import dagster as dg

    from factorcov_pipeline.orchestration.partitions import SESSIONS_START
    from factorcov_pipeline.orchestration.resources import storage_resource
    from factorcov_pipeline.orchestration.runner import failure_messages, run_range

    start, end = resolve_range(args.start, args.end, SESSIONS_START)
    settings_file = args.settings or os.environ.get("FACTORCOV_SETTINGS") or ""
    load_settings(settings_file or None)  # fail fast with a clear message
    storage = storage_resource()
    store = storage.store()
    n_sessions = len(calendar.sessions(start, end))
    console.print(
        f"factorcov: materialising {n_sessions} session(s) {start} .. {end} "
        f"into {store.path}" + (f" with settings {settings_file}" if settings_file else "")
    )
    instance = (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )
    t0 = time.perf_counter()
    if args.parallel > 1:  # chunked runs on several processes (orchestration/parallel.py)
        from factorcov_pipeline.orchestration.parallel import run_parallel

        result = run_parallel(
            start, end, storage, settings_file, args.parallel, None, console.print
        )
    else:
        result = run_range(
            start, end, storage, settings_file, instance, _ProgressLogger().logger_def()
        )
    elapsed = time.perf_counter() - t0
    checks = result.get_asset_check_evaluations()
    passed = sum(1 for c in checks if c.passed)
    if not result.success:
        for message in failure_messages(result):
            console.print(f"[red]failed[/red] {message}")
        failed_checks = [c for c in checks if not c.passed]
        for c in failed_checks:
            console.print(f"[red]check failed[/red] {c.asset_check_key.name}: {c.description}")
        console.print(
            f"factorcov: run failed after {elapsed:.1f} s ({passed}/{len(checks)} checks passed)"
        )
        return 1
    summary = store.read(
        "SELECT count(DISTINCT date) AS dates, count(DISTINCT factor) AS factors, "
        "min(date) AS first, max(date) AS last FROM factor_volatility"
    )
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
                    took = time.perf_counter() - outer.started.get(step, time.perf_counter())
                    console.print(
                        f"  [green]done[/green]  {step:<50} {took:7.2f} s"
                        f"   peak memory so far {_peak_rss_gib():5.2f} GiB"
                    )
                elif kind == "STEP_FAILURE":
                    console.print(f"  [red]fail[/red]  {step}")
                elif kind == "ASSET_CHECK_EVALUATION":
                    data = event.event_specific_data
                    mark = "[green]pass[/green]" if data.passed else "[red]FAIL[/red]"
                    console.print(f"  {mark}  check {data.asset_check_key.name}")

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


def _sql(args: argparse.Namespace) -> int:
    from factorcov_pipeline.storage import Store, query_polars

    store = Store.from_env(lock_timeout=args.wait)
    with store.connect(read_only=True) as con:
        frame = query_polars(con, args.query)
    with_cfg = __import__("polars").Config(tbl_rows=args.rows, tbl_cols=-1)
    with with_cfg:
        print(frame)
    return 0


def _settings(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings or os.environ.get("FACTORCOV_SETTINGS") or None)
    print(settings.model_dump_json(indent=2))
    return 0


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
    sql = sub.add_parser("sql", help="run a read-only SQL query on the DuckDB file")
    sql.add_argument("query")
    sql.add_argument("--rows", type=int, default=20)
    sql.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait while a run holds the file"
    )
    sql.set_defaults(func=_sql)
    st = sub.add_parser("settings", help="print the settings in force as JSON")
    st.add_argument("--settings")
    st.set_defaults(func=_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Dagster's beta/preview notices and duckdb's copy notice are for developers, not users.
    warnings.filterwarnings("ignore", message=".*(beta|preview|deprecated).*", category=Warning)
    warnings.filterwarnings(
        "ignore", message="Arrow output on a DB-API result", category=UserWarning
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, SettingsError, StoreBusyError, FileNotFoundError) as err:
        print(f"factorcov: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
