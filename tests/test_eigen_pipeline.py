"""The eigenfactor risk adjustment through the Dagster pipeline (in-process runs).

A model of user factor returns (4 factors, 40 sessions: the adjustment starts at 2K = 8
observations) with Newey-West and the regime adjustment on:

* every check passes (the PSD check, and the tie-outs, which recompute the whole history in
  one block with the adjustment);
* USE4's order: the stored covariance equals lambda^2 E(F_NW), with F_NW the Newey-West
  forecast before the regime multiplier lambda, recomputed from the stored returns (1e-12);
  dates before 2K observations are vol_i vol_j corr_ij bit for bit;
* a day-by-day history (one run, then single sessions, then a range) stores the bits of one
  run (forecast_bias to 1e-12, as for any chunked history);
* a store holding unadjusted covariances fails the tie-outs on the adjusted dates exactly;
* a scale that makes some gamma non-positive fails the run in one line naming the setting
  and the date, and stores no covariance;
* the same run into PostgreSQL stores the same bits.

And the synthetic model (21 factors, 50 sessions x 100 assets, adjusted from session 42):
every check passes.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from factorcov_pipeline.core.correlation import CorrelationForecaster
from factorcov_pipeline.core.covariance import covariance_from
from factorcov_pipeline.core.eigen import EigenAdjustment
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.core.settings import load_settings
from factorcov_pipeline.core.volatility import VolatilityForecaster
from factorcov_pipeline.examples.factor_etfs import factor_etf_returns
from factorcov_pipeline.orchestration.resources import FactorcovPostgres, FactorcovStorage
from factorcov_pipeline.orchestration.runner import (
    assets_for,
    failure_messages,
    quiet_logger,
    run_range,
)
from factorcov_pipeline.storage import BaseStore, Store

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_bits
from pg_server import postgres_server

START = dt.date(2025, 3, 31)
NAMES = ("MTUM", "QUAL", "SIZE", "USMV")
N_SESSIONS = 40
COV = {
    "eigen_adjustment_scale": 1.2,
    "eigen_adjustment_simulations": 16,
    "eigen_adjustment_seed": 7,
    "nw_lags_vol": 1,
    "halflife_vra": 10.0,
}
# the module (the package `orchestration.assets` exports the asset under the same name)
covariance_asset = importlib.import_module(
    "factorcov_pipeline.orchestration.assets.factor_covariance"
)
COVARIANCE_TABLES = ("factor_covariance", "covariance_report", "forecast_bias")


def _settings(tmp: Path, universe: dict[str, object], cov: dict[str, object]) -> str:
    path = tmp / f"settings-{len(list(tmp.glob('settings-*')))}.json"
    path.write_text(
        json.dumps({"factor_model_settings": {"universe": universe}, "factor_cov_settings": cov})
    )
    return str(path)


def _run(resource: object, settings: str, start: dt.date, end: dt.date):
    return run_range(
        start,
        end,
        resource,  # type: ignore[arg-type]
        settings,
        logger=quiet_logger(),
        selection=assets_for(load_settings(settings)),
    )


def _duck(db: Path) -> FactorcovStorage:
    return FactorcovStorage(database=str(db), lock_timeout_seconds=5.0)


def _sorted(store: BaseStore, table: str) -> pl.DataFrame:
    frame = store.read(f"SELECT * FROM {table}")
    return frame.sort(frame.columns)


@pytest.fixture(scope="module")
def user_model(tmp_path_factory: pytest.TempPathFactory):
    """The 4-factor user model over 40 sessions in one run: (tmp, file, days, settings, db)."""
    tmp = tmp_path_factory.mktemp("eigen")
    frame = factor_etf_returns(START, N_SESSIONS, names=NAMES, seed=4)
    path = tmp / "factors.parquet"
    frame.write_parquet(path)
    days = sorted(set(frame["date"].to_list()))
    settings = _settings(tmp, {"factor_returns": str(path)}, COV)
    db = tmp / "block.duckdb"
    result = _run(_duck(db), settings, days[0], days[-1])
    assert result.success, failure_messages(result)
    return tmp, str(path), days, settings, db, result


def test_every_check_passes(user_model):
    *_, result = user_model
    evals = result.get_asset_check_evaluations()
    names = {e.asset_check_key.name for e in evals}
    assert {"factor_covariance_symmetric_psd", "volatility_tieout", "correlation_tieout"} <= names
    assert all(e.passed for e in evals), [e.asset_check_key.name for e in evals if not e.passed]


def test_stored_covariance_is_nw_then_eigen_then_regime(user_model):
    """lambda^2 E(F_NW) recomputed in one block from the stored returns equals the stored
    covariance (which the asset computes as E(lambda^2 F_NW)) to 1e-12."""
    _, _, days, settings, db, _ = user_model
    cs = load_settings(settings).factor_cov_settings
    store = Store(db)
    f = long_to_matrix(store.read_dates("factor_returns", days[0], days[-1]), days, NAMES,
                       "factor_return")  # fmt: skip
    vol_fc, _ = VolatilityForecaster(cs).run(None, f)
    cor_fc, _ = CorrelationForecaster(cs).run(None, f, None)
    f_nw = covariance_from(np.sqrt(vol_fc.raw_daily_var * 252.0), cor_fc.corr)  # before the VRA
    n_obs = np.arange(1, len(days) + 1)
    eig = EigenAdjustment.from_settings(cs)
    assert eig is not None
    expected = vol_fc.vra_multiplier[:, None, None] ** 2 * eig.adjust(f_nw, n_obs)
    stored = pairs_to_cube(store.read("SELECT * FROM factor_covariance"), days, NAMES, "covariance")
    assert not np.allclose(vol_fc.vra_multiplier, 1.0)  # the regime multiplier is at work
    adjusted = eig.applies(n_obs, len(NAMES))
    rel = np.abs(stored - expected).max(axis=(1, 2)) / np.abs(expected).max(axis=(1, 2))
    assert rel.max() < 1e-12, rel.max()
    plain = covariance_from(vol_fc.vol, cor_fc.corr)
    assert np.array_equal(stored[~adjusted], plain[~adjusted])  # before 2K: unchanged
    assert (np.abs(stored[adjusted] - plain[adjusted]).max(axis=(1, 2)) > 1e-3 * np.abs(
        plain[adjusted]).max(axis=(1, 2))).all()  # fmt: skip
    # the volatility and correlation tables keep the forecasts before the adjustment
    vol = long_to_matrix(store.read("SELECT * FROM factor_volatility"), days, NAMES, "volatility")
    assert np.array_equal(vol, vol_fc.vol)


def test_a_day_by_day_history_stores_the_bits_of_one_run(user_model):
    tmp, _, days, settings, db, _ = user_model
    daily = tmp / "daily.duckdb"
    for start, end in ((0, 5), (6, 6), (7, 7), (8, 8), (9, 9), (10, 22), (23, 23), (24, 39)):
        result = _run(_duck(daily), settings, days[start], days[end])
        assert result.success, failure_messages(result)
    for table in ("factor_covariance", "covariance_report"):
        assert_same_bits(_sorted(Store(daily), table), _sorted(Store(db), table), table)
    # forecast_bias's rolling moments are centred on the range's means: 1e-12, as across the
    # chunks of a parallel backfill (README)
    a, b = _sorted(Store(daily), "forecast_bias"), _sorted(Store(db), "forecast_bias")
    assert a.drop("bias").equals(b.drop("bias"))
    np.testing.assert_allclose(a["bias"].to_numpy(), b["bias"].to_numpy(), rtol=1e-12)


def test_unadjusted_covariances_fail_the_tie_outs_on_the_adjusted_dates(user_model, monkeypatch):
    tmp, _, days, settings, _, _ = user_model
    monkeypatch.setattr(covariance_asset, "eigen_adjusted", lambda store, eig, days, cov: cov)
    result = _run(_duck(tmp / "unadjusted.duckdb"), settings, days[0], days[-1])
    assert not result.success
    failed: dict[str, set[str]] = {}
    for e in result.get_asset_check_evaluations():
        if not e.passed:
            failed.setdefault(e.asset_check_key.name, set()).add(e.partition)
    adjusted = {str(d) for d in days[2 * len(NAMES) - 1 :]}
    assert failed == {"volatility_tieout": adjusted, "correlation_tieout": adjusted}


def test_a_scale_making_gamma_non_positive_fails_the_run_naming_it(tmp_path):
    """20 factors whose first 2K returns are orthogonal with equal norms: with (nearly) equal
    weights the forecast at n = 2K is a multiple of the identity, the top simulated eigenvalue
    is about (1 + sqrt(1/2))^2 = 2.9 times the truth, v ~ 0.6, and a = 3 gives gamma < 0."""
    k, n = 20, 45
    days = sorted(set(factor_etf_returns(START, n, names=NAMES[:1])["date"].to_list()))
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((2 * k, k)))
    returns = np.vstack([q * np.sqrt(2 * k) * 0.01, rng.standard_normal((n - 2 * k, k)) * 0.01])
    names = [f"F{i:02d}" for i in range(k)]
    frame = pl.DataFrame(
        {
            "date": np.repeat(np.array(days, dtype="datetime64[D]"), k),
            "factor": names * n,
            "factor_return": returns.ravel(),
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    path = tmp_path / "iid.parquet"
    frame.write_parquet(path)
    cov = {"eigen_adjustment_scale": 3.0, "eigen_adjustment_simulations": 16,
           "halflife_vol": 1e6, "halflife_cor": 1e6}  # fmt: skip
    settings = _settings(tmp_path, {"factor_returns": str(path)}, cov)
    db = tmp_path / "fail.duckdb"
    result = _run(_duck(db), settings, days[0], days[-1])
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "eigen_adjustment_scale=3" in message and str(days[2 * k - 1]) in message, message
    assert Store(db).stored_dates("factor_covariance") == []


def test_postgres_stores_the_same_bits(user_model):
    _, _, days, settings, db, _ = user_model
    with postgres_server() as server:
        url = server.create_database("eigen")
        result = _run(FactorcovPostgres(url=url), settings, days[0], days[-1])
        assert result.success, failure_messages(result)
        assert all(e.passed for e in result.get_asset_check_evaluations())
        from factorcov_pipeline.storage.postgres import PostgresStore

        pg = PostgresStore(url)
        for table in COVARIANCE_TABLES:
            assert_same_bits(_sorted(pg, table), _sorted(Store(db), table), table)


def test_the_synthetic_model_with_the_adjustment_passes_every_check(tmp_path):
    """21 factors, 50 sessions x 100 assets: sessions 42 .. 49 (returns from the second
    session) are adjusted; the PSD check and the one-block tie-outs pass on every session."""
    from factorcov_pipeline.core import calendar

    sessions = calendar.sessions(START, START + dt.timedelta(days=90))[:50]
    settings = _settings(
        tmp_path,
        {"n_assets": 100},
        {"eigen_adjustment_scale": 1.2, "eigen_adjustment_simulations": 16},
    )
    db = tmp_path / "synthetic.duckdb"
    result = run_range(sessions[0], sessions[-1], _duck(db), settings, logger=quiet_logger())
    assert result.success, failure_messages(result)
    evals = result.get_asset_check_evaluations()
    assert evals and all(e.passed for e in evals)
    psd = [e for e in evals if e.asset_check_key.name == "factor_covariance_symmetric_psd"]
    assert {e.partition for e in psd} == {str(d) for d in sessions}
    store = Store(db)
    vol = store.read("SELECT * FROM factor_volatility WHERE date = ?", [sessions[-1]])
    cov = store.read(
        "SELECT * FROM factor_covariance WHERE date = ? AND factor_1 = factor_2", [sessions[-1]]
    )
    joined = vol.join(cov, left_on="factor", right_on="factor_1")
    ratio = joined["covariance"] / joined["volatility"] ** 2
    assert (ratio - 1.0).abs().max() > 0.01  # adjusted: the diagonal is no longer vol^2
