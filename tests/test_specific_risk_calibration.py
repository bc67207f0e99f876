"""Calibration of the specific risk forecasts on the planted synthetic model (issue 13).

The tutorial's year, 3,000 assets, default settings: the standardised next-day specific return
z = specific_return(t+1) / (specific_risk(t) / sqrt(252)) has a per-asset standard deviation
whose median over assets is within 1 +/- 0.1 after the specific risk warm-up (its forecasts with
`warm`, from the 85th session with returns). The statistic
is computed here in SQL from the public tables, and the backtest's summary must agree.
"""

import datetime as dt

import duckdb
import numpy as np
import pytest

from factorcov_pipeline.core.asset_panel import asset_panel
from factorcov_pipeline.core.factors import DEFAULT_FACTORS
from factorcov_pipeline.core.panel import long_to_matrix
from factorcov_pipeline.core.settings import SpecificRiskSettings
from factorcov_pipeline.core.specific_risk import SpecificRiskForecaster
from factorcov_pipeline.orchestration.assets.risk_backtest import specific_bias_by_decile
from factorcov_pipeline.orchestration.assets.specific_risk import read_inputs
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

PER_ASSET_STD = """
WITH d AS (SELECT date, row_number() OVER (ORDER BY date) AS i,
                  lag(date) OVER (ORDER BY date) AS prev
           FROM (SELECT DISTINCT date FROM specific_risk)),
     n AS (SELECT count(*) AS n FROM d),
     z AS (SELECT u.asset_id, u.specific_return / (r.specific_risk / sqrt(252)) AS z
           FROM specific_returns u JOIN d ON u.date = d.date
           JOIN specific_risk r ON r.asset_id = u.asset_id AND r.date = d.prev
           WHERE r.warm)
SELECT asset_id, stddev_samp(z) AS s, count(*) AS k FROM z GROUP BY asset_id HAVING count(*) >= 20
"""


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    db = tmp_path_factory.mktemp("calibration") / "fc.duckdb"
    result = run_range(
        dt.date(2025, 3, 31),
        dt.date(2026, 3, 31),
        FactorcovStorage(database=str(db)),
        "",
        logger=quiet_logger(),
        selection=["universe", "exposures", "factor_returns", "specific_risk"],
    )
    assert result.success, failure_messages(result)
    return db


def test_median_per_asset_bias_within_ten_percent_after_the_warm_up(year):
    with duckdb.connect(str(year), read_only=True) as con:
        per_asset = con.execute(PER_ASSET_STD).df()
    assert len(per_asset) > 2500
    median = float(np.median(per_asset["s"]))
    assert abs(median - 1.0) <= 0.1, median
    # the backtest reports the same statistic (decile 0 = all assets), and per size decile
    summary = specific_bias_by_decile(Store(year), dt.date(2026, 3, 31))
    overall = summary.filter(summary["size_decile"] == 0)
    assert overall["n_assets"][0] == len(per_asset)
    np.testing.assert_allclose(overall["median_asset_bias"][0], median, rtol=1e-12)
    deciles = summary.filter(summary["size_decile"] > 0)
    assert deciles.height == 10
    assert (abs(deciles["median_asset_bias"] - 1.0) <= 0.15).all(), deciles


def test_stored_day_by_day_recursion_equals_one_block_run(year):
    """The asset steps one date at a time from the stored state (chunks of sessions, each a
    transaction); one call of the forecaster over the whole year gives the same numbers."""
    store = Store(year)
    dates = store.stored_dates("factor_returns")
    expo, spec = read_inputs(store, DEFAULT_FACTORS.styles, dates[0], dates[-1])
    panel = asset_panel(dates, expo, DEFAULT_FACTORS.styles, spec)
    fc, _ = SpecificRiskForecaster(SpecificRiskSettings()).run(
        None, panel.asset_ids, panel.specific_returns, panel.caps, panel.categories, panel.styles
    )
    stored = store.read("SELECT date, asset_id, specific_risk FROM specific_risk")
    got = long_to_matrix(stored, dates, panel.asset_ids.tolist(), "specific_risk", key="asset_id")
    np.testing.assert_array_equal(got, fc.specific_risk)
