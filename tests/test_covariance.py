"""Covariance assembly, long/wide frames, and the tutorial's verbatim tie-out on the wide report."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline.core.correlation import CorrelationForecaster
from factorcov_pipeline.core.covariance import (
    correlation_long,
    covariance_from,
    covariance_long,
    covariance_report,
    volatility_long,
)
from factorcov_pipeline.core.factors import DEFAULT_FACTORS
from factorcov_pipeline.core.settings import FactorCovarianceSettings
from factorcov_pipeline.core.tieout import (
    cor_from_vcov,
    tutorial_cor_tieout,
    tutorial_cor_tieout_f64,
    tutorial_vol_tieout,
    tutorial_vol_tieout_f64,
    vcov_from_report,
    vol_from_vcov,
)
from factorcov_pipeline.core.volatility import VolatilityForecaster

NAMES = list(DEFAULT_FACTORS.names)  # Market, styles, sectors: not alphabetical


def _returns(t: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.eye(k) + 0.3 * rng.standard_normal((k, k))
    return (rng.standard_normal((t, k)) @ mix.T) * 0.01 * np.linspace(0.3, 3.0, k)


def _dates(t: int) -> list[date]:
    return [date(2025, 4, 1) + timedelta(days=i) for i in range(t)]


@pytest.fixture(scope="module")
def tutorial_case() -> dict:
    """251 dates x the tutorial's 21 factors, forecasts with the tutorial's default settings."""
    t, k = 251, len(NAMES)
    F = _returns(t, k)
    dates = _dates(t)
    s = FactorCovarianceSettings()
    vol, _ = VolatilityForecaster(s).run(None, F)
    cor, _ = CorrelationForecaster(s).run(None, F)
    cov = covariance_from(vol.vol, cor.corr)
    # the tutorial's df_factor_returns: polars -> pandas, indexed by date, one column per factor
    fret = pl.DataFrame({"date": dates, **{n: F[:, i] for i, n in enumerate(NAMES)}})
    return {
        "F": F,
        "dates": dates,
        "vol": vol.vol,
        "corr": cor.corr,
        "cov": cov,
        "df_factor_returns": fret.to_pandas().set_index("date"),
    }


def test_tutorial_verbatim_tieout(tutorial_case: dict) -> None:
    c = tutorial_case
    df_report = covariance_report(c["dates"], NAMES, c["cov"], dtype=pl.Float32)
    df_vcov = vcov_from_report(df_report)
    df_vol = vol_from_vcov(df_vcov)
    df_cor = cor_from_vcov(df_vcov)
    df_vol_tieout = tutorial_vol_tieout(c["df_factor_returns"], 60.0)
    df_cor_tieout = tutorial_cor_tieout(c["df_factor_returns"], 120.0)
    # the tutorial's two assertions, verbatim
    pd.testing.assert_frame_equal(
        df_vol, df_vol_tieout, check_column_type=False, check_categorical=False, check_like=True
    )
    pd.testing.assert_frame_equal(
        df_cor,
        df_cor_tieout,
        check_index_type=False,
        check_categorical=False,
        check_like=True,
        atol=1e-5,
    )


def test_float64_tieout_to_1e12(tutorial_case: dict) -> None:
    c = tutorial_case
    df_vcov = vcov_from_report(covariance_report(c["dates"], NAMES, c["cov"]))
    df_vol = vol_from_vcov(df_vcov)
    ref_vol = tutorial_vol_tieout_f64(c["df_factor_returns"], 60.0)
    pd.testing.assert_frame_equal(
        df_vol, ref_vol, check_like=True, check_exact=False, rtol=1e-12, atol=0.0
    )
    df_cor = cor_from_vcov(df_vcov)
    ref_cor = tutorial_cor_tieout_f64(c["df_factor_returns"], 120.0)
    pd.testing.assert_frame_equal(
        df_cor, ref_cor, check_like=True, check_exact=False, rtol=0.0, atol=1e-12
    )
    # and directly on the arrays, in our factor order
    np.testing.assert_allclose(c["vol"], ref_vol[NAMES].to_numpy(), rtol=1e-12)


def test_covariance_from_against_loop() -> None:
    rng = np.random.default_rng(1)
    vol = rng.random((3, 4)) + 0.1
    a = rng.standard_normal((3, 4, 6))
    cov0 = a @ np.swapaxes(a, 1, 2)
    sd = np.sqrt(np.diagonal(cov0, axis1=1, axis2=2))
    corr = cov0 / (sd[:, :, None] * sd[:, None, :])
    out = covariance_from(vol, corr)
    for t in range(3):
        for i in range(4):
            for j in range(4):
                assert out[t, i, j] == pytest.approx(
                    vol[t, i] * vol[t, j] * corr[t, i, j], rel=1e-15
                )
    assert np.array_equal(out, np.swapaxes(out, 1, 2))
    with pytest.raises(ValueError):
        covariance_from(vol, corr[:, :3, :3])


def test_long_frames() -> None:
    rng = np.random.default_rng(2)
    names = ["Zeta", "Alpha", "Mid"]
    dates = _dates(4)
    vol = rng.random((4, 3))
    mat = rng.standard_normal((4, 3, 3))
    v = volatility_long(dates, names, vol)
    assert v.columns == ["date", "factor", "volatility"]
    assert v.schema["date"] == pl.Date and v.height == 12
    row = v.filter((pl.col("date") == dates[2]) & (pl.col("factor") == "Alpha"))
    assert row["volatility"].item() == vol[2, 1]
    for fn, col in ((covariance_long, "covariance"), (correlation_long, "correlation")):
        df = fn(dates, names, mat)
        assert df.columns == ["date", "factor_1", "factor_2", col]
        assert df.height == 4 * 9
        for t, i, j in ((0, 0, 2), (3, 2, 1), (1, 1, 1)):
            hit = df.filter(
                (pl.col("date") == dates[t])
                & (pl.col("factor_1") == names[i])
                & (pl.col("factor_2") == names[j])
            )
            assert hit[col].item() == mat[t, i, j]
    with pytest.raises(ValueError):
        volatility_long(dates[:3], names, vol)


def test_report_layout_is_alphabetical_wide() -> None:
    rng = np.random.default_rng(3)
    names = ["Market", "Dividend", "Basic Materials", "Academic & Educational Services"]
    dates = _dates(2)
    cov = rng.standard_normal((2, 4, 4))
    rep = covariance_report(dates, names, cov)
    expected = sorted(names)
    assert rep.columns == ["date", "factor", *expected]
    assert all(rep.schema[n] == pl.Float64 for n in expected)
    assert rep["factor"].to_list() == expected * 2
    assert rep["date"].to_list() == [dates[0]] * 4 + [dates[1]] * 4
    for t in range(2):
        for i, fi in enumerate(names):
            r = rep.filter((pl.col("date") == dates[t]) & (pl.col("factor") == fi))
            for j, fj in enumerate(names):
                assert r[fj].item() == cov[t, i, j]
    rep32 = covariance_report(dates, names, cov, dtype=pl.Float32)
    assert all(rep32.schema[n] == pl.Float32 for n in expected)


def test_covariance_kernel_is_bit_identical_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kernels.outer_scale` performs (vol_i * vol_j) * corr_ij like the numpy expression."""
    pytest.importorskip("numba")
    from factorcov_pipeline.core import ewma as ewma_module

    rng = np.random.default_rng(31)
    vol = rng.uniform(0.05, 0.4, (40, 7))
    vol[3, 2] = np.nan
    a = rng.standard_normal((40, 7, 7))
    corr = a @ np.swapaxes(a, 1, 2)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "0")
    ref = covariance_from(vol, corr)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
    got = covariance_from(vol, corr)
    assert np.array_equal(got, ref, equal_nan=True)
    # non-contiguous inputs are accepted
    got_t = covariance_from(np.asfortranarray(vol), np.asfortranarray(corr))
    assert np.array_equal(got_t, ref, equal_nan=True)
