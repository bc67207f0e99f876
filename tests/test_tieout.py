"""The checks' date-restricted form of the tutorial's correlation tie-out equals the verbatim
tutorial code on the same dates, exactly."""

import numpy as np
import pandas as pd
import pytest

from factorcov_pipeline.core.tieout import (
    cor_from_vcov,
    cor_from_vcov_verbatim,
    tutorial_cor_tieout,
    tutorial_cor_tieout_f64,
    tutorial_cor_tieout_since,
    vol_from_vcov,
    vol_from_vcov_verbatim,
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


def _vcov(t: int, k: int, seed: int, unsorted_rows: bool) -> pd.DataFrame:
    """A report-shaped df_vcov: index [date, factor], one column per factor, PSD blocks."""
    rng = np.random.default_rng(seed)
    names = ["Market", "Size", "Value", "Energy", "Basic Materials", "A & B Co"][:k]
    dates = pd.DatetimeIndex(pd.bdate_range("2025-01-02", periods=t), name="date").as_unit("ns")
    a = rng.standard_normal((t, k, k)) * 0.01
    blocks = a @ a.transpose(0, 2, 1) + np.eye(k) * 1e-4
    rows = names[::-1] if unsorted_rows else names  # positional diag, rows in another order
    index = pd.MultiIndex.from_product([dates, rows], names=["date", "factor"])
    return pd.DataFrame(blocks.reshape(t * k, k), index=index, columns=names)


@pytest.mark.parametrize("unsorted_rows", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vol_and_cor_from_vcov_equal_the_tutorials_statements(unsorted_rows, dtype) -> None:
    df = _vcov(50, 6, seed=3, unsorted_rows=unsorted_rows).astype(dtype)
    pd.testing.assert_frame_equal(vol_from_vcov(df), vol_from_vcov_verbatim(df), check_exact=True)
    pd.testing.assert_frame_equal(cor_from_vcov(df), cor_from_vcov_verbatim(df), check_exact=True)


def test_irregular_vcov_runs_the_tutorials_groupby() -> None:
    """Rows of one date in another order than the others, or dates out of order: the
    statements as written, same result."""
    df = _vcov(20, 4, seed=5, unsorted_rows=False)
    order = list(range(len(df)))
    order[4], order[5] = 5, 4  # the second date's first two rows swapped
    swapped, backwards = df.iloc[order], df.iloc[::-1]
    pd.testing.assert_frame_equal(
        vol_from_vcov(backwards), vol_from_vcov_verbatim(backwards), check_exact=True
    )
    for irregular in (swapped, backwards):
        pd.testing.assert_frame_equal(
            cor_from_vcov(irregular), cor_from_vcov_verbatim(irregular), check_exact=True
        )
    # and the comparison can fail: one changed variance changes that date's row
    other = df.copy()
    other.iloc[0, 0] *= 1.5
    assert not np.array_equal(vol_from_vcov(other).to_numpy(), vol_from_vcov(df).to_numpy())
