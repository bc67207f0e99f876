"""`factorcov compare`: the leaderboard of the stored covariance models (issue 22).

    factorcov compare [--format table|csv|json|markdown] [--wait S] [--timeout S]

A thin layer over the Python API: `RiskModel.compare()` reads the `model_leaderboard` table of
the configured store (the DuckDB file, or PostgreSQL when FACTORCOV_DATABASE_URL is set),
`render/terminal.frame_text` prints it as `factorcov sql` prints a query (best model first).
"""

from __future__ import annotations

import argparse

from factorcov_pipeline.api.errors import RiskModelError
from factorcov_pipeline.api.model import RiskModel
from factorcov_pipeline.cli.common import UsageError
from factorcov_pipeline.cli.risk import configured_store
from factorcov_pipeline.render import terminal, textgrid


def run(args: argparse.Namespace) -> int:
    """The body of `factorcov compare` (cli/app.py parses the arguments)."""
    if args.timeout < 0:
        raise UsageError(f"--timeout {args.timeout:g} is negative (0: no limit)")
    try:
        with RiskModel.from_store(configured_store(args.wait), timeout=args.timeout) as model:
            board = model.compare()
    except RiskModelError as err:
        raise UsageError(str(err)) from None
    terminal.write_stdout(terminal.frame_text(board, args.format, textgrid.terminal_width()))
    return 0
