"""`dagster dev` on a temporary DAGSTER_HOME, DuckDB file and small synthetic universe, for the
browser tests (the real webserver and daemon, as a user starts them): the `dagster_dev` fixture
and what the tests ask its GraphQL endpoint (what the UI shows)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterDev:
    url: str
    home: Path
    database: Path
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            out = json.loads(response.read())
        if out.get("errors"):
            raise AssertionError(out["errors"])
        return out["data"]


@contextmanager
def dagster_dev(tmp: Path, n_assets: int = 300) -> Iterator[DagsterDev]:
    """Start `dagster dev` from the repo root with the shipped dagster.yaml; stop it after."""
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": n_assets}}}))
    database = tmp / "fc.duckdb"
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FACTORCOV_DUCKDB": str(database),
        "FACTORCOV_SETTINGS": str(settings),
    }
    log = tmp / "dagster_dev.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(f"http://127.0.0.1:{port}", home, database, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                data = dev.graphql("{ repositoriesOrError { __typename } }")
                if data["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                    break
            except (OSError, AssertionError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield dev
    finally:
        # Ctrl-C, as a user stops it; then the whole process group (webserver, daemon, code
        # server, run workers) if it has not exited
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


RUNS = """
{ runsOrError { ... on Runs { results { runId status tags { key value } startTime endTime } } } }
"""

CHECK_STATUSES = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
            }
          }
        }
      }
    }
  }
}
"""


def check_statuses(dev: DagsterDev, asset: str) -> dict[str, list[tuple[str, str, str]]]:
    """Each check of `asset`: its partition status ranges as the UI's Partitions tab shows."""
    node = dev.graphql(CHECK_STATUSES, {"key": {"path": [asset]}})["assetNodeOrError"]
    out = {}
    for check in node["assetChecksOrError"]["checks"]:
        ranges = (check["partitionStatuses"] or {}).get("ranges") or []
        out[check["name"]] = [(r["startKey"], r["endKey"], r["status"]) for r in ranges]
    return out


def wait_for_runs(dev: DagsterDev, n: int, timeout: float = 240) -> list[dict[str, Any]]:
    """Wait until at least `n` runs exist and all have finished; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dev.graphql(RUNS)["runsOrError"]["results"]
        finished = {"SUCCESS", "FAILURE", "CANCELED"}
        if len(runs) >= n and all(r["status"] in finished for r in runs):
            return runs
        time.sleep(2)
    raise AssertionError(
        f"runs did not finish in {timeout} s: {runs}\n{dev.log.read_text()[-3000:]}"
    )


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DagsterDev]:
    with dagster_dev(tmp_path) as running:
        yield running
