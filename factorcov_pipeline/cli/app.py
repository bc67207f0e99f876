"""The `factorcov` command: the argument parser and the dispatch to one module per command.

    factorcov materialize [--start DATE] [--end DATE] [--settings FILE]   (cli/materialize.py)
    factorcov sql "SELECT ..." [--format table|csv|json|markdown] [--limit N]   (cli/query.py)
    factorcov show DATE [--factors ...]                                    (cli/query.py)
    factorcov settings [--settings FILE]  (print the settings in force as JSON)
    factorcov risk --portfolio FILE --date D [--benchmark FILE] [--format table|json|csv]
                                                                           (cli/risk.py)
    factorcov export --date D --out DIR [--force]                          (cli/export.py)
    factorcov compare [--format table|csv|json|markdown]                   (cli/compare.py)

`risk`, `show` and `export` read one covariance model, `--model NAME` (default `default`).

Each command's module is imported when the command runs, so `factorcov --help` and argument
errors stay fast; so are the settings and storage layers the errors below come from, after the
command line is parsed (with the collector paused, cli/process.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from factorcov_pipeline import environment
from factorcov_pipeline.cli import process
from factorcov_pipeline.cli.common import UsageError, parse_date
from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.environment import EnvironmentVariableError

# `factorcov sql` / `show`: a query still running after this many seconds is stopped.
DEFAULT_QUERY_TIMEOUT = 600.0


def _materialize(args: argparse.Namespace) -> int:
    with process.imports():
        from factorcov_pipeline.cli import materialize

    return materialize.run(args)


def _sql(args: argparse.Namespace) -> int:
    from factorcov_pipeline.cli import query

    return query.sql(args)


def _show(args: argparse.Namespace) -> int:
    from factorcov_pipeline.cli import query

    return query.show(args)


def _settings(args: argparse.Namespace) -> int:
    from factorcov_pipeline.core.settings import load_settings

    settings = load_settings(args.settings or environment.settings_file())
    print(settings.model_dump_json(indent=2))
    return 0


def _risk(args: argparse.Namespace) -> int:
    from factorcov_pipeline.api.errors import HoldingsError, RiskModelError
    from factorcov_pipeline.cli import risk as risk_command

    day = parse_date(args.date, "--date")
    try:
        return risk_command.run(args, day)
    except (HoldingsError, RiskModelError) as err:
        raise UsageError(str(err)) from None


def _export(args: argparse.Namespace) -> int:
    from factorcov_pipeline.api.errors import RiskModelError
    from factorcov_pipeline.cli import export as export_command

    day = parse_date(args.date, "--date")
    try:
        return export_command.run(args, day)
    except RiskModelError as err:
        raise UsageError(str(err)) from None


def _compare(args: argparse.Namespace) -> int:
    from factorcov_pipeline.cli import compare

    return compare.run(args)


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="default",
        help="the covariance model to read (default: default, the one of factor_cov_settings; "
        "`factorcov compare` lists the stored ones)",
    )


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
    risk.add_argument(
        "--all-factors",
        action="store_true",
        help="list every factor in the table, also those with zero exposure",
    )
    risk.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the file")
    _add_model_option(risk)
    risk.set_defaults(func=_risk)


def _add_export_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="write a date's exposures, factor covariance and specific variances as Parquet",
    )
    export.add_argument("--date", required=True, help="the forecast date (YYYY-MM-DD)")
    export.add_argument("--out", required=True, help="the directory to write the files to")
    export.add_argument("--force", action="store_true", help="replace files of an earlier export")
    export.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the file")
    _add_model_option(export)
    export.set_defaults(func=_export)


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
    _add_model_option(show)
    _add_reader_options(show)
    show.set_defaults(func=_show)
    compare = sub.add_parser(
        "compare", help="the leaderboard of the stored covariance models, best first"
    )
    compare.add_argument(
        "--format",
        choices=("table", "csv", "json", "markdown"),
        default="table",
        help="table (default, for reading), or csv / json (a list of objects) / markdown",
    )
    _add_reader_options(compare)
    compare.set_defaults(func=_compare)
    st = sub.add_parser("settings", help="print the settings in force as JSON")
    st.add_argument("--settings")
    st.set_defaults(func=_settings)
    _add_risk_parser(sub)
    _add_export_parser(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors that are the user's to fix: one line on stderr, exit code 2."""
    from factorcov_pipeline.core.settings import SettingsError
    from factorcov_pipeline.storage import SettingsMismatchError, StoreBusyError, StoreFileError

    return (
        UsageError,
        SettingsError,
        SettingsMismatchError,
        EnvironmentVariableError,
        InputDataError,
        StoreBusyError,
        StoreFileError,
        FileNotFoundError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    # Dagster's beta/preview notices and duckdb's copy notice are for developers, not users.
    warnings.filterwarnings("ignore", message=".*(beta|preview|deprecated).*", category=Warning)
    warnings.filterwarnings(
        "ignore", message="Arrow output on a DB-API result", category=UserWarning
    )
    args = build_parser().parse_args(argv)
    if argv is None:  # this process is the command: its start-up and exit (cli/process.py)
        process.own_process()
    with process.imports():
        user_errors = _user_errors()
    try:
        with process.imports():  # its session check imports pandas and the exchange calendar
            environment.check_all()  # every FACTORCOV_* variable, before anything runs
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        return _output_closed()
    except user_errors as err:
        print(f"factorcov: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGINT before or after the run (nothing was being written)
        print("factorcov: interrupted; nothing was written", file=sys.stderr)
        return 128 + int(signal.SIGINT)


def _output_closed() -> int:
    """The reader of our output went away (`factorcov settings | head -1`): stop quietly, as
    the Python documentation recommends for SIGPIPE (library/signal.html, "Note on SIGPIPE"):
    point stdout at /dev/null so that the interpreter's final flush does not raise again, and
    exit as a process stopped by SIGPIPE reports in a shell (128 + 13)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + int(signal.SIGPIPE)


if __name__ == "__main__":
    sys.exit(main())
