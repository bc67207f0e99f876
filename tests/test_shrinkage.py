"""Tests of the Ledoit-Wolf correlation shrinkage against a plain transcription of the authors' code.

The reference functions below follow `QIS.m`, `LIS.m` and `GIS.m` of
https://github.com/oledoit/covShrinkage line by line (data matrix in, k = 0: no demeaning,
explicit double loop for the smoothed Stein shrinker), one matrix at a time, so they share no
code with the vectorised production implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from factorcov_pipeline.core.shrinkage import (
    ewma_effective_observations,
    shrink_correlation,
    shrink_eigenvalues,
)

# ---------------------------------------------------------------- reference (authors' code)


def _ref_common(y: np.ndarray) -> tuple:
    n_rows, p = y.shape
    n = n_rows  # k = 0: data taken as already centred, no degree of freedom removed
    c = p / n
    sample = (y.T @ y) / n
    sample = (sample + sample.T) / 2
    # Matlab's eig detects a symmetric input and returns orthonormal eigenvectors (LAPACK
    # dsyev); numpy's general `eig` does not orthogonalise degenerate (null) eigenspaces.
    lam, u = np.linalg.eigh(sample)
    order = np.argsort(lam)
    lam = lam[order]
    u = u[:, order]
    h = min(c**2, 1 / c**2) ** 0.35 / p**0.35
    invlambda = 1.0 / lam[max(1, p - n + 1) - 1 : p]
    q = min(p, n)
    theta = np.zeros(q)
    htheta = np.zeros(q)
    for i in range(q):
        s_t = 0.0
        s_h = 0.0
        for j in range(q):
            lj = invlambda[j]
            dji = invlambda[j] - invlambda[i]
            den = dji**2 + h**2 * lj**2
            s_t += lj * dji / den
            s_h += lj * (h * lj) / den
        theta[i] = s_t / q
        htheta[i] = s_h / q
    atheta2 = theta**2 + htheta**2
    return n, p, c, lam, u, invlambda, theta, atheta2


def ref_qis(y: np.ndarray) -> np.ndarray:
    n, p, c, lam, u, invlambda, theta, atheta2 = _ref_common(y)
    if p <= n:
        delta = 1.0 / (
            (1 - c) ** 2 * invlambda
            + 2 * c * (1 - c) * invlambda * theta
            + c**2 * invlambda * atheta2
        )
    else:
        delta0 = 1.0 / ((c - 1) * np.mean(invlambda))
        delta = np.concatenate([np.repeat(delta0, p - n), 1.0 / (invlambda * atheta2)])
    delta_qis = delta * (np.sum(lam) / np.sum(delta))
    return u @ np.diag(delta_qis) @ u.T


def ref_lis(y: np.ndarray) -> np.ndarray:
    n, p, c, _lam, u, invlambda, theta, _a = _ref_common(y)
    assert p <= n
    deltahat_1 = (1 - c) * invlambda + 2 * c * invlambda * theta
    delta_lis_1 = np.maximum(deltahat_1, np.min(invlambda))
    return u @ np.diag(1.0 / delta_lis_1) @ u.T


def ref_gis(y: np.ndarray) -> np.ndarray:
    n, p, c, _lam, u, invlambda, theta, atheta2 = _ref_common(y)
    assert p <= n
    deltahat_1 = (1 - c) * invlambda + 2 * c * invlambda * theta
    delta = 1.0 / (
        (1 - c) ** 2 * invlambda + 2 * c * (1 - c) * invlambda * theta + c**2 * invlambda * atheta2
    )
    delta_lis_1 = np.maximum(deltahat_1, np.min(invlambda))
    return u @ np.diag(np.sqrt(delta / delta_lis_1)) @ u.T


REFS = {"QIS": ref_qis, "LIS": ref_lis, "GIS": ref_gis}


def to_corr(s: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.diag(s))
    return s / np.outer(d, d)


def standardised_data(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Data whose uncentred sample covariance Y'Y/n is exactly (to rounding) a correlation."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((p, p)) / math.sqrt(p) + np.eye(p)
    y = rng.standard_normal((n, p)) @ mix.T * rng.uniform(0.5, 2.0, p)
    s = y.T @ y / n
    y = y / np.sqrt(np.diag(s))
    corr = y.T @ y / n
    return y, corr


# ---------------------------------------------------------------- tie-out to the reference


@pytest.mark.parametrize("method", ["QIS", "LIS", "GIS"])
@pytest.mark.parametrize(("n", "p"), [(40, 12), (25, 20), (15, 15)])
def test_matches_reference_code_nonsingular(method: str, n: int, p: int) -> None:
    y, corr = standardised_data(n, p, seed=n * 100 + p)
    expected = to_corr(REFS[method](y))
    got = shrink_correlation(corr, n, method)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize(("n", "p"), [(10, 16), (5, 30), (1, 6)])
def test_qis_matches_reference_code_singular(n: int, p: int) -> None:
    y, corr = standardised_data(n, p, seed=7 + n)
    expected = to_corr(ref_qis(y))
    got = shrink_correlation(corr, n, "QIS")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    # LIS and GIS are undefined there; the default falls back to QIS, "raise" refuses.
    for method in ("LIS", "GIS"):
        np.testing.assert_allclose(shrink_correlation(corr, n, method), got, atol=1e-12)
        with pytest.raises(ValueError, match="K <= n"):
            shrink_correlation(corr, n, method, singular="raise")


def test_shrunk_eigenvalues_match_reference_before_rescaling() -> None:
    n, p = 50, 10
    y, corr = standardised_data(n, p, seed=3)
    lam = np.linalg.eigvalsh(corr)
    for method, ref in REFS.items():
        expected = np.sort(np.linalg.eigvalsh(ref(y)))
        got = np.sort(shrink_eigenvalues(lam, n, method))
        np.testing.assert_allclose(got, expected, rtol=1e-11)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("method", ["QIS", "LIS", "GIS"])
def test_eigenvalues_pulled_towards_mean(method: str) -> None:
    _y, corr = standardised_data(60, 30, seed=11)
    lam = np.linalg.eigvalsh(corr)
    shrunk = shrink_eigenvalues(lam, 60, method)
    assert shrunk.min() > lam.min()
    assert shrunk.max() < lam.max()
    assert np.all(shrunk > 0)
    if method == "QIS":
        assert shrunk.mean() == pytest.approx(lam.mean(), rel=1e-13)
        assert np.var(shrunk) < np.var(lam)


@pytest.mark.parametrize("method", ["QIS", "LIS", "GIS"])
@pytest.mark.parametrize(("n", "p"), [(80, 20), (20, 20), (8, 20), (1.7, 20)])
def test_output_is_a_valid_correlation(method: str, n: float, p: int) -> None:
    _y, corr = standardised_data(max(1, int(n)), p, seed=5)
    out = shrink_correlation(corr, n, method)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(np.diag(out), np.ones(p))
    np.testing.assert_array_equal(out, out.T)
    assert np.linalg.eigvalsh(out).min() > 1e-8
    assert np.all(np.abs(out) <= 1.0 + 1e-12)
    # Cholesky succeeds: positive definite
    np.linalg.cholesky(out)


def test_rank_deficient_input_with_large_n_stays_finite() -> None:
    # rank 5 matrix but the caller claims 500 observations (e.g. shrink_cor_length early on)
    _y, corr = standardised_data(5, 12, seed=2)
    for method in ("QIS", "LIS", "GIS"):
        out = shrink_correlation(corr, 500.0, method)
        assert np.all(np.isfinite(out))
        assert np.linalg.eigvalsh(out).min() > 0
    # and it equals the shrinkage with n = rank
    np.testing.assert_allclose(
        shrink_correlation(corr, 500.0, "QIS"), shrink_correlation(corr, 5, "QIS"), atol=1e-12
    )


def _simulated_correlations(k: int, n: int, n_seeds: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A true correlation (common factor + AR(1) block) and sample correlations of n draws."""
    idx = np.arange(k)
    true = to_corr(0.3 + 0.7 * 0.6 ** np.abs(idx[:, None] - idx[None, :]))
    chol = np.linalg.cholesky(true)
    samples = []
    for seed in range(n_seeds):
        x = np.random.default_rng(seed).standard_normal((n, k)) @ chol.T
        samples.append(to_corr(x.T @ x / n))
    return true, samples


def _frobenius(est: np.ndarray, true: np.ndarray) -> float:
    return float(np.linalg.norm(est - true))


def _mv_loss(est: np.ndarray, true: np.ndarray) -> float:
    """Out-of-sample variance of the global minimum-variance portfolio built on `est`."""
    w = np.linalg.solve(est, np.ones(len(true)))
    w /= w.sum()
    return float(w @ true @ w)


def _stein(est: np.ndarray, true: np.ndarray) -> float:
    """Stein's loss tr(S^-1 E) - log det(S^-1 E) - K (Ledoit-Wolf, JFEC 2022, sec. 4)."""
    m = np.linalg.solve(true, est)
    return float(np.trace(m) - np.linalg.slogdet(m)[1] - len(true))


def _sym_kl(est: np.ndarray, true: np.ndarray) -> float:
    """Symmetrized Kullback-Leibler loss (Ledoit-Wolf, JFEC 2022, sec. 4)."""
    k = len(true)
    return float(
        0.5 * (np.trace(np.linalg.solve(est, true)) + np.trace(np.linalg.solve(true, est))) - k
    )


@pytest.mark.parametrize(
    ("method", "loss", "n"),
    [
        ("QIS", _frobenius, 60),  # QIS: Frobenius-optimal (Bernoulli 2022)
        ("QIS", _mv_loss, 60),
        ("LIS", _mv_loss, 60),
        ("GIS", _mv_loss, 60),
        ("GIS", _sym_kl, 60),  # GIS: symmetrized-KL-optimal
        ("LIS", _stein, 150),  # LIS: Stein-optimal; see the note below on c close to 1
        ("GIS", _stein, 150),
    ],
)
def test_lower_out_of_sample_loss_than_sample_correlation(method: str, loss, n: int) -> None:
    # K = 50 factors, few observations per factor, averaged over seeds. Note: with c = K/n close
    # to 1 (n = 60) the published LIS formula collapses the top eigenvalue of a strongly spiked
    # matrix, so LIS loses to the sample matrix under Frobenius and Stein loss there; it still
    # wins under the minimum-variance loss, and under Stein's loss once c = 1/3.
    true, samples = _simulated_correlations(50, n, n_seeds=6)
    raw = np.mean([loss(s, true) for s in samples])
    shrunk = np.mean([loss(shrink_correlation(s, n, method), true) for s in samples])
    factor = 0.95 if loss is _frobenius else 0.9
    assert shrunk < factor * raw


def test_batched_equals_per_matrix() -> None:
    mats, ns = [], [40.0, 7.0, 12.5, 300.0, 3.0]
    for i, n in enumerate(ns):
        _y, corr = standardised_data(max(1, int(n)), 10, seed=20 + i)
        mats.append(corr)
    batch = np.stack(mats)
    batch[2, 0, 1] = np.nan  # a date without a forecast
    for method in ("QIS", "LIS", "GIS"):
        got = shrink_correlation(batch, np.array(ns), method)
        assert np.all(np.isnan(got[2]))
        for i in (0, 1, 3, 4):
            np.testing.assert_allclose(
                got[i], shrink_correlation(batch[i], ns[i], method), rtol=0, atol=1e-13
            )
        # scalar n broadcasts
        np.testing.assert_allclose(
            shrink_correlation(batch[[0, 3]], 40.0, method)[1],
            shrink_correlation(batch[3], 40.0, method),
            atol=1e-13,
        )


def test_identity_is_a_fixed_point_of_qis() -> None:
    # all eigenvalues equal: nothing to shrink towards
    out = shrink_correlation(np.eye(6), 100.0, "QIS")
    np.testing.assert_allclose(out, np.eye(6), atol=1e-12)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="method"):
        shrink_correlation(np.eye(3), 10, "XYZ")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unit diagonal"):
        shrink_correlation(2 * np.eye(3), 10, "QIS")
    with pytest.raises(ValueError, match="n_obs"):
        shrink_correlation(np.eye(3), 0.0, "QIS")
    with pytest.raises(ValueError, match="shape"):
        shrink_correlation(np.stack([np.eye(3)] * 2), np.ones(3), "QIS")


# ---------------------------------------------------------------- effective observations


@pytest.mark.parametrize("halflife", [1.0, 5.5, 60.0, 120.0])
def test_ewma_effective_observations_direct_sum(halflife: float) -> None:
    alpha = 1 - math.exp(-math.log(2) / halflife)
    ns = np.array([1, 2, 3, 10, 250, 2000])
    expected = []
    for n in ns:
        w = (1 - alpha) ** np.arange(n)
        expected.append(w.sum() ** 2 / (w**2).sum())
    got = ewma_effective_observations(halflife, ns)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert ewma_effective_observations(halflife, 1) == pytest.approx(1.0, rel=1e-14)
    assert ewma_effective_observations(halflife, 0) == 0.0
    limit = (2 - alpha) / alpha
    assert ewma_effective_observations(halflife, 10**7) == pytest.approx(limit, rel=1e-12)


def test_ewma_weights_are_pandas_weights() -> None:
    # the weights (1-alpha)^i used above are those of pandas' adjusted ewm(halflife=...)
    halflife, n = 7.0, 30
    x = np.random.default_rng(0).standard_normal(n)
    alpha = 1 - math.exp(-math.log(2) / halflife)
    w = (1 - alpha) ** np.arange(n)[::-1]
    expected = float(np.sum(w * x) / np.sum(w))
    got = pd.Series(x).ewm(halflife=halflife).mean().iloc[-1]
    assert got == pytest.approx(expected, rel=1e-12)
