"""core/portfolio.py against the dense asset covariance V = X F X' + diag(s^2)."""

import numpy as np
import pytest

from factorcov_pipeline.core.portfolio import (
    NO_SPECIFIC_RISK,
    RiskSnapshot,
    beta,
    decompose,
    minimum_variance_weights,
    realised_returns,
    specific_terms,
    try_minimum_variance_weights,
)


def _model(n: int = 300, k: int = 8, seed: int = 0) -> RiskSnapshot:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, k)) * 0.1
    f = a @ a.T + np.diag(rng.uniform(0.001, 0.01, k))
    x = rng.standard_normal((n, k))
    x[:, 0] = 1.0
    groups = ["market"] + ["style"] * 3 + ["trbc"] * (k - 4)
    return RiskSnapshot(
        asset_ids=np.array([f"A{i}" for i in range(n)]),
        factors=[f"F{j}" for j in range(k)],
        factor_groups=groups,
        exposures=x,
        covariance=f,
        specific_risk=rng.uniform(0.1, 0.5, n),
    )


def _dense(m: RiskSnapshot) -> np.ndarray:
    return m.exposures @ m.covariance @ m.exposures.T + np.diag(m.specific_risk**2)


def test_total_factor_specific_risk_equal_the_dense_quadratic_form() -> None:
    m = _model()
    rng = np.random.default_rng(1)
    h = rng.standard_normal((5, 300)) / 300
    d = decompose(m, h)
    v = _dense(m)
    for p in range(5):
        np.testing.assert_allclose(d.total[p], np.sqrt(h[p] @ v @ h[p]), rtol=1e-12)
        xf = m.exposures @ m.covariance @ m.exposures.T
        np.testing.assert_allclose(d.factor[p], np.sqrt(h[p] @ xf @ h[p]), rtol=1e-12)
        np.testing.assert_allclose(
            d.specific[p], np.sqrt(np.sum(h[p] ** 2 * m.specific_risk**2)), rtol=1e-12
        )


def test_euler_contributions_add_up_and_are_x_sigma_rho() -> None:
    m = _model()
    h = np.random.default_rng(2).uniform(0, 1, 300)
    h /= h.sum()
    d = decompose(m, h)
    total = d.contributions.sum(axis=1) + d.specific_contribution
    np.testing.assert_allclose(total, d.total, rtol=1e-13)
    # x-sigma-rho: exposure x factor vol x correlation of factor and portfolio return
    x = m.exposures.T @ h
    sig_k = np.sqrt(np.diag(m.covariance))
    rho = (m.covariance @ x) / (sig_k * d.total[0])
    np.testing.assert_allclose(d.contributions[0], x * sig_k * rho, rtol=1e-12)
    # Euler: contribution = weight x marginal risk, summed by factor, by finite differences
    eps = 1e-7
    v = _dense(m)
    grad = (v @ h) / np.sqrt(h @ v @ h)
    np.testing.assert_allclose((h * grad).sum(), d.total[0], rtol=1e-12)
    bump = np.sqrt((h + eps * h) @ v @ (h + eps * h)) - d.total[0]
    np.testing.assert_allclose(bump / eps, d.total[0], rtol=1e-5)
    names, groups = d.group_contributions(m.factor_groups)
    assert names == ["market", "style", "trbc"]
    np.testing.assert_allclose(groups[0, 1], d.contributions[0, 1:4].sum(), rtol=1e-14)


def test_beta_and_active_risk_against_direct_computation() -> None:
    m = _model()
    rng = np.random.default_rng(3)
    h = rng.uniform(0, 1, (4, 300))
    h /= h.sum(axis=1, keepdims=True)
    b = rng.uniform(0, 1, 300)
    b /= b.sum()
    v = _dense(m)
    np.testing.assert_allclose(beta(m, h, b), (h @ v @ b) / (b @ v @ b), rtol=1e-12)
    active = decompose(m, h - b)
    for p in range(4):
        a = h[p] - b
        np.testing.assert_allclose(active.total[p], np.sqrt(a @ v @ a), rtol=1e-12)
    np.testing.assert_allclose(beta(m, b, b), [1.0], rtol=1e-14)


def test_minimum_variance_weights_equal_the_dense_solution() -> None:
    m = _model(n=200)
    v = _dense(m)
    w = np.linalg.solve(v, np.ones(200))
    w /= w.sum()
    np.testing.assert_allclose(minimum_variance_weights(m), w, rtol=1e-9, atol=1e-13)
    # works with a singular factor covariance (zero-sum constraint)
    c = np.eye(m.covariance.shape[0])
    c[1, 2] = c[2, 1] = 1.0
    c[1, 1] = c[2, 2] = 1.0
    singular = RiskSnapshot(
        m.asset_ids, m.factors, m.factor_groups, m.exposures, c * 0.01, m.specific_risk
    )
    assert np.linalg.matrix_rank(singular.covariance) < c.shape[0]
    w2 = np.linalg.solve(_dense(singular), np.ones(200))
    np.testing.assert_allclose(minimum_variance_weights(singular), w2 / w2.sum(), rtol=1e-8)


def test_specific_terms_shared_by_two_covariances_give_the_same_bits() -> None:
    """`specific_terms` of one snapshot, used with another covariance of the same exposures
    and specific risks (another covariance model), give the bits of a solve on its own; the
    dense solution agrees; no terms where an asset has no positive specific risk."""
    m = _model(n=200)
    other = RiskSnapshot(
        m.asset_ids, m.factors, m.factor_groups, m.exposures, m.covariance * 1.7, m.specific_risk
    )
    terms = specific_terms(m)
    assert terms is not None
    for snap in (m, other):
        alone, why = try_minimum_variance_weights(snap)
        shared, why_shared = try_minimum_variance_weights(snap, terms)
        assert why is None and why_shared is None
        assert alone is not None and shared is not None
        assert alone.tobytes() == shared.tobytes()
        np.testing.assert_array_equal(shared, minimum_variance_weights(snap))
        w = np.linalg.solve(_dense(snap), np.ones(200))
        np.testing.assert_allclose(shared, w / w.sum(), rtol=1e-9, atol=1e-13)
    bad = RiskSnapshot(
        m.asset_ids,
        m.factors,
        m.factor_groups,
        m.exposures,
        m.covariance,
        np.where(np.arange(200) == 3, 0.0, m.specific_risk),
    )
    assert specific_terms(bad) is None
    assert try_minimum_variance_weights(bad) == (None, NO_SPECIFIC_RISK)


def test_shapes_checked() -> None:
    m = _model()
    with pytest.raises(ValueError, match="holdings have 3 assets, the model 300"):
        decompose(m, np.ones(3))
    with pytest.raises(ValueError, match="risk model shapes disagree"):
        RiskSnapshot(
            m.asset_ids,
            m.factors,
            m.factor_groups,
            m.exposures,
            m.covariance[:2, :2],
            m.specific_risk,
        )


def test_realised_returns_equal_a_pandas_reindex() -> None:
    """Unsorted model ids, rows for assets outside the model, a null return and a model asset
    without a row: the same as pandas' reindex with missing filled by 0."""
    import pandas as pd

    rng = np.random.default_rng(5)
    model_ids = np.array(["C", "A", "E", "B", "Z\u00e9", "D"])
    day_ids = np.array(["E", "X", "A", "Z\u00e9", "B", "Q", "D"])
    day_ret = rng.normal(size=day_ids.size)
    day_ret[4] = np.nan  # B: a null return counts 0
    expected = pd.Series(day_ret, index=day_ids).reindex(model_ids).fillna(0.0).to_numpy()
    np.testing.assert_array_equal(realised_returns(model_ids, day_ids, day_ret), expected)
    assert realised_returns(model_ids, day_ids[:0], day_ret[:0]).tolist() == [0.0] * 6
    assert realised_returns(model_ids[:0], day_ids, day_ret).shape == (0,)
