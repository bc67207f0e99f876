"""VolatilityForecaster: tutorial tie-out, Newey-West, regime adjustment, resumability."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.sandwich_covariance import S_hac_simple, weights_bartlett

from factorcov_pipeline.core.settings import FactorCovarianceSettings
from factorcov_pipeline.core.tieout import tutorial_vol_tieout, tutorial_vol_tieout_f64
from factorcov_pipeline.core.volatility import VolatilityForecaster, VolatilityState


def _returns(t: int, k: int, seed: int = 0, nan_frac: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((t, k)) * 0.01 * np.linspace(0.5, 2.0, k)
    if nan_frac:
        f[rng.random((t, k)) < nan_frac] = np.nan
    return f


def _reference(
    F: np.ndarray, hl: float, n_lags: int, hl_nw: float, hl_vra: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct double loops over dates of the documented formulas (raw var, lambda, bias)."""
    t_n, k_n = F.shape
    a0, a1 = 0.5 ** (1 / hl), 0.5 ** (1 / hl_nw)
    raw = np.full((t_n, k_n), np.nan)
    for t in range(t_n):
        for k in range(k_n):
            num = den = 0.0
            for s in range(t + 1):
                if not np.isnan(F[s, k]):
                    num += a0 ** (t - s) * F[s, k] ** 2
                    den += a0 ** (t - s)
            if den == 0:
                continue
            c0 = num / den
            adj = c0
            for lag in range(1, n_lags + 1):
                num_l = den_l = 0.0
                for s in range(lag, t + 1):
                    if not (np.isnan(F[s, k]) or np.isnan(F[s - lag, k])):
                        num_l += a1 ** (t - s) * F[s, k] * F[s - lag, k]
                        den_l += a1 ** (t - s)
                if den_l > 0:
                    adj += 2 * (1 - lag / (n_lags + 1)) * num_l / den_l
            raw[t, k] = adj if adj > 0 else c0
    lam = np.ones(t_n)
    bias = np.full(t_n, np.nan)
    if hl_vra is not None:
        av = 0.5 ** (1 / hl_vra)
        b2 = np.full(t_n, np.nan)
        for t in range(1, t_n):
            terms = [
                F[t, k] ** 2 / raw[t - 1, k]
                for k in range(k_n)
                if not np.isnan(F[t, k]) and raw[t - 1, k] > 0
            ]
            if terms:
                b2[t] = sum(terms) / len(terms)
        bias = np.sqrt(b2)
        for t in range(t_n):
            w = [(av ** (t - s), b2[s]) for s in range(t + 1) if not np.isnan(b2[s])]
            if w:
                lam[t] = np.sqrt(sum(a * b for a, b in w) / sum(a for a, _ in w))
    return raw, lam, bias


def test_default_ties_out_with_tutorial_code() -> None:
    F = _returns(251, 21)
    df = pd.DataFrame(F, index=pd.RangeIndex(251, name="date"))
    fc, _ = VolatilityForecaster(FactorCovarianceSettings()).run(None, F)
    np.testing.assert_allclose(fc.vol, tutorial_vol_tieout_f64(df, 60.0).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(fc.vol, tutorial_vol_tieout(df, 60.0).to_numpy(), rtol=1e-6)
    assert np.array_equal(fc.vra_multiplier, np.ones(251))
    assert np.all(np.isnan(fc.bias_stat))
    np.testing.assert_allclose(fc.vol**2 / 252, fc.daily_var, rtol=1e-14)


@pytest.mark.parametrize(
    ("n_lags", "override", "vra"),
    [(1, None, None), (3, 7.0, None), (2, None, 15.0), (0, None, 8.0)],
)
def test_against_direct_loops(n_lags: int, override: float | None, vra: float | None) -> None:
    F = _returns(45, 3, seed=2, nan_frac=0.1)
    s = FactorCovarianceSettings(
        halflife_vol=10.0,
        nw_lags_vol=n_lags,
        nw_lags_vol_halflife_override=override,
        halflife_vra=vra,
    )
    fc, _ = VolatilityForecaster(s).run(None, F)
    raw, lam, bias = _reference(F, 10.0, n_lags, override or 10.0, vra)
    np.testing.assert_allclose(fc.raw_daily_var, raw, rtol=1e-12)
    np.testing.assert_allclose(fc.vra_multiplier, lam, rtol=1e-12)
    np.testing.assert_allclose(fc.bias_stat, bias, rtol=1e-12)
    np.testing.assert_allclose(fc.daily_var, raw * lam[:, None] ** 2, rtol=1e-12)


def test_newey_west_equal_weights_matches_statsmodels() -> None:
    t_n, n_lags = 300, 4
    F = _returns(t_n, 4, seed=9)
    s = FactorCovarianceSettings(halflife_vol=1e15, nw_lags_vol=n_lags)
    fc, _ = VolatilityForecaster(s).run(None, F)
    # Each C_l is averaged over the T - l dates at which the lag exists.
    lags = np.arange(n_lags + 1)
    S = S_hac_simple(
        F, nlags=n_lags, weights_func=lambda n: weights_bartlett(n) * t_n / (t_n - lags)
    )
    np.testing.assert_allclose(fc.daily_var[-1], np.diag(S) / t_n, rtol=1e-12)


def test_newey_west_recovers_ma1_long_run_variance() -> None:
    rng = np.random.default_rng(4)
    theta, t_n = 0.6, 20000
    e = rng.standard_normal((t_n + 1, 8))
    F = e[1:] + theta * e[:-1]
    plain, _ = VolatilityForecaster(FactorCovarianceSettings(halflife_vol=1e15)).run(None, F)
    n_lags = 10
    nw, _ = VolatilityForecaster(
        FactorCovarianceSettings(halflife_vol=1e15, nw_lags_vol=n_lags)
    ).run(None, F)
    target = (1 + theta) ** 2
    err_plain = np.abs(plain.daily_var[-1] - target)
    err_nw = np.abs(nw.daily_var[-1] - target)
    assert np.all(err_nw < err_plain)
    # Bartlett-weighted expectation: gamma_0 + 2 (1 - 1/(L+1)) gamma_1 (other lags are 0)
    expected = 1 + theta**2 + 2 * (1 - 1 / (n_lags + 1)) * theta
    np.testing.assert_allclose(nw.daily_var[-1], expected, rtol=0.12)
    np.testing.assert_allclose(nw.daily_var[-1].mean(), expected, rtol=0.04)
    np.testing.assert_allclose(plain.daily_var[-1].mean(), 1 + theta**2, rtol=0.04)


def test_negative_newey_west_variance_falls_back_to_c0() -> None:
    F = np.tile(np.array([[1.0], [-1.0]]), (20, 1)) * 0.01  # lag-1 correlation -1
    s = FactorCovarianceSettings(halflife_vol=20.0, nw_lags_vol=1)
    fc, _ = VolatilityForecaster(s).run(None, F)
    c0 = pd.DataFrame(F**2).ewm(halflife=20.0).mean().to_numpy()
    # 1 + 2 * 0.5 * (-1) = 0 -> not positive -> C_0
    np.testing.assert_allclose(fc.daily_var, c0, rtol=1e-12)
    assert np.all(fc.daily_var > 0)


def test_vra_near_one_when_stationary_and_above_one_after_jump() -> None:
    rng = np.random.default_rng(12)
    F = rng.standard_normal((1500, 20)) * 0.01
    s = FactorCovarianceSettings(halflife_vol=60.0, halflife_vra=40.0)
    fc, _ = VolatilityForecaster(s).run(None, F)
    assert abs(fc.vra_multiplier[200:].mean() - 1.0) < 0.05
    F_jump = F.copy()
    F_jump[1200:] *= 3.0
    fj, _ = VolatilityForecaster(s).run(None, F_jump)
    assert np.array_equal(fj.vra_multiplier[:1200], fc.vra_multiplier[:1200])
    assert fj.vra_multiplier[1230] > 1.5
    assert fj.bias_stat[1200:1210].mean() > 2.0  # returns 3x the forecast


def test_no_look_ahead() -> None:
    F = _returns(80, 5, seed=5)
    s = FactorCovarianceSettings(halflife_vol=10.0, nw_lags_vol=2, halflife_vra=5.0)
    base, _ = VolatilityForecaster(s).run(None, F)
    G = F.copy()
    G[50] *= 10.0
    changed, _ = VolatilityForecaster(s).run(None, G)
    assert np.array_equal(base.daily_var[:50], changed.daily_var[:50])
    assert np.array_equal(base.prior_daily_vol[:51], changed.prior_daily_vol[:51], equal_nan=True)
    assert not np.allclose(base.daily_var[50], changed.daily_var[50])


def test_prior_daily_vol_is_previous_published_forecast() -> None:
    F = _returns(30, 4, seed=1)
    s = FactorCovarianceSettings(halflife_vol=10.0, halflife_vra=5.0, nw_lags_vol=1)
    fc, _ = VolatilityForecaster(s).run(None, F)
    assert np.all(np.isnan(fc.prior_daily_vol[0]))
    assert np.array_equal(fc.prior_daily_vol[1:], np.sqrt(fc.daily_var[:-1]))


_VOL_COMBOS = [
    FactorCovarianceSettings(
        halflife_vol=hl, nw_lags_vol=lags, nw_lags_vol_halflife_override=ov, halflife_vra=vra
    )
    for hl, (lags, ov), vra in itertools.product(
        [7.0, 60.0], [(0, None), (2, None), (3, 4.0)], [None, 6.0]
    )
]


@pytest.mark.parametrize("settings", _VOL_COMBOS)
@pytest.mark.parametrize("split", [1, 2, 29])
def test_resume_is_bit_identical(settings: FactorCovarianceSettings, split: int) -> None:
    F = _returns(60, 5, seed=3, nan_frac=0.05)
    vf = VolatilityForecaster(settings)
    full, full_state = vf.run(None, F)
    a, state = vf.run(None, F[:split])
    state = VolatilityState.from_bytes(state.to_bytes())
    b, end_state = vf.run(state, F[split:])
    for name in (
        "vol",
        "daily_var",
        "raw_daily_var",
        "vra_multiplier",
        "bias_stat",
        "prior_daily_vol",
    ):
        joined = np.concatenate([getattr(a, name), getattr(b, name)])
        assert np.array_equal(joined, getattr(full, name), equal_nan=True), name
    assert end_state.to_bytes() == full_state.to_bytes()
    assert np.all(np.isfinite(full.vol[1:])) and np.all(full.vol[1:] > 0)


def test_state_with_other_settings_is_refused() -> None:
    F = _returns(10, 3)
    _, state = VolatilityForecaster(FactorCovarianceSettings()).run(None, F)
    with pytest.raises(ValueError, match="settings"):
        VolatilityForecaster(FactorCovarianceSettings(halflife_vol=30.0)).run(state, F)


@pytest.mark.parametrize("settings", _VOL_COMBOS)
def test_kernel_path_is_bit_identical_to_numpy(
    monkeypatch: pytest.MonkeyPatch, settings: FactorCovarianceSettings
) -> None:
    """FACTORCOV_JIT=1 (compiled EWMA loops) vs 0 (numpy): every output and the state bit for
    bit, in one run and resumed with the other path's state."""
    pytest.importorskip("numba")
    from factorcov_pipeline.core import ewma as ewma_module

    F = _returns(60, 5, seed=4)
    vf = VolatilityForecaster(settings)
    names = ("vol", "daily_var", "raw_daily_var", "vra_multiplier", "bias_stat", "prior_daily_vol")
    monkeypatch.setattr(ewma_module, "JIT_MODE", "0")
    ref, ref_state = vf.run(None, F)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
    got, got_state = vf.run(None, F)
    for name in names:
        assert np.array_equal(getattr(got, name), getattr(ref, name), equal_nan=True), name
    assert got_state.to_bytes() == ref_state.to_bytes()
    monkeypatch.setattr(ewma_module, "JIT_MODE", "0")
    a, state = vf.run(None, F[:21])
    monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
    b, end_state = vf.run(state, F[21:])
    for name in names:
        joined = np.concatenate([getattr(a, name), getattr(b, name)])
        assert np.array_equal(joined, getattr(ref, name), equal_nan=True), name
    assert end_state.to_bytes() == ref_state.to_bytes()
