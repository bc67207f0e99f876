"""The fixed bias summary (issue 13): full-sample statistic std(r(t+1)/sigma(t)) and 12-month
windows, against pandas."""

import numpy as np
import pandas as pd

from factorcov_pipeline.core.backtest import (
    bias_report,
    factor_bias_report,
    full_sample_bias,
    rolling_bias,
    standardized_outcomes,
)


def test_full_sample_bias_is_the_standard_deviation_of_z() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_t(4, (600, 3)) * [1.0, 1.2, 0.8]
    z[rng.random(z.shape) < 0.05] = np.nan
    bias, n = full_sample_bias(z)
    np.testing.assert_allclose(bias, pd.DataFrame(z).std(ddof=1).to_numpy(), rtol=1e-13)
    np.testing.assert_array_equal(n, np.isfinite(z).sum(axis=0))


def test_mean_of_short_windows_reads_low_for_fat_tails_but_the_full_sample_does_not() -> None:
    """The reason for the fix: t(3) outcomes scaled to unit variance are correctly forecast,
    yet the mean of 21-session statistics is well below 1; the full-sample statistic is ~1."""
    rng = np.random.default_rng(1)
    z = rng.standard_t(3, (20000, 1)) / np.sqrt(3.0)
    short, _ = rolling_bias(z, 21)
    assert np.nanmean(short) < 0.93
    assert abs(full_sample_bias(z)[0][0] - 1.0) < 0.05


def test_bias_report_against_pandas() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((400, 2)) * [1.0, 1.3]
    rep = bias_report(z, ["a", "b"], ["factor", "random"], window=252)
    roll = pd.DataFrame(z).rolling(252).std(ddof=1).dropna().to_numpy()
    for i, name in enumerate(["a", "b"]):
        row = rep.row(i, named=True)
        assert row["portfolio"] == name and row["n_obs"] == 400
        np.testing.assert_allclose(row["full_sample_bias"], np.std(z[:, i], ddof=1), rtol=1e-13)
        np.testing.assert_allclose(row["band_high"] - 1, np.sqrt(2 / 400), rtol=1e-14)
        assert row["n_windows_12m"] == 149
        np.testing.assert_allclose(row["min_12m_bias"], roll[:, i].min(), rtol=1e-10)
        np.testing.assert_allclose(row["max_12m_bias"], roll[:, i].max(), rtol=1e-10)
        inside = np.mean(np.abs(roll[:, i] - 1) <= np.sqrt(2 / 252))
        np.testing.assert_allclose(row["share_12m_inside_band"], inside, rtol=1e-12)
    # an unbiased forecast sits inside its band, an under-forecast above it
    assert rep["band_low"][0] <= rep["full_sample_bias"][0] <= rep["band_high"][0]
    assert rep["full_sample_bias"][1] > rep["band_high"][1]


def test_factor_bias_report_uses_the_forecast_bias_portfolios() -> None:
    rng = np.random.default_rng(3)
    f = rng.standard_normal((300, 3)) * 0.01
    prior = np.broadcast_to(np.eye(3) * 1e-4, (300, 3, 3)).copy()
    prior[0] = np.nan
    rep = factor_bias_report(["X", "Y", "Z"], f, prior, n_portfolios=2)
    assert rep["portfolio"].to_list() == ["X", "Y", "Z", "random_01", "random_02"]
    z = standardized_outcomes(f, prior, np.eye(3))
    np.testing.assert_allclose(
        rep["full_sample_bias"][:3], np.nanstd(z, axis=0, ddof=1), rtol=1e-13
    )
    assert rep["n_obs"][0] == 299
