"""The embedded synthetic US equity universe, with a planted factor model.

`generate_universe(day, sessions, settings, factors)` returns the universe frame of
ARCHITECTURE.md for one exchange session, plus the true ("planted") factor returns of that day,
so that every later stage (regression, forecasts, backtests) can be checked against a known
truth. What is planted:

* Assets: `settings.n_assets` ids `A000001`, ... Each has a TRBC economic sector with a realistic
  skew (Financials, Healthcare, Technology, Industrials, Consumer Cyclicals large; Academic &
  Educational Services, Government Activity and Institutions, Associations & Organizations a
  handful of names) and a TRBC industry group of that sector. The `sector` column is always the
  economic sector; with `settings.trbc_level == "industry_group"` an `industry_group` column is
  added and the *factor set* decides which column is the model's category (its sector factors
  are then the industry groups; use `exposures_long(..., category_column="industry_group")`).
* Entry and exit: 3% of the assets list after the base date, 3% delist before session 252;
  these dates are session *indices* counted from the base date `sessions[0]`.
* Market caps: lognormal across assets (median about 2bn, a few names near 1trn), moving along a
  smooth *deterministic* path in time (per-asset drift plus a slow sine wave, plus a common
  wave). They do not compound the simulated returns: a day must be reproducible on its own,
  whatever order the days are generated in, without replaying the history. Caps and returns are
  therefore not accounting-consistent; the model only needs caps as regression weights and
  constraint weights, and the Size descriptor.
* Descriptors `descriptor_<style lower>`: `Size` is log market cap; the others are a static
  fat-tailed (Student-t, 4 dof) level per asset, a slow per-asset sine wave and a small daily
  noise; about 1% of (asset, style) pairs are missing (static), so outliers and gaps exercise
  the winsorising and the missing-value rule.
* Returns: r_t = X_{t-1} f_t + e_t (the timing of ARCHITECTURE.md), with X_{t-1} exactly the
  exposures the pipeline computes for the previous session: Market 1, the category dummy, and
  `style_exposures` of the previous session's universe frame. True factor returns f_t: Market
  daily vol 1%, categories 0.4%-0.7%, styles 0.1%-0.3%, correlated through one common latent
  shock, all scaled by `volatility_regime(day)` (a smooth function of the calendar date that
  doubles volatility for a few weeks in October and raises it 1.5x in early April). With a
  Market factor the category returns satisfy the cap-weighted zero-sum constraint
  sum_s w_s f_s = 0 exactly (w_s: category cap share over the previous session's universe).
  Idiosyncratic noise: Student-t with 4.5 dof scaled to unit variance, times a per-asset vol of
  1%-4% daily (about 2% typical, higher for small caps).
* Gaps: the base date has caps and descriptors but no returns; an asset has no return on its
  listing day; about 0.3% of the other returns are missing at random.

Determinism: static attributes come from `np.random.default_rng([seed, 0])` (per-style and
per-factor parameters from `default_rng([seed, 0, crc32(name)])`, so they do not depend on
which other styles are in the model) and per-day draws from
`np.random.default_rng([seed, day.toordinal()])`. A day depends only on the seed, the day, its
session index and the previous session, so the cost of one day does not grow with the history.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from factorcov_pipeline.core.exposures import Segments, descriptor_column, standardised_style
from factorcov_pipeline.core.factors import (
    GROUP_MARKET,
    GROUP_STYLE,
    GROUP_TRBC,
    MARKET_FACTOR,
    TRBC_INDUSTRY_GROUPS,
    TRBC_SECTORS,
    FactorSet,
)
from factorcov_pipeline.core.settings import UniverseSettings

# Approximate share of listed US names per TRBC economic sector (sums to about 1).
SECTOR_WEIGHTS: dict[str, float] = {
    "Academic & Educational Services": 0.002,
    "Basic Materials": 0.05,
    "Consumer Cyclicals": 0.12,
    "Consumer Non-Cyclicals": 0.05,
    "Energy": 0.05,
    "Financials": 0.20,
    "Government Activity": 0.001,
    "Healthcare": 0.16,
    "Industrials": 0.13,
    "Institutions, Associations & Organizations": 0.0013,
    "Real Estate": 0.06,
    "Technology": 0.15,
    "Utilities": 0.03,
}

HORIZON_SESSIONS = 252  # entry/exit session indices are drawn in [1, HORIZON_SESSIONS)
LISTING_FRACTION = 0.03
DELISTING_FRACTION = 0.03
MISSING_RETURN_FRACTION = 0.003
MISSING_DESCRIPTOR_FRACTION = 0.01
IDIO_DOF = 4.5
MARKET_DAILY_VOL = 0.01
_THIN = 10  # categories with fewer names never gain or lose assets (they would empty out)
_NEVER = np.iinfo(np.int64).max

_PLANTED_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "factor": pl.String(),
    "factor_group": pl.String(),
    "factor_return": pl.Float64(),
}


@dataclass(frozen=True)
class SyntheticDay:
    """One session of the synthetic dataset.

    `universe`: the universe frame of ARCHITECTURE.md for the day, sorted by asset_id.
    `planted_factor_returns`: the true f_t (`date, factor, factor_group, factor_return`), in the
    factor set's order; empty on the base date.
    """

    universe: pl.DataFrame
    planted_factor_returns: pl.DataFrame


@dataclass(frozen=True)
class _Static:
    asset_id: pl.Series
    sector: pl.Series
    industry_group: pl.Series
    sector_code: np.ndarray  # index into TRBC_SECTORS
    group_code: np.ndarray  # index into list(TRBC_INDUSTRY_GROUPS)
    log_cap0: np.ndarray
    cap_drift: np.ndarray
    cap_amp: np.ndarray
    cap_freq: np.ndarray
    cap_phase: np.ndarray
    idio_vol: np.ndarray
    entry: np.ndarray  # first session index present
    exit: np.ndarray  # first session index absent


@dataclass(frozen=True)
class _StyleParams:
    level: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    freq: float
    missing: np.ndarray


def _allocate(n: int, weights: np.ndarray, minimum: int = 1) -> np.ndarray:
    """Split n into integer counts proportional to weights (largest remainder), each >= minimum
    when n allows it."""
    w = np.asarray(weights, dtype=np.float64)
    m = len(w)
    if n < minimum * m:
        minimum = 0
    rest = n - minimum * m
    raw = w / w.sum() * rest
    counts = np.floor(raw).astype(np.int64)
    short = rest - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts + minimum


def _name_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, 0, zlib.crc32(name.encode("utf-8"))])


@lru_cache(maxsize=4)
def _static(seed: int, n: int) -> _Static:
    """Asset attributes that do not change over time (from default_rng([seed, 0]))."""
    rng = np.random.default_rng([seed, 0])
    sector_w = np.array([SECTOR_WEIGHTS[s] for s in TRBC_SECTORS])
    sector_code = rng.permutation(np.repeat(np.arange(len(TRBC_SECTORS)), _allocate(n, sector_w)))
    groups = list(TRBC_INDUSTRY_GROUPS)
    group_sector = np.array([TRBC_SECTORS.index(TRBC_INDUSTRY_GROUPS[g]) for g in groups])
    group_w = rng.gamma(2.0, size=len(groups))
    group_code = np.empty(n, dtype=np.int64)
    for s in range(len(TRBC_SECTORS)):  # loop over the 13 sectors, not over assets
        members = np.flatnonzero(sector_code == s)
        gs = np.flatnonzero(group_sector == s)
        counts = _allocate(len(members), group_w[gs])
        group_code[members] = rng.permutation(np.repeat(gs, counts))

    log_cap0 = math.log(2e9) + 1.7 * rng.standard_normal(n)
    cap_drift = rng.normal(0.05, 0.20, n)
    cap_amp = rng.uniform(0.05, 0.30, n)
    cap_freq = 1.0 / rng.uniform(0.5, 2.0, n)
    cap_phase = rng.uniform(0.0, 2.0 * math.pi, n)
    size_z = (log_cap0 - log_cap0.mean()) / log_cap0.std()
    idio_vol = np.clip(0.02 * np.exp(-0.15 * size_z + 0.2 * rng.standard_normal(n)), 0.01, 0.04)

    sector_n = np.bincount(sector_code, minlength=len(TRBC_SECTORS))
    group_n = np.bincount(group_code, minlength=len(groups))
    pool = np.flatnonzero((sector_n[sector_code] >= _THIN) & (group_n[group_code] >= _THIN))
    pool = rng.permutation(pool)
    n_list = min(round(LISTING_FRACTION * n), len(pool))
    n_delist = min(round(DELISTING_FRACTION * n), len(pool) - n_list)
    entry = np.zeros(n, dtype=np.int64)
    exit_ = np.full(n, _NEVER, dtype=np.int64)
    entry[pool[:n_list]] = rng.integers(1, HORIZON_SESSIONS, n_list)
    exit_[pool[n_list : n_list + n_delist]] = rng.integers(2, HORIZON_SESSIONS, n_delist)

    sectors = np.array(TRBC_SECTORS, dtype=object)
    group_names = np.array(groups, dtype=object)
    return _Static(
        asset_id=pl.Series("asset_id", [f"A{i + 1:06d}" for i in range(n)], dtype=pl.String),
        sector=pl.Series("sector", sectors[sector_code].tolist(), dtype=pl.String),
        industry_group=pl.Series(
            "industry_group", group_names[group_code].tolist(), dtype=pl.String
        ),
        sector_code=sector_code,
        group_code=group_code,
        log_cap0=log_cap0,
        cap_drift=cap_drift,
        cap_amp=cap_amp,
        cap_freq=cap_freq,
        cap_phase=cap_phase,
        idio_vol=idio_vol,
        entry=entry,
        exit=exit_,
    )


@lru_cache(maxsize=64)
def _style_params(seed: int, n: int, style: str) -> _StyleParams:
    """Per-asset descriptor parameters of one style (independent of the other styles)."""
    rng = _name_rng(seed, "descriptor:" + style)
    return _StyleParams(
        level=rng.standard_t(4.0, n),
        amp=rng.uniform(0.0, 0.5, n),
        phase=rng.uniform(0.0, 2.0 * math.pi, n),
        freq=float(1.0 / rng.uniform(0.5, 2.0)),
        missing=rng.random(n) < MISSING_DESCRIPTOR_FRACTION,
    )


@lru_cache(maxsize=256)
def _factor_params(seed: int, name: str, group: str) -> tuple[float, float]:
    """(daily vol, loading on the common latent shock) of one planted factor."""
    rng = _name_rng(seed, f"factor:{group}:{name}")
    loading = float(rng.uniform(-0.6, 0.6))
    if group == GROUP_MARKET:
        return MARKET_DAILY_VOL, loading
    if group == GROUP_STYLE:
        return float(rng.uniform(0.001, 0.003)), loading
    return float(rng.uniform(0.004, 0.007)), loading


def volatility_regime(day: dt.date) -> float:
    """Multiplier of all planted volatilities on `day`: 1 in calm times, about 2 in mid-October
    and 1.5 in early April (Gaussian bumps in day of year, circular so smooth over New Year)."""
    doy = day.timetuple().tm_yday

    def bump(centre: float, width: float) -> float:
        d = abs(doy - centre) % 365.25
        d = min(d, 365.25 - d)
        return math.exp(-0.5 * (d / width) ** 2)

    return 1.0 + 1.0 * bump(288.0, 10.0) + 0.5 * bump(97.0, 7.0)


def _session_index(day: dt.date, sessions: Sequence[dt.date]) -> int:
    i = bisect.bisect_left(sessions, day)
    if i >= len(sessions) or sessions[i] != day:
        raise ValueError(f"{day} is not one of the given sessions")
    return i


@dataclass(frozen=True)
class _Block:
    """Caps and descriptors of several sessions (no returns yet), one row per present asset,
    rows sorted by session and asset (the asset_id order: ids are zero-padded).

    `index`: the sessions' indices, ascending; `offsets`: rows offsets[p]:offsets[p + 1] are
    session p's; `asset`: each row's asset index; `log_cap`; `descriptors`: one array per style
    (NaN where missing); `rngs`: each session's generator positioned after its descriptor
    noise (the returns are drawn from it next).
    """

    index: list[int]
    offsets: np.ndarray
    asset: np.ndarray
    log_cap: np.ndarray
    descriptors: list[np.ndarray]
    rngs: list[np.random.Generator]

    def rows(self, p: int) -> slice:
        return slice(int(self.offsets[p]), int(self.offsets[p + 1]))


def _block(
    st: _Static,
    seed: int,
    sessions: Sequence[dt.date],
    index: list[int],
    styles: Sequence[str],
) -> _Block:
    """The sessions `index` (ascending) at once: each row's numbers are the same elementwise
    operations, in the same order, as for its day alone (only the draws are per day, from the
    day's own generator), so a day does not depend on which other days are in the block."""
    n = len(st.log_cap0)
    base = sessions[0]
    rngs = []
    noise = np.empty((len(index), n, len(styles)))
    for p, i in enumerate(index):  # per-day draws: one generator per day
        rng = np.random.default_rng([seed, sessions[i].toordinal()])
        rng.standard_normal(out=noise[p])  # = rng.standard_normal((n, len(styles)))
        rngs.append(rng)
    at = np.array(index, dtype=np.int64)[:, None]
    day, asset = np.nonzero((st.entry <= at) & (at < st.exit))  # sorted by day, then asset
    offsets = np.searchsorted(day, np.arange(len(index) + 1))
    taus = [(sessions[i] - base).days / 365.25 for i in index]
    tau = np.array(taus)[day]
    wave = np.array([0.08 * math.sin(2.0 * math.pi * t / 1.3) for t in taus])[day]
    log_cap = (
        st.log_cap0[asset]
        + st.cap_drift[asset] * tau
        + st.cap_amp[asset] * np.sin(2.0 * math.pi * st.cap_freq[asset] * tau + st.cap_phase[asset])
        + wave
    )
    descriptors = []
    if styles:
        noise_rows = noise[day, asset]  # (rows, styles)
    for j, style in enumerate(styles):
        if style == "Size":
            descriptors.append(log_cap)
            continue
        p = _style_params(seed, n, style)
        angle = np.array([2.0 * math.pi * p.freq * t for t in taus])[day]
        values = (
            p.level[asset] + p.amp[asset] * np.sin(angle + p.phase[asset]) + 0.05 * noise_rows[:, j]
        )
        descriptors.append(np.where(p.missing[asset], np.nan, values))
    return _Block(list(index), offsets, asset, log_cap, descriptors, rngs)


def _block_style_exposures(
    block: _Block, positions: list[int], cap: np.ndarray, n_styles: int, winsorize_sigma: float
) -> dict[int, np.ndarray]:
    """`style_exposures` of the block's sessions at `positions` (ascending), computed on the
    arrays directly (the rows are already in the order it sorts them into; every statistic is
    per date): {position: (rows of the session, styles)}."""
    if not positions:
        return {}
    spans = [block.rows(p) for p in positions]
    rows = np.concatenate([np.arange(r.start, r.stop) for r in spans])
    counts = np.array([r.stop - r.start for r in spans], dtype=np.int64)
    if n_styles and rows.size:
        kept = counts > 0  # an empty session is no segment
        starts = np.r_[0, np.cumsum(counts)[:-1]][kept]
        segments = Segments(starts, counts[kept])
        cap_rows = cap[rows]
        by_style = np.stack(
            [
                standardised_style(d[rows], cap_rows, segments, winsorize_sigma)
                for d in block.descriptors
            ]
        )
    else:
        by_style = np.zeros((n_styles, rows.size))
    # (rows, styles) views in column-major order, as polars' to_numpy of the wide frame was
    ends = np.cumsum(counts)
    return {p: by_style[:, e - c : e].T for p, c, e in zip(positions, counts, ends, strict=True)}


def generate_universe(
    day: dt.date,
    sessions: Sequence[dt.date],
    settings: UniverseSettings,
    factors: FactorSet,
    *,
    winsorize_sigma: float = 3.0,
) -> SyntheticDay:
    """The synthetic universe frame of one session and the planted factor returns of that day.

    `sessions`: the ordered exchange sessions from the partitions' start (the base date,
    `sessions[0]`) up to at least `day`. `factors` fixes the styles (one descriptor column each),
    whether Market exists, and the categories: TRBC economic sectors, or industry groups when
    `settings.trbc_level == "industry_group"` (then its sectors must be industry groups).
    `winsorize_sigma` must equal the pipeline's `exposures.winsorize_sigma` for the planted
    exposures to be exactly the ones the pipeline computes (default 3.0, as in the settings).
    """
    return generate_universe_range(
        [day], sessions, settings, factors, winsorize_sigma=winsorize_sigma
    )


def generate_universe_range(
    days: Sequence[dt.date],
    sessions: Sequence[dt.date],
    settings: UniverseSettings,
    factors: FactorSet,
    *,
    winsorize_sigma: float = 3.0,
) -> SyntheticDay:
    """`generate_universe` for several sessions at once: the same rows, bit for bit, in date
    order (each day still depends only on the seed, its date and its previous session).

    Cheaper than a call per day: the caps and descriptors of every session needed (the days and
    their previous sessions) are computed at once as arrays (`_block`; only the draws are per
    day), the previous sessions' style exposures come from one `standardised_style` call per
    style over all of them (its statistics are per date, so each date's result is the same as
    alone), and the frame is built once. tests/test_synthetic.py keeps the per-session version
    (`_reference_range`) and checks the two bit for bit.
    """
    days = list(days)
    if not days:
        return SyntheticDay(pl.DataFrame(), pl.DataFrame(schema=_PLANTED_SCHEMA))
    seed, n = int(settings.seed), int(settings.n_assets)
    styles = factors.styles
    by_group = settings.trbc_level == "industry_group"
    st = _static(seed, n)

    category_names = list(TRBC_INDUSTRY_GROUPS) if by_group else list(TRBC_SECTORS)
    missing = sorted(set(category_names) - set(factors.sectors))
    if missing:
        raise ValueError(
            f"the synthetic universe at trbc_level={settings.trbc_level!r} needs the categories "
            f"{missing} in the factor set (use factor_set_for)"
        )
    cols = ["date", "asset_id", "sector", *(["industry_group"] if by_group else []), "market_cap"]
    desc_cols = [descriptor_column(s) for s in styles]

    indices = [_session_index(d, sessions) for d in days]
    # Every session whose caps and descriptors are needed (the days and their previous
    # sessions), built once, as one block of arrays.
    needed = sorted(set(indices) | {i - 1 for i in indices if i > 0})
    block = _block(st, seed, sessions, needed, styles)
    position = {i: p for p, i in enumerate(needed)}
    cap = np.exp(block.log_cap)
    # the previous sessions' style exposures, as the pipeline computes them
    x_style_at = _block_style_exposures(
        block,
        sorted({position[i - 1] for i in indices if i > 0}),
        cap,
        len(styles),
        winsorize_sigma,
    )

    cat_code_all = st.group_code if by_group else st.sector_code
    # category index into factors.sectors for every asset
    cat_to_factor = np.array([factors.sectors.index(c) for c in category_names])
    cat_all = cat_to_factor[cat_code_all]
    k = factors.k
    params = np.array(
        [_factor_params(seed, nm, g) for nm, g in zip(factors.names, factors.groups, strict=True)]
    ).reshape(k, 2)
    sec_idx = np.array(factors.indices(GROUP_TRBC), dtype=np.int64)
    sty_idx = np.array(factors.indices(GROUP_STYLE), dtype=np.int64)
    has_market = GROUP_MARKET in factors.groups

    spans = [block.rows(position[i]) for i in indices]
    ret = np.full(sum(r.stop - r.start for r in spans), np.nan)
    planted_days, planted_f = [], []
    at = 0
    for day, index, rows in zip(days, indices, spans, strict=True):
        size = rows.stop - rows.start
        if index > 0:
            p, q = position[index], position[index - 1]
            ret[at : at + size], f = _planted_returns(
                st,
                block.rngs[p],
                day,
                block.asset[rows],
                block.asset[block.rows(q)],
                cap[block.rows(q)],
                x_style_at[q],
                cat_all,
                params,
                sec_idx,
                sty_idx,
                factors.names.index(MARKET_FACTOR) if has_market else None,
            )
            planted_days.append(day)
            planted_f.append(f)
        at += size

    out = np.concatenate([np.arange(r.start, r.stop) for r in spans])
    out_asset = block.asset[out]
    sizes = [r.stop - r.start for r in spans]
    columns: dict[str, pl.Series] = {
        "date": pl.Series("date", days, dtype=pl.Date).gather(
            np.repeat(np.arange(len(days)), sizes)
        ),
        "asset_id": st.asset_id.gather(out_asset),
        "sector": st.sector.gather(out_asset),
    }
    if by_group:
        columns["industry_group"] = st.industry_group.gather(out_asset)
    columns["market_cap"] = pl.Series("market_cap", cap[out], nan_to_null=True)
    columns["asset_return"] = pl.Series("asset_return", ret, dtype=pl.Float64, nan_to_null=True)
    for name, values in zip(desc_cols, block.descriptors, strict=True):
        columns[name] = pl.Series(name, values[out], nan_to_null=True)
    planted = pl.DataFrame(
        {
            "date": pl.Series("date", planted_days, dtype=pl.Date).gather(
                np.repeat(np.arange(len(planted_days)), k)
            ),
            "factor": list(factors.names) * len(planted_days),
            "factor_group": list(factors.groups) * len(planted_days),
            "factor_return": np.concatenate(planted_f) if planted_f else np.zeros(0),
        },
        schema=_PLANTED_SCHEMA,
    )
    return SyntheticDay(pl.DataFrame(columns).select(*cols, "asset_return", *desc_cols), planted)


def _planted_returns(
    st: _Static,
    rng: np.random.Generator,
    day: dt.date,
    present: np.ndarray,
    prev_present: np.ndarray,
    prev_caps: np.ndarray,
    x_style: np.ndarray,
    cat_all: np.ndarray,
    params: np.ndarray,
    sec_idx: np.ndarray,
    sty_idx: np.ndarray,
    market: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One day's asset returns (NaN where missing) and planted factor returns, drawn from the
    day's generator after its descriptor noise: r = X_{t-1} f_t + e_t (module docstring)."""
    n = len(st.log_cap0)
    vol, load = params[:, 0], params[:, 1]
    # planted factor returns: sigma_k (b_k z0 + sqrt(1 - b_k^2) z_k), scaled by the regime
    z = rng.standard_normal(len(vol) + 1)
    regime = volatility_regime(day)
    f = regime * vol * (load * z[0] + np.sqrt(1.0 - load**2) * z[1:])
    if market is not None:
        cap_by_cat = np.bincount(cat_all[prev_present], weights=prev_caps, minlength=len(sec_idx))
        w = cap_by_cat / cap_by_cat.sum()
        f_sec = f[sec_idx]
        f[sec_idx] = f_sec - w @ f_sec
    else:
        f[sec_idx] += regime * MARKET_DAILY_VOL * z[0]

    # returns of assets present on both sessions, from the previous session's exposures
    idio = rng.standard_t(IDIO_DOF, n) * math.sqrt((IDIO_DOF - 2.0) / IDIO_DOF)
    missing_ret = rng.random(n) < MISSING_RETURN_FRACTION
    pos_prev = np.full(n, -1, dtype=np.int64)
    pos_prev[prev_present] = np.arange(len(prev_present))
    rows = pos_prev[present]
    both = rows >= 0
    a = present[both]
    r = f[sec_idx][cat_all[a]] + x_style[rows[both]] @ f[sty_idx]
    if market is not None:
        r = r + f[market]
    r = r + (1.0 + 0.5 * (regime - 1.0)) * st.idio_vol[a] * idio[a]
    ret = np.full(len(present), np.nan)
    ret[both] = np.where(missing_ret[a], np.nan, r)
    return ret, f
