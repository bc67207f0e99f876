"""The stored risk model of a date: exposures, factor covariance and specific risk read from
the store's tables, for `factorcov risk`, the Python API and the `portfolio_risk` and
`risk_backtest` assets (the math is in `core/portfolio.py`).

The risk model of date D is read from the stored tables: the exposures of D (`exposures_wide`,
whose long form is the ``exposures`` view), the ``factor_covariance`` and ``specific_risk``
forecast at D, the factor groups of ``factor_returns``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.api.errors import NoForecastError
from factorcov_pipeline.core.portfolio import RiskSnapshot
from factorcov_pipeline.storage import quote_ident

Reader = Callable[[str, Sequence[Any]], pl.DataFrame]

__all__ = [
    "NoForecastError",
    "Reader",
    "forecast_dates",
    "load_risk_models",
    "load_risk_models_of",
    "require_forecast",
]


def nearest_text(dates: Sequence[dt.date], day: dt.date) -> str:
    """ "nearest stored dates: X (before), Y (after)" among sorted ``dates`` (as `show` says)."""
    if not dates:
        return "the file holds no forecast dates"
    i = bisect.bisect_left(dates, day)
    before = dates[i - 1] if i > 0 else None
    j = bisect.bisect_right(dates, day)
    after = dates[j] if j < len(dates) else None
    parts = [f"{before} (before)" if before else "none before"]
    parts.append(f"{after} (after)" if after else "none after")
    return "nearest stored dates: " + ", ".join(parts)


def no_forecast(day: dt.date, source: str, dates: Sequence[dt.date], noun: str = "forecast") -> str:
    """The refusal of a date without a forecast: "no forecast stored for D in SOURCE; nearest
    stored dates: ..." (``noun`` names what is missing: "risk forecast", "exposures")."""
    return f"no {noun} stored for {day} in {source}; {nearest_text(dates, day)}"


def _model_clause(model: str | None, alias: str = "") -> tuple[str, list[Any]]:
    """``AND model = ?`` on factor_covariance when the store keeps several covariance models
    (issue 22: a ``model`` column); nothing when ``model`` is None (one model per file)."""
    if model is None:
        return "", []
    prefix = f"{alias}." if alias else ""
    return f" AND {prefix}model = ?", [model]


def forecast_dates(read: Reader, model: str | None = None) -> list[dt.date]:
    """Dates with both a factor covariance and a specific risk forecast."""
    clause, params = _model_clause(model)
    frame = read(
        "SELECT DISTINCT date FROM factor_covariance WHERE date IN "
        f"(SELECT DISTINCT date FROM specific_risk){clause} ORDER BY date",
        params,
    )
    return frame["date"].to_list() if frame.height else []


def require_forecast(
    read: Reader, day: dt.date, source: str = "the store", model: str | None = None
) -> None:
    """Raise `NoForecastError` naming the nearest forecast dates when D has no factor
    covariance or no specific risk forecast."""
    clause, params = _model_clause(model)
    row = read(
        f"SELECT (SELECT count(*) FROM factor_covariance WHERE date = ?{clause}) AS c, "
        "(SELECT count(*) FROM specific_risk WHERE date = ?) AS s",
        [day, *params, day],
    ).row(0)
    if row[0] and row[1]:
        return
    raise NoForecastError(no_forecast(day, source, forecast_dates(read, model), "risk forecast"))


def load_risk_models(
    read: Reader, start: dt.date, end: dt.date, model: str | None = None
) -> dict[dt.date, RiskSnapshot]:
    """The risk model of every date in [start, end] with a covariance and specific risk
    forecast: exposures of that date (the `exposures` view), covariance and specific risk
    forecast at it. Assets: those with both an exposure and a specific risk on the date.
    ``model`` selects one covariance model of a store that keeps several (a ``model`` column
    on factor_covariance); None reads the only one."""
    return load_risk_models_of(read, start, end, [model])[model]


ModelClause = Callable[[str | None], tuple[str, list[Any]]]


def load_risk_models_of(
    read: Reader,
    start: dt.date,
    end: dt.date,
    models: Sequence[str | None],
    clause: ModelClause = _model_clause,
) -> dict[str | None, dict[dt.date, RiskSnapshot]]:
    """`load_risk_models` of several covariance models at once: the exposures and specific
    risks, which the models share, are read and laid out once, and each model's snapshots
    hold the same exposure and specific risk arrays (read-only) with the model's covariance.
    ``clause(model)``: the condition selecting a model's rows of factor_covariance (default
    ``AND model = ?``; the pipeline passes `BaseStore.model_clause`, which knows a file
    written before the column existed)."""
    covs = {}
    for m in models:
        where, params = clause(m)
        covs[m] = read(
            "SELECT date, factor_1, factor_2, covariance FROM factor_covariance "
            f"WHERE date BETWEEN ? AND ?{where} ORDER BY date",
            [start, end, *params],
        )
    out: dict[str | None, dict[dt.date, RiskSnapshot]] = {m: {} for m in models}
    present = [c for c in covs.values() if c.height]
    if not present:
        return out
    groups = read(
        "SELECT factor, min(factor_group) AS factor_group FROM factor_returns "
        "WHERE date = (SELECT max(date) FROM factor_returns WHERE date <= ?) GROUP BY factor",
        [end],
    )
    group_of = dict(zip(groups["factor"].to_list(), groups["factor_group"].to_list(), strict=True))
    factors = sorted(set(present[0]["factor_1"].to_list()))
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
        return out
    fpos = pl.DataFrame({"factor": factors, "_k": np.arange(k)})
    style_k = np.array([factors.index(c) for c in styles], dtype=np.int64)
    groups_k = [str(group_of.get(f_, "")) for f_ in factors]
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

    # each date's assets, exposures and specific risks, built once for every model
    shared: dict[dt.date, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def assets_of(day: dt.date) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if day not in shared:
            ss = bounds(s_days, np.datetime64(day, "D"))
            has = s_has[ss]
            if not has.any():
                shared[day] = None
                return None
            n = int(has.sum())
            x = np.zeros((n, k))
            x[:, markets] = 1.0
            cat = s_cat[ss][has]
            known = ~np.isnan(cat)
            x[np.flatnonzero(known), cat[known].astype(np.int64)] = 1.0
            if styles:
                x[:, style_k] = s_styles[ss][has]
            shared[day] = (s_ids[ss][has], x, s_risk[ss][has])
        return shared[day]

    for m, cov in covs.items():
        if cov.height == 0:
            continue
        cc = cov.join(fpos, left_on="factor_1", right_on="factor", maintain_order="left").join(
            fpos.rename({"_k": "_l"}), left_on="factor_2", right_on="factor", maintain_order="left"
        )
        # Every column as one array, each date a slice of it (the frames come in date
        # order): the loop below only slices and scatters (a chunk of 84 sessions x 3,000
        # assets).
        c_days, c_k, c_l = cc["date"].to_numpy(), cc["_k"].to_numpy(), cc["_l"].to_numpy()
        c_val = cc["covariance"].to_numpy()
        for day in cc["date"].unique(maintain_order=True).to_list():  # dates; each vectorised
            found = assets_of(day)
            if found is None:
                continue
            ids, x, risk = found
            cs = bounds(c_days, np.datetime64(day, "D"))
            f = np.full((k, k), np.nan)
            f[c_k[cs], c_l[cs]] = c_val[cs]
            out[m][day] = RiskSnapshot(
                asset_ids=ids,
                factors=factors,
                factor_groups=groups_k,
                exposures=x,
                covariance=f,
                specific_risk=risk,
            )
    return out
