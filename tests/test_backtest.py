"""Tests of the bias statistics against a direct per-date, per-portfolio loop and simulations."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import numpy as np
import polars as pl
import pytest

from factorcov_pipeline.core.backtest import (
    bias_summary,
    forecast_bias,
    random_portfolio_names,
    random_portfolio_weights,
    rolling_bias,
)


def _dates(t: int) -> list[dt.date]:
    start = dt.date(2025, 3, 31)
    return [start + dt.timedelta(days=i) for i in range(t)]


def _random_cov_path(t: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Time-varying daily covariances: a fixed correlation structure times a vol path."""
    a = rng.standard_normal((k, k)) / math.sqrt(k)
    base = (a @ a.T + 0.5 * np.eye(k)) * 1e-4
    scale = np.exp(0.5 * np.sin(np.arange(t) / 40.0))
    return base[None, :, :] * scale[:, None, None]


def _simulate(t: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns f_t ~ N(0, Sigma_t) and the forecasts prior_cov[t] = Sigma_t (row 0 NaN)."""
    rng = np.random.default_rng(seed)
    cov = _random_cov_path(t, k, rng)
    chol = np.linalg.cholesky(cov)
    f = np.einsum("tkl,tl->tk", chol, rng.standard_normal((t, k)))
    prior = cov.copy()
    prior[0] = np.nan
    return f, prior


def _keyed_draws(seed: int, name: str, n: int) -> np.ndarray:
    """The documented recipe of one factor's weights in the n random portfolios: its own
    stream seeded by the seed and the eight little-endian 32-bit words of sha256(name)."""
    digest = hashlib.sha256(name.encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    return np.random.default_rng([seed, *words]).standard_normal(n)


def test_matches_direct_loop() -> None:
    t, k, n_rand, window = 70, 4, 3, 10
    rng = np.random.default_rng(42)
    f, prior = _simulate(t, k, seed=1)
    prior = prior * rng.uniform(0.5, 2.0, t)[:, None, None]
    f[17, 2] = np.nan  # a missing factor return
    prior[40] = np.nan  # a date without forecast
    names = ["Market", "Size", "Value", "Energy"]
    df = forecast_bias(_dates(t), names, f, prior, window=window, n_portfolios=n_rand, seed=7)

    # direct loop, written independently: weights rebuilt from the documented recipe
    w_rand = np.array([_keyed_draws(7, n, n_rand) for n in names]).T
    w_rand = np.array([row / math.sqrt(sum(x * x for x in row)) for row in w_rand])
    ports = [(n, "factor", np.eye(k)[i]) for i, n in enumerate(names)]
    ports += [(f"random_{i + 1:02d}", "random", w_rand[i]) for i in range(n_rand)]
    expected = []
    dates = _dates(t)
    for end in range(window - 1, t):
        for name, kind, w in ports:
            zs = []
            for s in range(end - window + 1, end + 1):
                r = float(np.dot(w, f[s]))
                var = float(w @ prior[s] @ w)
                if math.isfinite(r) and math.isfinite(var) and var > 0:
                    zs.append(r / math.sqrt(var))
            if len(zs) >= 2:
                mean = sum(zs) / len(zs)
                b = math.sqrt(sum((z - mean) ** 2 for z in zs) / (len(zs) - 1))
                expected.append((dates[end], name, kind, len(zs), b))
    exp_df = pl.DataFrame(
        expected,
        schema=["window_end", "portfolio", "portfolio_kind", "n_obs", "bias"],
        orient="row",
    )
    assert df.height == exp_df.height
    assert df["window_end"].to_list() == exp_df["window_end"].to_list()
    assert df["portfolio"].to_list() == exp_df["portfolio"].to_list()
    assert df["portfolio_kind"].to_list() == exp_df["portfolio_kind"].to_list()
    assert df["n_obs"].to_list() == exp_df["n_obs"].to_list()
    np.testing.assert_allclose(df["bias"].to_numpy(), exp_df["bias"].to_numpy(), rtol=1e-12)
    # the windows hit by the gaps really have fewer observations
    assert df.filter(pl.col("window_end") == dates[window - 1])["n_obs"].max() == window - 1
    assert df.filter(pl.col("window_end") == dates[45])["n_obs"].max() == window - 1


def test_schema_and_names() -> None:
    t, k = 40, 3
    f, prior = _simulate(t, k, seed=3)
    df = forecast_bias(_dates(t), ["A", "B", "C"], f, prior, window=21, n_portfolios=12)
    assert df.schema == pl.Schema(
        {
            "window_end": pl.Date,
            "portfolio": pl.String,
            "portfolio_kind": pl.String,
            "n_obs": pl.Int32,
            "bias": pl.Float64,
        }
    )
    first = df.filter(pl.col("window_end") == df["window_end"].min())
    assert first["portfolio"].to_list() == [
        "A",
        "B",
        "C",
        *[f"random_{i:02d}" for i in range(1, 13)],
    ]
    assert first["portfolio_kind"].to_list() == ["factor"] * 3 + ["random"] * 12
    assert df["window_end"].n_unique() == t - 21 + 1
    assert random_portfolio_names(120)[0] == "random_001"
    five = ["A", "B", "C", "D", "E"]
    w = random_portfolio_weights(five, 4, seed=9)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(w, random_portfolio_weights(five, 4, seed=9))
    assert not np.allclose(w, random_portfolio_weights(five, 4, seed=10))
    # too few dates for one window: empty table with the contract's schema
    empty = forecast_bias(_dates(5), ["A", "B", "C"], f[:5], prior[:5], window=21)
    assert empty.height == 0 and empty.schema == df.schema


def test_correct_forecasts_are_unbiased() -> None:
    t, k, window = 2000, 5, 21
    f, prior = _simulate(t, k, seed=11)
    df = forecast_bias(_dates(t), list("ABCDE"), f, prior, window=window, n_portfolios=20)
    summ = bias_summary(df)
    assert summ.height == k + 20
    # E[sample std] of 21 normals is c4 * 1 = 0.9876; allow sampling noise
    assert summ["mean_bias"].min() > 0.94 and summ["mean_bias"].max() < 1.04
    # the 95% band holds in most windows for every portfolio (nominal ~0.93 after the c4 bias)
    assert summ["share_inside_band"].min() > 0.8
    assert summ["share_inside_band"].mean() > 0.88
    # full-sample bias inside 1 +/- sqrt(2/T) for most portfolios
    full = forecast_bias(_dates(t), list("ABCDE"), f, prior, window=t, n_portfolios=20)
    assert full.height == k + 20
    band = np.sqrt(2.0 / full["n_obs"].to_numpy())
    inside = np.abs(full["bias"].to_numpy() - 1.0) <= band
    assert inside.mean() >= 0.8


def test_doubled_volatility_forecast_halves_bias() -> None:
    t, k = 1200, 4
    f, prior = _simulate(t, k, seed=5)
    base = forecast_bias(_dates(t), list("ABCD"), f, prior, window=21, n_portfolios=8)
    scaled = forecast_bias(_dates(t), list("ABCD"), f, 4.0 * prior, window=21, n_portfolios=8)
    # volatility forecasts x2 (covariance x4) divide every z, hence every bias, by exactly 2
    np.testing.assert_allclose(scaled["bias"].to_numpy(), 0.5 * base["bias"].to_numpy(), rtol=1e-12)
    summ = bias_summary(scaled)
    assert np.all(np.abs(summ["mean_bias"].to_numpy() - 0.5) < 0.04)
    assert summ["share_inside_band"].max() < 0.05
    # covariance x2: bias about 1/sqrt(2)
    half = bias_summary(forecast_bias(_dates(t), list("ABCD"), f, 2.0 * prior, n_portfolios=8))
    assert np.all(np.abs(half["mean_bias"].to_numpy() - 1 / math.sqrt(2)) < 0.05)


def test_under_forecast_detected() -> None:
    t, k = 600, 3
    f, prior = _simulate(t, k, seed=8)
    summ = bias_summary(forecast_bias(_dates(t), list("ABC"), f, 0.25 * prior, n_portfolios=4))
    assert np.all(np.abs(summ["mean_bias"].to_numpy() - 2.0) < 0.1)


def test_bias_summary_hand_computed() -> None:
    df = pl.DataFrame(
        {
            "window_end": [dt.date(2025, 1, d) for d in (1, 2, 3, 1, 2)],
            "portfolio": ["x", "x", "x", "random_01", "random_01"],
            "portfolio_kind": ["factor", "factor", "factor", "random", "random"],
            "n_obs": [8, 8, 2, 50, 50],
            "bias": [1.6, 0.9, 1.0, 0.5, 1.1],
        }
    )
    out = bias_summary(df)
    assert out["portfolio"].to_list() == ["x", "random_01"]
    # band for n=8: 0.5 -> 1.6 outside, 0.9 inside; n=2: band 1 -> 1.0 inside
    assert out.row(0) == pytest.approx(("x", "factor", 3.5 / 3, 0.7 / 3, 2 / 3))
    # band for n=50: 0.2 -> 0.5 outside, 1.1 inside
    assert out.row(1) == pytest.approx(("random_01", "random", 0.8, 0.3, 0.5))


def test_rolling_bias_edge_cases() -> None:
    z = np.array([[np.nan, 1.0], [np.nan, 3.0], [2.0, np.nan], [np.nan, 5.0]])
    bias, n_obs = rolling_bias(z, 3)
    np.testing.assert_array_equal(n_obs, [[1, 2], [1, 2]])
    assert np.isnan(bias[0, 0]) and np.isnan(bias[1, 0])
    np.testing.assert_allclose(bias[:, 1], [math.sqrt(2.0), math.sqrt(2.0)], rtol=1e-14)
    with pytest.raises(ValueError, match="window"):
        rolling_bias(z, 1)


def test_rejects_bad_shapes() -> None:
    f, prior = _simulate(30, 3, seed=0)
    with pytest.raises(ValueError, match="factor_returns"):
        forecast_bias(_dates(30), ["A", "B"], f, prior)
    with pytest.raises(ValueError, match="prior_cov_daily"):
        forecast_bias(_dates(30), ["A", "B", "C"], f, prior[:, :2, :2])
    with pytest.raises(ValueError, match="increasing"):
        forecast_bias(_dates(30)[::-1], ["A", "B", "C"], f, prior)


def test_random_portfolios_are_keyed_by_factor_name_not_order() -> None:
    """Issue 21.6: the same factors in another order (a file's order, the model's order) give
    the same portfolios; a factor more keeps the others' relative weights."""
    names = ["Market", "Size", "Value", "Energy", "Financials"]
    w = random_portfolio_weights(names, 6, seed=0)
    order = [3, 0, 4, 2, 1]
    shuffled = random_portfolio_weights([names[i] for i in order], 6, seed=0)
    np.testing.assert_array_equal(shuffled, w[:, order])
    more = random_portfolio_weights([*names, "Momentum"], 6, seed=0)
    ratio = more[:, :5] / w  # the same direction on the common factors, rescaled per row
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, 5)), rtol=1e-13)
    with pytest.raises(ValueError, match="unique"):
        random_portfolio_weights(["A", "A"], 2)
