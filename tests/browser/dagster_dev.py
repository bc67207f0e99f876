"""`dagster dev` as a user starts it, on a temporary DAGSTER_HOME, DuckDB file and small synthetic
universe: the harness of the browser tests (tests/browser), the run-monitoring tests
(tests/test_ui_monitoring.py) and the UI latency benchmark (benchmarks/ui_latency.py).

It speaks to the webserver the way the UI does (`POST /graphql`): the UI's own mutations
(`launchPartitionBackfill`, `launchPipelineExecution`) and the queries behind its pages.
"""

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The instance configuration the README tells a user to copy into DAGSTER_HOME.
SHIPPED_INSTANCE = REPO / "deploy" / "dagster.yaml"
ASSETS = [
    "universe",
    "exposures",
    "factor_returns",
    "factor_volatility",
    "factor_correlation",
    "specific_risk",
    "factor_covariance",
    "covariance_report",
    "forecast_bias",
    "portfolio_risk",
    "risk_backtest",
]


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
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

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

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def start_dagster_dev(
    tmp: Path,
    *,
    n_assets: int | None = 300,
    instance_yaml: Path = SHIPPED_INSTANCE,
    home: Path | None = None,
    database: Path | None = None,
    log_name: str = "dagster_dev.log",
) -> DagsterDev:
    """Start `dagster dev` from the repo root (workspace.yaml) with `instance_yaml` copied into a
    fresh DAGSTER_HOME (or an existing `home`, kept as it is); wait until the code location has
    loaded. `n_assets`: the synthetic universe's size (None: the default settings). Stop it with
    `stop_dagster_dev`."""
    if home is None:
        home = tmp / "dagster_home"
        home.mkdir()
        shutil.copy(instance_yaml, home / "dagster.yaml")
    database = database or tmp / "fc.duckdb"
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FACTORCOV_DUCKDB": str(database)}
    env.pop("FACTORCOV_SETTINGS", None)
    if n_assets is not None:
        settings = tmp / "settings.json"
        universe = {"universe": {"n_assets": n_assets}}
        settings.write_text(json.dumps({"factor_model_settings": universe}))
        env["FACTORCOV_SETTINGS"] = str(settings)
    log = tmp / log_name
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(f"http://127.0.0.1:{port}", home, database, log, env, proc)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                data = dev.graphql("{ repositoriesOrError { __typename } }")
                if data["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                    break
            except (OSError, AssertionError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not start:\n{dev.tail()}")
            time.sleep(1)
    except BaseException:
        stop_dagster_dev(dev)
        raise
    return dev


def stop_dagster_dev(dev: DagsterDev, *, kill: bool = False) -> None:
    """Ctrl-C, as a user stops it; then the whole process group (webserver, daemon, code
    server, run workers) if it has not exited. `kill`: SIGKILL at once (a power loss)."""
    proc = dev.proc
    if proc is None:
        return
    if not kill:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def dagster_dev(tmp: Path, n_assets: int | None = 300, **kwargs: Any) -> Iterator[DagsterDev]:
    dev = start_dagster_dev(tmp, n_assets=n_assets, **kwargs)
    try:
        yield dev
    finally:
        stop_dagster_dev(dev)


RUNS = """
{ runsOrError { ... on Runs { results {
    runId status tags { key value } creationTime startTime endTime
} } } }
"""

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""

BACKFILL = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status timestamp endTimestamp runs { runId } }
  }
}
"""


def runs(dev: DagsterDev) -> list[dict[str, Any]]:
    return dev.graphql(RUNS)["runsOrError"]["results"]


def launch_backfill(dev: DagsterDev, partitions: list[str], assets: list[str] = ASSETS) -> str:
    """The mutation the UI's Materialize dialog sends for a range of every asset (a pure asset
    backfill: `assetSelection` + `partitionNames`), as LaunchAssetChoosePartitionsDialog builds
    it; returns the backfill id."""
    params = {
        "assetSelection": [{"path": [a]} for a in assets],
        "partitionNames": partitions,
        "fromFailure": False,
        "tags": [],
    }
    out = dev.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    return out["backfillId"]


def wait_for_backfill(dev: DagsterDev, backfill_id: str, timeout: float = 300) -> dict[str, Any]:
    """Poll the backfill (as its page does) until it has a terminal status; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bf = dev.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if bf["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return bf
        time.sleep(0.25)
    raise AssertionError(f"backfill {backfill_id} not finished in {timeout} s\n{dev.tail()}")


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
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = runs(dev)
        finished = {"SUCCESS", "FAILURE", "CANCELED"}
        if len(found) >= n and all(r["status"] in finished for r in found):
            return found
        time.sleep(1)
    raise AssertionError(f"runs did not finish in {timeout} s: {found}\n{dev.tail()}")


LAUNCH_RUN = """
mutation ($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def launch_range_run(dev: DagsterDev, start: str, end: str, job: str = "factorcov_daily") -> str:
    """What the Launchpad of job `factorcov_daily` sends for a range as ONE run (the tags
    `dagster/asset_partition_range_start` / `_end`): straight to the run queue, no backfill
    daemon. Returns the run id."""
    params = {
        "selector": {
            "repositoryLocationName": "factorcov",
            "repositoryName": "__repository__",
            "pipelineName": job,
        },
        "runConfigData": "{}",
        "executionMetadata": {
            "tags": [
                {"key": "dagster/asset_partition_range_start", "value": start},
                {"key": "dagster/asset_partition_range_end", "value": end},
            ]
        },
    }
    out = dev.graphql(LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
    assert out["__typename"] == "LaunchRunSuccess", out
    return out["run"]["runId"]


def run_status(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    found = [r for r in runs(dev) if r["runId"] == run_id]
    assert found, run_id
    return found[0]


def wait_for_run(
    dev: DagsterDev, run_id: str, statuses: tuple[str, ...], timeout: float = 300
) -> dict[str, Any]:
    """Poll until the run has one of `statuses`; return it."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = run_status(dev, run_id)
        if run["status"] in statuses:
            return run
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} not {statuses} in {timeout} s: {run}\n{dev.tail()}")
