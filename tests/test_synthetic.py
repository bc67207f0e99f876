"""The synthetic universe: determinism, gaps, entry/exit, skew, and the planted factor model.

The planted model is checked with a constrained least-squares regression written here in plain
numpy (no dependency on core/regression.py).
"""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from factorcov_pipeline.core import synthetic
from factorcov_pipeline.core.exposures import style_exposures
from factorcov_pipeline.core.factors import (
    EXTRA_STYLE_FACTORS,
    STYLE_FACTORS,
    TRBC_INDUSTRY_GROUPS,
    TRBC_SECTORS,
    FactorSet,
    factor_set_for,
)
from factorcov_pipeline.core.settings import (
    CategoricalExposureGroupSettings,
    ContinuousExposureGroupSettings,
    ExposureSettings,
    FactorRiskModelSettings,
    UniverseSettings,
)
from factorcov_pipeline.core.synthetic import (
    SyntheticDay,
    generate_universe,
    generate_universe_range,
    volatility_regime,
)

N_DAYS = 61
SESSIONS: list[dt.date] = [
    d.astype(object)
    for d in np.arange(np.datetime64("2025-03-31"), np.datetime64("2026-04-15"))
    if np.is_busday(d)
]
SETTINGS = UniverseSettings()
FACTORS = factor_set_for(FactorRiskModelSettings())


@pytest.fixture(scope="module")
def days() -> list[SyntheticDay]:
    """The first N_DAYS sessions of the default universe (3,000 assets)."""
    return [generate_universe(d, SESSIONS, SETTINGS, FACTORS) for d in SESSIONS[:N_DAYS]]


# --------------------------------------------------------------------------------- factor sets


def test_factor_set_for() -> None:
    default = factor_set_for(FactorRiskModelSettings())
    assert default == FactorSet.build()
    assert default.k == 21

    big = FactorRiskModelSettings(
        universe=UniverseSettings(trbc_level="industry_group", n_extra_styles=12)
    )
    fs = factor_set_for(big)
    assert fs.styles == STYLE_FACTORS + EXTRA_STYLE_FACTORS[:12]
    assert fs.sectors == tuple(TRBC_INDUSTRY_GROUPS)
    assert 60 <= fs.k <= 80
    assert set(TRBC_INDUSTRY_GROUPS.values()) == set(TRBC_SECTORS)
    assert 45 <= len(TRBC_INDUSTRY_GROUPS) <= 60

    no_market = FactorRiskModelSettings(
        exposures=ExposureSettings(
            exposures=[
                CategoricalExposureGroupSettings(hierarchy="trbc"),
                ContinuousExposureGroupSettings(hierarchy="style"),
            ]
        )
    )
    assert "Market" not in factor_set_for(no_market).names
    user = factor_set_for(FactorRiskModelSettings(), sectors=["X", "Y"])
    assert user.sectors == ("X", "Y")

    with pytest.raises(ValueError, match="n_extra_styles"):
        factor_set_for(
            FactorRiskModelSettings(
                universe=UniverseSettings(n_extra_styles=len(EXTRA_STYLE_FACTORS) + 1)
            )
        )


# --------------------------------------------------------------------------------- determinism


def test_deterministic_and_order_independent(days: list[SyntheticDay]) -> None:
    day = SESSIONS[40]
    again = generate_universe(day, SESSIONS, SETTINGS, FACTORS)
    alone = generate_universe(day, SESSIONS[:41], SETTINGS, FACTORS)  # sessions end at `day`
    for other in (again, alone):
        assert_frame_equal(other.universe, days[40].universe)
        assert_frame_equal(other.planted_factor_returns, days[40].planted_factor_returns)
    # generated in reverse order, after other days
    rev = [generate_universe(d, SESSIONS, SETTINGS, FACTORS) for d in reversed(SESSIONS[35:41])]
    assert_frame_equal(rev[0].universe, days[40].universe)
    assert_frame_equal(rev[-1].universe, days[35].universe)
    other_seed = generate_universe(day, SESSIONS, UniverseSettings(seed=1), FACTORS)
    assert not other_seed.universe.equals(days[40].universe)


def test_day_must_be_a_session() -> None:
    with pytest.raises(ValueError, match="not one of the given sessions"):
        generate_universe(dt.date(2025, 4, 5), SESSIONS, SETTINGS, FACTORS)  # a Saturday


# ------------------------------------------------------------------------------ frame contents


def test_base_date_and_schema(days: list[SyntheticDay]) -> None:
    base = days[0]
    u = base.universe
    assert u["asset_return"].null_count() == u.height
    assert base.planted_factor_returns.height == 0
    assert base.planted_factor_returns.columns == [
        "date",
        "factor",
        "factor_group",
        "factor_return",
    ]
    expected = ["date", "asset_id", "sector", "market_cap", "asset_return"] + [
        f"descriptor_{s.lower()}" for s in FACTORS.styles
    ]
    assert u.columns == expected
    assert u.schema["date"] == pl.Date and u.schema["market_cap"] == pl.Float64
    assert u["asset_id"].to_list() == sorted(u["asset_id"].to_list())
    assert u["asset_id"].str.contains(r"^A\d{6}$").all()
    assert (u["date"] == SESSIONS[0]).all()
    np.testing.assert_allclose(
        u["descriptor_size"].to_numpy(), np.log(u["market_cap"].to_numpy()), rtol=1e-15
    )
    later = days[1].planted_factor_returns
    assert later["factor"].to_list() == list(FACTORS.names)
    assert later["factor_group"].to_list() == list(FACTORS.groups)


def test_market_caps_lognormal_and_smooth(days: list[SyntheticDay]) -> None:
    caps = days[0].universe["market_cap"].to_numpy()
    assert (caps > 0).all()
    assert caps.max() / np.median(caps) > 100  # a few mega caps
    assert np.mean(caps < np.mean(caps)) > 0.7  # many small ones
    a = days[10].universe.join(days[11].universe, on="asset_id")
    step = np.log(a["market_cap_right"].to_numpy() / a["market_cap"].to_numpy())
    assert np.abs(step).max() < 0.02  # a smooth path, no jumps


def test_sector_skew() -> None:
    u = generate_universe(SESSIONS[0], SESSIONS, SETTINGS, FACTORS).universe
    counts = dict(u.group_by("sector").len().iter_rows())
    assert set(counts) == set(TRBC_SECTORS)
    tiny = [
        "Academic & Educational Services",
        "Government Activity",
        "Institutions, Associations & Organizations",
    ]
    for s in tiny:
        assert 1 <= counts[s] < 10
    for s in ["Financials", "Industrials", "Technology", "Healthcare", "Consumer Cyclicals"]:
        assert counts[s] > 250
    assert sum(counts.values()) == u.height


def test_entry_exit_and_listing_day_return(days: list[SyntheticDay]) -> None:
    n = SETTINGS.n_assets
    base_ids = set(days[0].universe["asset_id"])
    late = generate_universe(SESSIONS[251], SESSIONS, SETTINGS, FACTORS).universe
    late_ids = set(late["asset_id"])
    listed, delisted = late_ids - base_ids, base_ids - late_ids
    assert 0.02 * n <= len(listed) <= 0.03 * n
    assert 0.02 * n <= len(delisted) <= 0.03 * n
    assert len(base_ids | late_ids) <= n

    events = 0
    for t in range(1, N_DAYS - 1):
        prev, cur, nxt = (days[i].universe for i in (t - 1, t, t + 1))
        new = set(cur["asset_id"]) - set(prev["asset_id"])
        for frame in (cur,):
            rets = frame.filter(pl.col("asset_id").is_in(list(new)))["asset_return"]
            assert rets.null_count() == len(new)  # no return on the listing day
        nxt_rets = nxt.filter(pl.col("asset_id").is_in(list(new)))["asset_return"]
        assert nxt_rets.null_count() <= 1  # from the second day on (bar a random gap)
        events += len(new)
        gone = set(prev["asset_id"]) - set(cur["asset_id"])
        events += len(gone)
    assert events > 10  # entries and exits do happen within the window


def test_missing_return_fraction(days: list[SyntheticDay]) -> None:
    missing = total = 0
    for t in range(1, N_DAYS):
        prev_ids = days[t - 1].universe["asset_id"]
        cur = days[t].universe.filter(pl.col("asset_id").is_in(prev_ids.implode()))
        missing += cur["asset_return"].null_count()
        total += cur.height
    frac = missing / total
    assert 0.002 < frac < 0.004, frac


# --------------------------------------------------------------------------- the planted model


def _design(
    prev: pl.DataFrame, factors: FactorSet, category: str
) -> tuple[pl.DataFrame, np.ndarray]:
    """Exposures of the previous session as the pipeline computes them, as a numpy design."""
    wide = style_exposures(prev, factors.styles)
    cats = wide[category].to_list()
    dummies = np.array([[c == s for s in factors.sectors] for c in cats], dtype=np.float64)
    x = np.column_stack([np.ones(wide.height), wide.select(factors.styles).to_numpy(), dummies])
    return wide, x


def _cat_weights(prev: pl.DataFrame, factors: FactorSet, category: str) -> np.ndarray:
    caps = dict(prev.group_by(category).agg(pl.col("market_cap").sum()).iter_rows())
    w = np.array([caps.get(s, 0.0) for s in factors.sectors])
    return w / w.sum()


def test_zero_sum_constraint_exact(days: list[SyntheticDay]) -> None:
    sec = FACTORS.indices("trbc")
    for t in range(1, N_DAYS):
        w = _cat_weights(days[t - 1].universe, FACTORS, "sector")
        f = days[t].planted_factor_returns["factor_return"].to_numpy()
        assert abs(w @ f[sec]) < 1e-12
        assert np.abs(f[sec]).max() > 1e-4  # not trivially zero


def _constrained_lstsq(x: np.ndarray, y: np.ndarray, w: np.ndarray, sec: list[int]) -> np.ndarray:
    """min ||y - X f|| subject to sum_s w_s f_s = 0, by substituting the largest-weight sector."""
    k = x.shape[1]
    pivot = sec[int(np.argmax(w))]
    free = [j for j in range(k) if j != pivot]
    c = np.zeros((k, k - 1))
    c[free, np.arange(k - 1)] = 1.0
    w_full = np.zeros(k)
    w_full[sec] = w
    c[pivot, :] = -w_full[free] / w_full[pivot]
    g, *_ = np.linalg.lstsq(x @ c, y, rcond=None)
    return c @ g


def test_regression_recovers_planted_returns(days: list[SyntheticDay]) -> None:
    sec = FACTORS.indices("trbc")
    est, true, resid = [], [], []
    for t in range(1, N_DAYS):
        prev, cur = days[t - 1].universe, days[t].universe
        wide, x = _design(prev, FACTORS, "sector")
        y_frame = wide.select("asset_id").join(
            cur.select("asset_id", "asset_return"), on="asset_id", how="left"
        )
        y = y_frame["asset_return"].to_numpy().astype(np.float64)
        ok = np.isfinite(y)
        w = _cat_weights(prev, FACTORS, "sector")
        f_hat = _constrained_lstsq(x[ok], y[ok], w, sec)
        f_true = days[t].planted_factor_returns["factor_return"].to_numpy()
        est.append(f_hat)
        true.append(f_true)
        resid.append(y[ok] - x[ok] @ f_true)
    est_a, true_a = np.array(est), np.array(true)
    corr = [np.corrcoef(est_a[:, k], true_a[:, k])[0, 1] for k in range(FACTORS.k)]
    assert corr[0] > 0.9, corr[0]  # Market
    styles = FACTORS.indices("style")
    assert min(corr[k] for k in styles) > 0.9  # styles too (3,000 assets, 0.1-0.3% vol)
    big = [FACTORS.names.index(s) for s in ("Financials", "Technology", "Healthcare")]
    assert min(corr[k] for k in big) > 0.9
    # the residual of the planted model is the stated idiosyncratic noise: fat-tailed, ~2% vol
    e = np.concatenate(resid)
    assert 0.015 < e.std() < 0.03
    kurt = np.mean((e - e.mean()) ** 4) / e.var() ** 2
    assert kurt > 4.0, kurt


def test_planted_volatility_levels_and_regime() -> None:
    calm, storm = dt.date(2025, 7, 1), dt.date(2025, 10, 15)
    assert volatility_regime(calm) == pytest.approx(1.0, abs=1e-6)
    assert 1.9 < volatility_regime(storm) <= 2.0
    assert 1.4 < volatility_regime(dt.date(2026, 4, 7)) <= 1.5
    # smooth: no day-to-day jump bigger than 0.15 over two years, across New Year
    grid = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(730)]
    v = np.array([volatility_regime(d) for d in grid])
    assert np.abs(np.diff(v)).max() < 0.15


def test_industry_group_level_at_scale() -> None:
    ms = FactorRiskModelSettings(
        universe=UniverseSettings(n_assets=10_000, trbc_level="industry_group", n_extra_styles=12)
    )
    fs = factor_set_for(ms)
    generate_universe(SESSIONS[0], SESSIONS, ms.universe, fs)  # static attributes, cached
    prev = generate_universe(SESSIONS[29], SESSIONS, ms.universe, fs)
    timings = []
    for _ in range(2):
        t0 = time.perf_counter()
        cur = generate_universe(SESSIONS[30], SESSIONS, ms.universe, fs)
        timings.append(time.perf_counter() - t0)
    assert min(timings) < 0.5, timings
    u = cur.universe
    assert "industry_group" in u.columns
    assert u.columns.index("industry_group") == 3
    assert set(u["industry_group"]) == set(TRBC_INDUSTRY_GROUPS)
    mapped = u["industry_group"].replace_strict(TRBC_INDUSTRY_GROUPS)
    assert (mapped == u["sector"]).all()
    assert len([c for c in u.columns if c.startswith("descriptor_")]) == len(fs.styles)
    w = _cat_weights(prev.universe, fs, "industry_group")
    f = cur.planted_factor_returns["factor_return"].to_numpy()
    assert abs(w @ f[fs.indices("trbc")]) < 1e-12
    # an economic-sector factor set does not fit an industry-group universe
    with pytest.raises(ValueError, match="categories"):
        generate_universe(SESSIONS[1], SESSIONS, ms.universe, FACTORS)


def test_without_market_no_constraint() -> None:
    fs = FactorSet.build(market=False)
    small = UniverseSettings(n_assets=400)
    prev = generate_universe(SESSIONS[4], SESSIONS, small, fs).universe
    cur = generate_universe(SESSIONS[5], SESSIONS, small, fs)
    assert "Market" not in cur.planted_factor_returns["factor"].to_list()
    w = _cat_weights(prev, fs, "sector")
    f = cur.planted_factor_returns["factor_return"].to_numpy()
    # sector returns then carry the market, so they are not cap-weighted zero-sum
    assert abs(w @ f[fs.indices("trbc")]) > 1e-6


@pytest.mark.parametrize("industry", [False, True])
def test_a_range_at_once_equals_day_by_day(days: list[SyntheticDay], industry: bool) -> None:
    """`generate_universe_range` (what the universe asset calls for a chunk of sessions) gives
    the rows of one `generate_universe` call per day, bit for bit, from the base date on and
    for a range starting mid-history."""
    if industry:
        fm = FactorRiskModelSettings(
            universe=UniverseSettings(n_assets=800, trbc_level="industry_group", n_extra_styles=3)
        )
        settings, factors = fm.universe, factor_set_for(fm)
        single = [generate_universe(d, SESSIONS, settings, factors) for d in SESSIONS[20:26]]
        span = SESSIONS[20:26]
    else:
        settings, factors, single, span = SETTINGS, FACTORS, days, SESSIONS[:N_DAYS]
    at_once = generate_universe_range(span, SESSIONS, settings, factors)
    assert_frame_equal(at_once.universe, pl.concat([d.universe for d in single]), check_exact=True)
    assert_frame_equal(
        at_once.planted_factor_returns,
        pl.concat([d.planted_factor_returns for d in single]),
        check_exact=True,
    )


def _reference_range(
    days: list[dt.date], settings: UniverseSettings, factors: FactorSet
) -> SyntheticDay:
    """The straightforward version of `generate_universe_range`: one polars frame per session
    (caps and descriptors of its present assets), the previous session's exposures from
    `style_exposures` on that frame, the returns from the day's generator after its noise."""
    seed, n = settings.seed, settings.n_assets
    st = synthetic._static(seed, n)
    by_group = settings.trbc_level == "industry_group"
    styles = factors.styles

    def frame(i: int) -> tuple[pl.DataFrame, np.ndarray, np.random.Generator]:
        day = SESSIONS[i]
        rng = np.random.default_rng([seed, day.toordinal()])
        noise = rng.standard_normal((n, len(styles)))
        present = np.flatnonzero((st.entry <= i) & (i < st.exit))
        tau = (day - SESSIONS[0]).days / 365.25
        log_cap = (
            st.log_cap0[present]
            + st.cap_drift[present] * tau
            + st.cap_amp[present]
            * np.sin(2.0 * np.pi * st.cap_freq[present] * tau + st.cap_phase[present])
            + 0.08 * math.sin(2.0 * math.pi * tau / 1.3)
        )
        cols = {"date": [day] * len(present), "asset_id": st.asset_id.gather(present)}
        cols["sector"] = st.sector.gather(present)
        if by_group:
            cols["industry_group"] = st.industry_group.gather(present)
        cols["market_cap"] = np.exp(log_cap)
        for j, style in enumerate(styles):
            p = synthetic._style_params(seed, n, style)
            values = (
                p.level[present]
                + p.amp[present] * np.sin(2.0 * np.pi * p.freq * tau + p.phase[present])
                + 0.05 * noise[present, j]
            )
            values = log_cap if style == "Size" else np.where(p.missing[present], np.nan, values)
            cols[f"descriptor_{style.lower()}"] = values
        out = pl.DataFrame(cols, schema_overrides={"date": pl.Date})
        return out.with_columns(pl.col(pl.Float64).fill_nan(None)), present, rng

    cats = list(TRBC_INDUSTRY_GROUPS) if by_group else list(TRBC_SECTORS)
    cat_all = np.array([factors.sectors.index(c) for c in cats])[
        st.group_code if by_group else st.sector_code
    ]
    params = np.array(
        [
            synthetic._factor_params(seed, *fg)
            for fg in zip(factors.names, factors.groups, strict=True)
        ]
    )
    sec = np.array(factors.indices("trbc"), dtype=np.int64)
    sty = np.array(factors.indices("style"), dtype=np.int64)
    market = factors.names.index("Market") if "Market" in factors.names else None
    universes, planted = [], []
    for day in days:
        i = SESSIONS.index(day)
        cur, present, rng = frame(i)
        ret = np.full(cur.height, np.nan)
        if i > 0:
            prev, prev_present, _ = frame(i - 1)
            x = style_exposures(prev, styles).select(styles).to_numpy()
            ret, f = synthetic._planted_returns(
                st, rng, day, present, prev_present, prev["market_cap"].to_numpy(), x,
                cat_all, params, sec, sty, market,
            )  # fmt: skip
            planted.append(
                pl.DataFrame(
                    {"date": [day] * factors.k, "factor": list(factors.names)}
                    | {"factor_group": list(factors.groups), "factor_return": f},
                    schema_overrides={"date": pl.Date},
                )
            )
        cur = cur.with_columns(pl.Series("asset_return", ret).fill_nan(None))
        keys = ["date", "asset_id", "sector", *(["industry_group"] if by_group else [])]
        descriptors = [f"descriptor_{s.lower()}" for s in styles]
        universes.append(cur.select(*keys, "market_cap", "asset_return", *descriptors))
    return SyntheticDay(pl.concat(universes), pl.concat(planted))


@pytest.mark.parametrize(
    ("universe", "factors", "span"),
    [
        (SETTINGS, FACTORS, slice(0, 6)),
        (SETTINGS, FactorSet.build(market=False), slice(40, 44)),
        (
            UniverseSettings(n_assets=500, trbc_level="industry_group", n_extra_styles=2),
            None,
            slice(7, 11),
        ),
        (UniverseSettings(n_assets=3), FACTORS, slice(0, 3)),  # fewer assets than styles
    ],
)
def test_range_bit_identical_to_straightforward_version(
    universe: UniverseSettings, factors: FactorSet | None, span: slice
) -> None:
    """The block of arrays (`generate_universe_range`) gives the rows, bit for bit, of the
    per-session frames it replaced (module docstring: each day a pure function of the seed,
    its date and its previous session)."""
    if factors is None:
        factors = factor_set_for(FactorRiskModelSettings(universe=universe))
    days = SESSIONS[span]
    with np.errstate(all="ignore"):
        got = generate_universe_range(days, SESSIONS, universe, factors)
        expected = _reference_range(days, universe, factors)
    assert_frame_equal(got.universe, expected.universe, check_exact=True)
    assert_frame_equal(
        got.planted_factor_returns, expected.planted_factor_returns, check_exact=True
    )
    for name in got.universe.columns:
        if got.universe[name].dtype == pl.Float64:
            a, b = (f[name].fill_null(0.0).to_numpy() for f in (got.universe, expected.universe))
            np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
