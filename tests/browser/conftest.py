"""`dagster dev` on a temporary DAGSTER_HOME (the shipped deploy/dagster.yaml), DuckDB file and
small synthetic universe, for the browser tests: the `dev` fixture. The harness itself, and what
the tests ask its GraphQL endpoint (what the UI shows), is tests/browser/dagster_dev.py (shared
with tests/test_ui_monitoring.py and benchmarks/ui_latency.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dagster_dev import (  # noqa: F401 (re-exported for the tests)
    REPO,
    DagsterDev,
    check_statuses,
    dagster_dev,
    wait_for_runs,
)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DagsterDev]:
    with dagster_dev(tmp_path) as running:
        yield running
