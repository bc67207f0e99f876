"""Style exposures (USE4 standardisation) and the long exposure table.

The reference is an independent numpy loop over dates written here from the USE4 convention
(Menchero, Orr, Wang 2011): z = (x - cap-weighted mean) / equal-weighted std, clip, repeat
until the bound holds, after a robust median/MAD pre-clip (Rousseeuw and Croux 1993).
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from factorcov_pipeline.core import exposures as exposures_module
from factorcov_pipeline.core.asset_panel import asset_panel
from factorcov_pipeline.core.exposures import (
    MAD_SCALE,
    ROBUST_CLIP,
    Segments,
    exposures_long,
    sorted_by_date_and_asset,
    standardised_style,
    style_exposures,
)
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix

STYLES = ("Size", "Value", "Momentum")
SECTORS = ("Energy", "Financials", "Technology")
DATES = (dt.date(2025, 4, 1), dt.date(2025, 4, 2), dt.date(2025, 4, 3))
K_SIGMA = 3.0


def _panel(n: int = 200, seed: int = 7, missing: bool = True) -> pl.DataFrame:
    """Random universe panel with fat tails, planted outliers on both sides and gaps."""
    rng = np.random.default_rng(seed)
    frames = []
    for d_i, day in enumerate(DATES):
        m = n - 10 * d_i  # a different cross-section each date
        cols: dict[str, object] = {
            "date": [day] * m,
            "asset_id": [f"A{i:04d}" for i in rng.permutation(n)[:m]],
            "sector": rng.choice(SECTORS, m).tolist(),
            "market_cap": rng.lognormal(21.0, 1.5, m),
        }
        for j, s in enumerate(STYLES):
            x = rng.standard_t(3.0, m) * (1.0 + j) + 5.0 * j
            x[:3] = [40.0, -35.0, 60.0]  # outliers both sides
            if missing:
                x[rng.random(m) < 0.05] = np.nan
            cols[f"descriptor_{s.lower()}"] = x
        frames.append(pl.DataFrame(cols))
    out = pl.concat(frames)
    # NaN in one column, null in another: both count as missing
    return out.with_columns(pl.col("descriptor_momentum").fill_nan(None))


def _reference_one(x: np.ndarray, cap: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Numpy USE4 standardisation of one date: (final exposures, first-pass z).

    Robust pre-clip at median +/- 5 x 1.4826 x MAD (np.median), then two passes over the assets
    with a value (cap-weighted mean 0, population std 1, clip in between), missing -> 0, then a
    division by the std over all assets."""
    ok = np.isfinite(x)
    xv = x.copy()
    med = np.median(x[ok])
    mad = np.median(np.abs(x[ok] - med))
    scale = (
        1.482602218505602 * mad if mad > 0 else np.sqrt(np.pi / 2) * np.mean(np.abs(x[ok] - med))
    )
    if scale > 0:
        xv[ok] = np.clip(x[ok], med - 5 * scale, med + 5 * scale)

    def std(v: np.ndarray) -> np.ndarray:
        vv = v[ok]
        mu = np.sum(cap[ok] * vv) / np.sum(cap[ok])
        sd = np.sqrt(np.mean((vv - vv.mean()) ** 2))
        out = np.full_like(v, np.nan)
        out[ok] = 0.0 if np.ptp(vv) == 0 else (vv - mu) / sd
        return out

    z = std(xv)
    e = np.where(ok, std(np.clip(z, -k, k)), 0.0)  # missing -> 0, the cap-weighted mean
    sd_all = np.std(e)  # then rescale to std 1 over the whole cross-section
    return (e / sd_all if sd_all > 0 else e), z


def _reference(panel: pl.DataFrame, k: float = K_SIGMA) -> dict[tuple[dt.date, str], np.ndarray]:
    out: dict[tuple[dt.date, str], np.ndarray] = {}
    for day in sorted(set(panel["date"].to_list())):
        one = panel.filter(pl.col("date") == day).sort("asset_id")
        cap = one["market_cap"].to_numpy()
        for s in STYLES:
            x = one[f"descriptor_{s.lower()}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            out[(day, s)] = _reference_one(x, cap, k)[0]
    return out


def test_matches_numpy_loop_per_date() -> None:
    panel = _panel()
    wide = style_exposures(panel, STYLES, K_SIGMA)
    ref = _reference(panel)
    assert wide.columns == ["date", "asset_id", "sector", "market_cap", *STYLES]
    assert wide.height == panel.height
    for (day, s), expected in ref.items():
        got = wide.filter(pl.col("date") == day)[s].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("missing", [False, True])
def test_cap_weighted_mean_zero_and_std_one(missing: bool) -> None:
    panel = _panel(missing=missing)
    wide = style_exposures(panel, STYLES, K_SIGMA)
    joined = wide.join(panel, on=["date", "asset_id"], suffix="_u")
    for day in DATES:
        one = joined.filter(pl.col("date") == day)
        cap = one["market_cap"].to_numpy()
        for s in STYLES:
            x = one[f"descriptor_{s.lower()}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            ok = np.isfinite(x)
            e = one[s].to_numpy()
            assert np.all(np.isfinite(e))
            assert np.all(e[~ok] == 0.0)  # missing -> exactly 0 (the cap-weighted mean)
            # over the whole cross-section of the date (what is stored and checked)
            assert abs(np.sum(cap * e) / np.sum(cap)) < 1e-12
            assert abs(np.std(e) - 1.0) < 1e-12
            assert ok.all() != missing


def test_bound_holds_and_one_outlier_does_not_squash_the_others() -> None:
    """Issue 12.2: one Size descriptor of 1000 (others 17-27), 1e6 or 1e155: the stored
    exposures stay within +/- k (to 1e-9 relative), the outlier sits at the bound, and the
    other assets keep a spread close to 1 (it was 0.14 at 1000 and 0 at 1e155)."""
    rng = np.random.default_rng(11)
    n = 200
    base = rng.uniform(17.0, 27.0, n)
    for outlier in (1000.0, 1e6, 1e155):
        x = base.copy()
        x[0] = outlier
        df = pl.DataFrame(
            {
                "date": [DATES[0]] * n,
                "asset_id": [f"A{i:04d}" for i in range(n)],
                "sector": ["Energy"] * n,
                "market_cap": rng.lognormal(21.0, 1.5, n),
                "descriptor_size": x,
            }
        )
        e = style_exposures(df, ["Size"], K_SIGMA)["Size"].to_numpy()
        assert np.abs(e).max() <= 2 * K_SIGMA  # the documented bound (was 15.8)
        assert e[0] == e.max() and e[0] > 2.5  # the outlier is the largest, near the clip
        assert np.std(e[1:]) > 0.9  # the others keep their spread (was 0.14, and 0 at 1e155)
        np.testing.assert_allclose(
            e, _reference_one(x, df["market_cap"].to_numpy(), K_SIGMA)[0], atol=1e-12
        )


def test_bound_holds_on_fat_tailed_panels() -> None:
    panel = _panel()
    wide = style_exposures(panel, STYLES, K_SIGMA)
    for s in STYLES:
        assert wide[s].abs().max() <= 2 * K_SIGMA


def test_clip_bounds_hold_before_restandardisation() -> None:
    """The final exposure is an affine map of the clipped first-pass z; with outliers on both
    sides the extremes are exactly -k and +k, so rescaling [min, max] to [-k, k] gives back
    clip(z, -k, k) computed independently (z after the robust pre-clip)."""
    panel = _panel(missing=False)
    wide = style_exposures(panel, STYLES, K_SIGMA)
    checked = 0
    for day in DATES:
        one = panel.filter(pl.col("date") == day).sort("asset_id")
        got_day = wide.filter(pl.col("date") == day)
        for s in STYLES:
            x = one[f"descriptor_{s.lower()}"].to_numpy()
            _, z = _reference_one(x, one["market_cap"].to_numpy(), K_SIGMA)
            if not (z.max() > K_SIGMA and z.min() < -K_SIGMA):
                continue  # the map is pinned by clipped values on both sides only
            e = got_day[s].to_numpy()
            back = (e - e.min()) / (e.max() - e.min()) * 2 * K_SIGMA - K_SIGMA
            np.testing.assert_allclose(back, np.clip(z, -K_SIGMA, K_SIGMA), atol=1e-12)
            checked += 1
    assert checked >= 3


def test_dates_are_independent() -> None:
    panel = _panel()
    full = style_exposures(panel, STYLES)
    for day in DATES:
        alone = style_exposures(panel.filter(pl.col("date") == day), STYLES)
        assert_frame_equal(
            alone, full.filter(pl.col("date") == day), check_exact=False, abs_tol=1e-14, rel_tol=0
        )
    two = style_exposures(panel.filter(pl.col("date") != DATES[1]), STYLES)
    assert_frame_equal(
        two, full.filter(pl.col("date") != DATES[1]), check_exact=False, abs_tol=1e-14, rel_tol=0
    )
    # row order of the input does not matter either
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=3)
    assert_frame_equal(
        style_exposures(shuffled, STYLES), full, check_exact=False, abs_tol=1e-14, rel_tol=0
    )


def test_zero_variance_and_all_missing_give_zero() -> None:
    n = 6
    df = pl.DataFrame(
        {
            "date": [DATES[0]] * n,
            "asset_id": [f"A{i}" for i in range(n)],
            "sector": ["Energy"] * n,
            "market_cap": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "descriptor_value": [0.1] * n,  # constant, not exactly representable
            "descriptor_size": [None] * n,
            "descriptor_momentum": [1.0, None, None, None, None, None],
        },
        schema_overrides={"descriptor_size": pl.Float64, "descriptor_momentum": pl.Float64},
    )
    out = style_exposures(df, STYLES)
    for s in STYLES:
        assert out[s].to_list() == [0.0] * n


def test_ready_exposures_taken_as_given_and_industry_group_kept() -> None:
    df = pl.DataFrame(
        {
            "date": [DATES[0]] * 3,
            "asset_id": ["B", "A", "C"],
            "sector": ["Energy", "Energy", "Technology"],
            "industry_group": ["Coal", "Oil & Gas", "Software & IT Services"],
            "market_cap": [1.0, 2.0, 3.0],
            "exposure_value": [0.5, None, 7.0],
            "descriptor_size": [1.0, 2.0, 4.0],
        }
    )
    out = style_exposures(df, ["Value", "Size"])
    assert out.columns == [
        "date",
        "asset_id",
        "sector",
        "industry_group",
        "market_cap",
        "Value",
        "Size",
    ]
    assert out["asset_id"].to_list() == ["A", "B", "C"]
    assert out["Value"].to_list() == [0.0, 0.5, 7.0]
    with pytest.raises(ValueError, match="descriptor_growth"):
        style_exposures(df, ["Growth"])


def test_exposures_long() -> None:
    panel = _panel(n=30)
    wide = style_exposures(panel, STYLES)
    fs = FactorSet.build(sectors=SECTORS, styles=STYLES)
    long = exposures_long(wide, fs)
    assert long.columns == ["date", "asset_id", "factor", "exposure"]
    assert long.height == wide.height * (1 + 1 + len(STYLES))
    back = long.pivot(on="factor", index=["date", "asset_id"], values="exposure").sort(
        "date", "asset_id"
    )
    assert back["Market"].to_list() == [1.0] * wide.height
    for s in STYLES:
        np.testing.assert_array_equal(back[s].to_numpy(), wide[s].to_numpy())
    dummies = back.select(SECTORS).to_numpy()
    own = np.array([SECTORS.index(s) for s in wide["sector"]])
    assert np.array_equal(np.nan_to_num(dummies, nan=0.0), np.eye(len(SECTORS))[own])
    # factor order within an asset follows the FactorSet
    first = long.filter((pl.col("date") == DATES[0]) & (pl.col("asset_id") == wide["asset_id"][0]))
    assert first["factor"].to_list() == [f for f in fs.names if f in first["factor"].to_list()]
    assert first["factor"][0] == "Market"

    no_market = exposures_long(wide, FactorSet.build(sectors=SECTORS, styles=STYLES, market=False))
    assert "Market" not in no_market["factor"].to_list()
    assert no_market.height == wide.height * (1 + len(STYLES))

    with pytest.raises(ValueError, match="not factors of the model"):
        exposures_long(wide, FactorSet.build(sectors=SECTORS[:2], styles=STYLES))


def test_exposures_long_industry_group_category() -> None:
    df = pl.DataFrame(
        {
            "date": [DATES[0]] * 2,
            "asset_id": ["A", "B"],
            "sector": ["Energy", "Energy"],
            "industry_group": ["Coal", "Oil & Gas"],
            "market_cap": [1.0, 2.0],
            "Size": [0.3, -0.2],
        }
    )
    fs = FactorSet.build(sectors=["Coal", "Oil & Gas"], styles=["Size"])
    long = exposures_long(df, fs, category_column="industry_group")
    assert long.filter(pl.col("asset_id") == "B")["factor"].to_list() == [
        "Market",
        "Size",
        "Oil & Gas",
    ]


@pytest.mark.parametrize("market", [True, False])
def test_stored_wide_table_and_long_view_equal_exposures_long(tmp_path, market: bool) -> None:
    """`exposures_wide` + the `exposures` view give exactly the rows of `exposures_long`."""
    from factorcov_pipeline.core.exposures import exposures_table
    from factorcov_pipeline.storage import EXPOSURES_TABLE, Store, TableWrite, exposures_view

    panel = _panel(n=40)
    wide = style_exposures(panel, STYLES)
    fs = FactorSet.build(sectors=SECTORS, styles=STYLES, market=market)
    table = exposures_table(wide, fs)
    assert table.columns == ["date", "asset_id", "category", *STYLES]
    assert table.height == wide.height
    store = Store(tmp_path / "x.duckdb")
    view = exposures_view(fs.styles, "Market" if market else None)
    store.replace([TableWrite(EXPOSURES_TABLE, table)], (DATES[0], DATES[-1]), views=[view])
    got = store.read("SELECT * FROM exposures ORDER BY date, asset_id, factor")
    want = exposures_long(wide, fs).sort("date", "asset_id", "factor")
    assert_frame_equal(got, want)
    with pytest.raises(ValueError, match="not factors of the model"):
        exposures_table(wide, FactorSet.build(sectors=SECTORS[:2], styles=STYLES))


def test_a_file_with_the_old_long_exposures_table_is_migrated(tmp_path) -> None:
    """A file written when `exposures` was a long table: the next write of exposures pivots
    the old rows into `exposures_wide`, drops the table and creates the view, in one
    transaction; every old row reads back unchanged through the view."""
    from factorcov_pipeline.core.exposures import exposures_table
    from factorcov_pipeline.storage import EXPOSURES_TABLE, Store, TableWrite, exposures_view

    panel = _panel(n=40)
    wide = style_exposures(panel, STYLES)
    fs = FactorSet.build(sectors=SECTORS, styles=STYLES)
    long = exposures_long(wide, fs)
    store = Store(tmp_path / "old.duckdb")
    old_dates = long.filter(pl.col("date") < DATES[-1])
    store.replace([TableWrite("exposures", old_dates)], (DATES[0], DATES[-2]))
    new = exposures_table(wide.filter(pl.col("date") == DATES[-1]), fs)
    store.replace(
        [TableWrite(EXPOSURES_TABLE, new)],
        (DATES[-1], DATES[-1]),
        views=[exposures_view(fs.styles, "Market")],
    )
    kind = store.read(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_name IN ('exposures', 'exposures_wide') ORDER BY 1"
    )
    assert kind.rows() == [("exposures", "VIEW"), ("exposures_wide", "BASE TABLE")]
    got = store.read("SELECT * FROM exposures ORDER BY date, asset_id, factor")
    assert_frame_equal(got, long.sort("date", "asset_id", "factor"))
    stored = store.read("SELECT * FROM exposures_wide ORDER BY date, asset_id")
    assert_frame_equal(stored, exposures_table(wide, fs))


# ------------------------------------------------- the shared-statistics path vs step by step
# `standardised_style` shares the per-date counts, weights and masks between its steps. The
# reference below is the straightforward version it replaced (each step recomputes everything
# from its input with `seg` gathers): the stored exposures must not change by a single bit.


def _ref_segment_median(x: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    n_rows = np.diff(np.r_[starts, x.size])
    finite = np.where(np.isfinite(x), x, np.nan)
    width = int(n_rows.max())
    if width * starts.size == x.size:
        grid = finite.reshape(starts.size, width)
    else:
        grid = np.full((starts.size, width), np.nan)
        grid[seg, np.arange(x.size) - starts[seg]] = finite
    grid.sort(axis=1)
    n = np.isfinite(grid).sum(axis=1)
    rows = np.arange(starts.size)
    lo = grid[rows, np.maximum(n - 1, 0) // 2]
    hi = grid[rows, np.maximum(n, 1) // 2 - (n == 0)]
    return np.where(n > 0, 0.5 * (lo + hi), np.nan)


def _ref_robust_clip(x: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    med = _ref_segment_median(x, starts, seg)
    dev = np.abs(x - med[seg])
    mad = _ref_segment_median(dev, starts, seg)
    valid = np.isfinite(x)
    n = np.add.reduceat(valid.astype(np.float64), starts)
    mean_ad = np.add.reduceat(np.where(valid, dev, 0.0), starts) / np.where(n > 0, n, 1.0)
    scale = np.where(mad > 0, MAD_SCALE * mad, np.sqrt(np.pi / 2.0) * mean_ad)
    scale = np.where(np.isfinite(scale), scale, 0.0)
    half = ROBUST_CLIP * scale
    lo, hi = (med - half)[seg], (med + half)[seg]
    clipped = np.clip(x, lo, hi)
    return np.where(valid & (scale[seg] > 0), clipped, x)


def _ref_segment_std(
    x: np.ndarray, valid: np.ndarray, starts: np.ndarray, seg: np.ndarray
) -> np.ndarray:
    n = np.add.reduceat(valid.astype(np.float64), starts)
    xv = np.where(valid, x, 0.0)
    mean = np.add.reduceat(xv, starts) / np.where(n > 0, n, 1.0)
    dev = np.where(valid, x - mean[seg], 0.0)
    return np.sqrt(np.add.reduceat(dev * dev, starts) / np.where(n > 0, n, 1.0))


def _ref_standardise(
    x: np.ndarray, cap: np.ndarray, starts: np.ndarray, seg: np.ndarray
) -> np.ndarray:
    valid = np.isfinite(x)
    w = np.where(valid, cap, 0.0)
    xv = np.where(valid, x, 0.0)
    w_sum = np.add.reduceat(w, starts)
    cw_mean = np.add.reduceat(w * xv, starts) / np.where(w_sum > 0, w_sum, 1.0)
    std = _ref_segment_std(x, valid, starts, seg)
    hi = np.maximum.reduceat(np.where(valid, x, -np.inf), starts)
    lo = np.minimum.reduceat(np.where(valid, x, np.inf), starts)
    n = np.add.reduceat(valid.astype(np.int64), starts)
    flat = (n < 2) | (hi == lo) | (std == 0.0)
    z = (x - cw_mean[seg]) / np.where(flat, 1.0, std)[seg]
    return np.where(valid, np.where(flat[seg], 0.0, z), np.nan)


def _ref_final(x: np.ndarray, cap: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    e = np.nan_to_num(_ref_standardise(x, cap, starts, seg), nan=0.0)
    std_all = _ref_segment_std(e, np.ones_like(e, dtype=bool), starts, seg)
    return np.where(std_all[seg] > 0.0, e / np.where(std_all > 0, std_all, 1.0)[seg], 0.0)


def _reference_column(x: np.ndarray, cap: np.ndarray, dates: np.ndarray, k: float) -> np.ndarray:
    starts = np.flatnonzero(np.r_[True, dates[1:] != dates[:-1]])
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, dates.size]))
    x = _ref_robust_clip(x, starts, seg)
    z = np.clip(_ref_standardise(x, cap, starts, seg), -k, k)
    return _ref_final(z, cap, starts, seg)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).view(np.int64)


def _awkward_dates(rng: np.random.Generator, equal_width: bool) -> tuple[np.ndarray, list]:
    """(dates, [(descriptor, caps), ...]): dates with every special case of the
    standardisation, overflowing sums included."""
    sizes = [40] * 9 if equal_width else [40, 1, 2, 17, 40, 9, 33, 40, 25]
    dates = np.repeat(np.arange(len(sizes)), sizes)
    cases = []
    for case in range(7):
        cap = rng.lognormal(21.0, 1.5, dates.size)
        x = rng.standard_t(3.0, dates.size) * 10.0 ** rng.integers(-3, 4)
        x[rng.random(dates.size) < 0.1] = np.nan
        x[dates == 1] = 7.0  # a flat date (or one row)
        x[dates == 2] = np.nan  # nothing on this date
        d3 = np.flatnonzero(dates == 3)
        x[d3[: len(d3) // 2 + 2]] = 0.0  # MAD 0: more than half the values equal
        d5 = np.flatnonzero(dates == 5)
        x[d5] = 0.1
        x[d5[0]] = 1e6  # one distinct outlier value
        if case == 1:
            x[rng.random(dates.size) < 0.05] = np.inf  # +/-inf count as missing
            x[rng.random(dates.size) < 0.05] = -np.inf
        if case == 2:  # cap x descriptor overflows: a NaN mean, NaN z-scores
            x[dates == 6] = rng.standard_normal(int((dates == 6).sum())) * 1e300
        if case == 3:
            x[dates == 7] = rng.standard_normal(int((dates == 7).sum())) * 1e-160  # underflow
        if case == 4:
            x = np.round(x)  # many ties
        if case == 5:  # cap x z-score overflows (not cap x descriptor): nan_to_num's +/-inf
            d8 = np.flatnonzero(dates == 8)
            x[d8] = rng.standard_normal(d8.size) * 1e-5
            x[d8[:2]] = [1e-3, -1e-3]  # clipped at +/- k: 8e307 x k overflows
            cap[d8[:2]] = 8e307
        if case == 6:
            x[dates == 4] = np.nan
            x[np.flatnonzero(dates == 4)[5]] = -3.0  # one value
            d0 = np.flatnonzero(dates == 0)
            x[d0] = np.where(np.arange(d0.size) < 25, -1.7e308, 1.7e308)  # |x - median| = inf
        cases.append((x, cap))
    return dates, cases


@pytest.mark.parametrize("block_rows", [None, 45])
@pytest.mark.parametrize("equal_width", [False, True])
@pytest.mark.parametrize("k", [3.0, 0.5])
def test_standardised_style_bit_identical_to_step_by_step(
    equal_width: bool, k: float, block_rows: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if block_rows:  # runs of dates of at most 45 rows (or one date): the blocked path
        monkeypatch.setattr(exposures_module, "BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(11 + equal_width)
    dates, cases = _awkward_dates(rng, equal_width)
    segments = Segments.of(dates)
    for x, cap in cases:
        with np.errstate(all="ignore"):
            expected = _reference_column(x.copy(), cap, dates, k)
            got = standardised_style(x, cap, segments, k)
        np.testing.assert_array_equal(_bits(got), _bits(expected))


def test_style_exposures_bit_identical_to_step_by_step() -> None:
    panel = _panel(n=300, seed=5)
    wide = style_exposures(panel, STYLES, K_SIGMA)
    ordered = panel.sort("date", "asset_id")
    dates = ordered["date"].to_numpy()
    cap = ordered["market_cap"].to_numpy()
    for s in STYLES:
        x = ordered[f"descriptor_{s.lower()}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        expected = _reference_column(x, cap, dates, K_SIGMA)
        np.testing.assert_array_equal(_bits(wide[s].to_numpy()), _bits(expected))


def test_sorted_by_date_and_asset() -> None:
    panel = _panel(n=50)
    ordered = panel.sort("date", "asset_id")
    assert sorted_by_date_and_asset(ordered) is ordered  # already in order: not sorted again
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=1)
    assert_frame_equal(sorted_by_date_and_asset(shuffled), ordered)
    twice = pl.concat([ordered.head(3), ordered.head(3)]).sort("date", "asset_id")
    assert sorted_by_date_and_asset(twice) is not twice  # a repeated key: the plain sort


def test_asset_panel_equals_long_to_matrix_column_by_column() -> None:
    """`asset_panel` joins each frame to the axes once; every array is the one
    `core.panel.long_to_matrix` gives column by column (the version it replaced), bit for bit:
    missing cells, a null category, rows on dates outside the axis, assets with only a
    specific return."""
    panel = _panel(n=60, seed=3)
    wide = style_exposures(panel, STYLES).rename({"sector": "category"})
    wide = wide.with_columns(
        pl.when(pl.col("asset_id") == "A0007")
        .then(None)
        .otherwise(pl.col("category"))
        .alias("category")
    ).sample(fraction=0.9, seed=2)  # some (date, asset) cells missing
    rng = np.random.default_rng(4)
    spec = pl.DataFrame(
        {
            "date": [DATES[0]] * 5 + [DATES[2]] * 3 + [dt.date(2030, 1, 1)],
            "asset_id": ["A0001", "A0002", "ZZZ", "A0003", "A0004", "A0001", "YYY", "A0009", "A1"],
            "specific_return": [*rng.standard_normal(8), 1.0],
        }
    ).with_columns(
        pl.when(pl.col("asset_id") == "A0002")
        .then(None)
        .otherwise(pl.col("specific_return"))
        .alias("specific_return")
    )
    dates = list(DATES)
    got = asset_panel(dates, wide, STYLES, spec)
    names = sorted({*wide["asset_id"].to_list(), *spec["asset_id"].to_list()})
    assert got.asset_ids.tolist() == names
    cats = sorted(set(wide["category"].drop_nulls().to_list()))
    coded = wide.with_columns(
        pl.col("category")
        .replace_strict(cats, list(range(len(cats))), default=None)
        .cast(pl.Float64)
        .alias("_code")
    )
    codes = long_to_matrix(coded, dates, names, "_code", key="asset_id")
    expected = {
        "caps": long_to_matrix(wide, dates, names, "market_cap", key="asset_id"),
        "categories": np.where(np.isfinite(codes), codes, -1).astype(np.int64),
        "styles": np.stack(
            [long_to_matrix(wide, dates, names, s, key="asset_id") for s in STYLES], axis=2
        ),
        "specific_returns": long_to_matrix(spec, dates, names, "specific_return", key="asset_id"),
    }
    assert got.category_names == cats
    for name, want in expected.items():
        have = getattr(got, name)
        assert have.dtype == want.dtype and have.shape == want.shape, name
        np.testing.assert_array_equal(have.view(np.int64), want.view(np.int64), err_msg=name)


def test_segment_blocks_are_runs_of_whole_dates() -> None:
    counts = np.array([40, 1, 2, 17, 40, 9, 33, 40, 25])
    segments = Segments(np.r_[0, np.cumsum(counts)[:-1]], counts)
    for max_rows in (1, 30, 45, 60, 1000):
        blocks = segments.blocks(max_rows)
        assert blocks[0][0] == 0 and blocks[-1][1] == counts.sum()
        assert all(b[1] == c[0] for b, c in itertools.pairwise(blocks))
        got = np.concatenate([b[2].counts for b in blocks])
        np.testing.assert_array_equal(got, counts)
        for a, b, block in blocks:
            assert block.starts[0] == 0 and block.size == b - a
            assert b - a <= max_rows or block.counts.size == 1
