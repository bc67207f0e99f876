"""Every covariance setting of issue 4 through the whole Dagster pipeline (in-process runs).

Each non-default setting (alone, and all of them together) is materialised for 25 sessions x
200 synthetic assets with every asset check; the stored volatilities and correlations are then
recomputed in this file from the stored factor returns in ONE block, twice:

* with the core forecasters (`VolatilityForecaster`, `CorrelationForecaster`): the day-by-day
  recursion the assets run (state stored and reloaded) equals the one-block recursion;
* independently of the forecasters, with numpy/pandas written here from the formulas of the
  issue (Barra USE4 methodology notes, Menchero, Orr and Wang 2011: Newey-West with Bartlett
  weights on EWMA-weighted lagged products, section 4.2; volatility regime adjustment,
  eq. 4.3-4.5; Engle 2002 DCC-style standardised returns for `combine_standardized`). Only the
  Ledoit-Wolf eigenvalue formulas are taken from `core.shrinkage.shrink_correlation` (tested
  against the published formulas in tests/test_shrinkage.py); the sample length fed to them and
  everything around them are recomputed here.

Also: the default settings against the tutorial's pandas code in float64, the settings identity
of a DuckDB file (`model_settings`, the refusal and its message, nothing changed), the settings
in the asset metadata, the `forecast_bias` table (shape, a direct loop over windows, the
full-sample bias on the planted model) and the refusal of invalid settings through a settings
file and the `factorcov` command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.correlation import CorrelationForecaster
from factorcov_pipeline.core.factors import DEFAULT_FACTORS
from factorcov_pipeline.core.settings import FactorCovarianceSettings, load_settings
from factorcov_pipeline.core.shrinkage import shrink_correlation
from factorcov_pipeline.core.volatility import VolatilityForecaster
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 6, 30))[:25]
END = SESSIONS[-1]
N_ASSETS = 200
NAMES = DEFAULT_FACTORS.names
K = DEFAULT_FACTORS.k
DAYS_PER_YEAR = 252.0
NW_MIN_RATIO = 1e-8  # documented fallback threshold of the NW variance (core.volatility)
PSD_TOL = 1e-10  # documented repair threshold of a correlation matrix (core.correlation)
COVARIANCE_ASSETS = ("factor_volatility", "factor_correlation", "factor_covariance")


# ---- helpers: settings files, runs, stored tables ------------------------------------------


def _settings_file(tmp: Path, cov: dict[str, Any] | None = None, n_assets: int = N_ASSETS) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "settings.json"
    data: dict[str, Any] = {"factor_model_settings": {"universe": {"n_assets": n_assets}}}
    if cov:
        data["factor_cov_settings"] = cov
    path.write_text(json.dumps(data))
    return str(path)


def _run(db: Path, settings: str, start: dt.date = START, end: dt.date = END):
    return run_range(
        start, end, FactorcovStorage(database=str(db)), settings, logger=quiet_logger()
    )


def _returns(db: Path) -> tuple[list[dt.date], np.ndarray]:
    """Stored factor returns as (dates, (T, K)) in the model's factor order."""
    fr = Store(db).read("SELECT date, factor, factor_return FROM factor_returns")
    wide = fr.pivot(on="factor", index="date", values="factor_return").sort("date")
    return wide["date"].to_list(), wide.select(NAMES).to_numpy()


def _vol(db: Path, days: list[dt.date]) -> np.ndarray:
    v = Store(db).read("SELECT date, factor, volatility FROM factor_volatility")
    wide = v.pivot(on="factor", index="date", values="volatility").sort("date")
    assert wide["date"].to_list() == days
    return wide.select(NAMES).to_numpy()


def _cube(db: Path, table: str, value: str, days: list[dt.date]) -> np.ndarray:
    frame = Store(db).read(f"SELECT date, factor_1, factor_2, {value} FROM {table}")
    assert frame.height == len(days) * K * K, table
    pos = {n: i for i, n in enumerate(NAMES)}
    t_pos = {d: i for i, d in enumerate(days)}
    out = np.full((len(days), K, K), np.nan)
    out[
        [t_pos[d] for d in frame["date"].to_list()],
        [pos[n] for n in frame["factor_1"].to_list()],
        [pos[n] for n in frame["factor_2"].to_list()],
    ] = frame[value].to_numpy()
    return out


def _all_tables(db: Path) -> dict[str, pl.DataFrame]:
    """Every table of the file (including state and settings), rows in a canonical order."""
    store = Store(db)
    names = store.read(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    )["table_name"].to_list()
    return {t: store.read(f'SELECT * FROM "{t}" ORDER BY ALL') for t in sorted(names)}


def _copy_db(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    wal = Path(str(src) + ".wal")
    if wal.exists():
        shutil.copy(wal, Path(str(dst) + ".wal"))
    return dst


def _metadata(result) -> dict[str, dict[str, Any]]:
    """Last materialisation metadata of each asset of a run."""
    out: dict[str, dict[str, Any]] = {}
    for ev in result.get_asset_materialization_events():
        out[ev.asset_key.path[-1]] = {k: v.value for k, v in ev.materialization.metadata.items()}
    return out


# ---- independent computations (written from the formulas, not from the core) ---------------


def _decay(halflife: float) -> float:
    """pandas' EWMA decay 1 - alpha = exp(-ln 2 / halflife) (weights a^i, i dates back)."""
    return float(np.exp(-np.log(2.0) / halflife))


def _pandas_ewma(x: np.ndarray, halflife: float) -> np.ndarray:
    """pandas `ewm(halflife=...).mean()` (adjusted, NaN = missing) over the first axis."""
    flat = pd.DataFrame(x.reshape(x.shape[0], -1)).ewm(halflife=halflife).mean().to_numpy()
    return flat.reshape(x.shape)


def _ewma_lag_loop(x: np.ndarray, lag: int, halflife: float) -> np.ndarray:
    """C_l(t) = sum_{s<=t} a^(t-s) x_s x_{s-l}' / sum a^(t-s) over the s where the product
    exists (USE4 notes section 4.2, EWMA form of Newey-West); 0 before the first product.
    A direct double loop over t and s; (T, K, K)."""
    n, k = x.shape
    a = _decay(halflife)
    out = np.zeros((n, k, k))
    for t in range(n):
        num = np.zeros((k, k))
        den = np.zeros((k, k))
        for s in range(lag, t + 1):
            prod = np.outer(x[s], x[s - lag])
            ok = np.isfinite(prod)
            w = a ** (t - s)
            num += np.where(ok, w * prod, 0.0)
            den += np.where(ok, w, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[t] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return out


def _bartlett(n_lags: int) -> list[float]:
    """Newey and West (1987), eq. 2: weights 1 - l / (L + 1), l = 1..L."""
    return [1.0 - lag / (n_lags + 1.0) for lag in range(1, n_lags + 1)]


def direct_volatility(F: np.ndarray, cs: FactorCovarianceSettings) -> dict[str, np.ndarray]:
    """Daily variance with NW and VRA, from the issue's formulas; annualised volatility."""
    c0 = _pandas_ewma(F * F, cs.halflife_vol)
    raw = c0
    if cs.nw_lags_vol > 0:
        hl = cs.nw_lags_vol_halflife_override or cs.halflife_vol
        adj = c0.copy()
        for lag, b in enumerate(_bartlett(cs.nw_lags_vol), start=1):
            c_l = np.diagonal(_ewma_lag_loop(F, lag, hl), axis1=1, axis2=2)
            adj = adj + 2.0 * b * c_l
        raw = np.where(adj > NW_MIN_RATIO * c0, adj, c0)
    n = F.shape[0]
    lam2 = np.ones(n)
    b_stat = np.full(n, np.nan)
    if cs.halflife_vra is not None:
        # B_t^2 = mean_k f_kt^2 / sigma_k,t-1^2, with the pre-VRA forecast of t-1 (eq. 4.3)
        b2 = np.full(n, np.nan)
        b2[1:] = np.mean(F[1:] ** 2 / raw[:-1], axis=1)
        b_stat = np.sqrt(b2)
        ew = pd.Series(b2).ewm(halflife=cs.halflife_vra).mean().to_numpy()  # eq. 4.4
        lam2 = np.where(np.isnan(ew), 1.0, ew)
    daily = raw * lam2[:, None]  # eq. 4.5
    return {
        "vol": np.sqrt(daily * DAYS_PER_YEAR),
        "daily_var": daily,
        "multiplier": np.sqrt(lam2),
        "bias_statistic": b_stat,
    }


def _normalise(c: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = c / (sd[..., :, None] * sd[..., None, :])
    r = np.where(np.isfinite(r), r, 0.0)
    r[..., np.arange(c.shape[-1]), np.arange(c.shape[-1])] = 1.0
    return r


def _repair(r: np.ndarray) -> np.ndarray:
    """Rebonato and Jäckel (1999), section 3: clip negative eigenvalues, rescale to unit diag;
    only for matrices with an eigenvalue below -PSD_TOL."""
    out = r.copy()
    for t in range(r.shape[0]):
        sym = 0.5 * (r[t] + r[t].T)
        lam, u = np.linalg.eigh(sym)
        if lam[0] < -PSD_TOL:
            s = u @ np.diag(np.maximum(lam, 0.0)) @ u.T
            out[t] = _normalise(0.5 * (s + s.T))
    return out


def _kish_n_eff(observed: np.ndarray, halflife: float) -> np.ndarray:
    """(sum w)^2 / sum w^2 of the EWMA weights a^(t-s) over the observed dates s <= t."""
    a = _decay(halflife)
    n = observed.shape[0]
    out = np.full(n, np.nan)
    for t in range(n):
        w = np.array([a ** (t - s) for s in range(t + 1) if observed[s]])
        if w.size:
            out[t] = w.sum() ** 2 / (w * w).sum()
    return out


def direct_correlation(
    F: np.ndarray, prior_daily_vol: np.ndarray, cs: FactorCovarianceSettings
) -> np.ndarray:
    """The correlation of the issue's settings, from the formulas (see the module docstring)."""
    x = F
    if cs.combine_standardized:
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(prior_daily_vol > 0, F / prior_daily_vol, np.nan)
    c0 = _pandas_ewma(x[:, :, None] * x[:, None, :], cs.halflife_cor)
    c = c0
    if cs.nw_lags_cor > 0:
        adj = c0.copy()
        for lag, b in enumerate(_bartlett(cs.nw_lags_cor), start=1):
            c_l = _ewma_lag_loop(x, lag, cs.halflife_cor)
            adj = adj + b * (c_l + c_l.transpose(0, 2, 1))
        d_adj = np.diagonal(adj, axis1=1, axis2=2)
        d_0 = np.diagonal(c0, axis1=1, axis2=2)
        fallback = np.any((d_adj <= NW_MIN_RATIO * d_0) & (d_0 > 0), axis=1)
        c = np.where(fallback[:, None, None], c0, adj)
    r = _repair(_normalise(c))
    if cs.shrink_cor_method is not None:
        observed = np.isfinite(x).all(axis=1)
        n_obs = (
            np.full(len(x), float(cs.shrink_cor_length))
            if cs.shrink_cor_length is not None
            else _kish_n_eff(observed, cs.halflife_cor)
        )
        ok = np.isfinite(n_obs)
        shrunk = shrink_correlation(r[ok], n_obs[ok], cs.shrink_cor_method)
        r[ok] = _normalise(0.5 * (shrunk + shrunk.transpose(0, 2, 1)))
        r = _repair(r)
    return r


# ---- the default model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_db(tmp_path_factory) -> tuple[Path, str, Any]:
    tmp = tmp_path_factory.mktemp("defaults")
    settings = _settings_file(tmp)
    db = tmp / "defaults.duckdb"
    result = _run(db, settings)
    return db, settings, result


def test_defaults_equal_the_tutorial_pandas_code_in_float64(default_db):
    """Default settings: every check passes (the tutorial tie-outs, not the block comparison)
    and factor_covariance = vol_i vol_j cor_ij of the tutorial's pandas EWMAs to 1e-12."""
    db, _, result = default_db
    assert result.success, failure_messages(result)
    checks = {c.asset_check_key.name: c for c in result.get_asset_check_evaluations()}
    assert len(checks) == 10 and all(c.passed for c in checks.values())
    assert "tutorial" in checks["volatility_tieout"].description
    assert "tutorial" in checks["correlation_tieout"].description
    days, F = _returns(db)
    assert days == SESSIONS[1:]
    df = pd.DataFrame(F, columns=list(NAMES))
    var = (df**2).ewm(halflife=60.0).mean().to_numpy()  # tutorial df_vol_tieout, float64
    outer = F[:, :, None] * F[:, None, :]
    ew = pd.DataFrame(outer.reshape(len(days), -1)).ewm(halflife=120.0).mean().to_numpy()
    ew = ew.reshape(len(days), K, K)
    sd = np.sqrt(np.diagonal(ew, axis1=1, axis2=2))
    cor = ew / (sd[:, :, None] * sd[:, None, :])
    vol = np.sqrt(var) * np.sqrt(DAYS_PER_YEAR)
    expected = vol[:, :, None] * vol[:, None, :] * cor
    stored = _cube(db, "factor_covariance", "covariance", days)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(_vol(db, days), vol, rtol=1e-12, atol=0)
    regime = Store(db).read("SELECT * FROM volatility_regime ORDER BY date")
    assert regime["date"].to_list() == days
    assert (regime["vra_multiplier"] == 1.0).all()  # no adjustment at the defaults


def test_default_settings_are_stored_and_in_the_metadata(default_db):
    db, settings, result = default_db
    rows = Store(db).read("SELECT settings_json FROM model_settings")
    assert rows.height == 1
    stored = json.loads(rows["settings_json"][0])
    assert stored == json.loads(load_settings(settings).fingerprint())
    # the model's identity: the tutorial's blocks as dumped; the risk blocks only when not default
    dumped = load_settings(settings).model_dump(mode="json")
    assert {k: dumped[k] for k in stored} == stored
    assert set(stored) == {"factor_model_settings", "factor_cov_settings"}
    meta = _metadata(result)
    for asset in COVARIANCE_ASSETS:
        assert meta[asset]["non_default_settings"] == {}, asset
        assert meta[asset]["factor_cov_settings"] == FactorCovarianceSettings().model_dump(
            mode="json"
        )


# ---- every non-default setting, alone and all together --------------------------------------

CASES: dict[str, dict[str, Any]] = {
    "vra": {"halflife_vra": 10},
    "nw_vol": {"nw_lags_vol": 2},
    "nw_vol_override": {"nw_lags_vol": 2, "nw_lags_vol_halflife_override": 15},
    "nw_cor": {"nw_lags_cor": 2},
    "lis": {"shrink_cor_method": "LIS"},
    "lis_length": {"shrink_cor_method": "LIS", "shrink_cor_length": 40},
    "qis": {"shrink_cor_method": "QIS"},
    "qis_length": {"shrink_cor_method": "QIS", "shrink_cor_length": 40},
    "gis": {"shrink_cor_method": "GIS"},
    "gis_length": {"shrink_cor_method": "GIS", "shrink_cor_length": 40},
    "combine_standardized": {"combine_standardized": True},
    "all_together": {
        "halflife_vol": 30,
        "halflife_cor": 50,
        "halflife_vra": 10,
        "nw_lags_vol": 2,
        "nw_lags_vol_halflife_override": 15,
        "nw_lags_cor": 1,
        "shrink_cor_method": "QIS",
        "shrink_cor_length": 40,
        "combine_standardized": True,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_setting_through_the_pipeline(case, tmp_path, default_db):
    cov = CASES[case]
    settings = _settings_file(tmp_path, cov)
    cs = load_settings(settings).factor_cov_settings
    db = tmp_path / "fc.duckdb"
    result = _run(db, settings)
    assert result.success, failure_messages(result)
    checks = {c.asset_check_key.name: c for c in result.get_asset_check_evaluations()}
    assert len(checks) == 10
    failed = {n: c.description for n, c in checks.items() if not c.passed}
    assert not failed, failed
    vol_changed = cs.halflife_vra is not None or cs.nw_lags_vol > 0
    cor_changed = cs.nw_lags_cor > 0 or cs.shrink_cor_method is not None or cs.combine_standardized
    # the adapted checks: a block recomputation where the setting leaves the tutorial
    assert ("one-block" in checks["volatility_tieout"].description) == vol_changed
    assert ("one-block" in checks["correlation_tieout"].description) == cor_changed

    days, F = _returns(db)
    assert days == SESSIONS[1:]
    assert np.isfinite(F).all()
    # same risk model as the defaults: the same factor returns (up to the ~1e-17 run-to-run
    # rounding of the style exposures, see test_factor_returns_differ_between_identical_runs)
    np.testing.assert_allclose(F, _returns(default_db[0])[1], rtol=1e-11, atol=1e-15)
    vol = _vol(db, days)
    corr = _cube(db, "factor_correlation", "correlation", days)
    cov_stored = _cube(db, "factor_covariance", "covariance", days)

    # 1. the core forecasters over the stored factor returns, in one block
    vfc, _ = VolatilityForecaster(cs).run(None, F)
    np.testing.assert_allclose(vol, vfc.vol, rtol=1e-12, atol=0)
    cfc, _ = CorrelationForecaster(cs).run(None, F, vfc.prior_daily_vol)
    np.testing.assert_allclose(corr, cfc.corr, rtol=0, atol=1e-12)

    # 2. independent numpy/pandas from the formulas
    direct = direct_volatility(F, cs)
    np.testing.assert_allclose(vol, direct["vol"], rtol=1e-12, atol=0)
    prior = np.vstack([np.full((1, K), np.nan), vol[:-1] / np.sqrt(DAYS_PER_YEAR)])
    expected_corr = direct_correlation(F, prior, cs)
    np.testing.assert_allclose(corr, expected_corr, rtol=0, atol=1e-12)

    # covariance = vol_i vol_j cor_ij, a valid matrix
    np.testing.assert_allclose(
        cov_stored, vol[:, :, None] * vol[:, None, :] * corr, rtol=1e-12, atol=0
    )
    np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(corr).min() >= -1e-10

    # the regime table: the VRA multiplier (and B_t) per date
    regime = Store(db).read("SELECT * FROM volatility_regime ORDER BY date")
    assert regime.columns == ["date", "bias_statistic", "vra_multiplier", "warm", "model"]
    assert regime["date"].to_list() == days
    np.testing.assert_allclose(
        regime["vra_multiplier"].to_numpy(), direct["multiplier"], rtol=1e-12, atol=0
    )
    if cs.halflife_vra is not None:
        np.testing.assert_allclose(
            regime["bias_statistic"].to_numpy()[1:], direct["bias_statistic"][1:], rtol=1e-12
        )
        assert not np.allclose(direct["multiplier"][1:], 1.0)  # the adjustment did something

    # each setting changes the numbers it is about, and only those
    default_db_path = default_db[0]
    default_vol = _vol(default_db_path, days)
    default_corr = _cube(default_db_path, "factor_correlation", "correlation", days)
    same_vol_params = cs.halflife_vol == 60.0 and not vol_changed
    same_cor_params = cs.halflife_cor == 120.0 and not cor_changed
    vol_diff = float(np.max(np.abs(vol / default_vol - 1.0)))
    cor_diff = float(np.max(np.abs(corr - default_corr)))
    assert (vol_diff < 1e-9) == same_vol_params, vol_diff
    assert (cor_diff < 1e-9) == same_cor_params, cor_diff
    if not same_vol_params:
        assert vol_diff > 1e-4
    if not same_cor_params:
        assert cor_diff > 1e-4

    # the settings in force: stored and shown in the covariance assets' metadata
    stored = json.loads(Store(db).read("SELECT settings_json FROM model_settings")[0, 0])
    assert stored["factor_cov_settings"] == cs.model_dump(mode="json")
    meta = _metadata(result)
    for asset in COVARIANCE_ASSETS:
        assert meta[asset]["non_default_settings"] == cs.non_default(), asset
        assert set(meta[asset]["non_default_settings"]) == set(cov), asset
        assert meta[asset]["factor_cov_settings"] == cs.model_dump(mode="json"), asset


def test_nw_override_applies_to_the_lagged_terms_only(tmp_path):
    """An override equal to halflife_vol gives plain NW; the stored numbers are not those of
    the lagged terms with another half-life (so the override is really read)."""
    cov = {"nw_lags_vol": 1, "nw_lags_vol_halflife_override": 60}
    settings = _settings_file(tmp_path, cov)
    db = tmp_path / "fc.duckdb"
    result = _run(db, settings, START, SESSIONS[12])
    assert result.success, failure_messages(result)
    days, F = _returns(db)
    vol = _vol(db, days)
    plain = direct_volatility(F, FactorCovarianceSettings(nw_lags_vol=1))["vol"]
    np.testing.assert_allclose(vol, plain, rtol=1e-12, atol=0)
    other = FactorCovarianceSettings(nw_lags_vol=1, nw_lags_vol_halflife_override=5)
    assert np.max(np.abs(vol / direct_volatility(F, other)["vol"] - 1.0)) > 1e-6


def test_factor_returns_are_bit_identical_between_identical_runs(default_db, tmp_path):
    db = tmp_path / "again.duckdb"
    result = _run(db, default_db[1], START, SESSIONS[6])
    assert result.success, failure_messages(result)
    days, F = _returns(db)
    _, F_ref = _returns(default_db[0])
    np.testing.assert_array_equal(F, F_ref[: len(days)])


# ---- settings identity ---------------------------------------------------------------------


def test_other_settings_are_refused_and_nothing_changes(default_db, tmp_path):
    db = _copy_db(default_db[0], tmp_path / "copy.duckdb")
    before = _all_tables(db)
    assert "model_settings" in before and "_forecast_state" in before
    other = _settings_file(
        tmp_path / "other", {"halflife_vra": 40, "nw_lags_vol": 2}, n_assets=N_ASSETS
    )
    result = _run(db, other, SESSIONS[3], SESSIONS[5])
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "SettingsMismatchError" in message
    assert "factor_cov_settings.halflife_vra: stored None, now 40.0" in message
    assert "factor_cov_settings.nw_lags_vol: stored 0, now 2" in message
    assert "factor_cov_settings.halflife_vol" not in message  # only the differing settings
    assert "start afresh" in message and "FACTORCOV_DUCKDB" in message
    after = _all_tables(db)
    assert after.keys() == before.keys()
    for table, frame in before.items():
        assert after[table].equals(frame), table
    # the file still works with the settings it was built with
    again = _run(db, default_db[1], SESSIONS[5], SESSIONS[5])
    assert again.success, failure_messages(again)
    assert _all_tables(db)["factor_covariance"].equals(before["factor_covariance"])


def test_a_different_risk_model_is_refused_too(default_db, tmp_path):
    db = _copy_db(default_db[0], tmp_path / "copy.duckdb")
    before = _all_tables(db)
    other = _settings_file(tmp_path / "other", n_assets=N_ASSETS + 1)
    result = _run(db, other, SESSIONS[3], SESSIONS[3])
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "factor_model_settings.universe.n_assets: stored 200, now 201" in message
    assert "start afresh" in message
    after = _all_tables(db)
    for table, frame in before.items():
        assert after[table].equals(frame), table


# ---- forecast_bias --------------------------------------------------------------------------


def test_forecast_bias_table_against_a_direct_loop(default_db):
    db, _, _ = default_db
    store = Store(db)
    described = store.read("DESCRIBE forecast_bias")
    assert dict(zip(described["column_name"], described["column_type"], strict=True)) == {
        "window_end": "DATE",
        "portfolio": "VARCHAR",
        "portfolio_kind": "VARCHAR",
        "n_obs": "INTEGER",
        "bias": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    }
    fb = store.read("SELECT * FROM forecast_bias ORDER BY window_end, portfolio")
    assert fb.select(["window_end", "portfolio"]).is_unique().all()
    assert fb["bias"].is_finite().all() and (fb["bias"] > 0).all()
    days, F = _returns(db)
    window = 21
    assert sorted(set(fb["window_end"].to_list())) == days[window - 1 :]
    factors = fb.filter(pl.col("portfolio_kind") == "factor")
    randoms = fb.filter(pl.col("portfolio_kind") == "random")
    assert set(factors["portfolio"]) == set(NAMES)
    n_random = randoms["portfolio"].n_unique()
    assert n_random == 20
    assert fb.height == len(days[window - 1 :]) * (K + n_random)

    # direct loop: z_t = w'f_t / sqrt(w' Sigma_{t-1} w) with the stored daily covariance of t-1
    cov = _cube(db, "factor_covariance", "covariance", days) / DAYS_PER_YEAR
    # each factor's weights from its own stream, keyed by its name (sha256 of it)
    w_random = np.zeros((n_random, K))
    for j, name in enumerate(NAMES):
        digest = hashlib.sha256(name.encode()).digest()
        words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
        w_random[:, j] = np.random.default_rng([0, *words]).standard_normal(n_random)
    w_random /= np.linalg.norm(w_random, axis=1, keepdims=True)
    assert not fb["warm"].any()  # the defaults' covariance warm-up is 120 sessions
    portfolios = {n: np.eye(K)[i] for i, n in enumerate(NAMES)}
    portfolios |= {f"random_{i + 1:02d}": w_random[i] for i in range(n_random)}
    for end_pos in range(window - 1, len(days)):
        rows = fb.filter(pl.col("window_end") == days[end_pos])
        got = dict(zip(rows["portfolio"], rows["bias"], strict=True))
        n_obs = dict(zip(rows["portfolio"], rows["n_obs"], strict=True))
        for name, w in portfolios.items():
            z = [
                (w @ F[t]) / np.sqrt(w @ cov[t - 1] @ w)
                for t in range(end_pos - window + 1, end_pos + 1)
                if t >= 1
            ]
            assert n_obs[name] == len(z)
            assert got[name] == pytest.approx(np.std(z, ddof=1), rel=1e-10), (name, days[end_pos])


@pytest.fixture(scope="module")
def planted_db(tmp_path_factory) -> Path:
    """120 sessions x 300 assets with the default covariance settings."""
    tmp = tmp_path_factory.mktemp("planted")
    settings = _settings_file(tmp, n_assets=300)
    sessions = calendar.sessions(START, dt.date(2025, 12, 31))[:120]
    db = tmp / "planted.duckdb"
    result = _run(db, settings, sessions[0], sessions[-1])
    assert result.success, failure_messages(result)
    return db


def test_full_sample_bias_of_default_forecasts_on_the_planted_model(planted_db):
    """std over all dates of f_t / sigma_{t-1} per factor, inside 1 +/- sqrt(2/T) for most
    factors. The first forecasts rest on one or two squared returns (EWMA burn-in), so z of the
    first dates is heavy-tailed: with every date, 17 of 21 factors are inside the band on this
    seed (two factors' statistics are driven by a single early date); without the first 10
    dates, 20 of 21. Both are asserted, with the numbers in the message."""
    days, F = _returns(planted_db)
    sigma = _vol(planted_db, days) / np.sqrt(DAYS_PER_YEAR)
    z = F[1:] / sigma[:-1]
    b_all = z.std(axis=0, ddof=1)
    t_all = z.shape[0]
    inside_all = np.abs(b_all - 1.0) <= np.sqrt(2.0 / t_all)
    msg = f"T={t_all}, bias per factor {dict(zip(NAMES, np.round(b_all, 3), strict=True))}"
    assert inside_all.mean() >= 0.75, msg
    assert abs(float(np.median(b_all)) - 1.0) <= np.sqrt(2.0 / t_all), msg
    burn = 10
    b_late = z[burn:].std(axis=0, ddof=1)
    t_late = z.shape[0] - burn
    inside_late = np.abs(b_late - 1.0) <= np.sqrt(2.0 / t_late)
    assert inside_late.mean() >= 0.85, f"after burn-in T={t_late}: {np.round(b_late, 3)}"
    # the stored rolling table says the same: most factor windows inside their band
    fb = Store(planted_db).read(
        "SELECT n_obs, bias FROM forecast_bias WHERE portfolio_kind = 'factor'"
    )
    dev = (fb["bias"] - 1.0).abs().to_numpy()
    band = np.sqrt(2.0 / fb["n_obs"].to_numpy())
    assert (dev <= band).mean() >= 0.75


# ---- invalid settings --------------------------------------------------------------------------

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "negative_nw_lags_vol": ({"nw_lags_vol": -1}, "factor_cov_settings.nw_lags_vol"),
    "negative_nw_lags_cor": ({"nw_lags_cor": -2}, "factor_cov_settings.nw_lags_cor"),
    "length_without_method": ({"shrink_cor_length": 50}, "shrink_cor_length"),
    "unknown_method": ({"shrink_cor_method": "OAS"}, "factor_cov_settings.shrink_cor_method"),
    "override_without_lags": (
        {"nw_lags_vol_halflife_override": 20},
        "nw_lags_vol_halflife_override",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_settings_are_refused_by_the_command(case, tmp_path, monkeypatch, capsys):
    cov, name = INVALID[case]
    settings = _settings_file(tmp_path, cov)
    db = tmp_path / "cli.duckdb"
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(
        [
            "materialize",
            "--start",
            str(SESSIONS[0]),
            "--end",
            str(SESSIONS[1]),
            "--settings",
            settings,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert name in err
    assert settings in err  # the message names the file too
    assert not db.exists()  # refused before anything is written


@pytest.mark.parametrize("case", ["negative_nw_lags_vol", "length_without_method"])
def test_invalid_settings_fail_the_run_naming_the_setting(case, tmp_path):
    cov, name = INVALID[case]
    settings = _settings_file(tmp_path, cov)
    db = tmp_path / "run.duckdb"
    result = _run(db, settings, SESSIONS[0], SESSIONS[1])
    assert not result.success
    assert name in " ".join(failure_messages(result))
    assert not db.exists() or "model_settings" not in _all_tables(db)
