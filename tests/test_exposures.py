"""Style exposures (USE4 standardisation) and the long exposure table.

The reference is an independent numpy loop over dates written here from the USE4 convention
(Menchero, Orr, Wang 2011): z = (x - cap-weighted mean) / equal-weighted std, clip, repeat
until the bound holds, after a robust median/MAD pre-clip (Rousseeuw and Croux 1993).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from factorcov_pipeline.core.exposures import exposures_long, style_exposures
from factorcov_pipeline.core.factors import FactorSet

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
