"""Tests of the constrained cross-sectional regression (core/regression.py).

Every number is tied out against an independent computation written here: the bordered KKT
system of the equality-constrained WLS, statsmodels' GLM.fit_constrained, an explicit per-date
least-squares solve with a different reparameterisation (eliminating the first sector rather
than the largest), and a null-space/lstsq minimum-norm solution for degenerate dates.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.linalg
import scipy.stats
import statsmodels.api as sm
from pydantic import ValidationError

from factorcov_pipeline.core import regression
from factorcov_pipeline.core.factors import (
    GROUP_MARKET,
    GROUP_STYLE,
    GROUP_TRBC,
    STYLE_FACTORS,
    TRBC_SECTORS,
    FactorSet,
)
from factorcov_pipeline.core.regression import (
    THIN_CATEGORY_MIN_ASSETS,
    clip_returns,
    constrained_wls,
    estimate_factor_returns,
    relative_clip_bounds,
)
from factorcov_pipeline.core.settings import (
    FactorCovarianceReportSettingsV2,
    ModelConstructionSettings,
)

FACTORS = FactorSet.build()
NO_CLIP = ModelConstructionSettings(return_clip_bounds=None, return_clip_mad=None)


# ----------------------------------------------------------------------------------------------
# Independent helpers
# ----------------------------------------------------------------------------------------------


def make_panel(
    seed: int,
    n_dates: int,
    n_assets: int,
    factors: FactorSet = FACTORS,
    unbalanced: bool = False,
    sector_probs: np.ndarray | None = None,
    noise: float = 0.01,
) -> tuple[pl.DataFrame, np.ndarray]:
    """A shuffled long panel simulated from a planted factor model; returns (frame, planted f).

    The planted sector returns satisfy the cap-weighted zero-sum constraint of their date, so
    they are identified and an unbiased estimator recovers them.
    """
    rng = np.random.default_rng(seed)
    k = factors.k
    sectors = factors.sectors
    probs = sector_probs if sector_probs is not None else np.full(len(sectors), 1 / len(sectors))
    asset_sector = rng.choice(len(sectors), size=n_assets, p=probs)
    log_cap0 = rng.normal(21.0, 1.5, n_assets)
    if unbalanced:
        entry = rng.integers(0, n_dates // 2, n_assets)
        exit_ = rng.integers(n_dates // 2 + 1, n_dates + 1, n_assets)
        entry[: n_assets // 2] = 0  # half the assets live through the whole panel
        exit_[: n_assets // 2] = n_dates
    else:
        entry = np.zeros(n_assets, dtype=int)
        exit_ = np.full(n_assets, n_dates)
    names = np.array(factors.names)
    groups = np.array(factors.groups)
    style_cols = [i for i in range(k) if groups[i] == GROUP_STYLE]
    sector_cols = [i for i in range(k) if groups[i] == GROUP_TRBC]
    planted = np.zeros((n_dates, k))
    frames = []
    for t in range(n_dates):
        alive = np.flatnonzero((entry <= t) & (t < exit_))
        cap = np.exp(log_cap0[alive] + rng.normal(0, 0.05, alive.size))
        sty = rng.normal(size=(alive.size, len(style_cols)))
        f = np.zeros(k)
        if GROUP_MARKET in factors.groups:
            f[factors.groups.index(GROUP_MARKET)] = rng.normal(0, 0.01)
        f[style_cols] = rng.normal(0, 0.003, len(style_cols))
        fs = rng.normal(0, 0.006, len(sector_cols))
        sec_cap = np.bincount(asset_sector[alive], weights=cap, minlength=len(sector_cols))
        fs -= sec_cap @ fs / sec_cap.sum()
        f[sector_cols] = fs
        planted[t] = f
        x = np.zeros((alive.size, k))
        if GROUP_MARKET in factors.groups:
            x[:, factors.groups.index(GROUP_MARKET)] = 1.0
        x[:, style_cols] = sty
        x[np.arange(alive.size), np.array(sector_cols)[asset_sector[alive]]] = 1.0
        ret = x @ f + rng.normal(0, noise, alive.size) * (cap / cap.mean()) ** -0.25
        cols = {
            "date": np.full(alive.size, np.datetime64("2024-01-02") + t),
            "asset_id": [f"A{i:04d}" for i in alive],
            "asset_return": ret,
            "market_cap": cap,
            "sector": list(np.array(sectors)[asset_sector[alive]]),
        }
        for j, c in enumerate(style_cols):
            cols[str(names[c])] = sty[:, j]
        frames.append(pl.DataFrame(cols))
    frame = pl.concat(frames).with_columns(pl.col("date").cast(pl.Date))
    order = rng.permutation(frame.height)
    return frame[order], planted


def dense_date(
    frame: pl.DataFrame, date: object, factors: FactorSet = FACTORS, column: str = "sector"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(X, y, w, cap, asset_ids) of one date, built column by column from the factor names."""
    sub = frame.filter(pl.col("date") == date).sort("asset_id")
    cols = []
    for name, group in zip(factors.names, factors.groups, strict=True):
        if group == GROUP_MARKET:
            cols.append(np.ones(sub.height))
        elif group == GROUP_STYLE:
            cols.append(sub[name].to_numpy())
        else:
            cols.append((sub[column].to_numpy() == name).astype(float))
    x = np.column_stack(cols)
    cap = sub["market_cap"].to_numpy()
    return x, sub["asset_return"].to_numpy(), np.sqrt(cap), cap, sub["asset_id"].to_list()


def sector_caps(x: np.ndarray, cap: np.ndarray, factors: FactorSet = FACTORS) -> np.ndarray:
    """Constraint row: total cap per sector column, zero elsewhere."""
    mask = np.array([g == GROUP_TRBC for g in factors.groups])
    return (cap @ x) * mask


def kkt(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray, ridge: np.ndarray | None = None
) -> np.ndarray:
    """Equality-constrained WLS via the bordered (KKT) system; columns without data dropped."""
    k = x.shape[1]
    live = (w[:, None] * x**2).sum(axis=0) > 0
    xs, cs = x[:, live], c[live]
    a = xs.T @ (w[:, None] * xs)
    if ridge is not None:
        a = a + np.diag(ridge[live])
    cs = cs / np.linalg.norm(cs)
    m = np.block([[a, cs[:, None]], [cs[None, :], np.zeros((1, 1))]])
    rhs = np.concatenate([xs.T @ (w * y), [0.0]])
    sol = np.linalg.solve(m, rhs)
    f = np.zeros(k)
    f[live] = sol[:-1]
    return f


def reparam_first(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per-date WLS eliminating the FIRST constrained factor, solved by lstsq on sqrt(w) rows."""
    j = int(np.flatnonzero(c)[0])
    others = [i for i in range(x.shape[1]) if i != j]
    # f_j = -sum_{i != j} c_i f_i / c_j  =>  x f = sum_{i != j} (x_i - x_j c_i / c_j) f_i
    z = x[:, others] - np.outer(x[:, j], c[others] / c[j])
    sw = np.sqrt(w)
    g, *_ = np.linalg.lstsq(z * sw[:, None], y * sw, rcond=None)
    f = np.zeros(x.shape[1])
    f[others] = g
    f[j] = -c[others] @ g / c[j]
    return f


def min_norm_reference(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Minimum-norm constrained WLS: orthonormal null-space basis of the active constraints, then
    numpy's minimum-norm lstsq (SVD) on the weighted reduced design."""
    k = x.shape[1]
    empty = (w[:, None] * x**2).sum(axis=0) == 0
    rows = [np.where(empty, 0.0, c)] + [np.eye(k)[i] for i in np.flatnonzero(empty)]
    q = scipy.linalg.null_space(np.vstack(rows))
    sw = np.sqrt(w)
    g, *_ = np.linalg.lstsq((x @ q) * sw[:, None], y * sw, rcond=1e-10)
    return q @ g


def wide_returns(result_frame: pl.DataFrame, factors: FactorSet = FACTORS) -> np.ndarray:
    """(T, K) factor returns from the long output, checking the factor order on the way."""
    dates = result_frame["date"].unique(maintain_order=True)
    f = result_frame["factor_return"].to_numpy().reshape(dates.len(), factors.k)
    assert result_frame["factor"].to_list()[: factors.k] == list(factors.names)
    return f


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ----------------------------------------------------------------------------------------------
# constrained_wls on arrays
# ----------------------------------------------------------------------------------------------


def random_arrays(seed: int, t: int, n: int, k_style: int = 3, n_sec: int = 4):
    """Small padded panel: (X, y, w, c) with Market, styles and sectors; last rows padded."""
    rng = np.random.default_rng(seed)
    k = 1 + k_style + n_sec
    x = np.zeros((t, n, k))
    x[:, :, 0] = 1.0
    x[:, :, 1 : 1 + k_style] = rng.normal(size=(t, n, k_style))
    sec = rng.integers(0, n_sec, size=(t, n))
    sec[:, :n_sec] = np.arange(n_sec)  # every sector present
    x[np.arange(t)[:, None], np.arange(n)[None, :], 1 + k_style + sec] = 1.0
    y = rng.normal(0, 0.02, (t, n))
    cap = np.exp(rng.normal(20, 1.0, (t, n)))
    w = np.sqrt(cap)
    c = np.zeros((t, k))
    for s in range(n_sec):
        c[:, 1 + k_style + s] = np.where(sec == s, cap, 0.0).sum(axis=1)
    return x, y, w, c, cap


def test_constrained_wls_matches_statsmodels_fit_constrained() -> None:
    x, y, w, c, _ = random_arrays(1, t=6, n=80)
    f, resid = constrained_wls(x, y, w, c)
    for t in range(x.shape[0]):
        r = (c[t] / np.linalg.norm(c[t]))[None, :]
        model = sm.GLM(y[t], x[t], family=sm.families.Gaussian(), var_weights=w[t])
        res = model.fit_constrained((r, np.zeros(1)))
        assert rel_err(f[t], np.asarray(res.params)) < 1e-10
        assert rel_err(f[t], kkt(x[t], y[t], w[t], c[t])) < 1e-10
        assert np.max(np.abs(resid[t] - (y[t] - x[t] @ np.asarray(res.params)))) < 1e-12


def test_constrained_wls_matches_other_reparameterisation_and_holds_constraint() -> None:
    x, y, w, c, _ = random_arrays(2, t=10, n=60, k_style=5, n_sec=6)
    f, resid = constrained_wls(x, y, w, c)
    for t in range(x.shape[0]):
        assert rel_err(f[t], reparam_first(x[t], y[t], w[t], c[t])) < 1e-10
        # the constraint holds to rounding, relative to the size of its terms
        assert abs(c[t] @ f[t]) <= 1e-12 * (np.abs(c[t]) @ np.abs(f[t]))
        # residuals are orthogonal to the weighted reduced design (every feasible direction)
        q = scipy.linalg.null_space(c[t][None, :])
        grad = (x[t] @ q).T @ (w[t] * resid[t])
        scale = np.abs((x[t] @ q).T) @ (w[t] * np.abs(y[t]))
        assert np.all(np.abs(grad) <= 1e-12 * scale)


def test_constrained_wls_ignores_padding_even_if_nan() -> None:
    x, y, w, c, _ = random_arrays(3, t=4, n=50)
    f_ref, _ = constrained_wls(x, y, w, c)
    pad = 7
    xp = np.concatenate([x, np.full((4, pad, x.shape[2]), np.nan)], axis=1)
    yp = np.concatenate([y, np.full((4, pad), np.nan)], axis=1)
    wp = np.concatenate([w, np.zeros((4, pad))], axis=1)
    f, resid = constrained_wls(xp, yp, wp, c)
    assert np.max(np.abs(f - f_ref)) <= 1e-15 * np.max(np.abs(f_ref)) * 100
    assert np.all(np.isfinite(resid[:, :50]))


def test_constrained_wls_ridge_matches_kkt() -> None:
    x, y, w, c, _ = random_arrays(4, t=5, n=40)
    ridge = np.zeros_like(c)
    ridge[:, 4:] = 0.3 * w.sum(axis=1)[:, None]
    f, _ = constrained_wls(x, y, w, c, ridge)
    f0, _ = constrained_wls(x, y, w, c)
    for t in range(x.shape[0]):
        assert rel_err(f[t], kkt(x[t], y[t], w[t], c[t], ridge[t])) < 1e-10
    # the penalty shrinks the sector returns
    assert np.sum(f[:, 4:] ** 2) < np.sum(f0[:, 4:] ** 2)


def test_constrained_wls_degenerate_dates_are_defined() -> None:
    x, y, w, c, _ = random_arrays(5, t=4, n=30)
    # date 1: fewer assets than free factors (4 assets, 8 factors, 1 constraint)
    w[1, 4:] = 0.0
    c[1, 4:] = (w[1] ** 2) @ x[1, :, 4:]
    # date 2: collinear styles (style 2 == style 1)
    x[2, :, 2] = x[2, :, 1]
    # date 3: no assets at all
    w[3] = 0.0
    f, resid = constrained_wls(x, y, w, c)
    assert np.all(np.isfinite(f))
    assert np.all(f[3] == 0.0)
    assert rel_err(f[0], kkt(x[0], y[0], w[0], c[0])) < 1e-10
    for t in (1, 2):
        ref = min_norm_reference(x[t], y[t], w[t], c[t])
        assert rel_err(f[t], ref) < 1e-8
        assert abs(c[t] @ f[t]) <= 1e-12 * (np.abs(c[t]) @ np.abs(f[t]))
    # the 4 assets of date 1 are fitted exactly (more free parameters than observations)
    assert np.max(np.abs(resid[1, :4])) < 1e-12


def test_constrained_wls_rejects_bad_weights() -> None:
    x, y, w, c, _ = random_arrays(6, t=2, n=20)
    w[0, 0] = -1.0
    with pytest.raises(ValueError, match="weights"):
        constrained_wls(x, y, w, c)


# ----------------------------------------------------------------------------------------------
# estimate_factor_returns on frames
# ----------------------------------------------------------------------------------------------


def test_estimate_matches_kkt_on_unbalanced_panel() -> None:
    frame, _ = make_panel(10, n_dates=8, n_assets=150, unbalanced=True)
    res = estimate_factor_returns(frame, FACTORS, NO_CLIP, chunk_dates=3)
    f = wide_returns(res.factor_returns)
    dates = res.stats["date"].to_list()
    assert dates == sorted(frame["date"].unique().to_list())
    n_per_date = frame.group_by("date").len().sort("date")["len"].to_list()
    assert res.stats["n_assets"].to_list() == n_per_date
    assert len(set(n_per_date)) > 1  # the panel really is unbalanced
    spec = res.specific_returns
    for t, d in enumerate(dates):
        x, y, w, cap, ids = dense_date(frame, d)
        c = sector_caps(x, cap)
        ref = kkt(x, y, w, c)
        assert rel_err(f[t], ref) < 1e-10
        assert abs(c @ f[t]) <= 1e-12 * (np.abs(c) @ np.abs(f[t]))
        got = spec.filter(pl.col("date") == d).sort("asset_id")
        assert got["asset_id"].to_list() == ids
        assert np.max(np.abs(got["specific_return"].to_numpy() - (y - x @ ref))) < 1e-12
        # weighted uncentred R^2 as documented
        e = y - x @ ref
        r2 = 1 - np.sum(w * e**2) / np.sum(w * y**2)
        assert abs(res.stats["r_squared"][t] - r2) < 1e-10
    assert res.factor_returns["factor_group"].to_list()[: FACTORS.k] == list(FACTORS.groups)
    assert not res.stats["degenerate"].any()


def test_chunking_does_not_change_results() -> None:
    frame, _ = make_panel(11, n_dates=12, n_assets=120, unbalanced=True)
    r1 = estimate_factor_returns(frame, FACTORS, NO_CLIP, chunk_dates=1)
    r64 = estimate_factor_returns(frame, FACTORS, NO_CLIP, chunk_dates=64)
    r5 = estimate_factor_returns(frame, FACTORS, NO_CLIP, chunk_dates=5)
    f1 = r1.factor_returns["factor_return"].to_numpy()
    for other in (r64, r5):
        assert np.max(np.abs(other.factor_returns["factor_return"].to_numpy() - f1)) < 1e-13
        s1 = r1.specific_returns["specific_return"].to_numpy()
        assert np.max(np.abs(other.specific_returns["specific_return"].to_numpy() - s1)) < 1e-13
        assert other.specific_returns["asset_id"].equals(r1.specific_returns["asset_id"])


def test_sorted_input_takes_the_no_sort_path_with_the_same_numbers() -> None:
    shuffled, _ = make_panel(25, n_dates=6, n_assets=90, unbalanced=True)
    ordered = shuffled.sort("date", "asset_id")
    a = estimate_factor_returns(shuffled, FACTORS, NO_CLIP)
    b = estimate_factor_returns(ordered, FACTORS, NO_CLIP)
    assert a.factor_returns.equals(b.factor_returns)
    assert a.specific_returns.equals(b.specific_returns)
    assert a.stats.equals(b.stats)
    # the same date but assets out of order within it is not "sorted": it is sorted first
    swapped = pl.concat([ordered[1:2], ordered[0:1], ordered[2:]])
    assert estimate_factor_returns(swapped, FACTORS, NO_CLIP).specific_returns.equals(
        b.specific_returns
    )


@pytest.mark.parametrize(
    "settings",
    [
        NO_CLIP,
        ModelConstructionSettings(
            return_clip_bounds=None,
            return_clip_mad=None,
            zero_sum_constraints={"trbc": "equal_weighted"},
        ),
        ModelConstructionSettings(
            return_clip_bounds=None, return_clip_mad=None, thin_category_shrinkage=0.05
        ),
    ],
    ids=["mcap", "equal", "ridge"],
)
def test_structured_normal_equations_match_the_padded_dense_design(
    settings: ModelConstructionSettings,
) -> None:
    """estimate_factor_returns (Gram of the dense columns per date + sparse category sums) and
    constrained_wls (the straightforward padded (T, Nmax, K) design) agree to rounding."""
    frame, _ = make_panel(26, n_dates=7, n_assets=110, unbalanced=True)
    res = estimate_factor_returns(frame, FACTORS, settings)
    dates = res.stats["date"].to_list()
    per_date = [dense_date(frame, d) for d in dates]
    n_max = max(x.shape[0] for x, *_ in per_date)
    t, k = len(dates), FACTORS.k
    xp, yp, wp = np.zeros((t, n_max, k)), np.zeros((t, n_max)), np.zeros((t, n_max))
    c, ridge = np.zeros((t, k)), np.zeros((t, k))
    mask = np.array([g == GROUP_TRBC for g in FACTORS.groups])
    for i, (x, y, w, cap, _) in enumerate(per_date):
        n = x.shape[0]
        xp[i, :n], yp[i, :n], wp[i, :n] = x, y, w
        if settings.zero_sum_constraints["trbc"] == "equal_weighted":
            c[i] = (x.sum(axis=0) > 0) * mask
        else:
            c[i] = sector_caps(x, cap)
        ridge[i] = settings.thin_category_shrinkage * w.sum() * mask
    f_ref, resid_ref = constrained_wls(xp, yp, wp, c, ridge)
    f = wide_returns(res.factor_returns)
    assert rel_err(f, f_ref) < 1e-12
    spec = res.specific_returns
    for i, d in enumerate(dates):
        got = spec.filter(pl.col("date") == d)["specific_return"].to_numpy()
        assert np.max(np.abs(got - resid_ref[i, : got.size])) < 1e-14


def test_empty_category_gets_zero_and_leaves_the_constraint() -> None:
    frame, _ = make_panel(12, n_dates=3, n_assets=200)
    d1 = sorted(frame["date"].unique().to_list())[1]
    frame = frame.filter(~((pl.col("date") == d1) & (pl.col("sector") == "Energy")))
    res = estimate_factor_returns(frame, FACTORS, NO_CLIP)
    f = wide_returns(res.factor_returns)
    k_energy = FACTORS.names.index("Energy")
    assert f[1, k_energy] == 0.0
    assert f[0, k_energy] != 0.0
    x, y, w, cap, _ = dense_date(frame, d1)
    ref = kkt(x, y, w, sector_caps(x, cap))
    assert rel_err(f[1], ref) < 1e-10
    assert not res.stats["degenerate"][1]


def test_fewer_assets_than_factors_is_finite_and_min_norm() -> None:
    frame, _ = make_panel(13, n_dates=3, n_assets=150)
    d0 = sorted(frame["date"].unique().to_list())[0]
    keep_ids = frame.filter(pl.col("date") == d0)["asset_id"].sort().to_list()[:9]
    frame = frame.filter((pl.col("date") != d0) | pl.col("asset_id").is_in(keep_ids))
    res = estimate_factor_returns(frame, FACTORS, NO_CLIP)
    f = wide_returns(res.factor_returns)
    assert np.all(np.isfinite(f))
    assert res.stats["degenerate"].to_list() == [True, False, False]
    assert res.stats["n_assets"][0] == 9
    x, y, w, cap, _ = dense_date(frame, d0)
    c = sector_caps(x, cap)
    assert rel_err(f[0], min_norm_reference(x, y, w, c)) < 1e-8
    assert abs(c @ f[0]) <= 1e-12 * (np.abs(c) @ np.abs(f[0]))
    # the other dates are untouched by the fallback of date 0
    for t in (1, 2):
        d = res.stats["date"][t]
        x, y, w, cap, _ = dense_date(frame, d)
        assert rel_err(f[t], kkt(x, y, w, sector_caps(x, cap))) < 1e-10


def test_clipping_counts_and_equals_preclipped_input() -> None:
    frame, _ = make_panel(14, n_dates=4, n_assets=100)
    rng = np.random.default_rng(0)
    shocks = rng.choice([0.0, 0.35, -0.6], size=frame.height, p=[0.9, 0.05, 0.05])
    frame = frame.with_columns(pl.col("asset_return") + shocks)
    settings = ModelConstructionSettings(return_clip_bounds=(-0.1, 0.1), return_clip_mad=None)
    res = estimate_factor_returns(frame, FACTORS, settings)
    expected = (
        frame.group_by("date")
        .agg(((pl.col("asset_return") < -0.1) | (pl.col("asset_return") > 0.1)).sum().alias("n"))
        .sort("date")["n"]
        .to_list()
    )
    assert res.stats["n_clipped"].to_list() == expected
    assert sum(expected) > 0
    pre = frame.with_columns(pl.col("asset_return").clip(-0.1, 0.1))
    ref = estimate_factor_returns(pre, FACTORS, NO_CLIP)
    assert np.array_equal(
        res.factor_returns["factor_return"].to_numpy(),
        ref.factor_returns["factor_return"].to_numpy(),
    )
    # specific return = clipped return - fitted return
    f = wide_returns(res.factor_returns)
    d = res.stats["date"][2]
    x, y, _, _, _ = dense_date(pre, d)
    got = res.specific_returns.filter(pl.col("date") == d).sort("asset_id")
    assert np.max(np.abs(got["specific_return"].to_numpy() - (y - x @ f[2]))) < 1e-14
    assert np.max(np.abs(y)) <= 0.1


# ----------------------------------------------------------------------------------------------
# Return clipping relative to the date's dispersion (return_clip_mad)
# ----------------------------------------------------------------------------------------------

# 1 / Phi^-1(3/4), from scipy, not the module's constant
NORMAL_MAD = 1.0 / scipy.stats.norm.ppf(0.75)


def pandas_relative_clip(frame: pl.DataFrame, c: float, bounds: tuple | None) -> pl.DataFrame:
    """The clipped returns, independently: pandas per date, median +/- c x 1.4826 x MAD, the
    mean absolute deviation x sqrt(pi/2) where the MAD is 0, no clip where both are 0; then the
    fixed bounds."""
    pdf = frame.select("date", "asset_id", "asset_return").to_pandas()
    out = []
    for _, g in pdf.groupby("date"):
        r = g["asset_return"].to_numpy()
        med = np.median(r)
        scale = NORMAL_MAD * np.median(np.abs(r - med))
        if scale == 0.0:
            scale = np.sqrt(np.pi / 2.0) * np.mean(np.abs(r - med))
        if scale > 0.0:
            r = np.minimum(np.maximum(r, med - c * scale), med + c * scale)
        if bounds is not None:
            r = np.minimum(np.maximum(r, bounds[0]), bounds[1])
        out.append(g.assign(clipped=r))
    merged = pl.from_pandas(pd.concat(out)[["date", "asset_id", "clipped"]])
    return frame.join(merged.with_columns(pl.col("date").cast(pl.Date)), on=["date", "asset_id"])


def shocked_panel(seed: int) -> pl.DataFrame:
    """A planted panel with large single-asset shocks, a crisis date (every return -15%, and
    shocks), a date where most returns are exactly 0 (stale prices: MAD 0) and one where all
    are equal."""
    frame, _ = make_panel(seed, n_dates=6, n_assets=120)
    rng = np.random.default_rng(seed)
    shocks = rng.choice([0.0, 0.3, -0.45, 0.06], size=frame.height, p=[0.88, 0.04, 0.04, 0.04])
    days = sorted(set(frame["date"].to_list()))
    stale = rng.random(frame.height) < 0.7
    d = pl.col("date")
    return frame.with_columns(
        pl.when(d == days[1])
        .then(pl.col("asset_return") - 0.15 + pl.Series(shocks))
        .when((d == days[3]) & pl.Series(stale))
        .then(0.0)
        .when(d == days[4])
        .then(0.002)
        .otherwise(pl.col("asset_return") + pl.Series(shocks))
        .alias("asset_return")
    )


@pytest.mark.parametrize(("c", "bounds"), [(5.0, None), (8.0, None), (3.0, (-0.2, 0.25))])
def test_relative_clip_ties_out_with_pandas_per_date(c: float, bounds: tuple | None) -> None:
    frame = shocked_panel(31)
    settings = ModelConstructionSettings(return_clip_mad=c, return_clip_bounds=bounds)
    res = estimate_factor_returns(frame, FACTORS, settings)
    ref_frame = pandas_relative_clip(frame, c, bounds)
    ref = estimate_factor_returns(
        ref_frame.drop("asset_return").rename({"clipped": "asset_return"}), FACTORS, NO_CLIP
    )
    got_f = res.factor_returns["factor_return"].to_numpy()
    assert rel_err(got_f, ref.factor_returns["factor_return"].to_numpy()) < 1e-12
    # n_clipped: the returns the clip moved, per date
    moved = (
        ref_frame.group_by("date")
        .agg((pl.col("clipped") != pl.col("asset_return")).sum().alias("n"))
        .sort("date")
    )
    assert res.stats["n_clipped"].to_list() == moved["n"].to_list()
    counts = dict(zip(moved["date"].to_list(), moved["n"].to_list(), strict=True))
    days = sorted(counts)
    assert counts[days[4]] == 0  # all returns equal: no scale, nothing clipped
    assert counts[days[3]] > 0  # MAD 0: the mean absolute deviation clips the shocks
    if bounds is None:
        # the crisis date is not cut: nothing but the shocked assets moves
        assert 0 < counts[days[1]] < 0.2 * frame.filter(pl.col("date") == days[1]).height
    # specific return = clipped return - fitted return (on a date with clipped returns)
    f = wide_returns(res.factor_returns)
    pre = ref_frame.drop("asset_return").rename({"clipped": "asset_return"})
    x, y, _, _, ids = dense_date(pre, days[2])
    got = res.specific_returns.filter(pl.col("date") == days[2]).sort("asset_id")
    assert got["asset_id"].to_list() == ids
    assert np.max(np.abs(got["specific_return"].to_numpy() - (y - x @ f[2]))) < 1e-14


def test_relative_clip_bounds_unit_cases() -> None:
    """Per-date bounds on hand-made dates: odd and even counts, MAD 0 with and without spread,
    a single asset; against numpy per date."""
    dates = [
        np.array([0.01, -0.02, 0.5, 0.0, 0.03]),  # odd count, one outlier
        np.array([0.01, -0.02, 0.04, -0.3, 0.02, 0.0]),  # even count
        np.array([0.0, 0.0, 0.0, 0.0, 0.2, -0.1, 0.0]),  # MAD 0, mean abs deviation > 0
        np.array([0.01, 0.01, 0.01]),  # all equal: not clipped
        np.array([-0.4]),  # one asset: not clipped
    ]
    y = np.concatenate(dates)
    row_start = np.cumsum([0] + [d.size for d in dates])
    lo, hi = relative_clip_bounds(y, row_start, 3.0)
    for t, r in enumerate(dates):
        med = np.median(r)
        scale = NORMAL_MAD * np.median(np.abs(r - med)) or np.sqrt(np.pi / 2) * np.mean(
            np.abs(r - med)
        )
        if scale == 0:
            assert lo[t] == -np.inf and hi[t] == np.inf
        else:
            assert abs(lo[t] - (med - 3.0 * scale)) < 1e-15
            assert abs(hi[t] - (med + 3.0 * scale)) < 1e-15
    # date 2: the MAD is 0, the fallback scale clips the +0.2 but not the -0.1
    clipped = clip_returns(
        y, row_start, ModelConstructionSettings(return_clip_mad=3.0, return_clip_bounds=None)
    )
    two = clipped[row_start[2] : row_start[3]]
    assert two[4] < 0.2 and two[5] == -0.1
    assert np.array_equal(clipped[row_start[3] :], y[row_start[3] :])
    # relative first, then the fixed bounds
    both = clip_returns(
        y, row_start, ModelConstructionSettings(return_clip_mad=3.0, return_clip_bounds=(-0.1, 0.1))
    )
    assert np.array_equal(both, np.clip(clipped, -0.1, 0.1))
    empty = relative_clip_bounds(np.zeros(0), np.zeros(1, dtype=np.int64), 3.0)
    assert empty[0].size == 0 and empty[1].size == 0


def test_relative_clip_bounds_in_blocks_of_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of whole dates (CLIP_BLOCK_ROWS, here 50 rows: a block per date or two, and a
    date longer than a block) give each date's bounds as one block does, and as numpy."""
    rng = np.random.default_rng(5)
    counts = np.array([7, 40, 1, 61, 12, 12, 30])
    y = rng.standard_t(3, counts.sum()) * 0.02
    row_start = np.r_[0, np.cumsum(counts)]
    whole = relative_clip_bounds(y, row_start, 6.0)
    monkeypatch.setattr(regression, "CLIP_BLOCK_ROWS", 50)
    blocks = relative_clip_bounds(y, row_start, 6.0)
    assert np.array_equal(whole[0], blocks[0]) and np.array_equal(whole[1], blocks[1])
    for t in range(counts.size):
        r = y[row_start[t] : row_start[t + 1]]
        med = np.median(r)
        scale = NORMAL_MAD * np.median(np.abs(r - med))
        if counts[t] == 1:
            assert blocks[0][t] == -np.inf and blocks[1][t] == np.inf
        else:
            assert abs(blocks[1][t] - (med + 6.0 * scale)) < 1e-15


def test_relative_clip_keeps_a_crisis_date_that_fixed_bounds_cut() -> None:
    """Every return 15% lower on one date (a crash, no outlier): the relative clip leaves the
    date as it is (Market falls 15% more), +/- 10% cuts the move."""
    frame, _ = make_panel(32, n_dates=3, n_assets=150)
    day = sorted(set(frame["date"].to_list()))[1]
    crash = frame.with_columns(
        pl.when(pl.col("date") == day)
        .then(pl.col("asset_return") - 0.15)
        .otherwise(pl.col("asset_return"))
        .alias("asset_return")
    )
    market = FACTORS.names.index("Market")

    def market_return(f: pl.DataFrame, settings: ModelConstructionSettings) -> float:
        return float(
            wide_returns(estimate_factor_returns(f, FACTORS, settings).factor_returns)[1, market]
        )

    rel = ModelConstructionSettings(return_clip_mad=8.0, return_clip_bounds=None)
    calm, crashed = market_return(frame, NO_CLIP), market_return(crash, rel)
    assert abs(crashed - (calm - 0.15)) < 1e-12
    fixed = market_return(
        crash, ModelConstructionSettings(return_clip_bounds=(-0.1, 0.1), return_clip_mad=None)
    )
    assert fixed > calm - 0.11


def test_return_clip_mad_setting() -> None:
    """Validated with bounds; left out of the settings' JSON (the file identity) while null."""
    with pytest.raises(ValidationError, match="return_clip_mad"):
        ModelConstructionSettings(return_clip_mad=1.5)
    with pytest.raises(ValidationError, match="return_clip_mad"):
        ModelConstructionSettings(return_clip_mad=101.0)
    with pytest.raises(ValidationError, match="return_clip_mad"):
        ModelConstructionSettings.model_validate({"return_clip_mad": True})
    with pytest.raises(ValidationError, match="return_clip_mad"):
        ModelConstructionSettings.model_validate({"return_clip_mad": "8"})
    assert ModelConstructionSettings(return_clip_mad=8).return_clip_mad == 8.0
    default = ModelConstructionSettings()
    assert default.return_clip_mad == 15.0 and default.return_clip_bounds is None
    off = ModelConstructionSettings(return_clip_mad=None, return_clip_bounds=(-0.1, 0.1))
    assert "return_clip_mad" not in off.model_dump()
    assert default.model_dump(mode="json")["return_clip_mad"] == 15.0
    # A file built by 0.8.0 with its defaults (+/- 10%, no relative clip) keeps its identity
    # under the settings that say so: its stored modelconstruction JSON, verbatim.
    stored_080 = (
        '{"estimation_universe": null, "return_clip_bounds": [-0.1, 0.1], '
        '"thin_category_shrinkage": 0.0, "zero_sum_constraints": {"trbc": "mcap_weighted"}}'
    )
    old = {
        "factor_model_settings": {
            "modelconstruction": {"return_clip_bounds": [-0.1, 0.1], "return_clip_mad": None}
        }
    }
    identity = json.loads(FactorCovarianceReportSettingsV2.model_validate(old).fingerprint())
    assert identity["factor_model_settings"]["modelconstruction"] == json.loads(stored_080)
    # the new defaults are another identity: such a file is refused under them
    new = json.loads(FactorCovarianceReportSettingsV2().fingerprint())
    assert new["factor_model_settings"]["modelconstruction"] != json.loads(stored_080)


def test_null_and_nan_returns_are_dropped() -> None:
    frame, _ = make_panel(15, n_dates=3, n_assets=80)
    bad = np.zeros(frame.height, dtype=bool)
    bad[[3, 17, 40, 111]] = True
    nan_row = 200
    dirty = frame.with_columns(
        pl.when(pl.Series(bad)).then(None).otherwise(pl.col("asset_return")).alias("asset_return")
    )
    ret = dirty["asset_return"].to_numpy().copy()
    ret[nan_row] = np.nan
    dirty = dirty.with_columns(pl.Series("asset_return", ret))
    bad[nan_row] = True
    res = estimate_factor_returns(dirty, FACTORS, NO_CLIP)
    ref = estimate_factor_returns(frame.filter(~pl.Series(bad)), FACTORS, NO_CLIP)
    assert np.array_equal(
        res.factor_returns["factor_return"].to_numpy(),
        ref.factor_returns["factor_return"].to_numpy(),
    )
    assert res.specific_returns.height == frame.height - 5


def test_equal_weighted_constraint() -> None:
    frame, _ = make_panel(16, n_dates=3, n_assets=120)
    settings = ModelConstructionSettings(
        zero_sum_constraints={"trbc": "equal_weighted"},
        return_clip_bounds=None,
        return_clip_mad=None,
    )
    res = estimate_factor_returns(frame, FACTORS, settings)
    f = wide_returns(res.factor_returns)
    sec = FACTORS.indices(GROUP_TRBC)
    for t, d in enumerate(res.stats["date"].to_list()):
        x, y, w, _, _ = dense_date(frame, d)
        c = np.zeros(FACTORS.k)
        c[sec] = 1.0
        assert rel_err(f[t], kkt(x, y, w, c)) < 1e-10
        assert abs(f[t, sec].sum()) < 1e-12 * np.abs(f[t, sec]).sum()


def test_thin_category_shrinkage_is_the_documented_ridge() -> None:
    frame, _ = make_panel(17, n_dates=3, n_assets=120)
    lam = 0.05
    settings = ModelConstructionSettings(
        thin_category_shrinkage=lam, return_clip_bounds=None, return_clip_mad=None
    )
    res = estimate_factor_returns(frame, FACTORS, settings)
    f = wide_returns(res.factor_returns)
    mask = np.array([g == GROUP_TRBC for g in FACTORS.groups])
    for t, d in enumerate(res.stats["date"].to_list()):
        x, y, w, cap, _ = dense_date(frame, d)
        ridge = lam * w.sum() * mask
        assert rel_err(f[t], kkt(x, y, w, sector_caps(x, cap), ridge)) < 1e-10


def test_thin_categories_are_counted() -> None:
    frame, _ = make_panel(18, n_dates=2, n_assets=150)
    d0 = sorted(frame["date"].unique().to_list())[0]
    util = frame.filter((pl.col("date") == d0) & (pl.col("sector") == "Utilities"))
    drop = util["asset_id"].to_list()[2:]  # keep 2 Utilities on date 0
    assert len(drop) > 0
    frame = frame.filter(~((pl.col("date") == d0) & pl.col("asset_id").is_in(drop)))
    res = estimate_factor_returns(frame, FACTORS, NO_CLIP)
    counts = frame.group_by("date", "sector").len()
    expected = (
        counts.filter(pl.col("len") < THIN_CATEGORY_MIN_ASSETS)
        .group_by("date")
        .len()
        .join(res.stats.select("date"), on="date", how="right")
        .sort("date")["len"]
        .fill_null(0)
        .to_list()
    )
    assert res.stats["thin_categories"].to_list() == expected
    assert expected[0] >= 1


def test_market_without_zero_sum_constraint_is_refused() -> None:
    frame, _ = make_panel(19, n_dates=2, n_assets=50)
    settings = ModelConstructionSettings(zero_sum_constraints={})
    with pytest.raises(ValueError, match="singular"):
        estimate_factor_returns(frame, FACTORS, settings)


def test_no_market_no_constraint_is_plain_wls() -> None:
    factors = FactorSet.build(market=False)
    frame, _ = make_panel(20, n_dates=3, n_assets=90, factors=factors)
    settings = ModelConstructionSettings(
        zero_sum_constraints={}, return_clip_bounds=None, return_clip_mad=None
    )
    res = estimate_factor_returns(frame, factors, settings)
    f = wide_returns(res.factor_returns, factors)
    for t, d in enumerate(res.stats["date"].to_list()):
        x, y, w, _, _ = dense_date(frame, d, factors)
        ref = np.asarray(sm.WLS(y, x, weights=w).fit().params)
        assert rel_err(f[t], ref) < 1e-10


def test_other_category_column_and_unknown_category() -> None:
    frame, _ = make_panel(21, n_dates=2, n_assets=90)
    renamed = frame.rename({"sector": "industry_group"})
    a = estimate_factor_returns(frame, FACTORS, NO_CLIP)
    b = estimate_factor_returns(renamed, FACTORS, NO_CLIP, category_column="industry_group")
    assert a.factor_returns.equals(b.factor_returns)
    bad = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("Not A Sector"))
        .otherwise(pl.col("sector"))
        .alias("sector")
    )
    with pytest.raises(ValueError, match="Not A Sector"):
        estimate_factor_returns(bad, FACTORS, NO_CLIP)


def test_recovers_planted_factor_returns() -> None:
    probs = np.array([1, 6, 12, 8, 6, 14, 1, 10, 14, 1, 6, 16, 5], dtype=float)
    probs /= probs.sum()
    frame, planted = make_panel(22, n_dates=80, n_assets=600, sector_probs=probs, noise=0.01)
    res = estimate_factor_returns(frame, FACTORS, ModelConstructionSettings(), chunk_dates=16)
    f = wide_returns(res.factor_returns)
    big = [FACTORS.names.index(TRBC_SECTORS[i]) for i in np.argsort(probs)[-4:]]
    checked = [FACTORS.names.index("Market"), *big]
    checked += [FACTORS.names.index(s) for s in STYLE_FACTORS]
    for k in checked:
        corr = np.corrcoef(f[:, k], planted[:, k])[0, 1]
        assert corr > 0.9, (FACTORS.names[k], corr)
    # the estimates are not trivially the truth: specific noise leaves some error
    assert np.max(np.abs(f - planted)) > 1e-6


def test_empty_input_gives_empty_typed_frames() -> None:
    frame, _ = make_panel(23, n_dates=1, n_assets=20)
    res = estimate_factor_returns(frame.head(0), FACTORS, NO_CLIP)
    assert res.factor_returns.height == 0
    assert res.factor_returns.schema == pl.Schema(
        {
            "date": pl.Date,
            "factor": pl.String,
            "factor_group": pl.String,
            "factor_return": pl.Float64,
        }
    )
    assert res.specific_returns.height == 0
    assert res.stats.height == 0


def test_shrinkage_regularises_a_date_with_fewer_assets_than_factors() -> None:
    factors = FactorSet.build(sectors=TRBC_SECTORS[:4], styles=STYLE_FACTORS[:2])
    frame, _ = make_panel(24, n_dates=2, n_assets=60, factors=factors)
    d0 = sorted(frame["date"].unique().to_list())[0]
    first = frame.filter(pl.col("date") == d0).sort("asset_id")
    # one asset per sector: 4 assets for 7 factors - 1 constraint = 6 free parameters
    keep = first.group_by("sector").agg(pl.col("asset_id").first())["asset_id"].to_list()
    frame = frame.filter((pl.col("date") != d0) | pl.col("asset_id").is_in(keep))
    plain = estimate_factor_returns(frame, factors, NO_CLIP)
    assert plain.stats["degenerate"].to_list() == [True, False]
    lam = 0.2
    settings = ModelConstructionSettings(
        thin_category_shrinkage=lam, return_clip_bounds=None, return_clip_mad=None
    )
    res = estimate_factor_returns(frame, factors, settings)
    assert res.stats["degenerate"].to_list() == [False, False]
    f = wide_returns(res.factor_returns, factors)
    mask = np.array([g == GROUP_TRBC for g in factors.groups])
    x, y, w, cap, _ = dense_date(frame, d0, factors)
    ref = kkt(x, y, w, sector_caps(x, cap, factors), lam * w.sum() * mask)
    assert rel_err(f[0], ref) < 1e-10
