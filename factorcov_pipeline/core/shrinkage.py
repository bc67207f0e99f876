"""Ledoit-Wolf nonlinear shrinkage (LIS, QIS, GIS) of a factor correlation matrix.

The EWMA correlation forecast is estimated from a short effective sample (a 120-day half-life
gives about 346 effective observations for 21 factors, and far fewer on the first dates), so
its eigenvalues are too dispersed: the smallest are too small, the largest too large. The
Ledoit-Wolf estimators keep the sample eigenvectors and replace the eigenvalues by shrunk ones
derived from random-matrix theory:

* QIS, quadratic-inverse shrinkage: Ledoit and Wolf, "Quadratic shrinkage for large covariance
  matrices", Bernoulli 28(3), 2022, with its singular-case branch for p > n; optimal under
  Frobenius, inverse Stein and minimum-variance losses.
* LIS, linear-inverse shrinkage: Ledoit and Wolf, "The power of (non-)linear shrinking: a review
  and guide to covariance matrix estimation", J. Financial Econometrics 20(1), 2022, section 4
  (Stein's loss).
* GIS, geometric-inverse shrinkage: same review, section 4 (symmetrized Kullback-Leibler
  loss): the geometric mean of the LIS and QIS eigenvalues.

The formulas are those of the authors' published code, `LIS.m`, `QIS.m` and `GIS.m` in
https://github.com/oledoit/covShrinkage (Python ports in https://github.com/pald22/covShrinkage),
with the kernel-smoothed Stein shrinker theta, its Hilbert conjugate H(theta) and the
bandwidth h = min(c^2, 1/c^2)^0.35 / p^0.35. Here they are written for a batch of matrices
(T, K, K) with one vectorised eigendecomposition and no loop over dates.

The sample correlation matrix is treated as the sample covariance of n = `n_obs` observations
of K variables (c = K / n). The shrunk matrix U diag(delta) U' is then rescaled to a
correlation matrix, D^-1/2 S D^-1/2 with D = diag(S), which is symmetric positive definite with
a unit diagonal.

Decisions where the published code is silent or errors:

* Non-integer n (an EWMA's effective sample size) is used as is in the non-singular case
  (K <= n). In the singular case (K > n) the number of non-null eigenvalues must be an integer:
  we use m = max(1, floor(n)) and c = K / m, i.e. the authors' code with n = floor(n).
* A numerically rank-deficient input (rank r < K, eigenvalue <= K * eps * max eigenvalue) cannot
  come from more than r observations, so n is capped at r for it; this keeps the formulas
  finite when a user-set `shrink_cor_length` exceeds the number of dates seen so far.
* LIS and GIS are undefined for K > n (Stein's loss and the symmetrized KL divergence need the
  inverse of the sample covariance; the authors' code raises). By default those matrices get
  QIS instead (`singular="qis"`); `singular="raise"` raises as the published code does.
* A matrix with any non-finite entry (e.g. the first date of a forecast) gives an all-NaN output
  for that date instead of an error.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

ShrinkMethodName = Literal["LIS", "QIS", "GIS"]
SingularPolicy = Literal["qis", "raise"]

_METHODS: tuple[str, ...] = ("LIS", "QIS", "GIS")


def ewma_effective_observations(halflife: float, n_dates: int | np.ndarray) -> float | np.ndarray:
    """Effective number of observations (sum w)^2 / sum w^2 of an adjusted pandas EWMA.

    pandas' `ewm(halflife=h, adjust=True)` weights the observation i dates back by
    w_i = a^i, a = 1 - alpha = exp(-ln 2 / h), i = 0..n-1 (pandas docs, "Exponentially weighted
    window"). Kish's effective sample size of these weights (Kish, "Survey Sampling", 1965,
    section 11.7) has the closed form

        n_eff = (1 - a^n)^2 / (1 - a)^2 * (1 - a^2) / (1 - a^(2n))
              = (1 + a)(1 - a^n) / ((1 - a)(1 + a^n)),

    which tends to (1 + a) / (1 - a) (about 2h / ln 2) as n grows. This is the default sample
    length of the correlation shrinkage when `shrink_cor_length` is null: for the correlation
    forecast of date t it is `ewma_effective_observations(halflife_cor, n_dates)` with n_dates
    the number of factor-return dates in the EWMA so far. `n_dates = 0` gives 0.
    """
    if not np.isfinite(halflife) or halflife <= 0:
        raise ValueError(f"halflife must be a positive finite number, got {halflife!r}")
    n = np.asarray(n_dates, dtype=np.float64)
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        raise ValueError("n_dates must be non-negative and finite")
    log_a = -np.log(2.0) / float(halflife)
    one_minus_a = -np.expm1(log_a)
    a = np.exp(log_a)
    one_minus_an = -np.expm1(n * log_a)
    one_plus_an = 1.0 + np.exp(n * log_a)
    out = (1.0 + a) * one_minus_an / (one_minus_a * one_plus_an)
    if out.ndim == 0:
        return float(out)
    return out


def _check_method(method: str, singular: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if singular not in ("qis", "raise"):
        raise ValueError(f"singular must be 'qis' or 'raise', got {singular!r}")


def _as_batch_n(n_obs: float | np.ndarray, t: int) -> np.ndarray:
    n = np.asarray(n_obs, dtype=np.float64)
    if n.ndim == 0:
        n = np.full(t, float(n))
    elif n.shape != (t,):
        raise ValueError(f"n_obs must be a scalar or have shape ({t},), got {n.shape}")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError("n_obs must be positive and finite")
    return n


def shrink_eigenvalues(
    eigenvalues: np.ndarray,
    n_obs: float | np.ndarray,
    method: ShrinkMethodName,
    singular: SingularPolicy = "qis",
) -> np.ndarray:
    """Shrunk eigenvalues of sample covariance matrices, before any rescaling.

    `eigenvalues` is (K,) or (T, K), sorted ascending (as `np.linalg.eigh` returns them);
    `n_obs` is the sample size n (scalar or (T,)). Returns the LIS, QIS or GIS eigenvalues in
    the same order (the eigenvector of position i keeps position i).

    Transcribes `QIS.m` / `LIS.m` / `GIS.m` (Ledoit-Wolf covShrinkage, 01/2021-01/2024):

        invlambda_i = 1 / lambda_i over the m non-null eigenvalues
        theta_i  = mean_j L_j (L_j - L_i) / ((L_j - L_i)^2 + h^2 L_j^2),  L = invlambda
        Htheta_i = mean_j L_j (h L_j)     / ((L_j - L_i)^2 + h^2 L_j^2)
        QIS (K <= n): delta_i = 1 / ((1-c)^2 L_i + 2c(1-c) L_i theta_i + c^2 L_i A_i^2),
                      A^2 = theta^2 + Htheta^2                 (Bernoulli 2022, QIS)
        QIS (K > n):  delta = 1 / ((c-1) mean(L)) on the K-m null eigenvalues and
                      1 / (L_i A_i^2) on the others            (Bernoulli 2022, p > n)
        QIS:          rescaled so that sum(delta) = sum(lambda) (trace preserved)
        LIS:          1 / max((1-c) L_i + 2c L_i theta_i, min L)   (JFEC 2022, sec. 4)
        GIS:          sqrt(delta_QIS_unscaled_i * LIS_i)           (JFEC 2022, sec. 4)
    """
    _check_method(method, singular)
    lam = np.asarray(eigenvalues, dtype=np.float64)
    single = lam.ndim == 1
    if single:
        lam = lam[None, :]
    if lam.ndim != 2:
        raise ValueError(f"eigenvalues must be (K,) or (T, K), got shape {lam.shape}")
    t, k = lam.shape
    n = _as_batch_n(n_obs, t)
    out = np.full((t, k), np.nan)
    ok = np.all(np.isfinite(lam), axis=1)
    if not np.any(ok):
        return out[0] if single else out
    lam_ok = lam[ok]
    out[ok] = _shrink_sorted(lam_ok, n[ok], method, singular)
    return out[0] if single else out


def _shrink_sorted(
    lam: np.ndarray, n: np.ndarray, method: str, singular: SingularPolicy
) -> np.ndarray:
    """Vectorised core of `shrink_eigenvalues` for finite (T, K) ascending eigenvalues."""
    k = lam.shape[1]
    # Numerical rank: a matrix of rank r cannot come from more than r observations.
    top = np.max(np.abs(lam), axis=1)
    tol = k * np.finfo(np.float64).eps * top
    rank = np.sum(lam > tol[:, None], axis=1)
    if np.any(rank == 0):
        raise ValueError("shrinkage input has a zero matrix (no positive eigenvalue)")
    n_used = np.where(rank == k, n, np.minimum(n, rank.astype(np.float64)))
    is_singular = n_used < k
    if method != "QIS" and singular == "raise" and np.any(is_singular):
        raise ValueError(
            f"{method} needs K <= n (Stein's loss / symmetrized KL need an invertible sample "
            f"covariance); got K={k} and n={float(np.min(n_used))}"
        )
    m = np.where(is_singular, np.maximum(1, np.floor(n_used)), k).astype(np.int64)
    c = k / np.where(is_singular, m.astype(np.float64), n_used)
    h = np.minimum(c**2, 1.0 / c**2) ** 0.35 / k**0.35

    idx = np.arange(k)
    valid = idx[None, :] >= (k - m)[:, None]  # the m largest eigenvalues are non-null
    safe_lam = np.where(valid, lam, 1.0)
    inv = np.where(valid, 1.0 / safe_lam, 0.0)  # L_i, zero on null eigenvalues

    li = inv[:, :, None]
    lj = inv[:, None, :]
    d = lj - li
    h3 = h[:, None, None]
    denom = d * d + h3 * h3 * lj * lj
    denom = np.where(denom > 0, denom, 1.0)  # numerators are 0 wherever denom is 0
    mf = m.astype(np.float64)[:, None]
    theta = np.sum(lj * d / denom, axis=2) / mf
    htheta = np.sum(lj * (h3 * lj) / denom, axis=2) / mf
    atheta2 = theta**2 + htheta**2

    cc = c[:, None]
    safe_inv = np.where(valid, inv, 1.0)
    # QIS, non-singular case.
    qis_reg = 1.0 / (
        (1.0 - cc) ** 2 * safe_inv
        + 2.0 * cc * (1.0 - cc) * safe_inv * theta
        + cc**2 * safe_inv * atheta2
    )
    # QIS, singular case.
    mean_inv = np.sum(inv, axis=1) / m
    with np.errstate(divide="ignore"):
        delta0 = 1.0 / ((c - 1.0) * mean_inv)
    qis_sing = np.where(valid, 1.0 / (safe_inv * np.where(valid, atheta2, 1.0)), delta0[:, None])
    delta = np.where(is_singular[:, None], qis_sing, qis_reg)
    if method == "QIS":
        return delta * (np.sum(lam, axis=1) / np.sum(delta, axis=1))[:, None]

    # LIS (and GIS), non-singular case: shrunk inverse eigenvalues, floored at min(1/lambda).
    min_inv = np.min(np.where(valid, inv, np.inf), axis=1)
    lis_inv = np.maximum((1.0 - cc) * safe_inv + 2.0 * cc * safe_inv * theta, min_inv[:, None])
    shrunk = 1.0 / lis_inv if method == "LIS" else np.sqrt(delta / lis_inv)
    if np.any(is_singular):  # singular == "qis": fall back to QIS on those matrices
        qis = delta * (np.sum(lam, axis=1) / np.sum(delta, axis=1))[:, None]
        shrunk = np.where(is_singular[:, None], qis, shrunk)
    return shrunk


def shrink_correlation(
    corr: np.ndarray,
    n_obs: float | np.ndarray,
    method: ShrinkMethodName,
    singular: SingularPolicy = "qis",
) -> np.ndarray:
    """Ledoit-Wolf LIS / QIS / GIS shrinkage of correlation matrices, (K, K) or (T, K, K).

    Each matrix is treated as a sample covariance of `n_obs` observations (scalar or (T,)):
    its eigenvalues are replaced by `shrink_eigenvalues(...)`, the eigenvectors kept, and the
    result rescaled to unit diagonal (D^-1/2 S D^-1/2). The output is symmetric, has an exact
    unit diagonal and is positive definite (all shrunk eigenvalues are positive). Matrices with
    a non-finite entry come back as NaN. See the module docstring for the K > n conventions.
    """
    _check_method(method, singular)
    c_in = np.asarray(corr, dtype=np.float64)
    single = c_in.ndim == 2
    if single:
        c_in = c_in[None]
    if c_in.ndim != 3 or c_in.shape[1] != c_in.shape[2]:
        raise ValueError(f"corr must be (K, K) or (T, K, K), got shape {np.shape(corr)}")
    t, k, _ = c_in.shape
    n = _as_batch_n(n_obs, t)
    ok = np.all(np.isfinite(c_in), axis=(1, 2))
    out = np.full_like(c_in, np.nan)
    if np.any(ok):
        x = c_in[ok]
        diag = np.diagonal(x, axis1=1, axis2=2)
        if not np.allclose(diag, 1.0, rtol=0.0, atol=1e-6):
            raise ValueError("corr must be correlation matrices (unit diagonal)")
        x = 0.5 * (x + np.swapaxes(x, 1, 2))
        lam, u = np.linalg.eigh(x)
        delta = _shrink_sorted(lam, n[ok], method, singular)
        s = (u * delta[:, None, :]) @ np.swapaxes(u, 1, 2)
        sd = np.sqrt(np.diagonal(s, axis1=1, axis2=2))
        r = s / (sd[:, :, None] * sd[:, None, :])
        r = 0.5 * (r + np.swapaxes(r, 1, 2))
        diag_idx = np.arange(k)
        r[:, diag_idx, diag_idx] = 1.0
        out[ok] = r
    return out[0] if single else out
