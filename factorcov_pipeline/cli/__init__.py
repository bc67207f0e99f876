"""The `factorcov` command (`app.main`), one module per command."""

from factorcov_pipeline.cli.app import build_parser, main
from factorcov_pipeline.cli.common import UsageError
from factorcov_pipeline.cli.materialize import resolve_range

__all__ = ["UsageError", "build_parser", "main", "resolve_range"]
