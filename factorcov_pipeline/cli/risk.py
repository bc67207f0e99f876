"""`factorcov risk`: the risk report of one portfolio (optionally against a benchmark) at a date.

    factorcov risk --portfolio FILE --date D [--benchmark FILE] [--format table|json|csv]
                   [--drop-unknown] [--all-factors] [--wait S] [--model NAME]

A thin layer over the Python API: `RiskModel.risk` on the configured store (the DuckDB file, or
PostgreSQL when FACTORCOV_DATABASE_URL is set) computes the report, `render/risk_report.py`
prints it; ``--format json`` is `RiskReport.to_dict()`. Each of the report's warnings is also a
``factorcov: warning: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from factorcov_pipeline.api.model import RiskModel
from factorcov_pipeline.cli.common import UsageError
from factorcov_pipeline.render import risk_report, terminal, textgrid
from factorcov_pipeline.storage import BaseStore


def configured_store(wait: float) -> BaseStore:
    """The store every read command uses: PostgreSQL when FACTORCOV_DATABASE_URL is set, else
    the DuckDB file (`storage.store_from_env`)."""
    from factorcov_pipeline.storage import store_from_env

    try:
        return store_from_env(lock_timeout=wait)
    except ValueError as err:  # a FACTORCOV_DATABASE_URL that is not a PostgreSQL URL
        raise UsageError(str(err)) from None


def run(args: argparse.Namespace, day: dt.date) -> int:
    """The body of `factorcov risk` (cli/app.py parses the arguments)."""
    store = configured_store(args.wait)
    with RiskModel.from_store(store, model=args.model) as model:
        report = model.risk(
            args.portfolio, day, args.benchmark, drop_unknown=args.drop_unknown
        ).to_dict()
    for warning in report["warnings"]:
        print(f"factorcov: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        text = risk_report.render_json(report)
    elif args.format == "csv":
        text = risk_report.render_csv(report)
    else:
        text = risk_report.render_table(
            report,
            textgrid.terminal_width(),
            portfolio=args.portfolio,
            benchmark=args.benchmark,
            location=store.location,
            show_all=args.all_factors,
        )
    terminal.write_stdout(text)
    return 0
