"""The leaderboard of covariance models: which model's forecasts held up out of sample.

Every model of a file forecasts the same factor returns r_t (K factors). Each is scored on the
forecasts F_{t-1} it made at the previous session (daily, K x K) against the returns realised
at t, after its warm-up, and the models are ranked. Four families of statistics:

1. **Bias statistics** (Menchero, Orr and Wang, "The Barra US Equity Model (USE4) Methodology
   Notes", MSCI 2011, section 6 "Bias statistics"; `core/backtest.py` holds their one
   definition). For a test portfolio w_t the standardised outcome is
   z_t = w_t' r_t / sqrt(w_t' F_{t-1} w_t); the full-sample bias statistic b is the standard
   deviation (ddof 1) of z over the scored dates, inside the approximate 95% band
   1 +/- sqrt(2/T) for an unbiased forecast; the 12-month (252-session) rolling statistics and
   the share of them inside their own band (`backtest.bias_report`). Four groups of test
   portfolios:

   * ``factor``: one per factor (unit exposure);
   * ``random``: the fixed random factor portfolios of `forecast_bias` (given as an input, see
     `evaluate_model`);
   * ``eigen``: the eigenportfolios of each forecast, F_{t-1} = U D U', portfolio k of date t
     the eigenvector u_k of F_{t-1} with z = u_k' r_t / sqrt(d_k) (Menchero, Wang and Orr,
     "Eigen-adjusted covariance matrices", J. Investment Management 9(3), 2011; USE4 notes
     section 4.3). Rank k = 1 is the SMALLEST eigenvalue (the order of that paper and of
     docs/eigen-adjustment.md): the portfolios an optimiser loves and a sample covariance
     under-forecasts. An eigenvector's sign is arbitrary; we make its largest-magnitude entry
     positive (the first one on a tie) so that the outcome does not depend on LAPACK's choice;
   * ``min_variance``: the fully invested minimum-variance portfolio of each forecast in factor
     space, w_t = F_{t-1}^-1 1 / 1' F_{t-1}^-1 1, forecast variance 1 / 1' F_{t-1}^-1 1.

2. **Realised volatility of the minimum-variance portfolio** (annualised, sqrt(252) times the
   sample standard deviation of w_t' r_t): the test of a covariance estimator by Ledoit and Wolf
   (Ledoit & Wolf, "Nonlinear shrinkage of the covariance matrix for portfolio selection:
   Markowitz meets Goldilocks", Review of Financial Studies 30(12), 2017, section 5; Engle,
   Ledoit & Wolf, "Large dynamic covariance matrices", JBES 37(2), 2019, section 5). The
   better the estimate of the inverse covariance, the lower the out-of-sample volatility of the
   portfolio it builds: lower is better, whatever the forecast said about it.

3. **QLIKE** of the variance forecasts h_t = w' F_{t-1} w of the factor and random portfolios,
   L = r_p^2 / h + log h, the mean over dates and portfolios (Patton, "Volatility forecast
   comparison using imperfect volatility proxies", J. Econometrics 160(1), 2011, eq. 24: the
   loss that ranks forecasts consistently with a noisy proxy such as the squared return; we drop
   its terms -log(r_p^2) - 1, which depend on the data only, so that a zero return stays
   finite). Only those portfolios, whose weights every model shares: the eigen- and
   minimum-variance portfolios differ per model, their losses are not on a common target.

4. **Gaussian negative log-likelihood** of r_t under N(0, F_{t-1}),
   0.5 (K log 2 pi + log det F_{t-1} + r_t' F_{t-1}^-1 r_t), the mean over dates: the
   multivariate QLIKE, the proper scoring rule of a covariance forecast (lower is better).

**Scored dates.** A date t is scored when its forecast is warm (``warm[t]``, the warm flag of
the forecast made at t-1 that t is scored against), every factor has a finite return (a session
without returns is skipped: the likelihood and the minimum-variance portfolio need the whole
vector), F_{t-1} is finite and positive definite: its smallest eigenvalue exceeds 1e-10 times
its largest in magnitude (`core.eigen.RANK_RTOL`, the eigen adjustment's threshold of a
rank-deficient forecast: below it an eigenvalue is zero up to rounding). A warm date with
returns whose forecast is not positive definite is counted in ``n_singular_forecasts`` and
left out (it has no inverse, no likelihood and an eigenportfolio of zero forecast risk), never
raised as a LinAlgError. Every statistic of a model uses the same dates; `leaderboard` scores
every model on the dates scored for all of them (``common_sample``), so that a model with a
longer warm-up is not compared over another period. The bias grid starts at the first scored
date: a 12-month window reaching before it is not a window of outcomes.

One eigendecomposition per date serves everything (batched `numpy.linalg.eigh`, no loop over
dates or portfolios): with F = U D U' and y = U' r, the eigenportfolio outcomes are
y / sqrt(d), r' F^-1 r = sum y^2 / d, log det F = sum log d, F^-1 1 = U (U'1 / d). The forecast
is symmetrised, (F + F') / 2, which leaves a symmetric one unchanged bit for bit.

**Ranking** (`rank_models`): each model is ranked on three criteria, lower is better, ties
sharing the average rank (values within 1e-10 of each other, relative, are a tie: a model
scaled by the regime adjustment builds the same minimum-variance portfolio up to rounding) and
a missing value ranking last: the bias of all test portfolios
(``mean_abs_bias_minus_1``, the mean of the four groups' mean |b - 1|, each group weighing the
same so that twenty random portfolios do not outvote the one optimised portfolio), the
minimum-variance realised volatility and the Gaussian negative log-likelihood. ``score`` is the
mean of the three ranks and ``rank`` orders the models by score, ties broken by the rank on the
likelihood, then on the minimum-variance volatility, then on the bias, then the model name. Calibration, the
usefulness of the inverse for portfolio construction and the probabilistic fit of the whole
matrix each get one vote: no single statistic says which covariance is best (a forecast scaled
up wins on bias of optimised portfolios, one shrunk towards a constant on the minimum-variance
test), and ranks, unlike a weighted sum, need no exchange rate between the criteria's units.
QLIKE is reported but not ranked on: it is the univariate form of the likelihood.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from factorcov_pipeline.core.backtest import (
    PORTFOLIO_KIND_FACTOR,
    PORTFOLIO_KIND_RANDOM,
    WINDOW_12M,
    bias_report,
    random_portfolio_names,
    rolling_bias,
)
from factorcov_pipeline.core.blas import one_blas_thread
from factorcov_pipeline.core.eigen import RANK_RTOL
from factorcov_pipeline.core.forecaster import ANNUALISATION_DAYS

PORTFOLIO_KIND_EIGEN = "eigen"
PORTFOLIO_KIND_MIN_VARIANCE = "min_variance"
MIN_VARIANCE_PORTFOLIO = "min_variance"
GROUPS = (
    PORTFOLIO_KIND_FACTOR,
    PORTFOLIO_KIND_RANDOM,
    PORTFOLIO_KIND_EIGEN,
    PORTFOLIO_KIND_MIN_VARIANCE,
)
ROLLING_WINDOW = 63  # sessions (a quarter) of the rolling bias series of the UI's plot

# Why a forecast has no minimum-variance portfolio on a date (`factor_min_variance`).
REASON_NO_FORECAST = "no forecast (a non-finite entry)"
REASON_NOT_POSITIVE_DEFINITE = "forecast not positive definite (no inverse)"

# The ranking's criteria, lower is better, in the order of the tie-break after the score.
RANK_CRITERIA = ("gaussian_nll", "min_variance_volatility", "mean_abs_bias_minus_1")
# Values of a criterion this close (relative) are a tie: equal up to rounding (`_tie_groups`).
TIE_RTOL = 1e-10

LEADERBOARD_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "rank": pl.Int64(),
    "score": pl.Float64(),
    "n_obs": pl.Int64(),
    "first_date": pl.Date(),
    "last_date": pl.Date(),
    "n_singular_forecasts": pl.Int64(),
    "bias_band": pl.Float64(),
    "mean_abs_bias_minus_1": pl.Float64(),
    "min_variance_volatility": pl.Float64(),
    "gaussian_nll": pl.Float64(),
    "qlike": pl.Float64(),
    "factor_mean_bias": pl.Float64(),
    "factor_mean_abs_bias_minus_1": pl.Float64(),
    "factor_share_inside_band": pl.Float64(),
    "factor_share_12m_inside_band": pl.Float64(),
    "random_mean_bias": pl.Float64(),
    "random_mean_abs_bias_minus_1": pl.Float64(),
    "random_share_inside_band": pl.Float64(),
    "random_share_12m_inside_band": pl.Float64(),
    "eigen_mean_bias": pl.Float64(),
    "eigen_mean_abs_bias_minus_1": pl.Float64(),
    "eigen_share_inside_band": pl.Float64(),
    "eigen_share_12m_inside_band": pl.Float64(),
    "min_variance_bias": pl.Float64(),
    "min_variance_share_12m_inside_band": pl.Float64(),
    "min_variance_forecast_volatility": pl.Float64(),
}
"""The leaderboard's columns, a public contract (the `model_leaderboard` table):

- ``model``: the model's name; ``rank``: 1 is best (module docstring, "Ranking");
  ``score``: the mean of the model's ranks on the three criteria (1 = best on all).
- ``n_obs``: scored dates; ``first_date``, ``last_date``: the first and last of them;
  ``n_singular_forecasts``: warm dates with returns whose forecast was not positive definite
  (left out); ``bias_band``: sqrt(2 / n_obs), the half width of the 95% band of a full-sample
  bias statistic around 1.
- ``mean_abs_bias_minus_1`` (criterion): the mean over the four groups below of their mean
  |b - 1| (the minimum-variance group's is |min_variance_bias - 1|).
- ``min_variance_volatility`` (criterion): realised volatility of the minimum-variance
  portfolio, annualised (sqrt(252) x the daily standard deviation, ddof 1), in the returns'
  units; ``min_variance_forecast_volatility``: its forecast, sqrt(252 x mean daily variance).
- ``gaussian_nll`` (criterion): mean Gaussian negative log-likelihood of r_t under
  N(0, F_{t-1}), in nats per date; ``qlike``: mean of r_p^2 / h + log h over dates and the
  factor and random portfolios.
- For ``factor``, ``random``, ``eigen`` (each group's full-sample statistics b, one per
  portfolio): ``<group>_mean_bias`` the mean of b (above 1: risk under-forecast),
  ``<group>_mean_abs_bias_minus_1`` the mean of |b - 1|, ``<group>_share_inside_band`` the
  share of the group's portfolios with b inside 1 +/- bias_band, ``<group>_share_12m_inside_band``
  the mean over the group's portfolios of the share of their 12-month windows inside their band.
- ``min_variance_bias``, ``min_variance_share_12m_inside_band``: the same for the
  minimum-variance portfolio.

Statistics that cannot be computed (fewer than two scored dates, no random portfolios, a
history shorter than 12 months for the 12-month shares) are null.
"""

ROLLING_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "date": pl.Date(),
    "n_obs": pl.Int64(),
    "factor_mean_bias": pl.Float64(),
    "factor_mean_abs_bias_minus_1": pl.Float64(),
    "random_mean_abs_bias_minus_1": pl.Float64(),
    "eigen_mean_abs_bias_minus_1": pl.Float64(),
    "min_variance_bias": pl.Float64(),
}
"""The rolling bias series of a model, for the UI's plot: one row per window of
``rolling_window`` sessions ending on ``date`` (from the first scored date on), ``n_obs`` the
scored dates in it (at least 2), then over the window the mean of the factor portfolios' bias
statistics, the mean |b - 1| of the factor, random and eigen groups and the minimum-variance
portfolio's b (`backtest.rolling_bias`)."""


@dataclass(frozen=True)
class FactorMinVariance:
    """The fully invested minimum-variance factor portfolio of each forecast.

    ``weights`` (T, K), ``variance`` (T,) its forecast variance 1 / 1'F^-1 1, ``reason`` (T,)
    None where defined, else why not (`REASON_NO_FORECAST`, `REASON_NOT_POSITIVE_DEFINITE`);
    weights and variance are NaN there."""

    weights: np.ndarray
    variance: np.ndarray
    reason: np.ndarray


@dataclass(frozen=True)
class ModelEvaluation:
    """The statistics of one model (`evaluate_model`).

    ``summary``: the leaderboard row without ``rank`` and ``score`` (`LEADERBOARD_SCHEMA`);
    ``portfolios``: `backtest.bias_report` of every test portfolio (factor portfolios named as
    the factors, ``random_01``..., ``eigen_01``... by ascending eigenvalue, ``min_variance``)
    with a ``model`` column first, the per-rank eigenportfolio statistics for a plot;
    ``rolling``: the rolling bias series (`ROLLING_SCHEMA`); ``scored``: (T,) the dates used."""

    summary: dict[str, object]
    portfolios: pl.DataFrame
    rolling: pl.DataFrame
    scored: np.ndarray


@dataclass(frozen=True)
class Leaderboard:
    """`leaderboard`'s answer: the ranked ``table`` (`LEADERBOARD_SCHEMA`), and the models'
    ``portfolios`` and ``rolling`` frames stacked (in the input order of the models)."""

    table: pl.DataFrame
    portfolios: pl.DataFrame
    rolling: pl.DataFrame


# ---- inputs ----------------------------------------------------------------------------------


def _as_days(dates: Sequence[dt.date] | np.ndarray) -> np.ndarray:
    day = np.asarray(dates, dtype="datetime64[D]")
    if day.ndim != 1:
        raise ValueError(f"dates must be one-dimensional, got shape {day.shape}")
    if np.isnat(day).any():
        raise ValueError("dates must not contain missing values")
    if np.any(np.diff(day) <= np.timedelta64(0, "D")):
        bad = int(np.flatnonzero(np.diff(day) <= np.timedelta64(0, "D"))[0]) + 1
        raise ValueError(f"dates must be strictly increasing (date {day[bad]} at position {bad})")
    return day


def _check_shapes(
    t: int,
    names: list[str],
    returns: np.ndarray,
    cov: np.ndarray,
    random_weights: np.ndarray,
) -> None:
    k = len(names)
    if k < 1:
        raise ValueError("factor_names must name at least one factor")
    if len(set(names)) != k:
        raise ValueError("factor_names must be unique")
    if returns.shape != (t, k):
        raise ValueError(f"factor_returns must be (T, K) = ({t}, {k}), got {returns.shape}")
    if cov.shape != (t, k, k):
        raise ValueError(f"prior_cov_daily must be (T, K, K) = ({t}, {k}, {k}), got {cov.shape}")
    if random_weights.ndim != 2 or random_weights.shape[1] != k:
        raise ValueError(f"random_weights must be (P, K) with K = {k}, got {random_weights.shape}")
    if not np.isfinite(random_weights).all():
        raise ValueError("random_weights must be finite")
    if random_weights.shape[0] and not (np.abs(random_weights).sum(axis=1) > 0).all():
        bad = int(np.flatnonzero(np.abs(random_weights).sum(axis=1) == 0)[0])
        raise ValueError(f"random_weights row {bad} is all zero (a portfolio without risk)")


def _as_warm(warm: np.ndarray, t: int) -> np.ndarray:
    w = np.asarray(warm)
    if w.shape != (t,):
        raise ValueError(f"warm must be (T,) = ({t},), got {w.shape}")
    if w.dtype != np.bool_:
        raise ValueError(f"warm must be boolean (True after the warm-up), got dtype {w.dtype}")
    return w


def _symmetric(cov: np.ndarray) -> np.ndarray:
    """(F + F') / 2: unchanged bit for bit when F is symmetric (a + a is exact, so is / 2)."""
    return 0.5 * (cov + cov.swapaxes(-1, -2))


def _definite(values: np.ndarray) -> np.ndarray:
    """Positive definite: smallest eigenvalue (ascending rows) above `RANK_RTOL` x the largest
    in magnitude (module docstring, "Scored dates")."""
    top = np.abs(values).max(axis=-1)
    return values[..., 0] > RANK_RTOL * top


def _positive_definite(cov: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(T,) True where ``rows`` and F is finite and positive definite (eigenvalues only)."""
    present = rows & np.isfinite(cov).all(axis=(1, 2))
    out = np.zeros(cov.shape[0], dtype=bool)
    if present.any():
        with one_blas_thread():
            out[present] = _definite(np.linalg.eigvalsh(_symmetric(cov[present])))
    return out


def _eigh(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched eigendecomposition of symmetric (n, K, K) matrices (`_symmetric`), eigenvalues
    ascending, each eigenvector's largest-magnitude entry (the first on a tie) made positive.
    One BLAS thread: a stack of small problems (`core.blas`; 20x faster on a loaded machine)."""
    with one_blas_thread():
        d, u = np.linalg.eigh(cov)
    big = np.abs(u).argmax(axis=1)  # (n, K): row of each column's largest entry
    sign = np.sign(np.take_along_axis(u, big[:, None, :], axis=1))  # (n, 1, K), never 0
    return d, u * sign


def scored_dates(
    factor_returns: np.ndarray, prior_cov_daily: np.ndarray, warm: np.ndarray
) -> np.ndarray:
    """(T,) the dates a model is scored on (module docstring, "Scored dates"): the forecast is
    warm, every factor return is finite and F_{t-1} is finite and positive definite."""
    r = np.asarray(factor_returns, dtype=np.float64)
    cov = np.asarray(prior_cov_daily, dtype=np.float64)
    ok = np.asarray(warm, dtype=bool) & np.isfinite(r).all(axis=1)
    return _positive_definite(cov, ok)


def factor_min_variance(prior_cov_daily: np.ndarray) -> FactorMinVariance:
    """The fully invested minimum-variance factor portfolio w = F^-1 1 / 1'F^-1 1 of each
    (K, K) forecast of a (T, K, K) stack (Ledoit & Wolf 2017, section 5), with a reason where
    it does not exist (a non-finite entry, a forecast that is not positive definite) instead of
    a LinAlgError. Computed through F = U D U': F^-1 1 = U (U'1 / d)."""
    cov = np.asarray(prior_cov_daily, dtype=np.float64)
    if cov.ndim != 3 or cov.shape[1] != cov.shape[2]:
        raise ValueError(f"prior_cov_daily must be (T, K, K), got shape {cov.shape}")
    t, k = cov.shape[0], cov.shape[1]
    present = np.isfinite(cov).all(axis=(1, 2))
    weights = np.full((t, k), np.nan)
    variance = np.full(t, np.nan)
    reason = np.full(t, None, dtype=object)
    reason[~present] = REASON_NO_FORECAST
    if present.any():
        d, u = _eigh(_symmetric(cov[present]))
        pos = np.flatnonzero(present)
        ok = _definite(d)
        reason[pos[~ok]] = REASON_NOT_POSITIVE_DEFINITE
        w, s = _min_variance(d[ok], u[ok])
        weights[pos[ok]] = w
        variance[pos[ok]] = 1.0 / s
    return FactorMinVariance(weights, variance, reason)


def _min_variance(d: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights F^-1 1 / s and s = 1'F^-1 1 from the eigenpairs of positive definite F."""
    a = u.sum(axis=1)  # U'1, (n, K)
    inv_one = np.einsum("njk,nk->nj", u, a / d)  # U (U'1 / d) = F^-1 1
    s = np.einsum("nk,nk->n", a, a / d)  # 1'F^-1 1
    return inv_one / s[:, None], s


# ---- one model -------------------------------------------------------------------------------


def _mean(x: np.ndarray) -> float:
    """Mean of the finite values; NaN when there are none (no warning)."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else math.nan


def _row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of each row's finite values; NaN for a row without any (no warning)."""
    ok = np.isfinite(x)
    count = ok.sum(axis=1)
    total = np.where(ok, x, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nan_to_none(row: dict[str, object]) -> dict[str, object]:
    return {
        key: None if isinstance(v, float) and not math.isfinite(v) else v for key, v in row.items()
    }


def evaluate_model(
    dates: Sequence[dt.date] | np.ndarray,
    factor_names: Sequence[str],
    factor_returns: np.ndarray,
    prior_cov_daily: np.ndarray,
    warm: np.ndarray,
    random_weights: np.ndarray,
    *,
    model: str = "default",
    sample: np.ndarray | None = None,
    window_12m: int = WINDOW_12M,
    rolling_window: int = ROLLING_WINDOW,
) -> ModelEvaluation:
    """Out-of-sample statistics of one covariance model (module docstring).

    Parameters
    ----------
    dates : (T,) dates, strictly increasing; the sessions t of the outcomes.
    factor_names : (K,) unique factor names, the order of the arrays' factor axes.
    factor_returns : (T, K) realised factor returns r_t; a row with a NaN is a session without
        returns (skipped).
    prior_cov_daily : (T, K, K) the DAILY covariance forecast F_{t-1} made at the previous
        session, aligned to t; NaN where there is none (the first session).
    warm : (T,) bool, whether the forecast F_{t-1} that t is scored against was warm (the
        stored ``warm`` flag of the forecast of t-1); warm-up forecasts are not scored.
    random_weights : (P, K) the random test portfolios, in ``factor_names`` order: pass those of
        `forecast_bias` (`backtest.random_portfolio_weights` with the file's count and seed) so
        that the leaderboard and the forecast_bias tables score the same portfolios. P may be 0.
    model : the model's name, carried into the frames.
    sample : optional (T,) bool, the dates allowed (`leaderboard`'s common sample); the scored
        dates are those of `scored_dates` inside it.
    window_12m : sessions of the rolling windows of the 12-month statistics (252).
    rolling_window : sessions of the rolling bias series (`ROLLING_SCHEMA`, 63).

    Returns
    -------
    ModelEvaluation
        the leaderboard row's statistics (`LEADERBOARD_SCHEMA` without rank and score), every
        test portfolio's `bias_report`, the rolling bias series and the scored dates.

    Notes
    -----
    Batched over dates (one `numpy.linalg.eigh` of the scored forecasts), no loop over dates
    or portfolios.
    """
    day = _as_days(dates)
    names = [str(n) for n in factor_names]
    r = np.asarray(factor_returns, dtype=np.float64)
    cov = np.asarray(prior_cov_daily, dtype=np.float64)
    w_rand = np.asarray(random_weights, dtype=np.float64)
    t, k = day.size, len(names)
    warm_b = _as_warm(warm, t)
    _check_shapes(t, names, r, cov, w_rand)
    if window_12m < 2 or rolling_window < 2:
        raise ValueError("window_12m and rolling_window must be >= 2 sessions")
    allowed = np.ones(t, dtype=bool) if sample is None else np.asarray(sample, dtype=bool)
    if allowed.shape != (t,):
        raise ValueError(f"sample must be (T,) = ({t},), got {allowed.shape}")

    # candidates: warm dates with every return and a finite forecast; decomposed once
    returns_ok = np.isfinite(r).all(axis=1)
    candidate = warm_b & returns_ok & np.isfinite(cov).all(axis=(1, 2))
    cand = np.flatnonzero(candidate)
    cs = _symmetric(cov[cand])
    d, u = _eigh(cs) if cand.size else (np.empty((0, k)), np.empty((0, k, k)))
    definite = _definite(d) if cand.size else np.zeros(0, dtype=bool)
    n_singular = int((~definite).sum())
    use = definite & allowed[cand]
    idx = cand[use]
    d, u = d[use], u[use]
    scored = np.zeros(t, dtype=bool)
    scored[idx] = True
    n = idx.size

    rr = r[idx]
    c = cs[use]
    p = w_rand.shape[0]
    w_test = np.vstack([np.eye(k), w_rand])  # factor and random portfolios, (K + P, K)
    with one_blas_thread():
        h = np.einsum("pk,nkl,pl->np", w_test, c, w_test, optimize=True)  # forecast variances
        rp = rr @ w_test.T
        y = np.einsum("njk,nj->nk", u, rr)  # eigenportfolio returns u_k' r
        w_mv, s = _min_variance(d, u)
        r_mv = np.einsum("nk,nk->n", w_mv, rr)
    z = np.hstack([rp / np.sqrt(h), y / np.sqrt(d), (r_mv * np.sqrt(s))[:, None]])

    port_names = names + random_portfolio_names(p) + _eigen_names(k) + [MIN_VARIANCE_PORTFOLIO]
    kinds = np.repeat(np.array(GROUPS, dtype=object), [k, p, k, 1]).tolist()
    lo = int(idx[0]) if n else t  # the bias grid starts at the first scored date
    grid = np.full((max(t - lo, 1), z.shape[1]), np.nan)  # one empty row when nothing is scored
    grid[idx - lo] = z
    report = bias_report(grid, port_names, kinds, window_12m)

    b, low, high, share12 = (
        report[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for c in ("full_sample_bias", "band_low", "band_high", "share_12m_inside_band")
    )
    inside = (b >= low) & (b <= high)
    kind_arr = np.asarray(kinds, dtype=object)
    row: dict[str, object] = {
        "model": model,
        "n_obs": n,
        "first_date": day[idx[0]].astype(dt.date) if n else None,
        "last_date": day[idx[-1]].astype(dt.date) if n else None,
        "n_singular_forecasts": n_singular,
        "bias_band": math.sqrt(2.0 / n) if n >= 2 else math.nan,
    }
    group_abs = []
    for g in GROUPS[:3]:
        sel = kind_arr == g
        bg = b[sel]
        defined = np.isfinite(bg)
        row[f"{g}_mean_bias"] = _mean(bg)
        row[f"{g}_mean_abs_bias_minus_1"] = _mean(np.abs(bg - 1.0))
        row[f"{g}_share_inside_band"] = (
            float(inside[sel][defined].mean()) if defined.any() else math.nan
        )  # a group's portfolios are all defined or none (same dates)
        row[f"{g}_share_12m_inside_band"] = _mean(share12[sel])
        group_abs.append(row[f"{g}_mean_abs_bias_minus_1"])
    row["min_variance_bias"] = float(b[-1])
    row["min_variance_share_12m_inside_band"] = float(share12[-1])
    group_abs.append(abs(float(b[-1]) - 1.0))
    row["mean_abs_bias_minus_1"] = _mean(np.asarray(group_abs))

    enough = n >= 2
    row["min_variance_volatility"] = (
        float(np.std(r_mv, ddof=1) * math.sqrt(ANNUALISATION_DAYS)) if enough else math.nan
    )
    row["min_variance_forecast_volatility"] = (
        float(math.sqrt(ANNUALISATION_DAYS * np.mean(1.0 / s))) if n else math.nan
    )
    nll = 0.5 * (k * math.log(2.0 * math.pi) + np.log(d).sum(axis=1) + (y * y / d).sum(axis=1))
    row["gaussian_nll"] = float(nll.mean()) if n else math.nan
    row["qlike"] = float((rp * rp / h + np.log(h)).mean()) if n else math.nan

    portfolios = report.select(pl.lit(model, dtype=pl.String).alias("model"), pl.all())
    rolling = _rolling(model, day[lo:], grid, kind_arr, rolling_window)
    summary = _nan_to_none({key: row.get(key) for key in LEADERBOARD_SCHEMA if key in row})
    return ModelEvaluation(summary, portfolios, rolling, scored)


def _eigen_names(k: int) -> list[str]:
    """``eigen_01``... by ascending eigenvalue (zero-padded to at least two digits)."""
    width = max(2, len(str(k)))
    return [f"eigen_{i + 1:0{width}d}" for i in range(k)]


def _rolling(
    model: str, days: np.ndarray, grid: np.ndarray, kinds: np.ndarray, window: int
) -> pl.DataFrame:
    """The rolling bias series (`ROLLING_SCHEMA`) of the outcome grid from the first scored
    date: `backtest.rolling_bias` per portfolio, then the group means per window."""
    if grid.shape[0] < window:
        return pl.DataFrame(schema=ROLLING_SCHEMA)
    roll, n_roll = rolling_bias(grid, window)
    n_obs = n_roll.max(axis=1)  # every test portfolio has an outcome on every scored date
    keep = n_obs >= 2
    roll = roll[keep]
    dev = np.abs(roll - 1.0)
    out = pl.DataFrame(
        {
            "model": [model] * int(keep.sum()),
            "date": days[window - 1 :][keep],
            "n_obs": n_obs[keep],
            "factor_mean_bias": _row_mean(roll[:, kinds == PORTFOLIO_KIND_FACTOR]),
            "factor_mean_abs_bias_minus_1": _row_mean(dev[:, kinds == PORTFOLIO_KIND_FACTOR]),
            "random_mean_abs_bias_minus_1": _row_mean(dev[:, kinds == PORTFOLIO_KIND_RANDOM]),
            "eigen_mean_abs_bias_minus_1": _row_mean(dev[:, kinds == PORTFOLIO_KIND_EIGEN]),
            "min_variance_bias": roll[:, -1],
        }
    )
    return out.cast(ROLLING_SCHEMA).fill_nan(None)  # type: ignore[arg-type]


# ---- several models --------------------------------------------------------------------------


def rank_models(stats: pl.DataFrame | Sequence[ModelEvaluation]) -> pl.DataFrame:
    """The leaderboard: one row per model, ``model``, ``rank``, ``score`` and the statistics
    (`LEADERBOARD_SCHEMA`), ordered by rank.

    Rule (module docstring, "Ranking"): per criterion of `RANK_CRITERIA` (lower is better) the
    models' ranks, ties sharing the average rank (`polars.Expr.rank` "average"; values within
    a relative `TIE_RTOL` of each other are a tie, `_tie_groups`) and a missing value ranking
    after every present one; ``score`` is the mean of the three ranks; ``rank`` orders by score,
    then the ranks on gaussian_nll, min_variance_volatility, mean_abs_bias_minus_1, then the
    model name, so that it is a permutation of 1..M whatever the ties. A model without any
    statistic (nothing scored after its warm-up) has a null rank and score and comes last:
    ranking it by name would crown a model that was never tested.

    ``stats`` is `ModelEvaluation`s or a frame of their summaries (at least ``model`` and the
    criteria; other columns of `LEADERBOARD_SCHEMA` missing from it are null).
    """
    if isinstance(stats, pl.DataFrame):
        frame = stats
    else:
        rows = [e.summary for e in stats]
        schema = {c: t for c, t in LEADERBOARD_SCHEMA.items() if c not in ("rank", "score")}
        frame = pl.DataFrame(rows, schema=schema, orient="row")
    missing = {"model", *RANK_CRITERIA} - set(frame.columns)
    if missing:
        raise ValueError(f"rank_models needs the columns {sorted(missing)}")
    if frame["model"].null_count() or frame["model"].n_unique() != frame.height:
        raise ValueError("rank_models needs one row per model (unique, non-null model names)")
    frame = frame.with_columns(
        [pl.col(c).cast(pl.Float64).fill_nan(None) for c in RANK_CRITERIA]
    ).with_columns(
        [
            pl.lit(None, dtype=t).alias(c)
            for c, t in LEADERBOARD_SCHEMA.items()
            if c not in frame.columns and c not in ("rank", "score")
        ]
    )
    # A model with no statistic at all (no date scored yet: its history is within the
    # warm-up) is not ranked: rank and score null, listed after the ranked ones by name.
    unscored = pl.all_horizontal([pl.col(c).is_null() for c in RANK_CRITERIA])
    waiting = frame.filter(unscored).sort("model")
    frame = frame.filter(~unscored)
    ranks = [f"_rank_{c}" for c in RANK_CRITERIA]
    scored = frame.with_columns(
        [
            pl.Series(r, _tie_groups(frame[c].to_numpy())).rank("average").cast(pl.Float64)
            for r, c in zip(ranks, RANK_CRITERIA, strict=True)
        ]
    ).with_columns(pl.mean_horizontal(ranks).alias("score"))
    ordered = scored.sort(["score", *ranks, "model"])
    out = ordered.with_columns(pl.int_range(1, ordered.height + 1, dtype=pl.Int64).alias("rank"))
    waiting = waiting.with_columns(
        pl.lit(None, dtype=pl.Int64).alias("rank"), pl.lit(None, dtype=pl.Float64).alias("score")
    )
    columns = list(LEADERBOARD_SCHEMA)
    return pl.concat([out.select(columns), waiting.select(columns)]).cast(LEADERBOARD_SCHEMA)  # type: ignore[arg-type]


def _tie_groups(values: np.ndarray) -> np.ndarray:
    """An ordered group key per value, equal for values equal up to rounding: sorted, a value
    within `TIE_RTOL` (relative) of the one before it joins its group; a missing value (None,
    NaN) ranks after every present one and ties only with other missing values.

    Why: two models can compute one quantity by different roundings. The volatility regime
    adjustment multiplies a model's covariance by a scalar, so its minimum-variance portfolio
    is the model's own and the realised volatilities agree to ~1e-16 relative but not bit for
    bit (0.005117227095132523 and ...534 on the S&P 500 sample): ranked as they stand, the
    17th digit would decide a criterion."""
    x = np.asarray(values, dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.inf)
    order = np.argsort(x, kind="stable")
    s = x[order]
    with np.errstate(invalid="ignore"):  # inf - inf between missing values: NaN, not a tie
        gap = np.diff(s)
    scale = np.maximum(np.abs(s[1:]), np.abs(s[:-1]))
    same = (s[1:] == s[:-1]) | (np.isfinite(gap) & (gap <= TIE_RTOL * scale))
    keys = np.empty(x.size, dtype=np.int64)
    keys[order] = np.concatenate([[0], np.cumsum(~same)]) if x.size else []
    return keys


def leaderboard(
    dates: Sequence[dt.date] | np.ndarray,
    factor_names: Sequence[str],
    factor_returns: np.ndarray,
    forecasts: Mapping[str, tuple[np.ndarray, np.ndarray]],
    random_weights: np.ndarray,
    *,
    common_sample: bool = True,
    window_12m: int = WINDOW_12M,
    rolling_window: int = ROLLING_WINDOW,
) -> Leaderboard:
    """Score and rank several models of the same factor returns.

    ``forecasts`` maps each model's name to its ``(prior_cov_daily, warm)`` (`evaluate_model`);
    the other arguments are shared. With ``common_sample`` (the default) every model is scored
    on the dates scored for all of them (`scored_dates`' intersection), so that the statistics
    compare the models over one period; without it each model uses its own scored dates.
    """
    if not forecasts:
        raise ValueError("leaderboard needs at least one model")
    r = np.asarray(factor_returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"factor_returns must be (T, K), got shape {r.shape}")
    sample = None
    if common_sample:
        sample = np.ones(r.shape[0], dtype=bool)
        for name, (cov, warm) in forecasts.items():
            cov = np.asarray(cov, dtype=np.float64)
            if cov.shape != (r.shape[0], r.shape[1], r.shape[1]):
                raise ValueError(
                    f"model {name}: prior_cov_daily must be (T, K, K) = "
                    f"({r.shape[0]}, {r.shape[1]}, {r.shape[1]}), got {cov.shape}"
                )
            try:
                warm_b = _as_warm(warm, r.shape[0])
            except ValueError as exc:
                raise ValueError(f"model {name}: {exc}") from exc
            sample &= scored_dates(r, cov, warm_b)
    evaluations = []
    for name, (cov, warm) in forecasts.items():
        try:
            evaluations.append(
                evaluate_model(
                    dates,
                    factor_names,
                    r,
                    cov,
                    warm,
                    random_weights,
                    model=name,
                    sample=sample,
                    window_12m=window_12m,
                    rolling_window=rolling_window,
                )
            )
        except ValueError as exc:
            raise ValueError(f"model {name}: {exc}") from exc
    return Leaderboard(
        table=rank_models(evaluations),
        portfolios=pl.concat([e.portfolios for e in evaluations]),
        rolling=pl.concat([e.rolling for e in evaluations]),
    )
