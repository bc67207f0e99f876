"""The checks' date-restricted form of the tutorial's correlation tie-out equals the verbatim
tutorial code on the same dates, exactly."""

import numpy as np
import pandas as pd
import pytest

from factorcov_pipeline.tieout import (
    tutorial_cor_tieout,
    tutorial_cor_tieout_f64,
    tutorial_cor_tieout_since,
)


def _returns(t: int, k: int, seed: int, gaps: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, k)) * rng.uniform(0.002, 0.02, k)
    if gaps:  # no-observation sessions are NaN rows, as the checks build them
        x[[3, 17, 18]] = np.nan
    index = pd.DatetimeIndex(pd.bdate_range("2025-01-02", periods=t), name="date").as_unit("ns")
    # names NOT in alphabetical order (the model's order: Market, styles, sectors)
    names = ["Market", "Size", "Value", "Energy", "Basic Materials", "A & B Co"][:k]
    return pd.DataFrame(x, index=index, columns=names)


@pytest.mark.parametrize("gaps", [False, True])
@pytest.mark.parametrize("since_row", [0, 1, 40, 59])
def test_restricted_tieout_equals_the_verbatim_code(gaps: bool, since_row: int) -> None:
    df = _returns(60, 6, seed=since_row, gaps=gaps)
    since = df.index[since_row]
    for verbatim, f32 in ((tutorial_cor_tieout, True), (tutorial_cor_tieout_f64, False)):
        full = verbatim(df, 120.0)
        want = full.loc[full.index.get_level_values("date") >= since]
        got = tutorial_cor_tieout_since(df, 120.0, since, float32=f32)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    # and it can fail: a changed return on a wanted date changes the result
    other = df.copy()
    other.iloc[-1, 0] += 0.01
    changed = tutorial_cor_tieout_since(other, 120.0, since, float32=False)
    assert not np.allclose(changed.to_numpy(), want.to_numpy(), equal_nan=True)
