"""Style exposures (winsorised, cap-weighted standardised), the stored wide table and the long form.

Style descriptors are turned into exposures with the Barra convention of Menchero, Orr and Wang
(2011), "The Barra US Equity Model (USE4), Methodology Notes", section 3 ("Factor exposures"):
each descriptor is standardised cross-sectionally to a *cap-weighted* mean of 0 and an
*equal-weighted* standard deviation of 1, outliers are trimmed, and the result is standardised
again. The cap-weighted mean of 0 makes the cap-weighted market portfolio style-neutral, which is
what lets the Market factor return be read as the return of the cap-weighted market.

All statistics are computed per date with numpy segment reductions (`np.add.reduceat`) over
rows sorted by date and asset (vectorised, no loop over dates), so one call handles one date or
a whole panel and a date's result never depends on the other dates, to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from factorcov_pipeline.core.factors import GROUP_MARKET, MARKET_FACTOR, FactorSet

_KEY_COLUMNS: tuple[str, ...] = ("date", "asset_id", "sector")


def descriptor_column(style: str) -> str:
    """Name of the raw descriptor column of a style (`Size` -> `descriptor_size`)."""
    return f"descriptor_{style.lower()}"


def exposure_column(style: str) -> str:
    """Name of a ready-made exposure column of a style (`Size` -> `exposure_size`)."""
    return f"exposure_{style.lower()}"


def style_exposures(
    universe: pl.DataFrame, styles: Sequence[str], winsorize_sigma: float = 3.0
) -> pl.DataFrame:
    """Wide style exposures for every (date, asset) of a universe frame (one or many dates).

    For each style, `descriptor_<style lower>` is first clipped per date to median +/- 5
    robust standard deviations (1.4826 x MAD; `_robust_clip`), so that one extreme value cannot
    inflate the standard deviation and squash every other asset towards 0. It is then
    standardised per date (cap-weighted mean 0, equal-weighted std 1; USE4, Menchero, Orr and
    Wang 2011, section 3) over the assets that have the descriptor; a missing (null or NaN)
    descriptor gets exposure 0, the cap-weighted mean, and the column is divided by its
    equal-weighted std over the whole cross-section, so the stored exposures have a cap-weighted
    mean of 0 and an equal-weighted population (ddof=0) std of 1 over all assets of the date (to
    rounding, ~1e-15); between the two standardisations the z-scores are clipped at
    +/- `winsorize_sigma`. The stored values may lie slightly outside the clip bounds (the
    second standardisation rescales); the documented bound, checked by the blocking check
    `style_exposures_valid`, is |exposure| <= 2 x winsorize_sigma (BOUND_FACTOR).
    A descriptor without cross-sectional variation on a date gives 0 for every asset.

    If the universe has `exposure_<style lower>` instead of the descriptor, the exposures are
    taken as given (no standardisation; nulls become 0).

    Returns `date, asset_id, sector, [industry_group,] market_cap, <one Float64 column per style
    named exactly as the factor>`, sorted by date and asset_id. Every statistic is per date, so
    a date's exposures do not depend on which other dates are in the frame.
    """
    missing_keys = [c for c in (*_KEY_COLUMNS, "market_cap") if c not in universe.columns]
    if missing_keys:
        raise ValueError(f"universe frame lacks columns {missing_keys}")
    if winsorize_sigma <= 0:
        raise ValueError(f"winsorize_sigma must be positive, got {winsorize_sigma}")
    keys = [*_KEY_COLUMNS]
    if "industry_group" in universe.columns:
        keys.append("industry_group")
    raw: dict[str, pl.Expr] = {}
    given: dict[str, pl.Expr] = {}
    for style in styles:
        desc, ready = descriptor_column(style), exposure_column(style)
        if desc in universe.columns:
            x = pl.col(desc).cast(pl.Float64)
            raw[style] = pl.when(x.is_finite()).then(x)
        elif ready in universe.columns:
            given[style] = pl.col(ready).cast(pl.Float64).fill_nan(None).fill_null(0.0)
        else:
            raise ValueError(
                f"universe frame has neither {desc!r} nor {ready!r} for style {style!r}"
            )
    frame = universe.select(
        *[pl.col(c) for c in keys],
        pl.col("market_cap").cast(pl.Float64),
        *[e.alias(f"__x_{s}") for s, e in raw.items()],
        *[e.alias(s) for s, e in given.items()],
    ).sort("date", "asset_id")
    if frame.height == 0:
        return frame.select(*keys, "market_cap", *[pl.lit(0.0).alias(s) for s in styles]).clear()
    # Per-date statistics are numpy segment sums over rows sorted by (date, asset_id): a date's
    # numbers are bit-identical whatever other dates are in the frame and from run to run
    # (polars' parallel group sums are not: they vary in the last bits with the chunk layout).
    dates = frame["date"].to_numpy()
    starts = np.flatnonzero(np.r_[True, dates[1:] != dates[:-1]])
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, dates.size]))
    cap = frame["market_cap"].to_numpy()
    columns = {}
    for style in raw:
        x = frame[f"__x_{style}"].to_numpy(allow_copy=True).astype(np.float64)  # null -> NaN
        x = _robust_clip(x, starts, seg)
        z = np.clip(_standardise(x, cap, starts, seg), -winsorize_sigma, winsorize_sigma)
        e = _final(z, cap, starts, seg)
        columns[style] = e
    return frame.with_columns(
        *[pl.Series(s, v, dtype=pl.Float64) for s, v in columns.items()]
    ).select(*keys, "market_cap", *styles)


# Robust pre-clip: a descriptor further than ROBUST_CLIP robust standard deviations (1.4826 x
# the median absolute deviation, consistent with the standard deviation for normal data;
# Rousseeuw and Croux 1993, "Alternatives to the median absolute deviation", JASA 88) from the
# date's median is pulled to that distance before the first standardisation. Without it one
# extreme value inflates the standard deviation so much that every other asset's z-score
# collapses towards 0 (a Size descriptor of 1000 among values of 17-27 left the others with a
# spread of 0.14 after winsorising at 3; at 1e155 every exposure became 0).
ROBUST_CLIP = 5.0
MAD_SCALE = 1.482602218505602  # 1 / Phi^-1(3/4)
# The documented bound on stored exposures: |exposure| <= BOUND_FACTOR x winsorize_sigma. The
# re-standardisation after the clip (USE4) moves values past +/- winsorize_sigma (by a few
# percent on typical data: the clip shrinks the std, and the cap-weighted mean moves); beyond
# twice the bound the standardisation failed (it was 15.8 at sigma 3 with one extreme
# descriptor before the robust pre-clip), and the `style_exposures_valid` check fails.
# Iterating clip and re-standardise until |exposure| <= sigma is not used: with the
# cap-weighted mean (Size: large caps sit high) it converges to most assets at the bound.
BOUND_FACTOR = 2.0


def _segment_median(x: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """The median of the finite values of each date (NaN where a date has none), vectorised:
    the dates' rows are laid out as the rows of a NaN-padded (dates x longest date) matrix,
    sorted along each row (numpy sorts NaN last), and the middle element(s) of each row's
    finite values averaged (numpy's definition of the median, exactly)."""
    n_rows = np.diff(np.r_[starts, x.size])
    finite = np.where(np.isfinite(x), x, np.nan)
    width = int(n_rows.max())
    if width * starts.size == x.size:  # every date has the same rows: a plain reshape
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


def _robust_clip(x: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Clip each date's finite values to median +/- ROBUST_CLIP x 1.4826 x MAD. Where the MAD
    is 0 (more than half the values equal, e.g. non-payers of a dividend yield), the mean
    absolute deviation from the median x sqrt(pi/2) (its normal-consistent scale) is used; where
    that is 0 too the date is left alone (it is flat or has one distinct outlier value, which
    the standardisation handles)."""
    med = _segment_median(x, starts, seg)
    dev = np.abs(x - med[seg])
    mad = _segment_median(dev, starts, seg)
    valid = np.isfinite(x)
    n = np.add.reduceat(valid.astype(np.float64), starts)
    mean_ad = np.add.reduceat(np.where(valid, dev, 0.0), starts) / np.where(n > 0, n, 1.0)
    scale = np.where(mad > 0, MAD_SCALE * mad, np.sqrt(np.pi / 2.0) * mean_ad)
    scale = np.where(np.isfinite(scale), scale, 0.0)
    half = ROBUST_CLIP * scale
    lo, hi = (med - half)[seg], (med + half)[seg]
    clipped = np.clip(x, lo, hi)
    return np.where(valid & (scale[seg] > 0), clipped, x)


def _final(x: np.ndarray, cap: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Standardise the finite values (cap-weighted mean 0, equal-weighted std 1), set missing
    values to 0 (the cap-weighted mean), and divide by the equal-weighted std over the WHOLE
    cross-section, so the stored column has std exactly 1 over all assets of the date; a pure
    scale, so the cap-weighted mean stays 0 and missing values stay 0."""
    e = np.nan_to_num(_standardise(x, cap, starts, seg), nan=0.0)
    std_all = _segment_std(e, np.ones_like(e, dtype=bool), starts, seg)
    return np.where(std_all[seg] > 0.0, e / np.where(std_all > 0, std_all, 1.0)[seg], 0.0)


def _segment_std(
    x: np.ndarray, valid: np.ndarray, starts: np.ndarray, seg: np.ndarray
) -> np.ndarray:
    """Equal-weighted population (ddof=0) std of the valid values of each date (two passes)."""
    n = np.add.reduceat(valid.astype(np.float64), starts)
    xv = np.where(valid, x, 0.0)
    mean = np.add.reduceat(xv, starts) / np.where(n > 0, n, 1.0)
    dev = np.where(valid, x - mean[seg], 0.0)
    return np.sqrt(np.add.reduceat(dev * dev, starts) / np.where(n > 0, n, 1.0))


def _standardise(x: np.ndarray, cap: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """(x - cap-weighted mean) / equal-weighted std per date over the finite values; NaN stays
    NaN; 0 on a date where the values do not vary (or fewer than two): a flat descriptor carries
    no information, and dividing by a numerically-zero std would give noise or NaN."""
    valid = np.isfinite(x)
    w = np.where(valid, cap, 0.0)
    xv = np.where(valid, x, 0.0)
    w_sum = np.add.reduceat(w, starts)
    cw_mean = np.add.reduceat(w * xv, starts) / np.where(w_sum > 0, w_sum, 1.0)
    std = _segment_std(x, valid, starts, seg)
    hi = np.maximum.reduceat(np.where(valid, x, -np.inf), starts)
    lo = np.minimum.reduceat(np.where(valid, x, np.inf), starts)
    n = np.add.reduceat(valid.astype(np.int64), starts)
    flat = (n < 2) | (hi == lo) | (std == 0.0)
    z = (x - cw_mean[seg]) / np.where(flat, 1.0, std)[seg]
    return np.where(valid, np.where(flat[seg], 0.0, z), np.nan)


def _check_exposure_frame(wide: pl.DataFrame, factors: FactorSet, category_column: str) -> None:
    """The wide frame has the category column, every style, and only categories of the model
    (an unknown category would silently drop the asset's category exposure)."""
    if category_column not in wide.columns:
        raise ValueError(f"exposure frame lacks the category column {category_column!r}")
    missing_styles = [s for s in factors.styles if s not in wide.columns]
    if missing_styles:
        raise ValueError(f"exposure frame lacks style columns {missing_styles}")
    unknown = (
        wide.select(pl.col(category_column).unique())
        .filter(~pl.col(category_column).is_in(list(factors.sectors)))
        .get_column(category_column)
        .to_list()
    )
    if unknown:
        raise ValueError(
            f"categories in {category_column!r} that are not factors of the model: "
            f"{sorted(str(u) for u in unknown)}"
        )


def exposures_table(
    wide: pl.DataFrame, factors: FactorSet, category_column: str = "sector"
) -> pl.DataFrame:
    """The stored exposure table `exposures_wide`: `date, asset_id, category, <one column per
    style named as the factor>`, one row per asset and session, sorted by date and asset_id.

    The same information as `exposures_long` (Market 1 and the category dummy 1 are implied by
    the row and its `category`), at 1/(2 + styles) of the rows; the long form is the SQL view
    `exposures` over this table (`storage.exposures_view`).
    """
    _check_exposure_frame(wide, factors, category_column)
    return wide.sort("date", "asset_id", maintain_order=True).select(
        pl.col("date"),
        pl.col("asset_id").cast(pl.String),
        pl.col(category_column).cast(pl.String).alias("category"),
        *[pl.col(s).cast(pl.Float64) for s in factors.styles],
    )


def exposures_long(
    wide: pl.DataFrame, factors: FactorSet, category_column: str = "sector"
) -> pl.DataFrame:
    """The long exposure table `date, asset_id, factor, exposure` of a wide exposure frame.

    Rows: Market = 1.0 for every asset (when the factor set has Market), the asset's own
    category (`category_column`: `sector` for TRBC economic sectors, `industry_group` for
    industry groups) = 1.0 (zero dummies are left out), and every style of the factor set.
    Sorted by date, asset_id and the factor set's order. A category that is not a factor of the
    set is an error (it would silently drop the asset's category exposure).
    """
    _check_exposure_frame(wide, factors, category_column)
    # Built directly in its final order instead of concat + sort of the long rows (the sort of
    # ~200,000 rows per date by a string key dominated the cost at 10,000 assets x 19 styles):
    # the wide frame is sorted by (date, asset_id), each asset gets m = Market + category + styles
    # entries, and these m entries are put in the FactorSet's order by an argsort along the small
    # axis. Same rows, same order, same values as the unpivot-and-sort it replaces.
    order = {name: i for i, name in enumerate(factors.names)}
    w = wide.sort("date", "asset_id", maintain_order=True)
    n = w.height
    codes: list[np.ndarray] = []
    values: list[np.ndarray] = []
    nulls: list[np.ndarray] = []
    ones, no_null = np.ones(n), np.zeros(n, dtype=bool)
    if GROUP_MARKET in factors.groups:
        codes.append(np.full(n, order[MARKET_FACTOR], dtype=np.int64))
        values.append(ones)
        nulls.append(no_null)
    codes.append(
        w.get_column(category_column)
        .cast(pl.String)
        .replace_strict(order, return_dtype=pl.Int64)
        .to_numpy()
    )
    values.append(ones)
    nulls.append(no_null)
    for style in factors.styles:
        col = w.get_column(style).cast(pl.Float64)
        codes.append(np.full(n, order[style], dtype=np.int64))
        values.append(col.to_numpy())
        nulls.append(col.is_null().to_numpy())
    m = len(codes)
    code_mat = np.stack(codes, axis=1)
    rank = np.argsort(code_mat, axis=1, kind="stable")
    code_flat = np.take_along_axis(code_mat, rank, axis=1).reshape(-1)
    value_flat = np.take_along_axis(np.stack(values, axis=1), rank, axis=1).reshape(-1)
    null_flat = np.take_along_axis(np.stack(nulls, axis=1), rank, axis=1).reshape(-1)
    row = np.repeat(np.arange(n, dtype=np.int64), m)
    exposure = pl.Series("exposure", value_flat, dtype=pl.Float64)
    if null_flat.any():
        exposure = exposure.scatter(np.flatnonzero(null_flat), None)
    return pl.DataFrame(
        {
            "date": w.get_column("date").gather(row),
            "asset_id": w.get_column("asset_id").cast(pl.String).gather(row),
            "factor": pl.Series("factor", list(factors.names), dtype=pl.String).gather(code_flat),
            "exposure": exposure,
        }
    )
