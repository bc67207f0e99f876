"""Holdings files: validation messages, standing portfolios, mapping onto a model's assets."""

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest

from factorcov_pipeline.api.holdings import load_holdings, load_standing_holdings
from factorcov_pipeline.core.holdings import HoldingsError, align_holdings
from factorcov_pipeline.core.portfolio import RiskSnapshot
from factorcov_pipeline.core.settings import PortfolioRiskSettings
from factorcov_pipeline.orchestration.assets.portfolio_risk import standing_holdings

DAY = dt.date(2025, 5, 9)


def _model() -> RiskSnapshot:
    n, k = 4, 2
    return RiskSnapshot(
        asset_ids=np.array(["A", "B", "C", "D"]),
        factors=["F1", "F2"],
        factor_groups=["market", "style"],
        exposures=np.ones((n, k)),
        covariance=np.eye(k),
        specific_risk=np.full(n, 0.2),
    )


def test_standing_holdings_from_csv_parquet_and_duckdb(tmp_path):
    frame = pl.DataFrame(
        {"portfolio": ["p", "p", "q"], "asset_id": ["A", "B", "A"], "weight": [0.5, 0.5, 1.0]}
    )
    frame.write_csv(tmp_path / "h.csv")
    frame.write_parquet(tmp_path / "h.parquet")
    with duckdb.connect(str(tmp_path / "h.duckdb")) as con:
        con.register("f", frame.to_arrow())
        con.execute("CREATE TABLE holdings AS SELECT * FROM f")
    for path, table in [("h.csv", None), ("h.parquet", None), ("h.duckdb", "holdings")]:
        got = load_standing_holdings(str(tmp_path / path), table)
        assert got.equals(frame), path
    with pytest.raises(HoldingsError, match="needs the table name"):
        load_standing_holdings(str(tmp_path / "h.duckdb"))
    pl.DataFrame({"asset_id": ["A"], "weight": [1.0]}).write_csv(tmp_path / "one.csv")
    assert load_holdings(tmp_path / "one.csv").height == 1
    with pytest.raises(HoldingsError, match=r"missing column\(s\) \['portfolio'\]"):
        load_standing_holdings(str(tmp_path / "one.csv"))


def test_benchmark_must_be_a_standing_portfolio(tmp_path):
    pl.DataFrame({"portfolio": ["p"], "asset_id": ["A"], "weight": [1.0]}).write_csv(
        tmp_path / "h.csv"
    )
    cfg = PortfolioRiskSettings(holdings=str(tmp_path / "h.csv"), benchmark="spx")
    with pytest.raises(HoldingsError, match=r"benchmark 'spx' is not a portfolio of .*: p"):
        standing_holdings(cfg)


def test_duplicates_are_per_portfolio(tmp_path):
    pl.DataFrame(
        {"portfolio": ["p", "q", "q"], "asset_id": ["A", "A", "A"], "weight": [1.0, 0.5, 0.5]}
    ).write_csv(tmp_path / "h.csv")
    with pytest.raises(HoldingsError, match="listed more than once: A"):
        load_standing_holdings(str(tmp_path / "h.csv"))


def test_align_refuses_or_drops_unknown_ids_and_reports_the_weight():
    m = _model()
    h = pl.DataFrame(
        {
            "portfolio": ["p", "p", "p", "q"],
            "asset_id": ["A", "Z1", "Z2", "D"],
            "weight": [0.5, 0.2, 0.3, 1.0],
        }
    )
    with pytest.raises(
        HoldingsError, match=r"2 asset id\(s\) not in the model on 2025-05-09: Z1, Z2"
    ):
        align_holdings(m, h, DAY, "h.csv", drop_unknown=False)
    al = align_holdings(m, h, DAY, "h.csv", drop_unknown=True)
    assert al.portfolios == ["p", "q"] and al.unknown == ["Z1", "Z2"]
    np.testing.assert_allclose(al.dropped_weight, [0.5, 0.0])
    np.testing.assert_array_equal(al.weights, [[0.5, 0, 0, 0], [0, 0, 0, 1.0]])


def test_many_unknown_ids_are_named_briefly():
    m = _model()
    h = pl.DataFrame({"asset_id": [f"Z{i}" for i in range(12)], "weight": [0.1] * 12})
    with pytest.raises(HoldingsError, match=r"Z0, Z1, Z10, Z11, Z2 \.\.\. \(12 in all\)"):
        align_holdings(m, h, DAY, "h.csv", drop_unknown=False)
