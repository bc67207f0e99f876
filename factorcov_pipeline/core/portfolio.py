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


def minimum_variance_weights(model: RiskSnapshot) -> np.ndarray:
    """The fully invested minimum-variance portfolio w = V^-1 1 / 1'V^-1 1 of the model's asset
    covariance V = X F X' + D, D = diag(s^2), through the push-through form of the Woodbury
    identity, V^-1 = D^-1 - D^-1 X F (I + X' D^-1 X F)^-1 X' D^-1, which needs no inverse of
    F (singular under the zero-sum sector constraint) and costs O(N K^2), not O(N^3). Used by
    the backtest: optimised portfolios reveal under-forecast risk (USE4 notes, section 6)."""
    d_inv = 1.0 / model.specific_risk**2
    x = model.exposures
    y = d_inv.copy()  # D^-1 1
    k = x.shape[1]
    m = np.eye(k) + (x.T @ (x * d_inv[:, None])) @ model.covariance
    v_inv_1 = y - d_inv * (x @ (model.covariance @ np.linalg.solve(m, x.T @ y)))
    return v_inv_1 / v_inv_1.sum()


def realised_returns(
    asset_ids: np.ndarray, day_ids: np.ndarray, day_returns: np.ndarray
) -> np.ndarray:
    """Each of ``asset_ids``' return on a date from that date's universe rows (``day_ids``,
    ``day_returns``; a null return is NaN): 0 for an asset without a row or a return (it is
    held at no gain or loss). Aligned by sorted search, not a join: this runs once per date."""
    out = np.zeros(len(asset_ids))
    if len(asset_ids) == 0 or len(day_ids) == 0:
        return out
    order = np.argsort(asset_ids, kind="stable")
    at = np.minimum(np.searchsorted(asset_ids, day_ids, sorter=order), len(asset_ids) - 1)
    pos = order[at]
    hit = (asset_ids[pos] == day_ids) & ~np.isnan(day_returns)
    out[pos[hit]] = day_returns[hit]
    return out
