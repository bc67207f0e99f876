"""`factorcov sql` and `factorcov show`: read-only queries of the configured store, through the
read layer (`api/model.RiskModel`, `api/session.py`)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from factorcov_pipeline.cli.common import UsageError, parse_date

if TYPE_CHECKING:
    from factorcov_pipeline.api.model import RiskModel


def _open_model(args: argparse.Namespace) -> RiskModel:
    """The configured store (PostgreSQL when FACTORCOV_DATABASE_URL is set, else the DuckDB
    file) opened read-only, its queries stopped after ``--timeout`` seconds."""
    from factorcov_pipeline.api.errors import UnknownModelError
    from factorcov_pipeline.api.model import RiskModel
    from factorcov_pipeline.cli.risk import configured_store

    if args.timeout < 0:
        raise UsageError(f"--timeout {args.timeout:g} is negative (0: no limit)")
    model = getattr(args, "model", None) or "default"
    try:
        return RiskModel.from_store(configured_store(args.wait), model=model, timeout=args.timeout)
    except UnknownModelError as err:
        raise UsageError(str(err)) from None


def sql(args: argparse.Namespace) -> int:
    from factorcov_pipeline.render import terminal, textgrid

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit {args.limit} is negative (0 shows every row)")
    limit = args.limit
    if limit is None and args.format == "table":
        limit = terminal.DEFAULT_TABLE_LIMIT
    limit = limit or None
    with _open_model(args) as model:
        con = model.connection
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
    from factorcov_pipeline.api.session import ShowError, load_session
    from factorcov_pipeline.render import session as session_view
    from factorcov_pipeline.render import terminal, textgrid

    day = parse_date(args.date, "DATE")
    with _open_model(args) as model:
        con = model.connection
        try:
            forecast = load_session(model, day, args.factors)
        except ShowError as err:
            raise UsageError(str(err)) from None
        except con.errors as err:
            raise UsageError(f"reading {model.location}: {con.describe_error(err)}") from None
        location = model.location
    text = session_view.render_session(forecast, textgrid.terminal_width(), location)
    terminal.write_stdout(text)
    return 0
