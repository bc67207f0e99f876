"""`factorcov sql` and `factorcov show`: read-only queries of the configured store."""

from __future__ import annotations

import argparse
import sys

from factorcov_pipeline.cli.common import UsageError, parse_date
from factorcov_pipeline.storage import BaseStore


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


def sql(args: argparse.Namespace) -> int:
    from factorcov_pipeline.render import terminal, textgrid

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


def show(args: argparse.Namespace) -> int:
    from factorcov_pipeline.render import session as session_view
    from factorcov_pipeline.render import terminal, textgrid

    day = parse_date(args.date, "DATE")
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
