"""`factorcov export`: the risk model of a date as Parquet files for an optimiser.

    factorcov export --date D --out DIRECTORY [--force] [--wait S] [--model NAME]

A thin layer over `RiskModel.export` (`api/export.py` documents the files and their columns);
reads the configured store as every command does. Prints the files written.
"""

from __future__ import annotations

import argparse
import datetime as dt

from factorcov_pipeline.api.model import RiskModel
from factorcov_pipeline.cli.risk import configured_store
from factorcov_pipeline.render import terminal


def run(args: argparse.Namespace, day: dt.date) -> int:
    """The body of `factorcov export` (cli/app.py parses the arguments)."""
    with RiskModel.from_store(configured_store(args.wait), model=args.model) as model:
        paths = model.export(day, args.out, overwrite=args.force)
    terminal.write_stdout("".join(f"{path}\n" for path in paths.values()))
    return 0
