"""Partition-aware asset checks on the stored outputs.

The two tutorial tie-outs run the tutorial's pandas code as written (`factorcov_pipeline.core.tieout`)
on the stored factor returns and compare with the stored covariance report, with the tutorial's
tolerances. They apply where the settings leave that part of the model at the tutorial's
defaults; otherwise the check recomputes the whole history in one block with the core and
compares with the stored day-by-day forecasts. Checks whose failure makes downstream numbers
wrong are blocking.
"""

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from dagster import AssetCheckEvaluation, AssetCheckExecutionContext, Output, asset_check

from factorcov_pipeline.core import calendar, tieout
from factorcov_pipeline.core.correlation import CorrelationForecaster
from factorcov_pipeline.core.covariance import covariance_from
from factorcov_pipeline.core.degenerate import brief_dates
from factorcov_pipeline.core.eigen import EigenAdjustment
from factorcov_pipeline.core.exposures import BOUND_FACTOR, descriptor_column
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.core.settings import DEFAULT_MODEL, FactorCovarianceReportSettingsV2
from factorcov_pipeline.core.volatility import VolatilityForecaster
from factorcov_pipeline.orchestration.assets import (
    covariance_report,
    exposures,
    factor_correlation,
    factor_covariance,
    factor_returns,
    factor_volatility,
)
from factorcov_pipeline.orchestration.assets.common import (
    GAP_TABLE,
    category_column,
    date_chunks,
    matrix_chunk_sessions,
    model_factors,
    read_panel,
    rows_per_session,
)
from factorcov_pipeline.orchestration.check_results import (
    MetadataScalar,
    Verdict,
    session_evaluations,
)
from factorcov_pipeline.orchestration.degenerate import regression_degenerate_cases
from factorcov_pipeline.orchestration.partitions import partition_dates, trading_sessions
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.storage import EXPOSURES_TABLE, Store, quote_ident
from factorcov_pipeline.storage.contract import MODEL_COLUMN

ZERO_SUM_TOL = 1e-10
CONSISTENCY_TOL = 1e-12
PSD_TOL = 1e-12


def _scope(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> tuple[FactorCovarianceReportSettingsV2, Store, list[dt.date], FactorSet]:
    """What every check starts from: the settings, the store, the run's sessions and the
    model's factors."""
    settings = model.load()
    return settings, storage.store(), partition_dates(context), model_factors(settings)


def _history(store: Store, factors: FactorSet, last: dt.date) -> tuple[list[dt.date], np.ndarray]:
    """All stored factor returns from the first date up to `last`, as (dates, (T, K)).

    Sessions recorded in `factor_return_gaps` (data but no returns) are NaN rows, as the
    forecasters treat them (pandas' `ewm` does the same with NaN: decay, no update).
    """
    fr = store.read(
        "SELECT date, factor, factor_return FROM factor_returns WHERE date <= ? ORDER BY date",
        [last],
    )
    days = set(fr["date"].to_list())
    if days:
        gaps = [d for d in store.stored_dates(GAP_TABLE) if min(days) < d <= last]
        days |= set(gaps)
    ordered = sorted(days)
    return ordered, long_to_matrix(fr, ordered, factors.names, "factor_return")


def _tutorial_factor_returns(
    days: list[dt.date], names: tuple[str, ...], F: np.ndarray
) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(days), name="date").as_unit("ns")
    return pd.DataFrame(F, index=index, columns=list(names))


def _df_vcov(store: Store, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The stored report as the tutorial's `df_vcov` (index date, factor), float64.

    The vendor's report arrives as float32 (the tutorial's tie-outs compare float32 frames):
    the tie-out checks cast it the same way to run the tutorial's assertions as written.
    """
    rep = store.read_dates("covariance_report", first, last, model=DEFAULT_MODEL)
    rep = rep.drop(MODEL_COLUMN, strict=False).to_pandas()
    rep["date"] = pd.DatetimeIndex(pd.to_datetime(rep["date"])).as_unit("ns")
    return rep.set_index(["date", "factor"])


@dataclass(frozen=True)
class _TieoutInputs:
    """What both tie-outs read: the whole factor return history up to the range's end and the
    stored report of the range's forecast dates."""

    settings: FactorCovarianceReportSettingsV2
    factors: FactorSet
    days: list[dt.date]
    F: np.ndarray
    in_range: list[dt.date]
    df_vcov: pd.DataFrame


def _tieout_inputs(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> _TieoutInputs | None:
    settings, store, dates, factors = _scope(context, storage, model)
    days, F = _history(store, factors, dates[-1])
    in_range = [d for d in days if d >= dates[0]]
    if not in_range:
        return None
    df_vcov = _df_vcov(store, in_range[0], in_range[-1])
    # Published dates only: the warm-up's first sessions have no forecast (warmup_length).
    in_range = sorted(d.date() for d in df_vcov.index.get_level_values("date").unique())
    if not in_range:
        return None
    return _TieoutInputs(settings, factors, days, F, in_range, df_vcov)


def _stored_chunks(
    store: Store,
    table: str,
    dates: list[dt.date],
    names: tuple[str, ...],
    value: str,
    model: str | None = None,
) -> Iterator[tuple[list[dt.date], np.ndarray]]:
    """`read_panel` a chunk of sessions at a time (of covariance model `model`): a K x K table
    over 10 years at 72 factors is 13 million rows, several GiB as one frame (benchmark 5's
    memory peak)."""
    for chunk in date_chunks(dates, size=matrix_chunk_sessions(len(names))):
        days, values = read_panel(store, table, chunk[0], chunk[-1], names, value, model)
        if days:
            yield days, values


def _no_history(day: dt.date) -> Verdict:
    return Verdict(True, {}, "no factor returns before this session yet: nothing to check")


def _first_forecast(
    settings: FactorCovarianceReportSettingsV2, return_days: list[dt.date]
) -> dt.date | None:
    """The first session with a published forecast: the first of the stored factor-return
    dates `return_days`, or with a warm-up of N sessions (`warmup_length`) the (N+1)-th of
    them; None: none yet."""
    warmup = settings.factor_cov_settings.warmup_length
    return return_days[warmup] if len(return_days) > warmup else None


def _model_verdicts(
    settings: FactorCovarianceReportSettingsV2,
    store: Store,
    dates: list[dt.date],
    factors: FactorSet,
    verdicts_of: Callable[[Store, list[dt.date], FactorSet, str], dict[dt.date, Verdict]],
    what: str,
) -> dict[dt.date, Verdict]:
    """A validity check's verdict per session over every covariance model (issue 22):
    `verdicts_of` (store, dates, factors, model) judges each stored date of one model,
    `_forecast_verdicts` fills the sessions before its first forecast, `_every_model` joins
    the models. The factor-return dates are read once for all models."""
    return_days = store.stored_dates("factor_returns")
    per_model = {}
    for name in settings.model_names():
        first = _first_forecast(settings.for_model(name), return_days)
        per_model[name] = _forecast_verdicts(
            dates, first, verdicts_of(store, dates, factors, name), what
        )
    return _every_model(per_model)


def _forecast_verdicts(
    dates: list[dt.date],
    first: dt.date | None,
    per_date: dict[dt.date, Verdict],
    what: str,
) -> dict[dt.date, Verdict]:
    """Verdicts for every session of a range of a forecast table: sessions before the first
    published forecast (`first`: no returns yet, or the warm-up) have no forecast by design
    (pass); a later session without rows fails."""
    out = {}
    for day in dates:
        if day in per_date:
            out[day] = per_date[day]
        elif first is None or day < first:
            out[day] = _no_history(day)
        else:
            out[day] = Verdict(False, {}, f"no {what} stored for this session")
    return out


def _every_model(
    per_model: dict[str, dict[dt.date, Verdict]],
) -> dict[dt.date, Verdict]:
    """One verdict per session from each covariance model's (issue 22): passed when every
    model's passed; the metadata and description of `default`, and, when a model failed, its
    name and what failed (`failed_models` counts them). With one model, its verdicts."""
    if list(per_model) == [DEFAULT_MODEL]:
        return per_model[DEFAULT_MODEL]
    out = {}
    for day, base in per_model[DEFAULT_MODEL].items():
        failed = {name: v[day] for name, v in per_model.items() if not v[day].passed}
        if not failed:
            out[day] = base
            continue
        said = []
        for name, verdict in failed.items():
            numbers = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in verdict.metadata.items())  # fmt: skip
            what = verdict.description or "failed"
            said.append(f"model {name}: {what}" + (f" ({numbers})" if numbers else ""))
        out[day] = Verdict(False, {**base.metadata, "failed_models": len(failed)}, "; ".join(said))
    return out


@asset_check(asset=factor_returns, partitions_def=trading_sessions, blocking=True)
@one_connection
def factor_returns_zero_sum(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """The cap-weighted (or equal-weighted) sum of sector factor returns is 0 to 1e-10, with the
    caps of the assets in each date's regression at the previous session."""
    settings, store, dates, factors = _scope(context, storage, model)
    method = settings.factor_model_settings.modelconstruction.zero_sum_constraints.get("trbc")
    what = f"|sum_s w_s f_s| / sum_s w_s <= {ZERO_SUM_TOL:g} ({method})"
    if settings.factor_model_settings.universe.factor_returns:
        note = "user-supplied factor returns: no regression constraint to check"
        yield from session_evaluations(context, {d: Verdict(True, {}, note) for d in dates}, what)
        return
    category = category_column(settings)
    errors = []
    # bounded memory at 10 years x 10,000 assets
    for chunk in date_chunks(dates, rows_per_session=rows_per_session(settings, factors)):
        caps = store.read(
            f"""
            WITH days AS (
                SELECT date, lag(date) OVER (ORDER BY date) AS prev_date
                FROM (SELECT DISTINCT date FROM universe WHERE date BETWEEN ? AND ?) AS s
            ),
            ret AS (
                SELECT date, asset_id FROM universe
                WHERE date BETWEEN ? AND ? AND asset_return IS NOT NULL
            )
            SELECT r.date, p.{category} AS factor, sum(p.market_cap) AS cap
            FROM ret r
            JOIN days d ON d.date = r.date
            JOIN universe p ON p.date = d.prev_date AND p.asset_id = r.asset_id
            WHERE p.date BETWEEN ? AND ?
            GROUP BY r.date, p.{category}
            """,
            [
                calendar.previous_session(chunk[0]),
                chunk[-1],
                chunk[0],
                chunk[-1],
                calendar.previous_session(chunk[0]),
                chunk[-1],
            ],
        )
        fr = store.read_dates("factor_returns", chunk[0], chunk[-1])
        sectors = fr.filter(pl.col("factor_group") == "trbc")
        joined = sectors.join(caps, on=["date", "factor"], how="left").with_columns(
            pl.col("cap").fill_null(0.0)
        )
        if method == "equal_weighted":
            joined = joined.with_columns(
                pl.when(pl.col("cap") > 0).then(1.0).otherwise(0.0).alias("cap")
            )
        errors.append(
            joined.group_by("date").agg(
                ((pl.col("cap") * pl.col("factor_return")).sum() / pl.col("cap").sum())
                .abs()
                .alias("err")
            )
        )
    per_date = {
        day: Verdict(bool(err <= ZERO_SUM_TOL), {"abs_weighted_sum": float(err)})
        for day, err in pl.concat(errors).iter_rows()
    }
    # a session without sector returns (the base date, a data gap) has no constraint to check
    note = Verdict(True, {}, "no factor returns on this session: no constraint to check")
    yield from session_evaluations(context, {d: per_date.get(d, note) for d in dates}, what)


@asset_check(asset=factor_returns, partitions_def=trading_sessions, blocking=True)
@one_connection
def factor_returns_complete(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """Every date with returns has all K factor returns, none NaN or infinite; a later session
    without returns must be a recorded data gap."""
    _, store, dates, factors = _scope(context, storage, model)
    days, F = read_panel(
        store, "factor_returns", dates[0], dates[-1], factors.names, "factor_return"
    )
    bad = (~np.isfinite(F)).sum(axis=1) if len(days) else np.empty(0, dtype=int)
    per_date = {
        day: Verdict(bool(n == 0), {"non_finite": int(n)}) for day, n in zip(days, bad, strict=True)
    }
    gaps = set(store.stored_dates(GAP_TABLE, dates[0], dates[-1]))
    returns = store.stored_dates("factor_returns")
    first = returns[0] if returns else None
    verdicts = {}
    for day in dates:
        if day in per_date:
            verdicts[day] = per_date[day]
        elif day in gaps:
            verdicts[day] = Verdict(True, {}, "a recorded data gap (no asset returns)")
        elif first is None or day < first:
            verdicts[day] = _no_history(day)
        else:
            verdicts[day] = Verdict(False, {}, "no factor returns and no recorded gap")
    yield from session_evaluations(context, verdicts, "all factor returns present and finite")


def _no_exposures_reason(
    settings: FactorCovarianceReportSettingsV2, factors: FactorSet
) -> str | None:
    """Why the exposure checks have nothing to check (they pass), or None."""
    if settings.factor_model_settings.universe.factor_returns:
        return "user-supplied factor returns: no exposures to check"
    if not factors.styles:
        return "the model has no style factors"
    return None


def _exposure_aggregates(
    store: Store,
    settings: FactorCovarianceReportSettingsV2,
    factors: FactorSet,
    dates: list[dt.date],
    columns: str,
    with_caps: bool,
) -> pl.DataFrame:
    """Per-date aggregates (`columns`, over the wide exposures `e`, and the universe `u` for
    the caps when `with_caps`), one row per date in date order: DuckDB aggregates one column
    per statistic and style, a chunk of sessions at a time for bounded memory at scale."""
    source = f"{EXPOSURES_TABLE} e" + (
        " JOIN universe u USING (date, asset_id)" if with_caps else ""
    )
    where = "e.date BETWEEN ? AND ?" + (" AND u.date BETWEEN ? AND ?" if with_caps else "")
    parts = [
        store.read(
            f"SELECT e.date, {columns} FROM {source} WHERE {where} GROUP BY e.date ORDER BY e.date",
            [chunk[0], chunk[-1]] * (2 if with_caps else 1),
        )
        for chunk in date_chunks(dates, rows_per_session=rows_per_session(settings, factors))
    ]
    return pl.concat(parts)


@asset_check(asset=exposures, partitions_def=trading_sessions, blocking=True)
@one_connection
def exposures_standardised(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """Each style has cap-weighted mean 0 and equal-weighted std 1 on every date (1e-9)."""
    settings, store, dates, factors = _scope(context, storage, model)
    what = "cap-weighted mean 0, std 1 per style"
    skip = _no_exposures_reason(settings, factors)
    if skip:
        yield from session_evaluations(context, {d: Verdict(True, {}, skip) for d in dates}, what)
        return
    stat_cols = ", ".join(
        f"sum(u.market_cap * e.{quote_ident(s)}) / sum(u.market_cap) AS {quote_ident('m' + str(i))}, "
        f"stddev_pop(e.{quote_ident(s)}) AS {quote_ident('s' + str(i))}"
        for i, s in enumerate(factors.styles)
    )
    wide = _exposure_aggregates(store, settings, factors, dates, stat_cols, with_caps=True)
    n_styles = len(factors.styles)
    means = np.column_stack([wide[f"m{i}"].to_numpy() for i in range(n_styles)])
    stds = np.column_stack([wide[f"s{i}"].to_numpy() for i in range(n_styles)])
    mean_err = np.abs(means).max(axis=1) if wide.height else np.empty(0)
    # A degenerate descriptor (zero variance) gives all-zero exposures: std 0 is allowed then.
    std_err = np.where(stds > 0, np.abs(stds - 1.0), 0.0).max(axis=1) if wide.height else mean_err
    per_date = {
        day: Verdict(
            bool(m <= 1e-9 and s <= 1e-9),
            {"max_abs_mean": float(m), "max_abs_std_minus_1": float(s)},
        )
        for day, m, s in zip(wide["date"].to_list(), mean_err, std_err, strict=True)
    }
    missing = Verdict(False, {}, "no style exposures stored for this session")
    yield from session_evaluations(context, {d: per_date.get(d, missing) for d in dates}, what)


@asset_check(asset=exposures, partitions_def=trading_sessions, blocking=True)
@one_connection
def style_exposures_valid(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """No style is degenerate on any date: not all zero although the universe has the
    descriptor (a flat descriptor, or one the standardisation collapsed: the style's factor
    return would be undefined) and within the documented bound
    |exposure| <= 2 x winsorize_sigma (`core.exposures.BOUND_FACTOR`): beyond it one extreme
    descriptor has dominated the standardisation.

    A date on which the descriptor is missing (on fewer than two assets: momentum before its
    look-back, a source that starts later) is not a flat descriptor: the data says nothing
    about the style that day, so every exposure is 0 (docs/user-data.md: a missing
    descriptor is exposure 0) and the next session's factor return of the style is 0, not
    estimated. Failing the blocking check there would stop every run over the look-back, so
    the date passes, and says so: in the evaluation (`styles_without_descriptor` and the
    description) and once in the run's log, naming the styles and dates."""
    settings, store, dates, factors = _scope(context, storage, model)
    sigma = settings.factor_model_settings.exposures.winsorize_sigma
    bound = BOUND_FACTOR * sigma
    what = f"every style varies and lies within +/-{bound:g}"
    skip = _no_exposures_reason(settings, factors)
    if skip:
        yield from session_evaluations(context, {d: Verdict(True, {}, skip) for d in dates}, what)
        return
    cols = ", ".join(
        f"max(abs(e.{quote_ident(s)})) AS {quote_ident('a' + str(i))}"
        for i, s in enumerate(factors.styles)
    )
    wide = _exposure_aggregates(store, settings, factors, dates, cols, with_caps=False)
    # All zero is degenerate where the universe HAD the descriptor on at least two assets (it
    # was flat, or the standardisation collapsed it); a descriptor missing for every asset
    # (e.g. momentum before its look-back is available) is a data gap: exposure 0 by design.
    uni_cols = set(store.read("SELECT * FROM universe LIMIT 0").columns)
    described = [s for s in factors.styles if descriptor_column(s) in uni_cols]
    counts = (
        store.read(
            "SELECT date, "
            + ", ".join(
                f"count({quote_ident(descriptor_column(s))}) AS {quote_ident(s)}" for s in described
            )
            + " FROM universe WHERE date BETWEEN ? AND ? GROUP BY date",
            [dates[0], dates[-1]],
        )
        if described
        else pl.DataFrame({"date": wide["date"]})
    )
    wide = wide.join(counts, on="date", how="left")
    problems: dict[dt.date, list[str]] = {d: [] for d in wide["date"].to_list()}
    undescribed: dict[dt.date, list[str]] = {d: [] for d in problems}
    worst = dict.fromkeys(problems, 0.0)
    for i, style in enumerate(factors.styles):
        col = wide[f"a{i}"].fill_null(0.0)
        had_data = (
            wide[style].fill_null(0) >= 2 if style in described else pl.Series([True] * wide.height)
        )
        for day, value, has in zip(
            wide["date"].to_list(), col.to_list(), had_data.to_list(), strict=True
        ):
            worst[day] = max(worst[day], float(value))
            if value == 0.0 and has:
                problems[day].append(f"{style} all zero")
            elif value == 0.0:
                undescribed[day].append(style)
            elif value > bound:
                problems[day].append(f"{style} beyond +/-{bound:g} ({value:.3g})")
    per_date = {
        day: Verdict(
            not found,
            {
                "max_abs_exposure": worst[day],
                "degenerate_styles": len(found),
                "styles_without_descriptor": len(undescribed[day]),
            },
            "; ".join(
                found
                + [f"{s} has no descriptor on this date: exposure 0" for s in undescribed[day]]
            )
            or None,
        )
        for day, found in problems.items()
    }
    gaps = {s: [d for d, styles in undescribed.items() if s in styles] for s in factors.styles}
    for style, days in gaps.items():
        if days:
            context.log.warning(
                f"style_exposures_valid: {style} has no descriptor (on fewer than 2 assets) on "
                f"{len(days)} session(s): {brief_dates(days)}; its exposures are 0 there and "
                f"the next session's {style} factor return is 0 (not estimated)"
            )
    missing = Verdict(False, {}, "no style exposures stored for this session")
    yield from session_evaluations(context, {d: per_date.get(d, missing) for d in dates}, what)


@asset_check(asset=factor_volatility, partitions_def=trading_sessions, blocking=True)
@one_connection
def factor_volatility_valid(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """Volatilities are finite and non-negative for every factor and date."""
    settings, store, dates, factors = _scope(context, storage, model)
    verdicts = _model_verdicts(
        settings, store, dates, factors, _volatility_verdicts, "volatilities"
    )
    yield from session_evaluations(context, verdicts, "finite, non-negative volatilities")


def _volatility_verdicts(
    store: Store, dates: list[dt.date], factors: FactorSet, model: str
) -> dict[dt.date, Verdict]:
    """`factor_volatility_valid`'s verdict of each stored date of covariance model `model`."""
    per_date = {}
    for days, V in _stored_chunks(
        store, "factor_volatility", dates, factors.names, "volatility", model
    ):
        invalid = (~np.isfinite(V)).sum(axis=1) + (V < 0).sum(axis=1)
        for day, n in zip(days, invalid, strict=True):
            per_date[day] = Verdict(bool(n == 0), {"invalid": int(n)})
    return per_date


@asset_check(asset=factor_correlation, partitions_def=trading_sessions, blocking=True)
@one_connection
def factor_correlation_valid(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """Correlations are finite, symmetric, with unit diagonal and entries in [-1, 1]."""
    settings, store, dates, factors = _scope(context, storage, model)
    verdicts = _model_verdicts(
        settings, store, dates, factors, _correlation_verdicts, "correlations"
    )
    yield from session_evaluations(
        context, verdicts, "finite, symmetric, unit diagonal, |rho| <= 1"
    )


def _correlation_verdicts(
    store: Store, dates: list[dt.date], factors: FactorSet, model: str
) -> dict[dt.date, Verdict]:
    """`factor_correlation_valid`'s verdict of each stored date of covariance model `model`."""
    per_date = {}
    for days, C in _stored_chunks(
        store, "factor_correlation", dates, factors.names, "correlation", model
    ):
        finite = np.isfinite(C).all(axis=(1, 2))
        asym = np.abs(C - C.transpose(0, 2, 1)).max(axis=(1, 2))
        diag = np.abs(np.diagonal(C, axis1=1, axis2=2) - 1).max(axis=1)
        bound = np.abs(C).max(axis=(1, 2)) - 1
        for i, day in enumerate(days):
            ok = finite[i] and asym[i] <= 1e-12 and diag[i] <= 1e-12 and bound[i] <= 1e-12
            per_date[day] = Verdict(
                bool(ok),
                {
                    "max_asymmetry": float(asym[i]),
                    "max_diag_error": float(diag[i]),
                    "finite": bool(finite[i]),
                },
            )
    return per_date


@asset_check(asset=factor_covariance, partitions_def=trading_sessions, blocking=True)
@one_connection
def factor_covariance_symmetric_psd(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """Every covariance matrix is finite, symmetric and positive semi-definite (smallest
    eigenvalue >= -1e-12 x the largest variance; asymmetry <= 1e-12 x the largest variance)."""
    settings, store, dates, factors = _scope(context, storage, model)
    verdicts = _model_verdicts(settings, store, dates, factors, _covariance_verdicts, "covariances")
    yield from session_evaluations(context, verdicts, "symmetric and positive semi-definite")


def _covariance_verdicts(
    store: Store, dates: list[dt.date], factors: FactorSet, model: str
) -> dict[dt.date, Verdict]:
    """`factor_covariance_symmetric_psd`'s verdict of each stored date of model `model`."""
    per_date = {}
    for days, S in _stored_chunks(
        store, "factor_covariance", dates, factors.names, "covariance", model
    ):
        non_finite = (~np.isfinite(S)).sum(axis=(1, 2))
        clean = np.where(np.isfinite(S), S, 0.0)
        asym = np.abs(clean - clean.transpose(0, 2, 1)).max(axis=(1, 2))
        eig_min = np.linalg.eigvalsh((clean + clean.transpose(0, 2, 1)) / 2)[:, 0]
        scale = np.abs(np.diagonal(clean, axis1=1, axis2=2)).max(axis=1)
        rel = eig_min / np.where(scale > 0, scale, 1.0)
        for i, day in enumerate(days):
            if non_finite[i]:
                per_date[day] = Verdict(
                    False, {"non_finite": int(non_finite[i])}, "NaN or infinite entries"
                )
                continue
            ok = asym[i] <= PSD_TOL * scale[i] and rel[i] >= -PSD_TOL
            per_date[day] = Verdict(
                bool(ok),
                {"max_asymmetry": float(asym[i]), "min_relative_eigenvalue": float(rel[i])},
            )
    return per_date


def _vol_is_tutorial(settings: object) -> bool:
    cs = settings.factor_cov_settings  # type: ignore[attr-defined]
    return cs.halflife_vra is None and cs.nw_lags_vol == 0 and cs.eigen_adjustment_scale is None


def _cor_is_tutorial(settings: object) -> bool:
    cs = settings.factor_cov_settings  # type: ignore[attr-defined]
    return (
        cs.nw_lags_cor == 0
        and cs.shrink_cor_method is None
        and not cs.combine_standardized
        and cs.eigen_adjustment_scale is None
    )


# The last one-block eigen adjustment (both tie-outs of a run ask for the same one).
_EIGEN_MEMO: dict[str, np.ndarray] = {}


def _eigen_block(inputs: _TieoutInputs, vol: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """The one-block recomputation of the stored covariances of the range's dates with the
    eigenfactor risk adjustment (`core/eigen.py`): vol_i vol_j corr_ij of the block forecasts
    (T, K) and (T, K, K) of `inputs.days`, adjusted on the range's dates with the number of
    sessions with returns up to each. Each date's adjustment depends on its own matrix only, so
    adjusting only the range's dates is the one-block result on them."""
    eigen = EigenAdjustment.from_settings(inputs.settings.factor_cov_settings)
    t0 = inputs.days.index(inputs.in_range[0])
    cov = covariance_from(vol[t0:], corr[t0:])
    if eigen is None:
        return cov
    n_obs = np.cumsum(~np.isnan(inputs.F).all(axis=1))[t0:]
    key = hashlib.sha256(
        repr(eigen).encode() + cov.tobytes() + n_obs.astype(np.int64).tobytes()
    ).hexdigest()
    if key not in _EIGEN_MEMO:
        _EIGEN_MEMO.clear()
        _EIGEN_MEMO[key] = eigen.adjust(cov, n_obs, labels=inputs.days[t0:])
    return _EIGEN_MEMO[key]


def _block_forecasts(inputs: _TieoutInputs) -> tuple[np.ndarray, np.ndarray]:
    """The volatility (T, K, annualised) and correlation (T, K, K) forecasts of `inputs.days`
    recomputed in one block from the first return on."""
    cs = inputs.settings.factor_cov_settings
    vol_fc, _ = VolatilityForecaster(cs).run(None, inputs.F)
    prior = None
    if cs.combine_standardized:
        daily = vol_fc.vol / np.sqrt(252.0)
        prior = np.vstack([np.full((1, inputs.factors.k), np.nan), daily[:-1]])
    cor_fc, _ = CorrelationForecaster(cs).run(None, inputs.F, prior)
    return vol_fc.vol, cor_fc.corr


def _frame_failure(actual: pd.DataFrame, expected: pd.DataFrame, **kwargs: object) -> str | None:
    """The tutorial's `assert_frame_equal` as written; its message when it fails, else None."""
    try:
        pd.testing.assert_frame_equal(actual, expected, **kwargs)  # type: ignore[arg-type]
    except AssertionError as err:
        return " ".join(str(err).split())[:500]
    return None


def _tieout_verdicts(
    in_range: list[dt.date],
    actual: pd.DataFrame,
    expected: pd.DataFrame,
    label: str,
    metadata: dict[dt.date, dict[str, MetadataScalar]],
    **kwargs: object,
) -> dict[dt.date, Verdict]:
    """The tutorial's assertion over the range's frames; when it fails, the same assertion on
    each session's rows finds the sessions that fail (the failing path only: a passing range
    costs one assertion)."""
    if _frame_failure(actual, expected, **kwargs) is None:
        return {d: Verdict(True, metadata.get(d, {}), f"{label} passed") for d in in_range}
    out = {}
    for day in in_range:
        rows = [pd.Timestamp(day)]
        message = _frame_failure(actual.loc[rows], expected.loc[rows], **kwargs)
        out[day] = Verdict(
            message is None,
            metadata.get(day, {}),
            f"{label} passed" if message is None else f"{label} failed: {message}",
        )
    return out


def _with_history(
    dates: list[dt.date], inputs: _TieoutInputs | None, per_date: dict[dt.date, Verdict]
) -> dict[dt.date, Verdict]:
    """Every session of the range: the tie-out's verdicts, and sessions before the first
    published forecast (no returns yet, or the warm-up) pass."""
    first = None
    if inputs is not None and inputs.days:
        observed = ~np.isnan(inputs.F).all(axis=1)
        warmup = inputs.settings.factor_cov_settings.warmup_length
        published = np.flatnonzero(np.cumsum(observed) > warmup)
        first = inputs.days[published[0]] if published.size else None
    return _forecast_verdicts(dates, first, per_date, "covariance report")


@asset_check(asset=covariance_report, partitions_def=trading_sessions, blocking=True)
@one_connection
def volatility_tieout(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """The tutorial's volatility tie-out: sqrt(diag(df_vcov)) equals the pandas EWMA of squared
    factor returns (`assert_frame_equal`, default tolerances) on this range's dates. With a
    non-default volatility setting: one block recomputation of the whole history equals the
    stored day-by-day forecasts to 1e-12."""
    dates = partition_dates(context)
    inputs = _tieout_inputs(context, storage, model)
    what = "volatility tie-out"
    if inputs is None:
        yield from session_evaluations(context, _with_history(dates, None, {}), what)
        return
    df_vol = tieout.vol_from_vcov(inputs.df_vcov)
    index = [pd.Timestamp(d) for d in inputs.in_range]
    if _vol_is_tutorial(inputs.settings):
        df_vol32 = tieout.vol_from_vcov(inputs.df_vcov.astype(np.float32))
        df_fr = _tutorial_factor_returns(inputs.days, inputs.factors.names, inputs.F)
        halflife = inputs.settings.factor_cov_settings.halflife_vol
        expected = tieout.tutorial_vol_tieout(df_fr, halflife)
        expected = expected.loc[expected.index >= index[0]]
        exact = tieout.tutorial_vol_tieout_f64(df_fr, halflife)
        exact = exact.loc[exact.index >= index[0]].reindex(columns=df_vol.columns)
        err64 = np.abs(df_vol.to_numpy() - exact.to_numpy()).max(axis=1)
        meta = {
            d: {"max_abs_diff_float64": float(e)}
            for d, e in zip(inputs.in_range, err64, strict=True)
        }
        per_date = _tieout_verdicts(
            inputs.in_range,
            df_vol32,
            expected,
            "tutorial volatility tie-out (assert_frame_equal)",
            meta,
            check_column_type=False,
            check_categorical=False,
            check_like=True,
        )
    else:
        if inputs.settings.factor_cov_settings.eigen_adjustment_scale is None:
            block_vol = (
                VolatilityForecaster(inputs.settings.factor_cov_settings).run(None, inputs.F)[0].vol
            )
        else:  # the report's volatilities are those of the adjusted covariance
            t0 = inputs.days.index(inputs.in_range[0])
            adjusted = _eigen_block(inputs, *_block_forecasts(inputs))
            block_vol = np.full((len(inputs.days), inputs.factors.k), np.nan)
            block_vol[t0:] = np.sqrt(np.diagonal(adjusted, axis1=1, axis2=2))
        block = pd.DataFrame(
            block_vol,
            index=pd.DatetimeIndex(pd.to_datetime(inputs.days), name="date"),
            columns=list(inputs.factors.names),
        )
        block = block.loc[block.index >= index[0]].reindex(columns=df_vol.columns).to_numpy()
        err = np.abs(df_vol.to_numpy() - block).max(axis=1)
        tol = CONSISTENCY_TOL * np.maximum(1.0, np.abs(block).max(axis=1))
        label = "non-default volatility settings: stored forecasts equal a one-block recomputation"
        per_date = {
            d: Verdict(bool(e <= t), {"max_abs_diff": float(e)}, label)
            for d, e, t in zip(inputs.in_range, err, tol, strict=True)
        }
    yield from session_evaluations(context, _with_history(dates, inputs, per_date), what)


def _say_zero_volatility(
    context: AssetCheckExecutionContext, df_vcov: pd.DataFrame, per_date: dict[dt.date, Verdict]
) -> dict[dt.date, Verdict]:
    """Factors of zero volatility (a sector without assets: factor return 0, variance 0) have
    correlations 0/0, NaN in both frames of the tie-out, which then agree: said once in the
    run's log and on each session's evaluation (description and `zero_volatility_factors`),
    instead of numpy's "invalid value encountered in divide" printed three times."""
    zero = {ts.date(): names for ts, names in tieout.zero_volatility_factors(df_vcov).items()}
    if not zero:
        return per_date
    names = sorted({n for found in zero.values() for n in found})
    days = sorted(zero)
    context.log.warning(
        f"correlation_tieout: {len(names)} factor(s) with zero volatility on {len(days)} "
        f"session(s) ({brief_dates(days)}): {', '.join(names)}; their correlations are "
        "undefined (0/0), NaN in both the stored report's and the tutorial's frames"
    )
    out = dict(per_date)
    for day, verdict in per_date.items():
        found = zero.get(day)
        if found:
            note = (
                f"zero volatility, correlations undefined (NaN on both sides): {', '.join(found)}"
            )
            out[day] = Verdict(
                verdict.passed,
                {**verdict.metadata, "zero_volatility_factors": len(found)},
                f"{verdict.description}; {note}" if verdict.description else note,
            )
    return out


@asset_check(asset=covariance_report, partitions_def=trading_sessions, blocking=True)
@one_connection
def correlation_tieout(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> Iterator[AssetCheckEvaluation | Output]:
    """The tutorial's correlation tie-out: df_vcov normalised equals the pandas EWMA of outer
    products normalised (`assert_frame_equal`, atol=1e-5). With a non-default correlation
    setting: one block recomputation equals the stored forecasts to 1e-12."""
    dates = partition_dates(context)
    inputs = _tieout_inputs(context, storage, model)
    what = "correlation tie-out"
    if inputs is None:
        yield from session_evaluations(context, _with_history(dates, None, {}), what)
        return
    df_cor = tieout.cor_from_vcov(inputs.df_vcov)
    if _cor_is_tutorial(inputs.settings):
        df_cor32 = tieout.cor_from_vcov(inputs.df_vcov.astype(np.float32))
        df_fr = _tutorial_factor_returns(inputs.days, inputs.factors.names, inputs.F)
        # The tutorial's statements over the whole history, with the per-date steps run only
        # for this range's dates (`tieout.tutorial_cor_tieout_since`, equal to the verbatim code
        # on those dates): a daily run's check does not grow with the history.
        expected = tieout.tutorial_cor_tieout_since(
            df_fr,
            inputs.settings.factor_cov_settings.halflife_cor,
            pd.Timestamp(inputs.in_range[0]),
        )
        per_date = _tieout_verdicts(
            inputs.in_range,
            df_cor32,
            expected,
            "tutorial correlation tie-out (assert_frame_equal, atol=1e-5)",
            {},
            check_index_type=False,
            check_categorical=False,
            check_like=True,
            atol=1e-5,
        )
        per_date = _say_zero_volatility(context, inputs.df_vcov, per_date)
        yield from session_evaluations(context, _with_history(dates, inputs, per_date), what)
        return
    vol, corr = _block_forecasts(inputs)
    t0 = inputs.days.index(inputs.in_range[0])
    block_corr = corr[t0:]
    if inputs.settings.factor_cov_settings.eigen_adjustment_scale is not None:
        adjusted = _eigen_block(inputs, vol, corr)  # the report's correlation is the adjusted one
        sd = np.sqrt(np.diagonal(adjusted, axis1=1, axis2=2))
        block_corr = adjusted / (sd[:, :, None] * sd[:, None, :])
    stored = pairs_to_cube(
        pl.from_pandas(
            df_cor.reset_index()
            .melt(id_vars=["date", "factor"], var_name="factor_2", value_name="correlation")
            .rename(columns={"factor": "factor_1"})
        ).with_columns(pl.col("date").cast(pl.Date)),
        inputs.in_range,
        inputs.factors.names,
        "correlation",
    )
    err = np.abs(stored - block_corr).max(axis=(1, 2))
    label = "non-default correlation settings: stored forecasts equal a one-block recomputation"
    per_date = {
        d: Verdict(bool(e <= CONSISTENCY_TOL), {"max_abs_diff": float(e)}, label)
        for d, e in zip(inputs.in_range, err, strict=True)
    }
    per_date = _say_zero_volatility(context, inputs.df_vcov, per_date)
    yield from session_evaluations(context, _with_history(dates, inputs, per_date), what)


ALL_CHECKS = [
    factor_returns_zero_sum,
    regression_degenerate_cases,
    factor_returns_complete,
    exposures_standardised,
    style_exposures_valid,
    factor_volatility_valid,
    factor_correlation_valid,
    factor_covariance_symmetric_psd,
    volatility_tieout,
    correlation_tieout,
]
