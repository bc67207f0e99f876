"""Holdings files and the stored risk model of a date, for `factorcov risk` and the
`portfolio_risk` asset (the math is in `core/portfolio.py`; this module reads and validates).

Holdings: a CSV or Parquet file with columns ``asset_id, weight`` (one portfolio) or
``portfolio, asset_id, weight`` (standing portfolios; also a DuckDB table). Weights are used as
given (not renormalised). Refused with a one-line error naming the file: a missing file or
column, no rows, a null/NaN/infinite weight (naming the assets), an asset listed twice in a
portfolio (naming them), and, on a date, asset ids that are not in the model (naming them;
``drop_unknown`` leaves them out and reports the weight dropped).

The risk model of date D is read from the stored tables: the exposures of D (`exposures_wide`,
whose long form is the ``exposures`` view), the ``factor_covariance`` and ``specific_risk``
forecast at D, the factor groups of ``factor_returns``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.core.portfolio import RiskModel
from factorcov_pipeline.storage import quote_ident

Reader = Callable[[str, Sequence[Any]], pl.DataFrame]


class HoldingsError(ValueError):
    """A holdings file is unusable; the message names the file and what is wrong."""


class NoForecastError(ValueError):
    """No risk model forecast at the requested date; the message names the nearest dates."""


def _brief(items: Sequence[Any], shown: int = 5) -> str:
    text = ", ".join(str(i) for i in items[:shown])
    return text + (f" ... ({len(items)} in all)" if len(items) > shown else "")


def read_holdings_file(path: str | Path, table: str | None = None) -> pl.DataFrame:
    """The rows of a holdings file (CSV, Parquet, or a DuckDB file's ``table``), unvalidated."""
    p = Path(path)
    if not p.is_file():
        raise HoldingsError(f"holdings file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(p, schema_overrides={"asset_id": pl.String, "portfolio": pl.String})
        if suffix == ".parquet":
            return pl.read_parquet(p)
        if suffix == ".duckdb":
            import duckdb

            if not table:
                raise HoldingsError(f"holdings {p}: a DuckDB file needs the table name (table)")
            with duckdb.connect(str(p), read_only=True) as con:
                rel = con.sql(f'SELECT * FROM "{table.replace(chr(34), chr(34) * 2)}"')
                frame = pl.from_arrow(rel.to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            return frame
    except HoldingsError:
        raise
    except Exception as err:  # unreadable file: one line naming it
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HoldingsError(f"holdings {p} cannot be read: {first}") from None
    raise HoldingsError(f"holdings {p}: unsupported file type {suffix!r} (use .csv or .parquet)")


def validate_holdings(frame: pl.DataFrame, source: str, standing: bool = False) -> pl.DataFrame:
    """Checked holdings: ``(portfolio,) asset_id, weight`` with finite weights, no duplicate
    asset within a portfolio, at least one row. Refusals name ``source``."""
    needed = ["portfolio", "asset_id", "weight"] if standing else ["asset_id", "weight"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise HoldingsError(
            f"holdings {source}: missing column(s) {missing}; columns are {frame.columns}"
        )
    if frame.height == 0:
        raise HoldingsError(f"holdings {source}: the file has no holdings (empty)")
    try:
        out = frame.select(
            [pl.col(c).cast(pl.String) for c in needed[:-1]]
            + [pl.col("weight").cast(pl.Float64, strict=True)]
        )
    except pl.exceptions.InvalidOperationError:
        raise HoldingsError(f"holdings {source}: column weight is not numeric") from None
    keys = needed[:-1]
    empty_id = out.filter(
        pl.col("asset_id").is_null() | (pl.col("asset_id").str.strip_chars() == "")
    )
    if empty_id.height:
        raise HoldingsError(f"holdings {source}: {empty_id.height} row(s) with an empty asset_id")
    bad = out.filter(pl.col("weight").is_null() | ~pl.col("weight").is_finite())
    if bad.height:
        raise HoldingsError(
            f"holdings {source}: weight is missing, NaN or infinite for asset(s) "
            f"{_brief(bad['asset_id'].to_list())}"
        )
    dup = out.group_by(keys).len().filter(pl.col("len") > 1).sort(keys)
    if dup.height:
        raise HoldingsError(
            f"holdings {source}: asset(s) listed more than once: {_brief(dup['asset_id'].to_list())}"
        )
    return out


def load_holdings(path: str | Path) -> pl.DataFrame:
    """One portfolio's holdings (asset_id, weight) from a CSV or Parquet file, validated."""
    return validate_holdings(read_holdings_file(path), str(path))


def load_standing_holdings(path: str, table: str | None = None) -> pl.DataFrame:
    """Standing portfolios (portfolio, asset_id, weight) from a file or DuckDB table."""
    source = f"{path}" + (f" table {table}" if table else "")
    return validate_holdings(read_holdings_file(path, table), source, standing=True)


def forecast_dates(read: Reader) -> list[dt.date]:
    """Dates with both a factor covariance and a specific risk forecast."""
    frame = read(
        "SELECT DISTINCT date FROM factor_covariance WHERE date IN "
        "(SELECT DISTINCT date FROM specific_risk) ORDER BY date",
        [],
    )
    return frame["date"].to_list() if frame.height else []


def require_forecast(read: Reader, day: dt.date) -> None:
    """Raise `NoForecastError` naming the nearest forecast dates when D has none."""
    row = read(
        "SELECT (SELECT count(*) FROM factor_covariance WHERE date = ?) AS c, "
        "(SELECT count(*) FROM specific_risk WHERE date = ?) AS s",
        [day, day],
    ).row(0)
    if row[0] and row[1]:
        return
    dates = forecast_dates(read)
    if not dates:
        raise NoForecastError(f"no risk forecast at {day}: the file holds no forecasts yet")
    before = [d for d in dates if d < day][-1:]
    after = [d for d in dates if d > day][:1]
    near = ", ".join(str(d) for d in before + after)
    raise NoForecastError(
        f"no risk forecast at {day} (forecasts run {dates[0]} .. {dates[-1]}); nearest: {near}"
    )


def load_risk_models(read: Reader, start: dt.date, end: dt.date) -> dict[dt.date, RiskModel]:
    """The risk model of every date in [start, end] with a covariance and specific risk
    forecast: exposures of that date (the `exposures` view), covariance and specific risk
    forecast at it. Assets: those with both an exposure and a specific risk on the date."""
    cov = read(
        "SELECT date, factor_1, factor_2, covariance FROM factor_covariance "
        "WHERE date BETWEEN ? AND ? ORDER BY date",
        [start, end],
    )
    if cov.height == 0:
        return {}
    groups = read(
        "SELECT factor, min(factor_group) AS factor_group FROM factor_returns "
        "WHERE date = (SELECT max(date) FROM factor_returns WHERE date <= ?) GROUP BY factor",
        [end],
    )
    group_of = dict(zip(groups["factor"].to_list(), groups["factor_group"].to_list(), strict=True))
    factors = sorted(set(cov["factor_1"].to_list()))
    k = len(factors)
    # The stored wide exposures (the `exposures` view is their long form: Market 1, own
    # category 1, styles), ten times fewer rows to read than the view, joined to the assets
    # with a specific risk forecast: one row per such asset and date, in (date, asset) order,
    # `_has` where the asset has an exposure row.
    styles = [f_ for f_ in factors if group_of.get(f_) == "style"]
    markets = np.asarray(
        [factors.index(f_) for f_ in factors if group_of.get(f_) == "market"], dtype=np.int64
    )
    style_cols = "".join(f", e.{quote_ident(c)}" for c in styles)
    spec = read(
        "SELECT s.date, s.asset_id, s.specific_risk, e.date IS NOT NULL AS _has, "
        f"e.category{style_cols} FROM specific_risk s LEFT JOIN exposures_wide e "
        "ON e.date = s.date AND e.asset_id = s.asset_id AND e.date BETWEEN ? AND ? "
        "WHERE s.date BETWEEN ? AND ? ORDER BY s.date, s.asset_id",
        [start, end, start, end],
    )
    if spec.height == 0 or not spec["_has"].any():
        return {}
    fpos = pl.DataFrame({"factor": factors, "_k": np.arange(k)})
    cc = cov.join(fpos, left_on="factor_1", right_on="factor", maintain_order="left").join(
        fpos.rename({"_k": "_l"}), left_on="factor_2", right_on="factor", maintain_order="left"
    )
    style_k = np.array([factors.index(c) for c in styles], dtype=np.int64)
    groups_k = [str(group_of.get(f_, "")) for f_ in factors]
    # Every column as one array, each date a slice of it (the frames come in date order):
    # the loop below only slices and scatters (a chunk of 84 sessions x 3,000 assets).
    c_days, c_k, c_l = (
        cc["date"].to_numpy(),
        cc["_k"].to_numpy(),
        cc["_l"].to_numpy(),
    )
    c_val = cc["covariance"].to_numpy()
    s_days, s_ids = spec["date"].to_numpy(), spec["asset_id"].to_numpy().astype(np.str_)
    s_risk, s_has = spec["specific_risk"].to_numpy(), spec["_has"].to_numpy()
    s_cat = (
        spec["category"]
        .replace_strict(factors, list(range(k)), default=None, return_dtype=pl.Float64)
        .to_numpy()
    )
    s_styles = spec.select(styles).to_numpy() if styles else np.zeros((spec.height, 0))

    def bounds(days: np.ndarray, day: np.datetime64) -> slice:
        return slice(
            int(np.searchsorted(days, day, "left")), int(np.searchsorted(days, day, "right"))
        )

    out: dict[dt.date, RiskModel] = {}
    for day in cc["date"].unique(maintain_order=True).to_list():  # dates; each vectorised
        d64 = np.datetime64(day, "D")
        cs, ss = bounds(c_days, d64), bounds(s_days, d64)
        has = s_has[ss]
        if not has.any():
            continue
        n = int(has.sum())
        x = np.zeros((n, k))
        x[:, markets] = 1.0
        cat = s_cat[ss][has]
        known = ~np.isnan(cat)
        x[np.flatnonzero(known), cat[known].astype(np.int64)] = 1.0
        if styles:
            x[:, style_k] = s_styles[ss][has]
        f = np.full((k, k), np.nan)
        f[c_k[cs], c_l[cs]] = c_val[cs]
        out[day] = RiskModel(
            asset_ids=s_ids[ss][has],
            factors=factors,
            factor_groups=groups_k,
            exposures=x,
            covariance=f,
            specific_risk=s_risk[ss][has],
        )
    return out


@dataclass
class AlignedHoldings:
    """Holdings on the model's asset axis: ``weights`` (P, N); ``unknown`` ids not in the
    model; ``dropped_weight`` (P,) their summed weight per portfolio (0 unless dropped)."""

    portfolios: list[str]
    weights: np.ndarray
    unknown: list[str]
    dropped_weight: np.ndarray


def align_holdings(
    model: RiskModel, holdings: pl.DataFrame, day: dt.date, source: str, drop_unknown: bool
) -> AlignedHoldings:
    """Map validated holdings onto ``model``'s assets; unknown ids are refused (naming them)
    unless ``drop_unknown``."""
    h = (
        holdings
        if "portfolio" in holdings.columns
        else holdings.with_columns(pl.lit("portfolio").alias("portfolio"))
    )
    names = list(dict.fromkeys(h["portfolio"].to_list()))
    ids = model.asset_ids
    apos = pl.DataFrame({"asset_id": ids, "_n": np.arange(len(ids))})
    ppos = pl.DataFrame({"portfolio": names, "_p": np.arange(len(names))})
    j = h.join(ppos, on="portfolio").join(apos, on="asset_id", how="left")
    unknown_rows = j.filter(pl.col("_n").is_null())
    unknown = sorted(set(unknown_rows["asset_id"].to_list()))
    if unknown and not drop_unknown:
        raise HoldingsError(
            f"holdings {source}: {len(unknown)} asset id(s) not in the model on {day}: "
            f"{_brief(unknown)} (use --drop-unknown to leave them out)"
        )
    dropped = np.zeros(len(names))
    if unknown_rows.height:
        np.add.at(dropped, unknown_rows["_p"].to_numpy(), unknown_rows["weight"].to_numpy())
    known = j.filter(pl.col("_n").is_not_null())
    w = np.zeros((len(names), len(ids)))
    w[known["_p"].to_numpy(), known["_n"].to_numpy()] = known["weight"].to_numpy()
    return AlignedHoldings(names, w, unknown, dropped)
