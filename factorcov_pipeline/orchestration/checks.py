"""Partition-aware asset checks on the stored outputs.

The two tutorial tie-outs run the tutorial's pandas code as written (`factorcov_pipeline.tieout`)
on the stored factor returns and compare with the stored covariance report, with the tutorial's
tolerances. They apply where the settings leave that part of the model at the tutorial's
defaults; otherwise the check recomputes the whole history in one block with the core and
compares with the stored day-by-day forecasts. Checks whose failure makes downstream numbers
wrong are blocking.
"""

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from factorcov_pipeline import tieout
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.correlation import CorrelationForecaster
from factorcov_pipeline.core.exposures import BOUND_FACTOR, descriptor_column
from factorcov_pipeline.core.factors import FactorSet
from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2
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
    model_factors,
    rows_per_session,
)
from factorcov_pipeline.orchestration.partitions import partition_dates, trading_sessions
from factorcov_pipeline.orchestration.resources import FactorcovSettings, FactorcovStorage
from factorcov_pipeline.storage import EXPOSURES_TABLE, Store, quote_ident

ZERO_SUM_TOL = 1e-10
CONSISTENCY_TOL = 1e-12
PSD_TOL = 1e-12


def _result(ok: bool, what: str, **metadata: object) -> AssetCheckResult:
    return AssetCheckResult(
        passed=bool(ok),
        severity=AssetCheckSeverity.ERROR,
        description=what,
        metadata={k: v for k, v in metadata.items()},
    )


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
    rep = store.read_dates("covariance_report", first, last).to_pandas()
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
    return _TieoutInputs(settings, factors, days, F, in_range, df_vcov)


def _stored(
    store: Store, table: str, dates: list[dt.date], names: tuple[str, ...], value: str
) -> tuple[list[dt.date], np.ndarray]:
    """The stored dates of `table` in the range and their values: (T, K) for a table keyed by
    `factor`, (T, K, K) for one keyed by `factor_1, factor_2`."""
    frame = store.read_dates(table, dates[0], dates[-1])
    days = sorted(set(frame["date"].to_list())) if frame.height else []
    if "factor_1" in frame.columns:
        return days, pairs_to_cube(frame, days, names, value)
    return days, long_to_matrix(frame, days, names, value)


def _stored_chunks(
    store: Store, table: str, dates: list[dt.date], names: tuple[str, ...], value: str
) -> Iterator[tuple[list[dt.date], np.ndarray]]:
    """`_stored` a chunk of sessions at a time: a K x K table over 10 years at 72 factors is
    13 million rows, several GiB as one frame (benchmark 5's memory peak)."""
    for chunk in date_chunks(dates, rows_per_session=len(names) ** 2):
        days, values = _stored(store, table, chunk, names, value)
        if days:
            yield days, values


@asset_check(asset=factor_returns, partitions_def=trading_sessions, blocking=True)
def factor_returns_zero_sum(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """The cap-weighted (or equal-weighted) sum of sector factor returns is 0 to 1e-10, with the
    caps of the assets in each date's regression at the previous session."""
    settings, store, dates, factors = _scope(context, storage, model)
    method = settings.factor_model_settings.modelconstruction.zero_sum_constraints.get("trbc")
    if settings.factor_model_settings.universe.factor_returns:
        return _result(True, "user-supplied factor returns: no regression constraint to check")
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
    per_date = pl.concat(errors)
    worst = float(per_date["err"].max() or 0.0) if per_date.height else 0.0
    return _result(
        worst <= ZERO_SUM_TOL,
        f"|sum_s w_s f_s| / sum_s w_s <= {ZERO_SUM_TOL:g} on every date ({method})",
        max_abs_weighted_sum=worst,
        dates=per_date.height,
    )


@asset_check(asset=factor_returns, partitions_def=trading_sessions, blocking=True)
def factor_returns_complete(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """Every date with returns has all K factor returns, none NaN or infinite."""
    _, store, dates, factors = _scope(context, storage, model)
    days, F = _stored(store, "factor_returns", dates, factors.names, "factor_return")
    bad = int((~np.isfinite(F)).sum())
    return _result(
        bad == 0, "all factor returns present and finite", non_finite=bad, dates=len(days)
    )


@asset_check(asset=exposures, partitions_def=trading_sessions, blocking=True)
def exposures_standardised(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """Each style has cap-weighted mean 0 and equal-weighted std 1 on every date (1e-9)."""
    settings, store, dates, factors = _scope(context, storage, model)
    if settings.factor_model_settings.universe.factor_returns:
        return _result(True, "user-supplied factor returns: no exposures to check")
    if not factors.styles:
        return _result(True, "the model has no style factors")
    # Per date and style, from the wide table (one row per asset): DuckDB aggregates one column
    # per statistic and style, in chunks of sessions for bounded memory at scale.
    stat_cols = ", ".join(
        f"sum(u.market_cap * e.{quote_ident(s)}) / sum(u.market_cap) AS {quote_ident('m' + str(i))}, "
        f"stddev_pop(e.{quote_ident(s)}) AS {quote_ident('s' + str(i))}"
        for i, s in enumerate(factors.styles)
    )
    parts = [
        store.read(
            f"SELECT e.date, {stat_cols} FROM {EXPOSURES_TABLE} e "
            "JOIN universe u USING (date, asset_id) "
            "WHERE e.date BETWEEN ? AND ? AND u.date BETWEEN ? AND ? GROUP BY e.date",
            [chunk[0], chunk[-1], chunk[0], chunk[-1]],
        )
        for chunk in date_chunks(dates, rows_per_session=rows_per_session(settings, factors))
    ]
    wide = pl.concat(parts)
    if wide.height == 0:
        return _result(False, "no style exposures stored for these dates")
    n_styles = len(factors.styles)
    stats = pl.DataFrame(
        {
            "cw_mean": np.concatenate([wide[f"m{i}"].to_numpy() for i in range(n_styles)]),
            "ew_std": np.concatenate([wide[f"s{i}"].to_numpy() for i in range(n_styles)]),
        }
    )
    mean_err = float(stats["cw_mean"].abs().max() or 0.0)
    # A degenerate descriptor (zero variance) gives all-zero exposures: std 0 is allowed then.
    std_err = float(
        stats.filter(pl.col("ew_std") > 0).select((pl.col("ew_std") - 1.0).abs().max()).item()
        or 0.0
    )
    ok = mean_err <= 1e-9 and std_err <= 1e-9
    return _result(
        ok,
        "cap-weighted mean 0, std 1 per style and date",
        max_abs_mean=mean_err,
        max_abs_std_minus_1=std_err,
    )


@asset_check(asset=exposures, partitions_def=trading_sessions, blocking=True)
def style_exposures_valid(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """No style is degenerate on any date: not all zero although the universe has the
    descriptor (a flat descriptor, or one the standardisation collapsed: the style's factor
    return would be undefined) and within the documented bound
    |exposure| <= 2 x winsorize_sigma (`core.exposures.BOUND_FACTOR`): beyond it one extreme
    descriptor has dominated the standardisation."""
    settings, store, dates, factors = _scope(context, storage, model)
    if settings.factor_model_settings.universe.factor_returns:
        return _result(True, "user-supplied factor returns: no exposures to check")
    if not factors.styles:
        return _result(True, "the model has no style factors")
    sigma = settings.factor_model_settings.exposures.winsorize_sigma
    bound = BOUND_FACTOR * sigma
    cols = ", ".join(
        f"max(abs({quote_ident(s)})) AS {quote_ident('a' + str(i))}"
        for i, s in enumerate(factors.styles)
    )
    wide = pl.concat(
        [
            store.read(
                f"SELECT date, {cols} FROM {EXPOSURES_TABLE} WHERE date BETWEEN ? AND ? "
                "GROUP BY date ORDER BY date",
                [chunk[0], chunk[-1]],
            )
            for chunk in date_chunks(dates, rows_per_session=rows_per_session(settings, factors))
        ]
    )
    if wide.height == 0:
        return _result(False, "no style exposures stored for these dates")
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
    zero, over, worst = [], [], 0.0
    for i, style in enumerate(factors.styles):
        col = wide[f"a{i}"].fill_null(0.0)
        worst = max(worst, float(col.max() or 0.0))
        had_data = (
            wide[style].fill_null(0) >= 2 if style in described else pl.Series([True] * wide.height)
        )
        flat = wide.filter((col == 0.0) & had_data)["date"].to_list()
        zero += [f"{style} on {d}" for d in flat]
        over += [f"{style} on {d}" for d in wide.filter(col > bound)["date"].to_list()]
    problems = []
    if zero:
        problems.append(f"all zero: {', '.join(zero[:5])}{' ...' if len(zero) > 5 else ''}")
    if over:
        problems.append(
            f"beyond +/-{bound:g}: {', '.join(over[:5])}{' ...' if len(over) > 5 else ''}"
        )
    return _result(
        not problems,
        "; ".join(problems) or f"every style varies and lies within +/-{bound:g} on every date",
        max_abs_exposure=worst,
        degenerate_style_dates=len(zero) + len(over),
    )


@asset_check(asset=factor_volatility, partitions_def=trading_sessions, blocking=True)
def factor_volatility_valid(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """Volatilities are finite and non-negative for every factor and date."""
    store = storage.store()
    dates = partition_dates(context)
    vol = store.read_dates("factor_volatility", dates[0], dates[-1])
    v = vol["volatility"].to_numpy() if vol.height else np.empty(0)
    bad = int((~np.isfinite(v)).sum() + (v < 0).sum())
    return _result(bad == 0, "finite, non-negative volatilities", invalid=bad, rows=vol.height)


@asset_check(asset=factor_correlation, partitions_def=trading_sessions, blocking=True)
def factor_correlation_valid(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """Correlations are finite, symmetric, with unit diagonal and entries in [-1, 1]."""
    _, store, dates, factors = _scope(context, storage, model)
    finite, asym, diag, bound = True, 0.0, 0.0, 0.0
    for _, C in _stored_chunks(store, "factor_correlation", dates, factors.names, "correlation"):
        finite = finite and bool(np.isfinite(C).all())
        asym = max(asym, float(np.abs(C - C.transpose(0, 2, 1)).max()))
        diag = max(diag, float(np.abs(np.diagonal(C, axis1=1, axis2=2) - 1).max()))
        bound = max(bound, float(np.abs(C).max() - 1))
    ok = finite and asym <= 1e-12 and diag <= 1e-12 and bound <= 1e-12
    return _result(
        ok,
        "finite, symmetric, unit diagonal, |rho| <= 1",
        max_asymmetry=asym,
        max_diag_error=diag,
        finite=finite,
    )


@asset_check(asset=factor_covariance, partitions_def=trading_sessions, blocking=True)
def factor_covariance_symmetric_psd(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """Every covariance matrix is finite, symmetric and positive semi-definite."""
    _, store, dates, factors = _scope(context, storage, model)
    n_days, non_finite, asym, scale_max, rel = 0, 0, 0.0, 0.0, np.inf
    for days, S in _stored_chunks(store, "factor_covariance", dates, factors.names, "covariance"):
        n_days += len(days)
        bad = int((~np.isfinite(S)).sum())
        non_finite += bad
        if bad:
            continue
        asym = max(asym, float(np.abs(S - S.transpose(0, 2, 1)).max()))
        eig_min = np.linalg.eigvalsh((S + S.transpose(0, 2, 1)) / 2)[:, 0]
        scale = np.abs(np.diagonal(S, axis1=1, axis2=2)).max(axis=1)
        scale_max = max(scale_max, float(scale.max()))
        rel = min(rel, float((eig_min / scale).min()))
    if not n_days:
        return _result(True, "no covariance dates in this range (base date)", dates=0)
    if non_finite:
        return _result(False, "covariance has NaN or infinite entries", non_finite=non_finite)
    ok = asym <= PSD_TOL * scale_max and rel >= -PSD_TOL
    return _result(
        ok,
        "symmetric and positive semi-definite",
        max_asymmetry=asym,
        min_relative_eigenvalue=rel,
        dates=n_days,
    )


def _vol_is_tutorial(settings: object) -> bool:
    cs = settings.factor_cov_settings  # type: ignore[attr-defined]
    return cs.halflife_vra is None and cs.nw_lags_vol == 0


def _cor_is_tutorial(settings: object) -> bool:
    cs = settings.factor_cov_settings  # type: ignore[attr-defined]
    return cs.nw_lags_cor == 0 and cs.shrink_cor_method is None and not cs.combine_standardized


@asset_check(asset=covariance_report, partitions_def=trading_sessions, blocking=True)
def volatility_tieout(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """The tutorial's volatility tie-out: sqrt(diag(df_vcov)) equals the pandas EWMA of squared
    factor returns (`assert_frame_equal`, default tolerances) on this range's dates. With a
    non-default volatility setting: one block recomputation of the whole history equals the
    stored day-by-day forecasts to 1e-12."""
    inputs = _tieout_inputs(context, storage, model)
    if inputs is None:
        return _result(True, "no forecast dates in this range (base date)")
    df_vol = tieout.vol_from_vcov(inputs.df_vcov)
    if _vol_is_tutorial(inputs.settings):
        df_vol32 = tieout.vol_from_vcov(inputs.df_vcov.astype(np.float32))
        df_fr = _tutorial_factor_returns(inputs.days, inputs.factors.names, inputs.F)
        expected = tieout.tutorial_vol_tieout(
            df_fr, inputs.settings.factor_cov_settings.halflife_vol
        )
        expected = expected.loc[expected.index >= pd.Timestamp(inputs.in_range[0])]
        try:
            pd.testing.assert_frame_equal(
                df_vol32,
                expected,
                check_column_type=False,
                check_categorical=False,
                check_like=True,
            )
        except AssertionError as err:
            return _result(False, f"tutorial volatility tie-out failed: {err}")
        exact = tieout.tutorial_vol_tieout_f64(
            df_fr, inputs.settings.factor_cov_settings.halflife_vol
        )
        exact = exact.loc[exact.index >= pd.Timestamp(inputs.in_range[0])].reindex(
            columns=df_vol.columns
        )
        err64 = float(np.abs(df_vol.to_numpy() - exact.to_numpy()).max())
        return _result(
            True,
            "tutorial volatility tie-out (assert_frame_equal) passed",
            dates=len(inputs.in_range),
            max_abs_diff_float64=err64,
        )
    fc, _ = VolatilityForecaster(inputs.settings.factor_cov_settings).run(None, inputs.F)
    block = pd.DataFrame(
        fc.vol,
        index=pd.DatetimeIndex(pd.to_datetime(inputs.days), name="date"),
        columns=list(inputs.factors.names),
    )
    block = block.loc[block.index >= pd.Timestamp(inputs.in_range[0])].reindex(
        columns=df_vol.columns
    )
    err = float(np.abs(df_vol.to_numpy() - block.to_numpy()).max())
    return _result(
        err <= CONSISTENCY_TOL * max(1.0, float(np.abs(block.to_numpy()).max())),
        "non-default volatility inputs.settings: stored forecasts equal a one-block recomputation",
        max_abs_diff=err,
    )


@asset_check(asset=covariance_report, partitions_def=trading_sessions, blocking=True)
def correlation_tieout(
    context: AssetCheckExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> AssetCheckResult:
    """The tutorial's correlation tie-out: df_vcov normalised equals the pandas EWMA of outer
    products normalised (`assert_frame_equal`, atol=1e-5). With a non-default correlation
    setting: one block recomputation equals the stored forecasts to 1e-12."""
    inputs = _tieout_inputs(context, storage, model)
    if inputs is None:
        return _result(True, "no forecast dates in this range (base date)")
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
        try:
            pd.testing.assert_frame_equal(
                df_cor32,
                expected,
                check_index_type=False,
                check_categorical=False,
                check_like=True,
                atol=1e-5,
            )
        except AssertionError as err:
            return _result(False, f"tutorial correlation tie-out failed: {err}")
        return _result(
            True,
            "tutorial correlation tie-out (assert_frame_equal, atol=1e-5) passed",
            dates=len(inputs.in_range),
        )
    prior = None
    if inputs.settings.factor_cov_settings.combine_standardized:
        vol_fc, _ = VolatilityForecaster(inputs.settings.factor_cov_settings).run(None, inputs.F)
        daily = vol_fc.vol / np.sqrt(252.0)
        prior = np.vstack([np.full((1, inputs.factors.k), np.nan), daily[:-1]])
    fc, _ = CorrelationForecaster(inputs.settings.factor_cov_settings).run(None, inputs.F, prior)
    t0 = inputs.days.index(inputs.in_range[0])
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
    err = float(np.abs(stored - fc.corr[t0:]).max())
    return _result(
        err <= CONSISTENCY_TOL,
        "non-default correlation inputs.settings: stored forecasts equal a one-block recomputation",
        max_abs_diff=err,
    )


ALL_CHECKS = [
    factor_returns_zero_sum,
    factor_returns_complete,
    exposures_standardised,
    style_exposures_valid,
    factor_volatility_valid,
    factor_correlation_valid,
    factor_covariance_symmetric_psd,
    volatility_tieout,
    correlation_tieout,
]
