"""How many sessions of returns a forecast needs before it is "warm" (issue 21.4).

Every forecast table is published from the first session with returns (the tutorial's row
counts), with a boolean ``warm``: false while the forecast is in its warm-up, true after it. A
forecast dated t is warm when more than W sessions with factor returns lie in the history up to
and including t (`is_warm`), the same count that `factor_cov_settings.warmup_length` has always
used to hide its first sessions.

The default W of an EWMA with half-life h (pandas-adjusted weights w_s = lambda^(t-s),
lambda = 2^(-1/h)) is one half-life, W = ceil(h):

- after n observations the weights of the observed returns add up to 1 - lambda^n of the weight
  an unending history would give; the adjusted EWMA renormalises that part to 1, so until
  lambda^n <= 1/2, i.e. n >= h, more than half of the forecast's steady-state weight belongs to
  sessions that were never observed and the first returns stand in for them;
- the estimate's effective number of observations (Kish's (sum w)^2 / sum w^2, the
  `shrink_cor_length` default) after n observations is
  n_eff(n) = (1 + lambda)(1 - lambda^n) / ((1 - lambda)(1 + lambda^n)), which at n = h is a
  third of its limit (1 + lambda)/(1 - lambda) ~ 2.885 h, about 0.96 h: the relative standard
  error of an EWMA variance, sqrt(2 / n_eff), is then 1.7 times its steady state (18% at h = 60
  instead of 11%), against 13 times on the first forecast date and 9 times on the second
  (the tutorial's year reads 1.27% market volatility on its first forecast date, 5.2% on the
  second, 15% by May).

A forecast made of several EWMAs is warm when the slowest of them is (the largest half-life):

| table | half-lives (sessions) | default W (tutorial settings) |
| --- | --- | --- |
| factor_volatility, volatility_regime | halflife_vol, halflife_vra, nw_lags_vol_halflife_override | 60 |
| factor_correlation | halflife_cor (and halflife_vol with combine_standardized) | 120 |
| factor_covariance | both of the above | 120 |
| specific_risk | specific halflife, its halflife_vra, and full_history (the sessions after which an asset's own history has full weight, USE4 5.2 blending) | 84 |

``factor_cov_settings.warmup_length = N > 0`` overrides every W with N (and, as before, the
factor forecasts of those N sessions are not published at all, so their published rows are
all warm; `specific_risk` is published from the first session and flagged).
"""

from __future__ import annotations

import math

import numpy as np

from factorcov_pipeline.core.settings import (
    FactorCovarianceReportSettingsV2,
    FactorCovarianceSettings,
    SpecificRiskSettings,
)

# The tables that carry `warm`, grouped by the forecast whose warm-up they share.
VOLATILITY, CORRELATION, COVARIANCE, SPECIFIC = (
    "volatility",
    "correlation",
    "covariance",
    "specific",
)


def ewma_warmup(*halflives: float | None) -> int:
    """W = ceil(largest half-life) sessions (module docstring); None entries (an adjustment that
    is off) are left out."""
    given = [float(h) for h in halflives if h is not None]
    if not given:
        raise ValueError("ewma_warmup needs at least one half-life")
    return math.ceil(max(given))


def volatility_warmup(cov: FactorCovarianceSettings) -> int:
    """Default warm-up of the factor volatilities (and the regime adjustment's rows)."""
    return ewma_warmup(cov.halflife_vol, cov.halflife_vra, cov.nw_lags_vol_halflife_override)


def correlation_warmup(cov: FactorCovarianceSettings) -> int:
    """Default warm-up of the factor correlations (with `combine_standardized` they are
    correlations of returns standardised by the volatility forecasts: those count too)."""
    vol = volatility_warmup(cov) if cov.combine_standardized else None
    return ewma_warmup(cov.halflife_cor, vol)


def specific_warmup(spec: SpecificRiskSettings) -> int:
    """Default warm-up of the specific risk forecasts: their EWMA, their regime adjustment and
    the blending's `full_history` (before it no asset's own history has full weight, so the
    structural model has nothing to be fitted on)."""
    return ewma_warmup(spec.halflife, spec.halflife_vra, float(spec.full_history))


def warmups(settings: FactorCovarianceReportSettingsV2) -> dict[str, int]:
    """W of each forecast (`VOLATILITY`, `CORRELATION`, `COVARIANCE`, `SPECIFIC`):
    `warmup_length` when it is set (> 0), else the defaults above."""
    cov = settings.factor_cov_settings
    if cov.warmup_length > 0:
        n = int(cov.warmup_length)
        return {VOLATILITY: n, CORRELATION: n, COVARIANCE: n, SPECIFIC: n}
    vol, cor = volatility_warmup(cov), correlation_warmup(cov)
    return {
        VOLATILITY: vol,
        CORRELATION: cor,
        COVARIANCE: max(vol, cor),
        SPECIFIC: specific_warmup(settings.specific_risk_settings),
    }


def is_warm(n_returns: np.ndarray, warmup: int) -> np.ndarray:
    """``warm`` of forecasts dated after ``n_returns`` sessions with returns (counted up to and
    including the forecast's date): more than ``warmup`` of them."""
    return np.asarray(n_returns) > int(warmup)
