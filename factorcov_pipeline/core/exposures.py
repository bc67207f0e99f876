"""Style exposures (winsorised, cap-weighted standardised) and the long exposure table.

Style descriptors are turned into exposures with the Barra convention of Menchero, Orr and Wang
(2011), "The Barra US Equity Model (USE4), Methodology Notes", section 3 ("Factor exposures"):
each descriptor is standardised cross-sectionally to a *cap-weighted* mean of 0 and an
*equal-weighted* standard deviation of 1, outliers are trimmed, and the result is standardised
again. The cap-weighted mean of 0 makes the cap-weighted market portfolio style-neutral, which is
what lets the Market factor return be read as the return of the cap-weighted market.

All statistics are computed per date (one polars `group_by("date")` per standardisation pass,
joined back: the vectorised equivalent of `.over("date")` windows, no loop over dates), so one
call handles one date or a whole panel and a date's result never depends on the other dates.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from factorcov_pipeline.core.factors import GROUP_MARKET, MARKET_FACTOR, FactorSet

_KEY_COLUMNS: tuple[str, ...] = ("date", "asset_id", "sector")


def descriptor_column(style: str) -> str:
    """Name of the raw descriptor column of a style (`Size` -> `descriptor_size`)."""
    return f"descriptor_{style.lower()}"


def exposure_column(style: str) -> str:
    """Name of a ready-made exposure column of a style (`Size` -> `exposure_size`)."""
    return f"exposure_{style.lower()}"


def _date_stats(lf: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """Join per-date statistics of each column `c` onto the frame: `c__mean` the cap-weighted
    mean over the assets with a value, `c__std` the equal-weighted population std (ddof=0), and
    `c__flat` true when the values do not vary on that date (or there are fewer than two).

    One `group_by("date")` and one join for all columns: the same numbers as `.over("date")`
    window expressions, but evaluated once per statistic instead of once per use (about 6x
    faster on one date of 3,000 assets and 7 styles).
    """
    aggs: list[pl.Expr] = []
    for c in columns:
        x = pl.col(c)
        w = pl.when(x.is_not_null()).then(pl.col("market_cap"))
        std = x.std(ddof=0)
        aggs += [
            ((w * x).sum() / w.sum()).alias(f"{c}__mean"),
            std.alias(f"{c}__std"),
            ((x.max() == x.min()) | (std == 0.0)).fill_null(True).alias(f"{c}__flat"),
        ]
    return lf.join(lf.group_by("date").agg(aggs), on="date", how="left")


def _standardised(c: str) -> pl.Expr:
    """(c - cap-weighted mean) / equal-weighted std; null stays null; 0 on a flat date (a
    descriptor that does not vary carries no information, and dividing by a numerically-zero
    std would give noise or NaN)."""
    x = pl.col(c)
    return (
        pl.when(x.is_null())
        .then(None)
        .when(pl.col(f"{c}__flat"))
        .then(0.0)
        .otherwise((x - pl.col(f"{c}__mean")) / pl.col(f"{c}__std"))
    )


def style_exposures(
    universe: pl.DataFrame, styles: Sequence[str], winsorize_sigma: float = 3.0
) -> pl.DataFrame:
    """Wide style exposures for every (date, asset) of a universe frame (one or many dates).

    For each style, `descriptor_<style lower>` is standardised per date (cap-weighted mean 0,
    equal-weighted std 1; USE4, Menchero, Orr and Wang 2011, section 3), clipped to
    +/- `winsorize_sigma`, and standardised again (both passes over the assets that have the
    descriptor). A missing (null or NaN) descriptor then gets exposure 0, the cap-weighted mean,
    and the column is divided by its equal-weighted std over the whole cross-section, so the
    stored exposures have a cap-weighted mean of 0 and an equal-weighted population (ddof=0)
    std of 1 over all assets of the date (to rounding, ~1e-15). Without missing values the last
    step divides by 1 to rounding. The final values may lie slightly outside the clip bounds. A
    descriptor without cross-sectional variation on a date gives 0 for every asset.

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
    x_cols = {s: f"__x_{i}" for i, s in enumerate(raw)}
    z_cols = {s: f"__z_{i}" for i, s in enumerate(raw)}
    lf = universe.lazy().select(
        *[pl.col(c) for c in keys],
        pl.col("market_cap").cast(pl.Float64),
        *[e.alias(x_cols[s]) for s, e in raw.items()],
        *[e.alias(s) for s, e in given.items()],
    )
    lf = _date_stats(lf, list(x_cols.values()))
    lf = lf.with_columns(
        _standardised(x_cols[s]).clip(-winsorize_sigma, winsorize_sigma).alias(z_cols[s])
        for s in raw
    )
    lf = _date_stats(lf, list(z_cols.values()))
    e_cols = {s: f"__e_{i}" for i, s in enumerate(raw)}
    lf = lf.with_columns(_standardised(z_cols[s]).fill_null(0.0).alias(e_cols[s]) for s in raw)
    # Missing descriptors now sit at exactly 0 (the cap-weighted mean). Divide by the
    # equal-weighted std over the WHOLE cross-section so that the stored column has std exactly 1
    # over all assets (what the `exposures_standardised` asset check measures); a pure scale, so
    # the cap-weighted mean stays 0 and the missing ones stay exactly 0.
    lf = lf.join(
        lf.group_by("date").agg(
            pl.col(c).std(ddof=0).alias(f"{c}__all_std") for c in e_cols.values()
        ),
        on="date",
        how="left",
    )
    lf = lf.with_columns(
        pl.when(pl.col(f"{c}__all_std") > 0.0)
        .then(pl.col(c) / pl.col(f"{c}__all_std"))
        .otherwise(0.0)
        .alias(s)
        for s, c in e_cols.items()
    )
    return lf.select(*keys, "market_cap", *styles).sort("date", "asset_id").collect()


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
    schema = {"date": wide.schema["date"], "asset_id": pl.String, "factor": pl.String}
    parts: list[pl.DataFrame] = []
    base = wide.select("date", "asset_id")
    if GROUP_MARKET in factors.groups:
        parts.append(
            base.with_columns(
                pl.lit(MARKET_FACTOR, dtype=pl.String).alias("factor"),
                pl.lit(1.0, dtype=pl.Float64).alias("exposure"),
            )
        )
    parts.append(
        wide.select(
            "date",
            "asset_id",
            pl.col(category_column).cast(pl.String).alias("factor"),
            pl.lit(1.0, dtype=pl.Float64).alias("exposure"),
        )
    )
    if factors.styles:
        parts.append(
            wide.select("date", "asset_id", *factors.styles)
            .unpivot(
                index=["date", "asset_id"],
                on=list(factors.styles),
                variable_name="factor",
                value_name="exposure",
            )
            .with_columns(pl.col("exposure").cast(pl.Float64))
        )
    order = {name: i for i, name in enumerate(factors.names)}
    out = pl.concat([p.cast({**schema, "exposure": pl.Float64}) for p in parts], how="vertical")
    return (
        out.with_columns(pl.col("factor").replace_strict(order, return_dtype=pl.Int32).alias("_k"))
        .sort("date", "asset_id", "_k")
        .drop("_k")
    )
