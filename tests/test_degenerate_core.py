"""Degenerate models in the core (issue 21.3): specific returns that are 0 by construction are
missing observations with a reason, a minimum-variance portfolio that cannot be built says
why instead of raising, and a portfolio without any return that day has no realised return
(issue 21.7)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from factorcov_pipeline.core.portfolio import (
    NO_SPECIFIC_RISK,
    SINGULAR_COVARIANCE,
    RiskSnapshot,
    minimum_variance_weights,
    observed_returns,
    portfolio_returns,
    try_minimum_variance_weights,
)
from factorcov_pipeline.core.settings import SpecificRiskSettings
from factorcov_pipeline.core.specific_risk import (
    REASONS,
    UNINFORMATIVE_EXACT_FIT,
    UNINFORMATIVE_SINGLE_ASSET,
    SpecificRiskForecaster,
    carry_forward,
)

SETTINGS = SpecificRiskSettings(halflife=10.0, halflife_vra=5.0, min_history=3, full_history=8)


def _panel(t: int = 30, n: int = 40, seed: int = 1):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((t, n)) * rng.uniform(0.01, 0.03, n)
    caps = np.exp(rng.normal(21, 1.5, n))[None, :].repeat(t, axis=0)
    cats = (np.arange(n) % 4)[None, :].repeat(t, axis=0)
    styles = rng.standard_normal((n, 2))[None].repeat(t, axis=0)
    return [f"A{i:03d}" for i in range(n)], u, caps, cats, styles


def test_uninformative_returns_are_missing_observations_with_their_reason():
    ids, u, caps, cats, styles = _panel()
    codes = np.zeros(u.shape, dtype=np.int8)
    codes[:, 0] = UNINFORMATIVE_SINGLE_ASSET  # always alone in its category
    codes[12] = UNINFORMATIVE_EXACT_FIT  # one exactly fitted date
    u_zero = u.copy()
    u_zero[codes > 0] = 1e-17  # what the regression stores for them
    fc, _ = SpecificRiskForecaster(SETTINGS).run(None, ids, u_zero, caps, cats, styles, codes)
    # the same as leaving those returns out (NaN): no 1e-17 "observation" enters a forecast
    u_nan = np.where(codes > 0, np.nan, u)
    ref, _ = SpecificRiskForecaster(SETTINGS).run(None, ids, u_nan, caps, cats, styles)
    np.testing.assert_array_equal(fc.specific_risk, ref.specific_risk)
    assert np.all(fc.specific_risk[:, 0] > 0.05)  # the structural forecast, not ~1e-16
    reason = fc.reason
    assert set(np.delete(reason[:, 0], 12)) == {UNINFORMATIVE_SINGLE_ASSET}
    assert reason[12, 0] == UNINFORMATIVE_EXACT_FIT
    # the others, independently: own informative returns h up to t (min 3, full 8)
    h = np.cumsum(np.isfinite(u_nan), axis=0)[:, 1:]
    expected = np.where(h >= 8, 0, np.where(h <= 3, 3, 4))
    expected[12] = np.where(h[12] >= 8, 0, UNINFORMATIVE_EXACT_FIT)
    np.testing.assert_array_equal(reason[:, 1:], expected)
    assert {REASONS[c] for c in (3, 4)} == {"short_history", "partial_history"}


def test_reasons_carry_across_days_without_a_return_and_across_runs():
    """A single asset of its category keeps its reason on a session without returns (a gap),
    also when the gap opens the next run; resumed runs equal one run bit for bit."""
    ids, u, caps, cats, styles = _panel()
    codes = np.zeros(u.shape, dtype=np.int8)
    codes[:, 0] = UNINFORMATIVE_SINGLE_ASSET
    u[20] = np.nan  # a session without returns
    codes[20] = 0
    one, _ = SpecificRiskForecaster(SETTINGS).run(None, ids, u, caps, cats, styles, codes)
    assert one.reason[20, 0] == UNINFORMATIVE_SINGLE_ASSET
    f = SpecificRiskForecaster(SETTINGS)
    a, state = f.run(None, ids, u[:20], caps[:20], cats[:20], styles[:20], codes[:20])
    state = type(state).from_bytes(state.to_bytes())
    b, _ = f.run(state, ids, u[20:], caps[20:], cats[20:], styles[20:], codes[20:])
    np.testing.assert_array_equal(np.vstack([a.reason, b.reason]), one.reason)
    np.testing.assert_array_equal(np.vstack([a.specific_risk, b.specific_risk]), one.specific_risk)
    filled = carry_forward(
        np.array([7, 0]), np.array([[1, 2], [0, 0], [3, 0]]), np.array([[0, 1], [0, 0], [1, 0]])
    )
    assert filled.tolist() == [[7, 2], [7, 2], [3, 2]]


def test_an_exactly_fitted_history_has_no_forecast_only_reasons():
    ids, u, caps, cats, styles = _panel(t=10)
    codes = np.full(u.shape, UNINFORMATIVE_EXACT_FIT, dtype=np.int8)
    fc, _ = SpecificRiskForecaster(SETTINGS).run(None, ids, u * 1e-15, caps, cats, styles, codes)
    assert np.isnan(fc.specific_risk).all()
    assert (fc.reason == UNINFORMATIVE_EXACT_FIT).all()


def _snapshot(n: int, k: int, spec: np.ndarray, seed: int = 2) -> RiskSnapshot:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.standard_normal((n, k - 1))])
    a = rng.standard_normal((k, k)) * 0.1
    return RiskSnapshot(
        asset_ids=np.array([f"A{i}" for i in range(n)]),
        factors=[f"f{j}" for j in range(k)],
        factor_groups=["style"] * k,
        exposures=x,
        covariance=a @ a.T,
        specific_risk=spec,
    )


def test_minimum_variance_says_why_it_cannot_be_built():
    rng = np.random.default_rng(3)
    good = _snapshot(50, 5, rng.uniform(0.1, 0.4, 50))
    w, why = try_minimum_variance_weights(good)
    assert why is None
    v = good.exposures @ good.covariance @ good.exposures.T + np.diag(good.specific_risk**2)
    dense = np.linalg.solve(v, np.ones(50))  # the dense closed form, independently
    np.testing.assert_allclose(w, dense / dense.sum(), rtol=1e-10)
    np.testing.assert_array_equal(w, minimum_variance_weights(good))
    missing = _snapshot(50, 5, np.where(np.arange(50) == 3, np.nan, 0.2))
    assert try_minimum_variance_weights(missing) == (None, NO_SPECIFIC_RISK)
    # 7 assets, 8 factors fitted exactly: specific risks of ~1e-17 (the 0.8.0 crash,
    # numpy.linalg.LinAlgError: Singular matrix)
    exact = _snapshot(7, 8, np.full(7, 2.4e-17), seed=5)
    assert try_minimum_variance_weights(exact) == (None, SINGULAR_COVARIANCE)


def test_a_portfolio_without_any_return_that_day_has_none():
    ids = np.array(["A", "B", "C"])
    r, seen = observed_returns(ids, np.array(["A", "C"]), np.array([0.01, np.nan]))
    assert r.tolist() == [0.01, 0.0, 0.0] and seen.tolist() == [True, False, False]
    w = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    got = portfolio_returns(w, r, seen)
    assert got[0] == 0.005 and np.isnan(got[1]) and got[2] == 0.01
    pd.testing.assert_series_equal(pd.Series(got).isna(), pd.Series([False, True, False]))
