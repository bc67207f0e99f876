"""Partitions in parallel: a backfill as chunked runs on 2 worker processes into PostgreSQL equals
one sequential run bit for bit in every table, through `factorcov materialize --parallel 2`;
a DuckDB file is refused (one writing process per file)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
from pathlib import Path

import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.parallel import chunks, run_parallel
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import FactorcovPostgres, FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_stores
from pg_server import postgres_server

SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=45))[:26]


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("par") / "settings.json"
    path.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 300}}}))
    return str(path)


def test_chunks_cover_the_range_in_fixed_size_spans():
    spans = chunks(SESSIONS[0], SESSIONS[-1], 8)
    assert [len(calendar.sessions(a, b)) for a, b in spans] == [8, 8, 8, 2]
    assert spans[0][0] == SESSIONS[0] and spans[-1][1] == SESSIONS[-1]
    assert all(calendar.previous_session(a2) == b for (_, b), (a2, _) in itertools.pairwise(spans))


def test_parallel_backfill_equals_sequential_bit_for_bit(pg, settings, monkeypatch, capsys):
    """Both with chunks of 8 sessions (`FACTORCOV_CHUNK_SESSIONS`): the sequential run writes
    (and computes forecast_bias's rolling moments over) the same spans as the parallel runs."""
    from factorcov_pipeline.orchestration.assets import common

    monkeypatch.setattr(common, "CHUNK_SESSIONS", 8)
    sequential = pg.create_database("seq")
    res = run_range(
        SESSIONS[0],
        SESSIONS[-1],
        FactorcovPostgres(url=sequential),
        settings,
        logger=quiet_logger(),
    )
    assert res.success, failure_messages(res)
    parallel = pg.create_database("par")
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", parallel)
    monkeypatch.setenv("FACTORCOV_CHUNK_SESSIONS", "8")  # 4 chunks of the 26 sessions
    code = cli.main(
        [
            "materialize",
            "--start", str(SESSIONS[0]),
            "--end", str(SESSIONS[-1]),
            "--settings", settings,
            "--parallel", "2",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "universe, exposures: 4/4 run(s) succeeded" in out
    assert "factor_volatility, factor_correlation, specific_risk: 1/1 run(s) succeeded" in out
    # forecast_bias's rolling moments are summed per written chunk: the sequential run writes
    # its K x K-sized chunks, the parallel runs 8-session chunks (equal to 1e-12, not bitwise);
    # every other table bit for bit (specific_risk_bias sums its rows in (date, asset) order)
    counts = assert_same_stores(
        PostgresStore(sequential), PostgresStore(parallel), close=frozenset({"forecast_bias"})
    )
    assert counts["factor_covariance"] == 25 * 21 * 21 and counts["forecast_bias"] > 0


def test_every_check_runs_in_the_chunked_runs(pg, settings):
    url = pg.create_database("chk")
    result = run_parallel(
        SESSIONS[0], SESSIONS[9], FactorcovPostgres(url=url), settings, 2, 5, progress=None
    )
    assert result.success, failure_messages(result)  # type: ignore[arg-type]
    names = [e.asset_check_key.name for e in result.get_asset_check_evaluations()]
    assert {"volatility_tieout", "correlation_tieout", "exposures_standardised"} <= set(names)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert names.count("exposures_standardised") == 10  # one per session, in 2 chunked runs


def test_parallel_refuses_a_duckdb_file(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "fc.duckdb"))
    code = cli.main(["materialize", "--start", str(SESSIONS[0]), "--end", str(SESSIONS[3]),
                     "--parallel", "2"])  # fmt: skip
    out = capsys.readouterr()
    assert code != 0
    assert "set FACTORCOV_DATABASE_URL" in out.out + out.err
    assert not (tmp_path / "fc.duckdb").exists()
    with pytest.raises(Exception, match="one writing process"):
        run_parallel(SESSIONS[0], SESSIONS[3], FactorcovStorage(database=str(tmp_path / "x")))
