"""The `factorcov` command (`app.main`), one module per command."""

from typing import Any

from factorcov_pipeline.cli.app import build_parser, main
from factorcov_pipeline.cli.common import UsageError

__all__ = ["UsageError", "build_parser", "main", "resolve_range"]


def __getattr__(name: str) -> Any:
    """`resolve_range` when asked for: its module needs the exchange calendar (pandas), which
    `factorcov --help` and the reading commands do without (cli/process.py)."""
    if name == "resolve_range":
        from factorcov_pipeline.cli.materialize import resolve_range

        return resolve_range
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
