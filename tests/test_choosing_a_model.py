"""docs/choosing-a-model.md and its settings files stay valid and in step.

The page runs the leaderboard on the real factor-ETF file and the S&P 500 sample with
examples/factor-etfs-models.json and examples/sp500-models.json. Asserted here (the full
histories are not run):

* each file loads with `load_settings`, and its models and their settings are exactly the
  page's table "The models" (names and `key: value` overrides);
* the files hold what the page promises: an eigen-adjusted default, a faster and a slower
  half-life pair, the regime adjustment; the same models in both; the S&P file is the shipped
  example's factor model (examples/sp500-settings.json); the ETF file's warm-up covers the
  slowest model's own warm-up; the data paths and settings files are those of the page's
  commands;
* the ETF file runs: its first 260 real sessions (8 past the 252-session warm-up) through the
  pipeline with every model, and `factorcov compare` ranks one row per model, all scored on the
  same dates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from factorcov_pipeline import RiskModel
from factorcov_pipeline.cli import main
from factorcov_pipeline.core.settings import DEFAULT_MODEL, load_settings
from factorcov_pipeline.core.warmup import correlation_warmup, volatility_warmup
from factorcov_pipeline.examples.factor_etfs import real_factor_etf_returns

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "choosing-a-model.md"
ETF = ROOT / "examples" / "factor-etfs-models.json"
SP500 = ROOT / "examples" / "sp500-models.json"
SHORT = 260  # sessions of the short ETF run: 8 forecasts after the 252-session warm-up


def page_models() -> dict[str, dict[str, float]]:
    """The page's table "The models": name -> its overrides (`key: value, ...`)."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## The models", 1)[1].split("\n## ", 1)[0]
    out: dict[str, dict[str, float]] = {}
    for name, cell in re.findall(r"^\| `([\w-]+)` \| ([^|]*) \|", section, flags=re.M):
        pairs = re.findall(r"`?(\w+): ([\d.]+)`?", cell)
        out[name] = {k: float(v) for k, v in pairs}
    return out


def overrides(path: Path) -> dict[str, dict[str, float]]:
    """Each model of a settings file, `default` included, as its non-default covariance
    settings other than the warm-up (shared by all)."""
    models = load_settings(path).covariance_models()
    base = models[DEFAULT_MODEL]
    return {
        name: {
            k: float(getattr(cov, k))
            for k in type(cov).model_fields
            if getattr(cov, k) != getattr(base, k) and k != "warmup_length"
        }
        for name, cov in models.items()
    }


@pytest.mark.parametrize("path", [ETF, SP500], ids=["etf", "sp500"])
def test_the_files_hold_the_pages_models(path: Path) -> None:
    table = page_models()
    assert len(table) == 8 and DEFAULT_MODEL in table
    assert overrides(path) == table
    settings = load_settings(path)
    assert settings.factor_cov_settings == type(settings.factor_cov_settings)(
        warmup_length=settings.factor_cov_settings.warmup_length
    )  # the default model is the tutorial's, with a warm-up


def test_the_models_are_the_ones_the_page_promises() -> None:
    cov = load_settings(ETF).covariance_models()
    default = cov[DEFAULT_MODEL]
    assert cov["eigen"].eigen_adjustment_scale == 1.2  # docs/eigen-adjustment.md's scale
    assert cov["eigen"].model_copy(update={"eigen_adjustment_scale": None}) == default
    assert cov["fast"].halflife_vol < default.halflife_vol < cov["slow"].halflife_vol
    assert cov["fast"].halflife_cor < default.halflife_cor < cov["slow"].halflife_cor
    assert default.halflife_vra is None and cov["vra"].halflife_vra == 42
    # the ETF warm-up covers every model's own (the slowest half-life); S&P: a quarter
    slowest = max(max(volatility_warmup(c), correlation_warmup(c)) for c in cov.values())
    assert default.warmup_length == 252 >= slowest
    assert load_settings(SP500).factor_cov_settings.warmup_length == 63


def test_the_files_match_the_pages_commands_and_the_shipped_example() -> None:
    text = PAGE.read_text(encoding="utf-8")
    etf, sp = load_settings(ETF), load_settings(SP500)
    assert str(etf.factor_model_settings.universe.factor_returns) == "data/factor_etfs.parquet"
    assert str(sp.factor_model_settings.universe.dataset) == "data/sp500.parquet"
    for line in (
        "python -m factorcov_pipeline.examples.factor_etfs --real data/factor_etfs.parquet",
        "--start 2014-01-03 --end 2022-12-28 --settings examples/factor-etfs-models.json",
        "python -m factorcov_pipeline.examples.sp500 data/sp500.parquet",
        "--start 2009-08-21 --end 2010-08-20 --settings examples/sp500-models.json",
    ):
        assert line in text
    shipped = load_settings(ROOT / "examples" / "sp500-settings.json")
    assert sp.factor_model_settings == shipped.factor_model_settings
    assert sp.model_names() == etf.model_names()


def test_a_short_stretch_of_the_etf_file_ranks_every_model(tmp_path, monkeypatch, capsys):
    """The page's command on the first 260 sessions of the real file (a subprocess: the
    partitions start at FACTORCOV_PARTITIONS_START, read at import)."""
    frame = real_factor_etf_returns()
    days = sorted(set(frame["date"].to_list()))[:SHORT]
    (tmp_path / "data").mkdir()
    frame.filter(pl.col("date") <= days[-1]).write_parquet(tmp_path / "data/factor_etfs.parquet")
    db = tmp_path / "etf.duckdb"
    env = {**os.environ, "FACTORCOV_DUCKDB": str(db), "FACTORCOV_PARTITIONS_START": "2014-01-03"}
    for name in ("FACTORCOV_DATABASE_URL", "DAGSTER_HOME", "FACTORCOV_SETTINGS"):
        env.pop(name, None)
    argv = ["materialize", "--start", "2014-01-03", "--end", str(days[-1]), "--settings", str(ETF)]
    code = "import sys; from factorcov_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    # the settings file's data path is relative to the working directory, as in the page
    run = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert re.search(r"checks passed\s+│\s+6/6\s", run.stdout), run.stdout[-2000:]
    settings = load_settings(ETF)
    with RiskModel.open(db) as model:
        board = model.compare()
    assert sorted(board["model"].to_list()) == sorted(settings.model_names())
    assert board["rank"].to_list() == list(range(1, 9))
    # every model on the same 7 dates: the forecasts of sessions 253..259 scored at 254..260
    assert board["n_obs"].to_list() == [SHORT - 252 - 1] * 8
    assert board["first_date"].to_list() == [days[253]] * 8 == [dt.date(2015, 1, 6)] * 8
    assert board["last_date"].to_list() == [days[-1]] * 8 == [dt.date(2015, 1, 14)] * 8
    assert board["gaussian_nll"].is_not_null().all()
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    assert main(["compare", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == board["model"].to_list()
