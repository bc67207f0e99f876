"""Issue 12: nothing lost, nothing silently wrong.

Each test drives a defect the attack found through a public interface (`factorcov materialize`
through `cli.main`, settings files, in-process Dagster runs through `runner.run_range`) and
asserts both the message and what is stored: a refused run leaves every table's hash unchanged
(`tablehash.table_hashes`); an accepted run leaves every table consistent with the others.
"""

import sys
from pathlib import Path

import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.orchestration.assets import common
from factorcov_pipeline.orchestration.runner import failure_messages
from factorcov_pipeline.storage import Store

sys.path.insert(0, str(Path(__file__).parent))
from tablehash import assert_tables_unchanged, table_hashes
from test_userdata_pipeline import END, SESSIONS, START, run, settings_file, user_frame


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return user_frame()


@pytest.fixture
def copy(frame, tmp_path):
    """A DuckDB file materialised from a good user file over SESSIONS; the settings name the
    data file, which a test may then overwrite with bad data."""
    data = tmp_path / "universe.parquet"
    frame.write_parquet(data)
    db = tmp_path / "fc.duckdb"
    settings = settings_file(tmp_path, str(data))
    result = run(db, settings)
    assert result.success, failure_messages(result)
    return db, frame, settings, data


def _cli(db: Path, settings: str, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(["materialize", "--settings", settings, *args])
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- 1: data loss reported as success -------------------------------------------------------


def test_empty_return_column_is_refused_and_nothing_changes(copy, monkeypatch, capsys):
    db, frame, settings, data = copy
    frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("total_return")).write_parquet(data)
    before = table_hashes(db)
    code, out = _cli(db, settings, monkeypatch, capsys, "--start", str(START), "--end", str(END))
    assert code == 1
    assert "no usable return" in out and str(data) in out and "refusing" in out
    assert "run failed" in out and "8/8" not in out
    assert_tables_unchanged(before, db)
    assert_consistent(db)


def assert_consistent(db: Path) -> None:
    """Every table a step owns covers the same dates: states with forecasts, statistics with
    factor returns, regime rows with volatilities."""
    store = Store(db)
    for asset in ("factor_volatility", "factor_correlation"):
        states = store.read(f"SELECT DISTINCT date FROM _forecast_state WHERE asset = '{asset}'")
        assert sorted(states["date"].to_list()) == store.stored_dates(asset), asset
    assert store.stored_dates("regression_stats") == store.stored_dates("factor_returns")
    assert store.stored_dates("volatility_regime") == store.stored_dates("factor_volatility")


# ---- 3: leftover rows on the empty path ----------------------------------------------------


def test_a_date_whose_returns_became_empty_keeps_no_stats_row(copy, monkeypatch):
    db, frame, settings, data = copy
    # One session per write chunk, so `day` goes through the regression's empty path alone.
    monkeypatch.setattr(common, "CHUNK_SESSIONS", 1)
    day, nxt = SESSIONS[12], SESSIONS[13]
    frame.with_columns(
        pl.when(pl.col("date") == day).then(None).otherwise(pl.col("total_return"))
        .alias("total_return")
    ).write_parquet(data)  # fmt: skip
    # The two-date range has returns on `nxt`, so it is accepted; `day` becomes a gap.
    result = run(db, settings, day, nxt)
    assert result.success, failure_messages(result)
    assert_consistent(db)
    store = Store(db)
    assert day in store.stored_dates("factor_return_gaps")
    for table in ("factor_returns", "specific_returns", "regression_stats"):
        assert day not in store.stored_dates(table), table
    assert nxt in store.stored_dates("regression_stats")


# ---- 4: caps that would fail a blocking check after writing ---------------------------------


@pytest.mark.parametrize(
    ("cap", "everywhere", "needle"),
    [
        (1e300, False, "outside the sane range [1e-06, 1e+15]"),
        (5e-324, True, "outside the sane range"),
        (1.7e308, True, "outside the sane range"),
        (1e13, False, "times the smallest"),  # mixed units: one cap in dollars, others millions
    ],
)
def test_insane_caps_are_refused_before_anything_is_written(copy, cap, everywhere, needle):
    db, frame, settings, data = copy
    day = SESSIONS[10]
    if everywhere:
        bad = frame.with_columns(pl.lit(cap).alias("market_cap"))
    else:
        caps = frame.with_columns(
            (pl.col("market_cap") / 1e6).alias("market_cap")  # millions: 1e2 .. 1e5
        )
        first = (pl.col("date") == day) & (pl.col("asset_id") == caps["asset_id"][0])
        bad = caps.with_columns(
            pl.when(first).then(pl.lit(cap)).otherwise(pl.col("market_cap")).alias("market_cap")
        )
    bad.write_parquet(data)
    before = table_hashes(db)
    result = run(db, settings, SESSIONS[9], END)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert message.startswith("universe") and "market_cap" in message and needle in message
    assert_tables_unchanged(before, db)
