"""The shipped real factor-ETF data (examples/data, skfolio's BSD-licensed factors dataset) as
a factor returns file: the returns are the closes' simple returns (pandas), every date is an
exchange session, and the file is accepted as a user factor file."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.user_factors import user_factor_returns
from factorcov_pipeline.examples.factor_etfs import REAL_PRICES, real_factor_etf_returns


def test_real_factor_etf_returns_are_the_closes_simple_returns(tmp_path) -> None:
    frame = real_factor_etf_returns()
    prices = pd.read_csv(REAL_PRICES, parse_dates=["Date"]).set_index("Date").sort_index()
    expected = prices.pct_change().iloc[1:]
    wide = frame.to_pandas().pivot(index="date", columns="factor", values="factor_return")
    assert list(wide.columns) == ["MTUM", "QUAL", "SIZE", "USMV", "VLUE"]
    assert len(wide) == 2263 and wide.index[0] == pd.Timestamp("2014-01-03")
    np.testing.assert_allclose(
        wide.to_numpy(), expected[wide.columns].to_numpy(), rtol=1e-15, atol=0
    )
    days = [d.date() for d in wide.index]
    assert all(calendar.is_session(d) for d in days)
    assert days[-1] == dt.date(2022, 12, 28)
    # read and validated as a user factor file (names, sessions, finite returns)
    frame.write_parquet(tmp_path / "etf.parquet")
    user = user_factor_returns(str(tmp_path / "etf.parquet"))
    assert (user.first, user.last) == (days[0], days[-1])
