"""Bias statistics: the standard evaluation of the factor covariance forecasts.

A risk forecast is unbiased when the realised return of a portfolio, divided by the volatility
forecast made the day before, has unit standard deviation. For a portfolio with factor weights
w (unit exposure to one factor, or a fixed random factor portfolio), the standardised outcome of
date t is

    z_t = r_t / sigma_t,   r_t = w' f_t,   sigma_t^2 = w' Sigma_{t-1} w,

with Sigma_{t-1} the DAILY covariance forecast made at the close of t-1, and the bias statistic
over a window of T dates is the sample standard deviation of z,

    b = sqrt( 1/(T-1) * sum_t (z_t - mean z)^2 ),

(Menchero, Orr and Wang, "The Barra US Equity Model (USE4) Methodology Notes", MSCI 2011,
section "Bias statistics"; Connor, Goldberg and Korajczyk, "Portfolio Risk Analysis", Princeton
2010, chapter on evaluating risk forecasts). b > 1 means risk was under-forecast, b < 1 over-
forecast. For normal z with a correct forecast, b has standard error about 1/sqrt(2T), so the
approximate 95% confidence band is 1 +/- sqrt(2/T).

Windows: we use ROLLING windows of `window` consecutive dates (step one date), so that every
date after the first window has a bias statistic (a time series to plot and monitor).
Consecutive windows overlap and their statistics are strongly autocorrelated: the share of
windows inside the band in `bias_summary` is a descriptive number, not a count of independent
tests. Dates whose z is undefined (no forecast on the first date, a missing return, a
non-positive forecast variance) are left out of their windows; `n_obs` counts the dates used.

Everything is vectorised: the rolling moments come from cumulative sums (no loop over dates).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl

PORTFOLIO_KIND_FACTOR = "factor"
PORTFOLIO_KIND_RANDOM = "random"

FORECAST_BIAS_SCHEMA: dict[str, pl.DataType] = {
    "window_end": pl.Date(),
    "portfolio": pl.String(),
    "portfolio_kind": pl.String(),
    "n_obs": pl.Int32(),
    "bias": pl.Float64(),
}

BIAS_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "portfolio": pl.String(),
    "portfolio_kind": pl.String(),
    "mean_bias": pl.Float64(),
    "mean_abs_bias_minus_1": pl.Float64(),
    "share_inside_band": pl.Float64(),
}


def _name_words(name: str) -> list[int]:
    """A factor name as eight 32-bit words (its SHA-256), the entropy of its weights' stream."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]


def random_portfolio_weights(
    factor_names: Sequence[str], n_portfolios: int, seed: int = 0
) -> np.ndarray:
    """Fixed random factor portfolios, (n_portfolios, K) over ``factor_names``, each of unit
    Euclidean norm.

    The weights of a factor are i.i.d. standard normal draws from its own stream,
    `np.random.default_rng([seed, *sha256(name)])`, so a portfolio's weight on a factor is keyed
    by the factor's NAME: the same factors in another order (a user file's order, the model's
    Market-styles-sectors order) give the same portfolios, and a model with a factor more or
    less keeps the other factors' relative weights. The portfolios mix all factors (USE4 notes,
    random active factor portfolios); the bias statistic is scale-free, so the normalisation
    is cosmetic.
    """
    names = list(factor_names)
    if not names or n_portfolios < 0:
        raise ValueError("need at least one factor and n_portfolios >= 0")
    if len(set(names)) != len(names):
        raise ValueError("factor_names must be unique")
    # a loop over factors (K draws of P numbers), not over dates or assets
    cols = [
        np.random.default_rng([seed, *_name_words(n)]).standard_normal(n_portfolios) for n in names
    ]
    w = np.stack(cols, axis=1).reshape(n_portfolios, len(names))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def random_portfolio_names(n_portfolios: int) -> list[str]:
    """`random_01`, `random_02`, ... (zero-padded to at least two digits, sortable)."""
    width = max(2, len(str(n_portfolios)))
    return [f"random_{i + 1:0{width}d}" for i in range(n_portfolios)]


def standardized_outcomes(
    factor_returns: np.ndarray, prior_cov_daily: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """z[t, p] = w_p' f_t / sqrt(w_p' Sigma_{t-1} w_p), (T, P); NaN where undefined.

    `factor_returns` is (T, K), `prior_cov_daily` (T, K, K) with row t the daily forecast made
    at t-1, `weights` (P, K). NaN returns or forecasts, and non-positive forecast variances,
    give NaN.
    """
    f = np.asarray(factor_returns, dtype=np.float64)
    cov = np.asarray(prior_cov_daily, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    r = f @ w.T
    var = np.einsum("pk,tkl,pl->tp", w, cov, w, optimize=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = r / np.sqrt(np.where(var > 0, var, np.nan))
    z[~np.isfinite(z)] = np.nan
    return z


def rolling_bias(z: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling bias statistics of (T, P) standardised outcomes over `window` dates.

    Returns `(bias, n_obs)`, both (T - window + 1, P): row i is the window of dates
    [i, i + window - 1]. `bias` is the sample standard deviation (ddof 1) of the finite z in
    the window, NaN when fewer than two are finite. Moments come from cumulative sums of z
    centred on each column's mean (which keeps the cancellation error near 1e-13).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be (T, P), got shape {z.shape}")
    t, p = z.shape
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if t < window:
        return np.empty((0, p)), np.empty((0, p), dtype=np.int64)
    valid = np.isfinite(z)
    counts = valid.sum(axis=0)
    centre = np.where(counts > 0, np.where(valid, z, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
    zc = np.where(valid, z - centre, 0.0)
    zero = np.zeros((1, p))
    s0 = np.concatenate([zero, np.cumsum(valid, axis=0, dtype=np.float64)])
    s1 = np.concatenate([zero, np.cumsum(zc, axis=0)])
    s2 = np.concatenate([zero, np.cumsum(zc * zc, axis=0)])
    n = s0[window:] - s0[:-window]
    m1 = s1[window:] - s1[:-window]
    m2 = s2[window:] - s2[:-window]
    n_obs = np.rint(n).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (m2 - m1 * m1 / n) / (n - 1.0)
    bias = np.where(n_obs >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return bias, n_obs


def forecast_bias(
    dates: Sequence[dt.date],
    factor_names: Sequence[str],
    factor_returns: np.ndarray,
    prior_cov_daily: np.ndarray,
    window: int = 21,
    n_portfolios: int = 20,
    seed: int = 0,
) -> pl.DataFrame:
    """Rolling bias statistics of the factor and random-portfolio risk forecasts.

    `factor_returns` (T, K) in `factor_names` order; `prior_cov_daily` (T, K, K), row t the
    DAILY covariance forecast made at t-1 (row 0 is NaN: no forecast before the first date).
    Portfolios: one per factor (unit exposure, named as the factor, kind 'factor'), then
    `n_portfolios` fixed random factor portfolios (`random_portfolio_weights(names, n, seed)`,
    named `random_01`..., kind 'random').

    Returns the `forecast_bias` table: `window_end` (Date, last date of the window),
    `portfolio`, `portfolio_kind`, `n_obs` (Int32, dates with a defined z in the window),
    `bias` (Float64), for every rolling window of `window` consecutive dates with at least two
    defined z; rows ordered by window_end, then factors in input order, then random portfolios.
    """
    dates = list(dates)
    names = list(factor_names)
    f = np.asarray(factor_returns, dtype=np.float64)
    cov = np.asarray(prior_cov_daily, dtype=np.float64)
    t = len(dates)
    k = len(names)
    if f.shape != (t, k):
        raise ValueError(f"factor_returns must be (T, K) = ({t}, {k}), got {f.shape}")
    if cov.shape != (t, k, k):
        raise ValueError(f"prior_cov_daily must be (T, K, K) = ({t}, {k}, {k}), got {cov.shape}")
    if len(set(names)) != k:
        raise ValueError("factor_names must be unique")
    day = np.asarray(dates, dtype="datetime64[D]")
    if np.any(np.diff(day) <= np.timedelta64(0, "D")):
        raise ValueError("dates must be strictly increasing")

    weights = np.vstack([np.eye(k), random_portfolio_weights(names, n_portfolios, seed)])
    port_names = names + random_portfolio_names(n_portfolios)
    kinds = [PORTFOLIO_KIND_FACTOR] * k + [PORTFOLIO_KIND_RANDOM] * n_portfolios
    n_port = len(port_names)

    if t < window:
        return pl.DataFrame(schema=FORECAST_BIAS_SCHEMA)
    z = standardized_outcomes(f, cov, weights)
    bias, n_obs = rolling_bias(z, window)
    keep = (n_obs >= 2).ravel()
    n_win = bias.shape[0]
    ends = day[window - 1 :]
    out = pl.DataFrame(
        {
            "window_end": np.repeat(ends, n_port)[keep],
            "portfolio": np.tile(np.asarray(port_names, dtype=object), n_win)[keep],
            "portfolio_kind": np.tile(np.asarray(kinds, dtype=object), n_win)[keep],
            "n_obs": n_obs.ravel()[keep],
            "bias": bias.ravel()[keep],
        }
    )
    return out.cast(FORECAST_BIAS_SCHEMA)  # type: ignore[arg-type]


def bias_summary(df: pl.DataFrame) -> pl.DataFrame:
    """Per-portfolio summary of a `forecast_bias` table.

    `mean_bias`: mean of the window statistics; `mean_abs_bias_minus_1`: mean of |b - 1|;
    `share_inside_band`: share of windows with |b - 1| <= sqrt(2 / n_obs), the approximate 95%
    band of an unbiased forecast with normal outcomes (see the module docstring; windows
    overlap, so this is descriptive). Portfolios keep their order of first appearance.
    """
    missing = {"portfolio", "portfolio_kind", "n_obs", "bias"} - set(df.columns)
    if missing:
        raise ValueError(f"forecast_bias table lacks columns {sorted(missing)}")
    dev = (pl.col("bias") - 1.0).abs()
    band = (2.0 / pl.col("n_obs").cast(pl.Float64)).sqrt()
    out = (
        df.filter(pl.col("bias").is_not_null() & pl.col("bias").is_not_nan())
        .group_by(["portfolio", "portfolio_kind"], maintain_order=True)
        .agg(
            pl.col("bias").mean().alias("mean_bias"),
            dev.mean().alias("mean_abs_bias_minus_1"),
            (dev <= band).cast(pl.Float64).mean().alias("share_inside_band"),
        )
    )
    return out.cast(BIAS_SUMMARY_SCHEMA)  # type: ignore[arg-type]


BIAS_REPORT_SCHEMA: dict[str, pl.DataType] = {
    "portfolio": pl.String(),
    "portfolio_kind": pl.String(),
    "n_obs": pl.Int64(),
    "full_sample_bias": pl.Float64(),
    "band_low": pl.Float64(),
    "band_high": pl.Float64(),
    "n_windows_12m": pl.Int64(),
    "share_12m_inside_band": pl.Float64(),
    "min_12m_bias": pl.Float64(),
    "max_12m_bias": pl.Float64(),
}

WINDOW_12M = 252


def full_sample_bias(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full-sample bias statistic of each column of (T, P) outcomes: the standard deviation
    (ddof 1) of the finite z = r(t+1) / sigma(t), and their count (USE4 notes, section 6).

    This is the reading of a backtest: the mean of short rolling statistics is not an estimate
    of it and reads low when outcomes are fat-tailed (the mean of square roots of short-window
    variances is biased down by Jensen's inequality, more so with kurtosis), so an under-forecast
    can look like an over-forecast. NaN where fewer than two outcomes are finite.
    """
    z = np.asarray(z, dtype=np.float64)
    valid = np.isfinite(z)
    n = valid.sum(axis=0)
    zz = np.where(valid, z, 0.0)
    mean = zz.sum(axis=0) / np.maximum(n, 1)
    ss = np.where(valid, (z - mean) ** 2, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = np.where(n >= 2, np.sqrt(ss / np.maximum(n - 1, 1)), np.nan)
    return bias, n


def bias_report(
    z: np.ndarray,
    names: Sequence[str],
    kinds: Sequence[str],
    window: int = WINDOW_12M,
) -> pl.DataFrame:
    """Per portfolio: the full-sample bias statistic with its approximate 95% band
    1 +/- sqrt(2/T) (normal outcomes, unbiased forecast), and the rolling ``window``-session
    (12-month) statistics: how many, the share inside their own band 1 +/- sqrt(2/n_obs), their
    range (USE4 notes, section 6: 12-month windows). Rolling windows overlap (descriptive).

    A portfolio's 12-month windows start at its first defined outcome: a window reaching back
    before it (the first forecast date has no outcome, nor has a warm-up date left out) is not
    a 12-month window of outcomes (2,263 sessions give 2,262 outcomes and 2,011 windows, not
    2,012). Undefined outcomes after it (a session without returns) stay inside their windows."""
    z = np.asarray(z, dtype=np.float64)
    bias, n = full_sample_bias(z)
    half = np.sqrt(2.0 / np.maximum(n, 1))
    if z.shape[0] >= window:
        roll, n_roll = rolling_bias(z, window)
    else:
        roll, n_roll = np.empty((0, z.shape[1])), np.empty((0, z.shape[1]), dtype=np.int64)
    finite = np.isfinite(z)
    first = np.where(finite.any(axis=0), finite.argmax(axis=0), z.shape[0])
    ok = np.isfinite(roll) & (np.arange(roll.shape[0])[:, None] >= first[None, :])
    inside = ok & (np.abs(roll - 1.0) <= np.sqrt(2.0 / np.maximum(n_roll, 1)))
    n_win = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_win > 0, inside.sum(axis=0) / np.maximum(n_win, 1), np.nan)
    lo = np.where(n_win > 0, np.where(ok, roll, np.inf).min(axis=0, initial=np.inf), np.nan)
    hi = np.where(n_win > 0, np.where(ok, roll, -np.inf).max(axis=0, initial=-np.inf), np.nan)
    out = pl.DataFrame(
        {
            "portfolio": list(names),
            "portfolio_kind": list(kinds),
            "n_obs": n.astype(np.int64),
            "full_sample_bias": bias,
            "band_low": np.where(n >= 2, 1.0 - half, np.nan),
            "band_high": np.where(n >= 2, 1.0 + half, np.nan),
            "n_windows_12m": n_win.astype(np.int64),
            "share_12m_inside_band": share,
            "min_12m_bias": lo,
            "max_12m_bias": hi,
        }
    )
    return out.cast(BIAS_REPORT_SCHEMA).fill_nan(None)  # type: ignore[arg-type]


def factor_bias_report(
    factor_names: Sequence[str],
    factor_returns: np.ndarray,
    prior_cov_daily: np.ndarray,
    n_portfolios: int = 20,
    seed: int = 0,
    window: int = WINDOW_12M,
) -> pl.DataFrame:
    """`bias_report` of the factor and random-portfolio outcomes of `forecast_bias` (same
    portfolios) over the whole history given."""
    k = len(factor_names)
    weights = np.vstack([np.eye(k), random_portfolio_weights(factor_names, n_portfolios, seed)])
    names = list(factor_names) + random_portfolio_names(n_portfolios)
    kinds = [PORTFOLIO_KIND_FACTOR] * k + [PORTFOLIO_KIND_RANDOM] * n_portfolios
    z = standardized_outcomes(factor_returns, prior_cov_daily, weights)
    return bias_report(z, names, kinds, window)


SAMPLE_WARM, SAMPLE_ALL = "warm", "all"
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "sample": pl.String(),
    "portfolio": pl.String(),
    "portfolio_kind": pl.String(),
    "n_obs": pl.Int32(),
    "full_sample_bias": pl.Float64(),
    "band_low": pl.Float64(),
    "band_high": pl.Float64(),
    "n_windows_12m": pl.Int32(),
    "share_12m_inside_band": pl.Float64(),
    "min_12m_bias": pl.Float64(),
    "max_12m_bias": pl.Float64(),
    "first_date": pl.Date(),
    "last_date": pl.Date(),
    "as_of": pl.Date(),
}
ANNUALISATION = 252.0


def outcome_grid(
    outcomes: pl.DataFrame,
) -> tuple[np.ndarray, list[str], list[str], np.ndarray, np.ndarray]:
    """Stored outcomes (``date, portfolio, portfolio_kind, realised_return, predicted_risk,
    warm``, one row per session and portfolio; the `forecast_outcomes` and `risk_backtest`
    tables) on a (T dates, P portfolios) grid: the dates (datetime64[D], ascending), the
    portfolios in order of first appearance and their kinds, the standardised outcomes
    z = realised / (predicted / sqrt(252)) (NaN where the return is missing or the forecast is
    missing or not positive) and whether each cell's forecast was warm."""
    days = np.unique(outcomes["date"].to_numpy().astype("datetime64[D]"))
    names = outcomes["portfolio"].unique(maintain_order=True).to_list()
    firsts = outcomes.unique("portfolio", keep="first", maintain_order=True)
    kinds = firsts["portfolio_kind"].to_list()
    t = np.searchsorted(days, outcomes["date"].to_numpy().astype("datetime64[D]"))
    p = outcomes["portfolio"].replace_strict(names, list(range(len(names)))).to_numpy()
    r = outcomes["realised_return"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    s = outcomes["predicted_risk"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        zz = r / (np.where(s > 0, s, np.nan) / np.sqrt(ANNUALISATION))
    z = np.full((days.size, len(names)), np.nan)
    z[t, p] = zz
    warm = np.zeros((days.size, len(names)), dtype=bool)
    warm[t, p] = outcomes["warm"].fill_null(False).to_numpy()
    return days, names, kinds, z, warm


def outcome_summary(outcomes: pl.DataFrame, window: int = WINDOW_12M) -> pl.DataFrame:
    """The bias summary of stored outcomes (`outcome_grid`), per sample and portfolio:
    `bias_report` of the outcomes whose forecast was warm (sample ``warm``, the default reading:
    the warm-up's forecasts are left out) and of every outcome (sample ``all``), with the first
    and last outcome date used and ``as_of``, the last stored session (`SUMMARY_SCHEMA`; the
    tables `forecast_bias_summary` and `risk_backtest_summary`)."""
    if outcomes.height == 0:
        return pl.DataFrame(schema=SUMMARY_SCHEMA)
    days, names, kinds, z, warm = outcome_grid(outcomes)
    parts = []
    for sample, zs in ((SAMPLE_WARM, np.where(warm, z, np.nan)), (SAMPLE_ALL, z)):
        finite = np.isfinite(zs)
        has = finite.any(axis=0)
        first = finite.argmax(axis=0)
        last = zs.shape[0] - 1 - finite[::-1].argmax(axis=0)
        rep = bias_report(zs, names, kinds, window)
        parts.append(
            rep.with_columns(
                pl.lit(sample).alias("sample"),
                pl.Series("first_date", np.where(has, days[first], np.datetime64("NaT"))),
                pl.Series("last_date", np.where(has, days[last], np.datetime64("NaT"))),
                pl.lit(days[-1].astype(dt.date), dtype=pl.Date).alias("as_of"),
            )
        )
    out = pl.concat(parts).select(list(SUMMARY_SCHEMA))
    return out.cast(SUMMARY_SCHEMA)  # type: ignore[arg-type]
