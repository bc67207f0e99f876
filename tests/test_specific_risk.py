"""core/specific_risk.py against direct computations: pandas EWMA, the volatility forecaster's
Newey-West, statsmodels WLS for the structural model, the shrinkage and regime-adjustment
formulas written out, and resumed runs equal to one run bit for bit."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from factorcov_pipeline.core.settings import (
    FactorCovarianceSettings,
    SettingsError,
    SpecificRiskSettings,
    parse_settings,
)
from factorcov_pipeline.core.specific_risk import (
    SpecificRiskForecaster,
    SpecificRiskState,
    bayesian_shrinkage,
    blending_coefficient,
    size_groups,
)
from factorcov_pipeline.core.volatility import VolatilityForecaster

ROOT = np.sqrt(252.0)


def _panel(t: int = 120, n: int = 60, s: int = 2, seed: int = 0, missing: float = 0.05):
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.01, 0.03, n)
    u = rng.standard_normal((t, n)) * vol
    u[rng.random((t, n)) < missing] = np.nan
    caps = np.exp(rng.normal(21, 1.5, n))[None, :].repeat(t, axis=0)
    cats = rng.integers(0, 4, n)[None, :].repeat(t, axis=0)
    styles = rng.standard_normal((n, s))[None].repeat(t, axis=0)
    ids = [f"X{i:03d}" for i in range(n)]
    return ids, u, caps, cats, styles


PLAIN = dict(
    halflife_vra=None, shrink_intensity=0.0, min_history=0, full_history=1, structural_model=False
)


def test_time_series_step_equals_pandas_ewm_of_squares() -> None:
    ids, u, caps, cats, styles = _panel()
    fc, _ = SpecificRiskForecaster(SpecificRiskSettings(halflife=30.0, **PLAIN)).run(
        None, ids, u, caps, cats, styles
    )
    expected = np.sqrt(pd.DataFrame(u * u).ewm(halflife=30.0).mean().to_numpy()) * ROOT
    # once an asset has an observation (gamma = 1), the forecast is the pandas EWMA
    seen = np.cumsum(np.isfinite(u), axis=0) >= 1
    np.testing.assert_allclose(fc.specific_risk[seen], expected[seen], rtol=1e-13)


def test_newey_west_equals_the_factor_volatility_formula() -> None:
    ids, u, caps, cats, styles = _panel(missing=0.0)
    fc, _ = SpecificRiskForecaster(SpecificRiskSettings(halflife=20.0, nw_lags=2, **PLAIN)).run(
        None, ids, u, caps, cats, styles
    )
    vol, _ = VolatilityForecaster(FactorCovarianceSettings(halflife_vol=20.0, nw_lags_vol=2)).run(
        None, u
    )
    np.testing.assert_array_equal(fc.specific_risk, vol.vol)


def test_blending_coefficient_formula() -> None:
    h = np.array([0, 10, 20, 21, 40, 60, 61, 500], dtype=float)
    expected = [min(1.0, max(0.0, (x - 20) / 40)) for x in h]
    np.testing.assert_allclose(blending_coefficient(h, 20, 60), expected, rtol=0, atol=0)


def test_bayesian_shrinkage_against_direct_formula() -> None:
    rng = np.random.default_rng(3)
    n = 97
    sigma = rng.uniform(0.01, 0.05, n)
    caps = np.exp(rng.normal(20, 2, n))
    groups = size_groups(caps, 10)
    got, _v, bar = bayesian_shrinkage(sigma, caps, groups, 0.3)
    df = pd.DataFrame({"s": sigma, "c": caps, "g": groups})
    for _g, part in df.groupby("g"):
        mean = np.average(part["s"], weights=part["c"])
        delta = np.sqrt(np.mean((part["s"] - mean) ** 2))
        vv = 0.3 * np.abs(part["s"] - mean) / (delta + 0.3 * np.abs(part["s"] - mean))
        exp = vv * mean + (1 - vv) * part["s"]
        np.testing.assert_allclose(got[part.index], exp, rtol=1e-14)
        np.testing.assert_allclose(bar[part.index], mean, rtol=1e-14)
    # deciles: equal counts (+/- 1), ordered by cap
    counts = np.bincount(groups)
    assert counts.max() - counts.min() <= 1 and len(counts) == 10
    assert caps[groups == 0].max() < caps[groups == 9].min()


def test_structural_model_and_blend_against_statsmodels_wls() -> None:
    ids, u, caps, cats, styles = _panel(t=80, n=200, seed=5, missing=0.0)
    u[:, :30] = np.nan  # 30 assets with no history: pure structural forecast
    u[:50, 30:60] = np.nan  # 30 assets with 30 observations: blended
    st = SpecificRiskSettings(
        halflife=40.0, halflife_vra=None, shrink_intensity=0.0, min_history=20, full_history=60
    )
    fc, _ = SpecificRiskForecaster(st).run(None, ids, u, caps, cats, styles)
    t = 79
    ts = np.sqrt(pd.DataFrame(u * u).ewm(halflife=40.0).mean().to_numpy()[t])
    h = np.isfinite(u).sum(axis=0)
    fit = h >= 60
    design = np.column_stack([pd.get_dummies(cats[t]).to_numpy(float), styles[t]])
    res = sm.WLS(np.log(ts[fit]), design[fit], weights=caps[t][fit]).fit()
    raw = np.exp(design @ res.params)
    e0 = np.sum(caps[t][fit] * ts[fit]) / np.sum(caps[t][fit] * raw[fit])
    np.testing.assert_allclose(fc.sigma_str[t], e0 * raw, rtol=1e-10)
    gamma = np.clip((h - 20) / 40, 0, 1)
    blend = np.where(h > 0, gamma * np.nan_to_num(ts) + (1 - gamma) * e0 * raw, e0 * raw)
    np.testing.assert_allclose(fc.sigma_blend[t], blend, rtol=1e-10)
    np.testing.assert_allclose(fc.specific_risk[t], blend * ROOT, rtol=1e-10)
    assert np.isfinite(fc.specific_risk[t]).all()  # every present asset has a forecast


def test_fallback_is_the_cap_weighted_mean_when_few_assets_have_history() -> None:
    ids, u, caps, cats, styles = _panel(t=10, n=40, seed=7, missing=0.0)
    st = SpecificRiskSettings(halflife=5.0, halflife_vra=None, shrink_intensity=0.0)
    fc, _ = SpecificRiskForecaster(st).run(None, ids, u, caps, cats, styles)
    t = 9  # 10 observations < min_history: gamma = 0, no structural fit
    ts = np.sqrt(pd.DataFrame(u * u).ewm(halflife=5.0).mean().to_numpy()[t])
    target = np.average(ts, weights=caps[t])
    np.testing.assert_allclose(fc.specific_risk[t], target * ROOT, rtol=1e-13)


def test_regime_adjustment_against_direct_formula() -> None:
    ids, u, caps, cats, styles = _panel(t=60, n=50, seed=9)
    u[30:] *= 2.0  # a volatility regime change
    base = dict(halflife=20.0, shrink_intensity=0.2, min_history=0, full_history=1)
    off, _ = SpecificRiskForecaster(SpecificRiskSettings(halflife_vra=None, **base)).run(
        None, ids, u, caps, cats, styles
    )
    on, _ = SpecificRiskForecaster(SpecificRiskSettings(halflife_vra=10.0, **base)).run(
        None, ids, u, caps, cats, styles
    )
    sh = off.specific_risk / ROOT  # daily, before the adjustment
    b2 = np.full(60, np.nan)
    for t in range(1, 60):
        z2 = (u[t] / sh[t - 1]) ** 2
        ok = np.isfinite(z2)
        b2[t] = np.sum(caps[t][ok] * z2[ok]) / np.sum(caps[t][ok])
    lam = np.sqrt(pd.Series(b2).ewm(halflife=10.0).mean().fillna(1.0).to_numpy())
    np.testing.assert_allclose(on.vra_multiplier, lam, rtol=1e-12)
    np.testing.assert_allclose(on.specific_risk, off.specific_risk * lam[:, None], rtol=1e-12)
    assert lam[-1] > 1.15  # risk doubled: the multiplier rises before the EWMA catches up


def test_resumed_runs_equal_one_run_bit_for_bit_with_new_assets() -> None:
    ids, u, caps, cats, styles = _panel(t=90, n=80, seed=11)
    caps = caps.copy()
    caps[:40, 70:] = np.nan  # ten assets listed at date 40
    u[:41, 70:] = np.nan
    st = SpecificRiskSettings(
        halflife=15.0, nw_lags=1, halflife_vra=8.0, min_history=5, full_history=20
    )
    f = SpecificRiskForecaster(st)
    one, _ = f.run(None, ids, u, caps, cats, styles)
    state = None
    parts = []
    for a, b in [(0, 30), (30, 31), (31, 90)]:
        # the first block does not know the later assets: pass only those present
        cols = slice(None) if a >= 30 else slice(0, 70)
        fc, state = f.run(
            state, ids[cols], u[a:b, cols], caps[a:b, cols], cats[a:b, cols], styles[a:b, cols]
        )
        state = SpecificRiskState.from_bytes(state.to_bytes())
        out = np.full((b - a, 80), np.nan)
        out[:, cols] = fc.specific_risk
        parts.append(out)
    np.testing.assert_array_equal(np.vstack(parts), one.specific_risk)


def test_state_with_other_settings_is_refused() -> None:
    ids, u, caps, cats, styles = _panel(t=5)
    _, state = SpecificRiskForecaster(SpecificRiskSettings()).run(None, ids, u, caps, cats, styles)
    with pytest.raises(ValueError, match="specific risk state was built with settings"):
        SpecificRiskForecaster(SpecificRiskSettings(halflife=10.0)).run(
            state, ids, u, caps, cats, styles
        )


def test_settings_block_validation() -> None:
    s = parse_settings({"specific_risk_settings": {"halflife": 42, "nw_lags": 2}})
    assert s.specific_risk_settings.halflife == 42.0
    with pytest.raises(
        SettingsError, match=r"specific_risk_settings: .*full_history \(60\) must exceed"
    ):
        parse_settings({"specific_risk_settings": {"min_history": 60, "full_history": 60}})
    with pytest.raises(SettingsError, match=r"specific_risk_settings\.halflife_typo: unknown key"):
        parse_settings({"specific_risk_settings": {"halflife_typo": 1}})
    with pytest.raises(SettingsError, match="shrink_intensity"):
        parse_settings({"specific_risk_settings": {"shrink_intensity": -0.1}})
