"""Warm-up (issue 21.4) and the bias summaries' arithmetic (21.5, 21.6), core only: the default
warm-up of an EWMA from its half-life, the 12-month windows counted from the first outcome,
and the summary of stored outcomes against pandas written independently."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline.core.backtest import bias_report, outcome_summary
from factorcov_pipeline.core.settings import parse_settings
from factorcov_pipeline.core.warmup import (
    CORRELATION,
    COVARIANCE,
    SPECIFIC,
    VOLATILITY,
    ewma_warmup,
    is_warm,
    warmups,
)


def _kish(weights: np.ndarray) -> float:
    return float(weights.sum() ** 2 / (weights**2).sum())


@pytest.mark.parametrize("h", [8, 60, 120])
def test_one_half_life_holds_half_the_weight_and_a_third_of_the_observations(h):
    """The documented reason for W = ceil(h), from explicit pandas-adjusted weights: after h
    returns the observed weights are half of an unending history's, and Kish's effective
    number of observations is a third of its limit (1 + lambda) / (1 - lambda)."""
    lam = 2.0 ** (-1.0 / h)
    observed = lam ** np.arange(h)[::-1]  # the weights of the first h returns, newest 1
    unending = lam ** np.arange(200 * h)[::-1]
    assert observed.sum() / unending.sum() == pytest.approx(0.5, rel=1e-12)
    assert _kish(observed) == pytest.approx(_kish(unending) / 3.0, rel=1e-9)
    assert _kish(unending) == pytest.approx((1 + lam) / (1 - lam), rel=1e-9)
    assert ewma_warmup(float(h)) == h


def test_default_warmups_of_the_tutorial_settings_and_the_override():
    w = warmups(parse_settings({}))
    assert w == {VOLATILITY: 60, CORRELATION: 120, COVARIANCE: 120, SPECIFIC: 84}
    s = parse_settings(
        {
            "factor_cov_settings": {"halflife_vol": 42.5, "halflife_vra": 70, "halflife_cor": 30},
            "specific_risk_settings": {"halflife": 20, "halflife_vra": 10, "full_history": 25},
        }
    )
    assert warmups(s) == {VOLATILITY: 70, CORRELATION: 30, COVARIANCE: 70, SPECIFIC: 25}
    combined = parse_settings(
        {"factor_cov_settings": {"halflife_cor": 30, "combine_standardized": True}}
    )
    assert warmups(combined)[CORRELATION] == 60  # standardised by the volatility forecasts
    override = parse_settings({"factor_cov_settings": {"warmup_length": 7}})
    assert set(warmups(override).values()) == {7}
    assert is_warm(np.array([0, 7, 8]), 7).tolist() == [False, False, True]


def test_twelve_month_windows_start_at_the_first_outcome():
    """Issue 21.6: the first date has no outcome; 300 dates give 299 outcomes and 48 windows
    of 252 (0.8.0 counted 49: one reached back to the undefined first date). A missing outcome
    later on (a session without returns) stays inside its windows."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((300, 2))
    z[0] = np.nan
    z[150, 1] = np.nan
    rep = bias_report(z, ["a", "b"], ["factor", "factor"], window=252)
    assert rep["n_windows_12m"].to_list() == [48, 48]
    roll = pd.DataFrame(z[1:]).rolling(252, min_periods=2).std(ddof=1).to_numpy()[251:]
    np.testing.assert_allclose(rep["min_12m_bias"].to_numpy(), roll.min(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rep["max_12m_bias"].to_numpy(), roll.max(axis=0), rtol=1e-10)


def test_outcome_summary_against_pandas():
    """Stored outcomes -> `forecast_bias_summary` rows, against pandas written independently:
    z = realised / (predicted / sqrt(252)), missing realised returns and forecasts skipped, the
    `warm` sample leaving the warm-up's outcomes out, windows from each sample's first
    outcome."""
    rng = np.random.default_rng(9)
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(320)]
    rows = []
    for t, d in enumerate(days):
        for p, kind, scale in (("p1", "factor", 1.0), ("p2", "random", 1.3)):
            predicted = 0.2 * (1 + 0.1 * math.sin(t / 9))
            realised = scale * predicted / math.sqrt(252) * rng.standard_t(5) / math.sqrt(5 / 3)
            if t == 100:
                realised = None  # a session without returns
            if p == "p2" and t == 200:
                predicted = None
            rows.append((d, p, kind, realised, predicted, t >= 40))
    frame = pl.DataFrame(
        rows,
        schema=["date", "portfolio", "portfolio_kind", "realised_return", "predicted_risk", "warm"],
        orient="row",
    )
    got = outcome_summary(frame)
    assert got.height == 4
    pdf = frame.to_pandas()
    pdf["z"] = pdf["realised_return"] / (pdf["predicted_risk"] / np.sqrt(252.0))
    for sample in ("warm", "all"):
        for p, kind in (("p1", "factor"), ("p2", "random")):
            sel = pdf[(pdf["portfolio"] == p) & (pdf["warm"] | (sample == "all"))]
            z = sel["z"]
            row = got.filter((pl.col("sample") == sample) & (pl.col("portfolio") == p)).row(
                0, named=True
            )
            assert row["portfolio_kind"] == kind
            assert row["n_obs"] == z.notna().sum()
            assert row["full_sample_bias"] == pytest.approx(z.std(ddof=1), rel=1e-12)
            assert row["band_high"] - 1 == pytest.approx(math.sqrt(2 / z.notna().sum()))
            rolled = z.reset_index(drop=True).rolling(252, min_periods=2).std(ddof=1)[251:]
            assert row["n_windows_12m"] == len(rolled)
            assert row["min_12m_bias"] == pytest.approx(rolled.min(), rel=1e-10)
            inside = (rolled - 1).abs() <= np.sqrt(
                2 / z.reset_index(drop=True).rolling(252).count()[251:]
            )
            assert row["share_12m_inside_band"] == pytest.approx(inside.mean(), rel=1e-12)
            valid = sel[z.notna()]["date"]
            assert (row["first_date"], row["last_date"]) == (valid.min().date(), valid.max().date())
            assert row["as_of"] == days[-1]
    assert outcome_summary(frame.head(0)).height == 0
