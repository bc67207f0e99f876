"""Portfolio risk from a factor risk model: total, factor and specific risk, Euler contributions,
active risk and beta, for many portfolios at once.

The model of one date: exposures X (N assets x K factors), the annualised factor covariance F
(K x K) and the annualised specific volatilities s (N). For holdings h (N, weights as given):

    x = X'h                                  (portfolio factor exposures)
    sigma_F^2 = x' F x,   sigma_S^2 = sum_n h_n^2 s_n^2,   sigma^2 = sigma_F^2 + sigma_S^2

(Grinold and Kahn, "Active Portfolio Management", 2nd ed. 2000, chapter 3; USE4 notes section
2). Euler ("x-sigma-rho") contributions to total risk (Menchero and Davis 2011, "Risk
Contribution Is Exposure Times Volatility Times Correlation", Journal of Portfolio Management
37(2)): with sigma_k = sqrt(F_kk) and rho_k = corr(f_k, r_p) = (F x)_k / (sigma_k sigma),

    c_k = x_k sigma_k rho_k = x_k (F x)_k / sigma,     c_S = sigma_S^2 / sigma,
    sum_k c_k + c_S = (x' F x + sigma_S^2) / sigma = sigma          (Euler's theorem)

Active risk is the same decomposition of a = h - b for a benchmark b; the predicted beta of the
portfolio to the benchmark is cov(r_h, r_b) / var(r_b) = (x_h' F x_b + sum_n h_n b_n s_n^2) /
sigma_b^2.

Vectorised for P portfolios at once: H (P, N) -> X'h for all of them as one matrix product
H X (P, K), specific variances as (H * H) s^2; no loop over assets or portfolios.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class RiskSnapshot:
    """One date's risk model: ``exposures`` (N, K), ``covariance`` (K, K) annualised,
    ``specific_risk`` (N,) annualised volatilities; ``factor_groups`` (K,) per factor."""

    asset_ids: np.ndarray
    factors: list[str]
    factor_groups: list[str]
    exposures: np.ndarray
    covariance: np.ndarray
    specific_risk: np.ndarray

    def __post_init__(self) -> None:
        n, k = self.exposures.shape
        if self.covariance.shape != (k, k) or self.specific_risk.shape != (n,):
            raise ValueError(
                f"risk model shapes disagree: exposures {self.exposures.shape}, covariance "
                f"{self.covariance.shape}, specific_risk {self.specific_risk.shape}"
            )
        if len(self.factors) != k or len(self.factor_groups) != k or len(self.asset_ids) != n:
            raise ValueError("risk model: one name per factor and per asset")


@dataclass
class RiskDecomposition:
    """Risk of P portfolios: ``total``, ``factor``, ``specific`` (P,) annualised volatilities;
    ``exposures`` and ``contributions`` (P, K); ``specific_contribution`` (P,)."""

    total: np.ndarray
    factor: np.ndarray
    specific: np.ndarray
    exposures: np.ndarray
    contributions: np.ndarray
    specific_contribution: np.ndarray

    def group_contributions(self, groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The factor contributions summed per factor group (groups in first-seen order)."""
        names = list(dict.fromkeys(groups))
        code = np.array([names.index(g) for g in groups])
        onehot = np.zeros((len(groups), len(names)))
        onehot[np.arange(len(groups)), code] = 1.0
        return names, self.contributions @ onehot


def decompose(model: RiskSnapshot, holdings: np.ndarray) -> RiskDecomposition:
    """Risk decomposition (module docstring) of ``holdings`` (P, N) or (N,) -> P = 1."""
    h = np.atleast_2d(np.asarray(holdings, dtype=np.float64))
    if h.shape[1] != model.exposures.shape[0]:
        raise ValueError(f"holdings have {h.shape[1]} assets, the model {model.exposures.shape[0]}")
    x = h @ model.exposures
    fx = x @ model.covariance
    factor_var = np.einsum("pk,pk->p", x, fx)
    spec_var = (h * h) @ (model.specific_risk**2)
    total = np.sqrt(factor_var + spec_var)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)
    return RiskDecomposition(
        total=total,
        factor=np.sqrt(np.maximum(factor_var, 0.0)),
        specific=np.sqrt(spec_var),
        exposures=x,
        contributions=x * fx * inv[:, None],
        specific_contribution=spec_var * inv,
    )


def beta(model: RiskSnapshot, holdings: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
    """Predicted beta of each portfolio (P, N) to one benchmark (N,) (module docstring)."""
    h = np.atleast_2d(np.asarray(holdings, dtype=np.float64))
    b = np.asarray(benchmark, dtype=np.float64)
    xb = b @ model.exposures
    s2 = model.specific_risk**2
    fxb = model.covariance @ xb
    var_b = xb @ fxb + np.sum(b * b * s2)
    cov_hb = (h @ model.exposures) @ fxb + h @ (b * s2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var_b > 0, cov_hb / var_b, np.nan)


# Why a minimum-variance portfolio could not be built from a model (`risk_backtest.reason`).
NO_SPECIFIC_RISK = "no_specific_risk"
SINGULAR_COVARIANCE = "singular_covariance"
# Relative residual of V w = 1 above which the solve did not find V^-1 1 (the asset covariance
# is singular to working precision, e.g. specific variances of 1e-33 next to factor variances).
SOLVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SpecificTerms:
    """The parts of the minimum-variance solve (`_v_inv_ones`) that depend on a date's
    exposures X and specific risks s only, not on its factor covariance F: D^-1 = 1 / s^2,
    X' D^-1 X (K, K) and X' D^-1 1 (K,). Several covariance models of one factor model share
    X and s, so `risk_backtest` computes them once per date for every model (O(N K^2), the
    larger part of the solve); the solve with them is the same operations on the same arrays,
    the same bits."""

    d_inv: np.ndarray
    gram: np.ndarray
    x_d_inv: np.ndarray


def _terms(model: RiskSnapshot) -> SpecificTerms:
    d_inv = 1.0 / model.specific_risk**2
    x = model.exposures
    return SpecificTerms(d_inv, x.T @ (x * d_inv[:, None]), x.T @ d_inv)


def specific_terms(model: RiskSnapshot) -> SpecificTerms | None:
    """`SpecificTerms` of the model's exposures and specific risks, or None when an asset has
    no positive finite specific risk (D^-1 does not exist: `NO_SPECIFIC_RISK`)."""
    s = model.specific_risk
    if s.size == 0 or not bool(np.all(np.isfinite(s) & (s > 0))):
        return None
    return _terms(model)


def try_minimum_variance_weights(
    model: RiskSnapshot, terms: SpecificTerms | None = None
) -> tuple[np.ndarray | None, str | None]:
    """`minimum_variance_weights`, or (None, why) when the model cannot give them: an asset
    without a positive finite specific risk (`NO_SPECIFIC_RISK`: D^-1 does not exist; the
    `specific_risk` table's `reason` says why), or a solve that fails or does not satisfy
    V V^-1 1 = 1 to `SOLVE_TOLERANCE` (`SINGULAR_COVARIANCE`), checked in O(N K) from the
    factored form. ``terms``: `specific_terms` of a snapshot with the same exposures and
    specific risks (another covariance model of the same date), computed here when not given;
    the result is the same bits either way."""
    if terms is None:
        terms = specific_terms(model)
    if terms is None:
        return None, NO_SPECIFIC_RISK
    s = model.specific_risk
    try:
        v_inv_1 = _v_inv_ones(model, terms)
    except np.linalg.LinAlgError:
        return None, SINGULAR_COVARIANCE
    x, f = model.exposures, model.covariance
    with np.errstate(all="ignore"):
        back = s**2 * v_inv_1 + x @ (f @ (x.T @ v_inv_1))  # V (V^-1 1), should be 1
        total = v_inv_1.sum()
    if not (np.all(np.isfinite(back)) and np.isfinite(total) and total > 0):
        return None, SINGULAR_COVARIANCE
    if float(np.max(np.abs(back - 1.0))) > SOLVE_TOLERANCE:
        return None, SINGULAR_COVARIANCE
    return v_inv_1 / total, None


def _v_inv_ones(model: RiskSnapshot, terms: SpecificTerms | None = None) -> np.ndarray:
    """V^-1 1 through the push-through Woodbury form (`minimum_variance_weights`)."""
    t = terms if terms is not None else _terms(model)
    k = model.exposures.shape[1]
    m = np.eye(k) + t.gram @ model.covariance
    return t.d_inv - t.d_inv * (
        model.exposures @ (model.covariance @ np.linalg.solve(m, t.x_d_inv))
    )


def minimum_variance_weights(model: RiskSnapshot) -> np.ndarray:
    """The fully invested minimum-variance portfolio w = V^-1 1 / 1'V^-1 1 of the model's asset
    covariance V = X F X' + D, D = diag(s^2), through the push-through form of the Woodbury
    identity, V^-1 = D^-1 - D^-1 X F (I + X' D^-1 X F)^-1 X' D^-1, which needs no inverse of
    F (singular under the zero-sum sector constraint) and costs O(N K^2), not O(N^3). Used by
    the backtest: optimised portfolios reveal under-forecast risk (USE4 notes, section 6).
    `try_minimum_variance_weights` says why a model cannot give them instead of raising."""
    v_inv_1 = _v_inv_ones(model)
    return v_inv_1 / v_inv_1.sum()


def observed_returns(
    asset_ids: np.ndarray, day_ids: np.ndarray, day_returns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``asset_ids``' return on a date from that date's universe rows (``day_ids``,
    ``day_returns``; a null return is NaN), 0 for an asset without a row or a return (it is
    held at no gain or loss), and whether it had one. Aligned by sorted search, not a join:
    this runs once per date."""
    out = np.zeros(len(asset_ids))
    seen = np.zeros(len(asset_ids), dtype=bool)
    if len(asset_ids) == 0 or len(day_ids) == 0:
        return out, seen
    order = np.argsort(asset_ids, kind="stable")
    at = np.minimum(np.searchsorted(asset_ids, day_ids, sorter=order), len(asset_ids) - 1)
    pos = order[at]
    hit = (asset_ids[pos] == day_ids) & ~np.isnan(day_returns)
    out[pos[hit]] = day_returns[hit]
    seen[pos[hit]] = True
    return out, seen


def realised_returns(
    asset_ids: np.ndarray, day_ids: np.ndarray, day_returns: np.ndarray
) -> np.ndarray:
    """The returns of `observed_returns` (0 for an asset without one)."""
    return observed_returns(asset_ids, day_ids, day_returns)[0]


def portfolio_returns(weights: np.ndarray, returns: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Realised returns of P portfolios (P, N) from `observed_returns`: sum of weight x return,
    an asset without a return counting 0; NaN (missing, not 0) for a portfolio none of whose
    holdings has a return that day (a session without returns, `factor_return_gaps`)."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    held = (w != 0.0) @ seen.astype(np.float64)
    return np.where(held > 0, w @ returns, np.nan)
