"""CorrelationForecaster: tutorial tie-out, Newey-West, standardised returns, shrinkage, validity."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.sandwich_covariance import S_hac_simple, weights_bartlett

from factorcov_pipeline.core.correlation import (
    CorrelationForecaster,
    CorrelationState,
    repair_psd,
)
from factorcov_pipeline.core.covariance import covariance_from
from factorcov_pipeline.core.settings import FactorCovarianceSettings
from factorcov_pipeline.core.tieout import tutorial_cor_tieout, tutorial_cor_tieout_f64
from factorcov_pipeline.core.volatility import VolatilityForecaster

HAS_SHRINKAGE = importlib.util.find_spec("factorcov_pipeline.core.shrinkage") is not None


def _returns(t: int, k: int, seed: int = 0, nan_frac: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.eye(k) + 0.4 * rng.standard_normal((k, k))
    f = (rng.standard_normal((t, k)) @ mix.T) * 0.01
    if nan_frac:
        f[rng.random((t, k)) < nan_frac] = np.nan
    return f


def _reference_cov(X: np.ndarray, hl: float, n_lags: int) -> np.ndarray:
    """Direct loop: C_0 + sum_l (1 - l/(L+1)) (C_l + C_l'), each an EWMA over observed pairs."""
    t_n, k = X.shape
    a = 0.5 ** (1 / hl)
    out = np.empty((t_n, k, k))
    for t in range(t_n):
        total = np.zeros((k, k))
        for lag in range(n_lags + 1):
            num = np.zeros((k, k))
            den = np.zeros((k, k))
            for s in range(lag, t + 1):
                p = np.outer(X[s], X[s - lag])
                ok = ~np.isnan(p)
                num += a ** (t - s) * np.where(ok, p, 0.0)
                den += a ** (t - s) * ok
            c = np.divide(num, den, out=np.zeros((k, k)), where=den > 0)
            total += c if lag == 0 else (1 - lag / (n_lags + 1)) * (c + c.T)
        out[t] = total
    return out


def _normalise(c: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
        return c / (sd[..., :, None] * sd[..., None, :])


def _assert_valid(corr: np.ndarray) -> None:
    assert np.all(np.isfinite(corr))
    assert np.array_equal(corr, np.swapaxes(corr, -1, -2))
    assert np.array_equal(np.diagonal(corr, axis1=-2, axis2=-1), np.ones(corr.shape[:-1]))
    assert np.linalg.eigvalsh(corr).min() >= -1e-10


def test_default_ties_out_with_tutorial_code() -> None:
    F = _returns(251, 21)
    df = pd.DataFrame(F, index=pd.RangeIndex(251, name="date"))
    fc, _ = CorrelationForecaster(FactorCovarianceSettings()).run(None, F)
    ref64 = tutorial_cor_tieout_f64(df, 120.0).to_numpy().reshape(251, 21, 21)
    np.testing.assert_allclose(fc.corr, ref64, rtol=0, atol=1e-12)
    ref32 = tutorial_cor_tieout(df, 120.0).to_numpy().reshape(251, 21, 21)
    np.testing.assert_allclose(fc.corr, ref32, rtol=0, atol=1e-5)
    assert not fc.repaired.any()


def test_missing_values_match_pandas_per_cell() -> None:
    F = _returns(90, 4, seed=8, nan_frac=0.15)
    F[:30, 3] = np.nan
    fc, _ = CorrelationForecaster(FactorCovarianceSettings(halflife_cor=20.0)).run(None, F)
    outer = (F[:, :, None] * F[:, None, :]).reshape(90, 16)
    c = pd.DataFrame(outer).ewm(halflife=20.0).mean().to_numpy().reshape(90, 4, 4)
    ref = _normalise(c)
    ok = np.isfinite(ref) & ~fc.repaired[:, None, None]
    np.testing.assert_allclose(fc.corr[ok], ref[ok], rtol=0, atol=1e-12)
    # pairs never jointly observed: correlation 0, unit diagonal
    assert np.all(fc.corr[:30, 3, :3] == 0.0)
    assert np.all(fc.corr[:30, 3, 3] == 1.0)
    assert np.all(fc.corr[30:, 3, :3] != 0.0)
    _assert_valid(fc.corr)


@pytest.mark.parametrize("n_lags", [1, 3])
def test_newey_west_against_direct_loop(n_lags: int) -> None:
    F = _returns(40, 4, seed=4)
    s = FactorCovarianceSettings(halflife_cor=9.0, nw_lags_cor=n_lags)
    fc, _ = CorrelationForecaster(s).run(None, F)
    ref = _normalise(_reference_cov(F, 9.0, n_lags))
    keep = ~fc.repaired
    assert keep.sum() > 30
    np.testing.assert_allclose(fc.corr[keep], ref[keep], rtol=0, atol=1e-12)


def test_newey_west_equal_weights_matches_statsmodels() -> None:
    t_n, n_lags = 300, 3
    F = _returns(t_n, 5, seed=6)
    s = FactorCovarianceSettings(halflife_cor=1e15, nw_lags_cor=n_lags)
    fc, _ = CorrelationForecaster(s).run(None, F)
    lags = np.arange(n_lags + 1)
    S = S_hac_simple(
        F, nlags=n_lags, weights_func=lambda n: weights_bartlett(n) * t_n / (t_n - lags)
    )
    np.testing.assert_allclose(fc.corr[-1], _normalise(S / t_n), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_lags", [0, 2])
def test_combine_standardized_against_direct_computation(n_lags: int) -> None:
    F = _returns(60, 4, seed=10)
    F[:, 0] *= np.linspace(1.0, 5.0, 60)  # time-varying volatility
    vs = FactorCovarianceSettings(halflife_vol=10.0, halflife_cor=15.0, nw_lags_cor=n_lags)
    vol, _ = VolatilityForecaster(vs).run(None, F)
    cs = vs.model_copy(update={"combine_standardized": True})
    fc, _ = CorrelationForecaster(cs).run(None, F, vol.prior_daily_vol)
    prior = np.vstack([np.full(4, np.nan), np.sqrt(vol.daily_var[:-1])])
    z = F / prior
    ref = _normalise(_reference_cov(z, 15.0, n_lags))
    assert np.array_equal(fc.corr[0], np.eye(4))  # no prior forecast on the first date
    keep = ~fc.repaired
    keep[0] = False
    np.testing.assert_allclose(fc.corr[keep], ref[keep], rtol=0, atol=1e-12)
    raw, _ = CorrelationForecaster(vs).run(None, F)
    assert not np.allclose(raw.corr[-1], fc.corr[-1], atol=1e-3)
    with pytest.raises(ValueError, match="prior_daily_vol"):
        CorrelationForecaster(cs).run(None, F)


@pytest.mark.skipif(not HAS_SHRINKAGE, reason="core/shrinkage.py not present")
@pytest.mark.parametrize("method", ["LIS", "QIS", "GIS"])
def test_shrinkage_uses_given_length_or_ewma_effective_observations(method: str) -> None:
    from factorcov_pipeline.core.shrinkage import ewma_effective_observations, shrink_correlation

    F = _returns(120, 6, seed=2)
    base = FactorCovarianceSettings(halflife_cor=30.0)
    raw, _ = CorrelationForecaster(base).run(None, F)

    fixed = base.model_copy(update={"shrink_cor_method": method, "shrink_cor_length": 40.0})
    fc, _ = CorrelationForecaster(fixed).run(None, F)
    np.testing.assert_allclose(fc.corr, shrink_correlation(raw.corr, 40.0, method), atol=1e-12)
    assert np.all(fc.n_obs == 40.0)

    auto = base.model_copy(update={"shrink_cor_method": method})
    fa, _ = CorrelationForecaster(auto).run(None, F)
    n_eff = ewma_effective_observations(30.0, np.arange(1, 121))
    np.testing.assert_allclose(fa.n_obs, n_eff, rtol=1e-10)
    ref = shrink_correlation(raw.corr[10:], fa.n_obs[10:], method)
    np.testing.assert_allclose(fa.corr[10:], ref, atol=1e-12)
    _assert_valid(fa.corr)
    # shrinkage pulls the eigenvalues together
    ev_raw = np.linalg.eigvalsh(raw.corr[-1])
    ev_shr = np.linalg.eigvalsh(fa.corr[-1])
    assert ev_shr.max() - ev_shr.min() < ev_raw.max() - ev_raw.min()


_SHRINK = [(None, None)] + (
    [(m, ln) for m in ("LIS", "QIS", "GIS") for ln in (None, 25.0)] if HAS_SHRINKAGE else []
)
_COR_COMBOS = [
    FactorCovarianceSettings(
        halflife_cor=hl,
        nw_lags_cor=lags,
        shrink_cor_method=m,
        shrink_cor_length=ln,
        combine_standardized=comb,
    )
    for hl, lags, (m, ln), comb in itertools.product([6.0, 120.0], [0, 2], _SHRINK, [False, True])
]


@pytest.mark.parametrize("settings", _COR_COMBOS, ids=lambda s: str(s.non_default()))
def test_every_combination_is_valid_and_resumable(settings: FactorCovarianceSettings) -> None:
    F = _returns(50, 5, seed=13, nan_frac=0.08)
    vol_settings = settings.model_copy(update={"nw_lags_vol": 1, "halflife_vra": 10.0})
    vol, _ = VolatilityForecaster(vol_settings).run(None, F)
    prior = vol.prior_daily_vol
    cf = CorrelationForecaster(settings)
    full, full_state = cf.run(None, F, prior)
    _assert_valid(full.corr)
    cov = covariance_from(vol.vol[1:], full.corr[1:])
    assert np.all(np.isfinite(cov))
    assert np.array_equal(cov, np.swapaxes(cov, -1, -2))
    ev = np.linalg.eigvalsh(cov)
    assert np.all(ev.min(axis=1) >= -1e-10 * ev.max(axis=1))
    for split in (1, 3, 27):
        a, state = cf.run(None, F[:split], prior[:split])
        state = CorrelationState.from_bytes(state.to_bytes())
        b, end_state = cf.run(state, F[split:], prior[split:])
        assert np.array_equal(np.concatenate([a.corr, b.corr]), full.corr)
        assert np.array_equal(np.concatenate([a.n_obs, b.n_obs]), full.n_obs, equal_nan=True)
        assert end_state.to_bytes() == full_state.to_bytes()


def test_psd_repair_only_touches_invalid_matrices() -> None:
    good = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.0]])
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])  # indefinite
    assert np.linalg.eigvalsh(bad).min() < -0.5
    out, mask = repair_psd(np.stack([good, bad]))
    assert mask.tolist() == [False, True]
    assert np.array_equal(out[0], good)
    _assert_valid(out)
    # spectral clipping: the repaired matrix is the clipped reconstruction rescaled to unit diag
    lam, u = np.linalg.eigh(bad)
    s = (u * np.maximum(lam, 0.0)) @ u.T
    np.testing.assert_allclose(out[1], _normalise(s), atol=1e-12)


def test_state_with_other_settings_is_refused() -> None:
    F = _returns(10, 3)
    _, state = CorrelationForecaster(FactorCovarianceSettings()).run(None, F)
    with pytest.raises(ValueError, match="settings"):
        CorrelationForecaster(FactorCovarianceSettings(nw_lags_cor=1)).run(state, F)


# ----------------------------------------------------------------------------------------------
# The compiled one-pass path (kernels.outer_ewma_correlation) against the numpy reference
# ----------------------------------------------------------------------------------------------

_FUSED_COMBOS = [
    FactorCovarianceSettings(
        halflife_cor=hl, shrink_cor_method=m, shrink_cor_length=ln, combine_standardized=comb
    )
    for hl, (m, ln), comb in itertools.product([6.0, 120.0], _SHRINK, [False, True])
]


@pytest.mark.parametrize("settings", _FUSED_COMBOS, ids=lambda s: str(s.non_default()))
def test_fused_kernel_is_bit_identical_to_the_numpy_path(
    monkeypatch: pytest.MonkeyPatch, settings: FactorCovarianceSettings
) -> None:
    """FACTORCOV_JIT=1 (kernel for every finite block) vs 0 (numpy reference): the same
    correlations, n_obs and state bit for bit, over one run and over resumed splits in which
    either path produced the state (combine_standardized: the first date has no prior
    volatility, so blocks containing it take the general path and later blocks the kernel)."""
    pytest.importorskip("numba")
    from factorcov_pipeline.core import ewma as ewma_module

    F = _returns(60, 6, seed=21)
    F[:, 4] = 0.0  # a factor with only zero returns: sd 0, correlations 0 (not finite -> 0)
    F[10, :] = 0.0
    vol, _ = VolatilityForecaster(settings).run(None, F)
    prior = vol.prior_daily_vol
    cf = CorrelationForecaster(settings)
    runs = {}
    for mode in ("0", "1"):
        monkeypatch.setattr(ewma_module, "JIT_MODE", mode)
        runs[mode] = cf.run(None, F, prior)
    (ref, ref_state), (fast, fast_state) = runs["0"], runs["1"]
    assert np.array_equal(fast.corr, ref.corr)
    assert np.array_equal(fast.n_obs, ref.n_obs, equal_nan=True)
    assert np.array_equal(fast.repaired, ref.repaired)
    assert fast_state.to_bytes() == ref_state.to_bytes()
    if settings.shrink_cor_method is None:
        assert np.all(ref.corr[:, 4, np.arange(6) != 4] == 0.0)
    for split, first_mode, second_mode in [(1, "0", "1"), (17, "1", "0"), (30, "1", "1")]:
        monkeypatch.setattr(ewma_module, "JIT_MODE", first_mode)
        a, state = cf.run(None, F[:split], prior[:split])
        state = CorrelationState.from_bytes(state.to_bytes())
        monkeypatch.setattr(ewma_module, "JIT_MODE", second_mode)
        b, end_state = cf.run(state, F[split:], prior[split:])
        assert np.array_equal(np.concatenate([a.corr, b.corr]), ref.corr)
        assert np.array_equal(np.concatenate([a.n_obs, b.n_obs]), ref.n_obs, equal_nan=True)
        assert end_state.to_bytes() == ref_state.to_bytes()


def test_fused_path_applies_only_to_the_common_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """Newey-West lags or missing values (in the block or in the state's weights) keep the
    numpy path even when the kernels are forced on."""
    pytest.importorskip("numba")
    from factorcov_pipeline.core import ewma as ewma_module

    monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
    F = _returns(30, 4, seed=22)
    default = CorrelationForecaster(FactorCovarianceSettings())
    assert default._fused_correlation(default.initial_state(4), F) is not None
    nw = CorrelationForecaster(FactorCovarianceSettings(nw_lags_cor=1))
    assert nw._fused_correlation(nw.initial_state(4), F) is None
    G = F.copy()
    G[3, 1] = np.nan
    assert default._fused_correlation(default.initial_state(4), G) is None
    _, state = default.run(None, G)  # cells now have different weight sums
    assert default._fused_correlation(state, F) is None


def test_normalise_by_reciprocals_is_within_ulps_of_division() -> None:
    """`normalise` multiplies by 1/sd instead of dividing by outer(sd, sd): a few ulps apart."""
    from factorcov_pipeline.core.correlation import normalise

    rng = np.random.default_rng(23)
    a = rng.standard_normal((50, 8, 8)) * 1e-2
    cov = a @ np.swapaxes(a, 1, 2)
    got = normalise(cov)
    ref = _normalise(cov)
    np.testing.assert_allclose(got, ref, rtol=4e-16 * 4, atol=0)
    assert np.array_equal(got, np.swapaxes(got, 1, 2))
