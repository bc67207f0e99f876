"""The Python API and `factorcov risk` / `export` on PostgreSQL (FACTORCOV_DATABASE_URL), on a
real throwaway server (tests/pg_server.py): the same run stored in a DuckDB file and in
PostgreSQL gives the same frames and reports, bit for bit, read as a user that may only SELECT.

Before 0.9.0 `factorcov risk` ignored FACTORCOV_DATABASE_URL and read the DuckDB file (issue
21.7): here the DuckDB path points to a file that does not exist, so only PostgreSQL can answer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg_dbapi
import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from api_store import LAST, SESSIONS, build
from pg_server import postgres_server

from factorcov_pipeline import RiskModel, cli
from factorcov_pipeline.api.errors import NoForecastError, RiskModelError, UnknownModelError
from factorcov_pipeline.orchestration.resources import FactorcovPostgres

DAY = LAST


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The default pipeline over 8 sessions x 100 assets into DuckDB and PostgreSQL, and a
    PostgreSQL login that may only SELECT."""
    tmp = tmp_path_factory.mktemp("apipg")
    with postgres_server() as server:
        url = server.create_database("api")
        db = build(tmp)
        build_pg(tmp, url)
        with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
            cur.execute("CREATE ROLE fc_api_reader LOGIN")
            cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO fc_api_reader")
        reader = url.replace("postgresql://postgres@", "postgresql://fc_api_reader@")
        yield tmp, db, url, reader


def build_pg(tmp: Path, url: str) -> None:
    directory = tmp / "pg"
    directory.mkdir()
    build(directory, FactorcovPostgres(url=url))


def _holdings(model: RiskModel) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = model.specific_risk(DAY)["asset_id"].to_list()
    port = pl.DataFrame({"asset_id": ids[3:23], "weight": np.linspace(-0.02, 0.09, 20)})
    bench = pl.DataFrame({"asset_id": ids, "weight": [1 / len(ids)] * len(ids)})
    return port, bench


def test_the_api_reads_the_same_numbers_from_both_stores(stores):
    _, db, _, reader = stores
    with RiskModel.open(db) as duck, RiskModel.open(reader) as pg:
        assert "fc_api_reader@" in pg.location and pg.dates() == duck.dates() == SESSIONS[1:]
        assert pg.factors() == duck.factors() and pg.factor_groups() == duck.factor_groups()
        for day in (SESSIONS[1], DAY):
            for method in ("covariance", "correlation", "volatility", "exposures"):
                assert getattr(pg, method)(day).equals(getattr(duck, method)(day)), method
            assert pg.specific_risk(day).equals(duck.specific_risk(day))
        port, bench = _holdings(duck)
        assert pg.risk(port, DAY, bench).to_dict() == duck.risk(port, DAY, bench).to_dict()
        ids = port["asset_id"].to_list()[:4]
        assert pg.asset_covariance(DAY, ids).equals(duck.asset_covariance(DAY, ids))
        with pytest.raises(NoForecastError) as err:
            pg.covariance("2025-04-05")
        assert str(err.value) == (
            f"no forecast stored for 2025-04-05 in {pg.location}; nearest stored dates: "
            "2025-04-04 (before), 2025-04-07 (after)"
        )
        # a failed statement does not abort the model's READ ONLY transaction
        for bad in ("SELEC 1", "DELETE FROM factor_covariance", "SELECT * FROM nope"):
            with pytest.raises(RiskModelError, match=r"^SQL: "):
                pg.sql(bad)
        assert pg.sql("SELECT count(*) AS n FROM factor_covariance")["n"][0] == 21 * 21 * 7
        assert pg.covariance(DAY).equals(duck.covariance(DAY))
    with pytest.raises(UnknownModelError, match="stored models: default"):
        RiskModel.open(reader, model="eigen")


def test_risk_and_export_commands_read_postgres_when_configured(
    stores, tmp_path, monkeypatch, capsys
):
    _, db, _, reader = stores
    with RiskModel.open(db) as duck:
        port, bench = _holdings(duck)
        expected = duck.risk(port, DAY, bench).to_dict()
    port.write_csv(tmp_path / "p.csv")
    bench.write_parquet(tmp_path / "b.parquet")
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "no-such-file.duckdb"))
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", reader)
    code = cli.main(
        ["risk", "--portfolio", str(tmp_path / "p.csv"), "--benchmark",
         str(tmp_path / "b.parquet"), "--date", str(DAY), "--format", "json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out) == expected
    assert cli.main(["export", "--date", str(DAY), "--out", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    with RiskModel.open(db) as duck:
        duck.export(DAY, tmp_path / "y")
    for name in ("exposures", "factor_covariance", "specific_variance"):
        assert pl.read_parquet(tmp_path / "x" / f"{name}.parquet").equals(
            pl.read_parquet(tmp_path / "y" / f"{name}.parquet")
        )
    assert not (tmp_path / "no-such-file.duckdb").exists()


def test_warnings_from_columns_added_on_postgres(stores, monkeypatch, capsys, tmp_path):
    """The `reason`/`warm` columns the pipeline writes, set here (the last test of the module:
    it changes the tables)."""
    _, _, url, reader = stores
    with RiskModel.open(reader) as pg:
        ids = pg.specific_risk(DAY)["asset_id"].to_list()
    with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
        cur.execute("UPDATE specific_risk SET reason = NULL")
        cur.execute("UPDATE factor_covariance SET warm = (date > DATE '2025-04-03')")
        cur.execute(
            f"UPDATE specific_risk SET reason = 'exactly fitted' WHERE asset_id = '{ids[0]}'"
        )
    pl.DataFrame({"asset_id": ids[:2], "weight": [0.5, 0.5]}).write_csv(tmp_path / "p.csv")
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", reader)
    code = cli.main(
        ["risk", "--portfolio", str(tmp_path / "p.csv"), "--date", "2025-04-03", "--format",
         "json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    warnings = json.loads(out.out)["warnings"]
    assert warnings == [
        "2025-04-03 is within the factor covariance's warm-up (factor_covariance.warm is "
        "false): its factor risk is not yet a reliable forecast",
        "specific risk on 2025-04-03 not estimated from the asset's own returns (exactly "
        f"fitted) for 1 held asset(s): {ids[0]}",
    ]
    assert out.err.splitlines() == [f"factorcov: warning: {w}" for w in warnings]
