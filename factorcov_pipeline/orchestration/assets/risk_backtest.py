"""`risk_backtest`: are the specific and portfolio risk forecasts calibrated?

Two tables, one row per session t (the realised date) and unit:

- `risk_backtest(date, portfolio, portfolio_kind, realised_return, predicted_risk, warm,
  reason)`: each standing portfolio (kind `standing`, weights of `portfolio_risk_settings`) and
  the fully invested minimum-variance portfolio built from the forecasts of the previous
  session (kind `min_variance`, `core/portfolio.minimum_variance_weights`): the daily return
  realised at t (sum of weight x asset return; an asset without a return at t counts 0; NULL,
  missing, when none of the portfolio's holdings has a return at t, e.g. a session in
  `factor_return_gaps`) and the annualised risk forecast made at the previous session. `warm`:
  that forecast's factor covariance and specific risk were both warm (`core/warmup.py`).
  `reason` (NULL when both numbers are there) says why one is missing: `no_returns`,
  `no_specific_risk` (the model has assets without a specific risk forecast: see
  `specific_risk.reason`), `singular_covariance` (the minimum-variance solve failed). Optimised
  portfolios are the classic test of under-forecast risk: the optimiser loads on what the model
  thinks is cheap (USE4 notes, section 6).
- `specific_risk_bias(date, size_decile, n_assets, bias, warm)`: the cross-sectional bias
  statistic sqrt(mean z^2) of z = specific_return(t) / (specific_risk(t-1) / sqrt(252)) over
  the assets of each size decile (1 = smallest, by market cap at t-1); `warm`: the specific
  risk forecast of t-1 was warm.
- `risk_backtest_summary`: the full-sample bias statistic of every backtest portfolio with its
  95% band and 12-month windows over the whole stored history (`core/backtest.outcome_summary`),
  sample `warm` (the default reading: warm-up forecasts left out) and `all`, replaced by
  every run.

Metadata: that summary (read back from the table), the per-asset specific bias statistic by
size decile (median over assets; warm forecasts of at most the last year), and the rolling
bias plot of the warm forecasts.
"""

import bisect
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.api.risk_models import load_risk_models_of
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import rolling_bias
from factorcov_pipeline.core.blas import one_blas_thread
from factorcov_pipeline.core.forecaster import ANNUALISATION_DAYS
from factorcov_pipeline.core.holdings import align_holdings
from factorcov_pipeline.core.portfolio import (
    NO_SPECIFIC_RISK,
    RiskSnapshot,
    SpecificTerms,
    decompose,
    observed_returns,
    portfolio_returns,
    specific_terms,
    try_minimum_variance_weights,
)
from factorcov_pipeline.core.settings import (
    DEFAULT_MODEL,
    FactorCovarianceReportSettingsV2,
    PortfolioRiskSettings,
)
from factorcov_pipeline.core.warmup import COVARIANCE, SPECIFIC, warmups
from factorcov_pipeline.orchestration import summaries
from factorcov_pipeline.orchestration.assets import resume
from factorcov_pipeline.orchestration.assets.common import PARTITIONED, date_chunks, date_span
from factorcov_pipeline.orchestration.assets.models import (
    extension,
    history_start,
    identity,
    run_models,
)
from factorcov_pipeline.orchestration.assets.portfolio_risk import standing_holdings
from factorcov_pipeline.orchestration.metadata import figures_wanted, image, on_last_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.render import plots
from factorcov_pipeline.storage import Store, TableWrite

ASSET = "risk_backtest"
SUMMARY = "risk_backtest_summary"
SPECIFIC_BIAS = "specific_risk_bias"
NO_RETURNS = "no_returns"
MIN_VARIANCE = "min_variance"
N_DECILES = 10
# Sessions (one year) of the per-asset specific bias summary in the metadata, at most.
BIAS_WINDOW = 252
ROOT_DAYS = float(np.sqrt(ANNUALISATION_DAYS))
BACKTEST_SCHEMA = {
    "date": pl.Date,
    "portfolio": pl.String,
    "portfolio_kind": pl.String,
    "realised_return": pl.Float64,
    "predicted_risk": pl.Float64,
    "warm": pl.Boolean,
    "reason": pl.String,
}
SPEC_SCHEMA = {
    "date": pl.Date,
    "size_decile": pl.Int32,
    "n_assets": pl.Int32,
    "bias": pl.Float64,
}
SPEC_TABLE_SCHEMA = {**SPEC_SCHEMA, "warm": pl.Boolean}


def specific_z_sql(
    store: Store, start: dt.date, end: dt.date, with_caps: bool = False
) -> tuple[str, list[dt.date]]:
    """SQL and parameters of the per-asset standardised specific outcomes of [start, end],
    z = u(t) / (s(t-1) / sqrt(252)), t-1 the previous forecast date (`prev`); one row per
    asset and date. ``with_caps``: (date, z, market_cap at t-1) in (date, asset_id) order, so
    that ranks among equal caps and the sums do not depend on the order a store returns rows
    in (a parallel backfill stores the same bits as a sequential run, tests/test_parallel.py).

    Every table is read from `lo`, the last forecast date before `start`, on: the scans
    follow the range, not the stored history (a 10-year history made them 20 times slower)."""
    row = store.read("SELECT max(date) AS lo FROM specific_risk WHERE date < ?", [start])
    lo = row["lo"][0] if row.height and row["lo"][0] is not None else start
    sql = """
    WITH d AS (
        SELECT date, lag(date) OVER (ORDER BY date) AS prev
        FROM (SELECT DISTINCT date FROM specific_risk WHERE date BETWEEN ? AND ?) AS s
    )
    SELECT u.date, u.asset_id, u.specific_return / (r.specific_risk / sqrt(252)) AS z, d.prev
    FROM specific_returns u
    JOIN d ON u.date = d.date
    JOIN specific_risk r ON r.asset_id = u.asset_id AND r.date = d.prev
    WHERE u.date BETWEEN ? AND ? AND r.date BETWEEN ? AND ? AND r.specific_risk > 0
    """
    params = [lo, end, start, end, lo, end]
    if with_caps:
        sql = f"""
        WITH z AS ({sql})
        SELECT z.date, z.z, c.market_cap
        FROM z JOIN universe c ON c.asset_id = z.asset_id AND c.date = z.prev
        WHERE c.date BETWEEN ? AND ?
        ORDER BY z.date, z.asset_id
        """
        params += [lo, end]
    return sql, params


def specific_bias_rows(zc: pl.DataFrame) -> pl.DataFrame:
    """The specific bias statistic sqrt(mean z^2) by size decile for every date of ``zc``
    (date, z, market_cap at the previous forecast date; `specific_z_sql`'s rows with caps,
    in (date, asset_id) order) at once: deciles by that cap, 1 = smallest,
    ``rank * 10 // n + 1`` over the date's n assets with an outcome, equal caps ranked in
    asset id order (USE4 notes, section 6: the bias statistic)."""
    if zc.height == 0:
        return pl.DataFrame(schema=SPEC_SCHEMA)
    when = zc["date"].to_numpy()
    starts = np.concatenate([[True], when[1:] != when[:-1]])  # rows come in date order
    days, day = when[starts], np.cumsum(starts) - 1
    n = np.bincount(day)
    # rank by cap within each date, 0 = smallest; "ordinal" gives equal caps their order of
    # occurrence (asset id order), as a stable sort would; a missing cap ranks last, as NaN
    # sorts in numpy. polars ranks the dates in parallel (a lexsort of the chunk was 28 ms of
    # 31 per chunk, 1.1 s over 10 years).
    rank = (
        zc.select(pl.col("market_cap").fill_null(float("nan")).rank("ordinal").over("date") - 1)
        .to_series()
        .to_numpy()
        .astype(np.int64)
    )
    decile = (rank * N_DECILES) // n[day] + 1
    group = day * N_DECILES + (decile - 1)
    size = days.size * N_DECILES
    zz = zc["z"].to_numpy()
    count = np.bincount(group, minlength=size)
    sum_sq = np.bincount(group, weights=zz * zz, minlength=size)
    have = np.flatnonzero(count > 0)
    return pl.DataFrame(
        {
            "date": days[have // N_DECILES],
            "size_decile": have % N_DECILES + 1,
            "n_assets": count[have],
            "bias": np.sqrt(sum_sq[have] / count[have]),
        },
        schema=SPEC_SCHEMA,
    )


def _history_metadata(
    store: Store,
    summary: pl.DataFrame,
    last: dt.date,
    warm_after: int,
    spec_bias: Callable[[], pl.DataFrame],
) -> dict:
    """The summary table's numbers (module docstring), the rolling bias plot of the warm
    forecasts, and `specific_bias_by_decile` (``spec_bias()``, asked for last: it may still be
    being read)."""
    meta: dict = {
        **summaries.metadata(summary, "portfolio_bias"),
        **summaries.headline(summary, MIN_VARIANCE, "min_variance_bias"),
    }
    clause, params = store.model_clause(ASSET, DEFAULT_MODEL)
    hist = store.read(
        "SELECT date, portfolio, realised_return, predicted_risk FROM risk_backtest "
        f"WHERE date <= ? AND warm{clause} ORDER BY date, portfolio",
        [last, *params],
    )
    title = f"Bias statistic, rolling 21 sessions, forecasts after their warm-up ({warm_after} "
    title += "sessions)"
    if hist.height == 0:  # nothing after the warm-up yet: the warm-up, saying so
        hist = store.read(
            "SELECT date, portfolio, realised_return, predicted_risk FROM risk_backtest "
            f"WHERE date <= ?{clause} ORDER BY date, portfolio",
            [last, *params],
        )
        title = f"Bias statistic, rolling 21 sessions: all in the {warm_after}-session warm-up"
    if hist.height:
        wide_r = hist.pivot(on="portfolio", index="date", values="realised_return").sort("date")
        wide_p = hist.pivot(on="portfolio", index="date", values="predicted_risk").sort("date")
        names = [c for c in wide_r.columns if c != "date"]
        r = wide_r.select(names).fill_null(np.nan).to_numpy()
        p = wide_p.select(names).fill_null(np.nan).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            z = r / (p / ROOT_DAYS)
        if z.shape[0] >= 21 and figures_wanted():
            roll, _ = rolling_bias(z, 21)
            dates = wide_r["date"].to_list()[20:]
            png = plots.line_chart(
                dates,
                {n: roll[:, i] for i, n in enumerate(names)},
                title,
                "bias",
                band=(1 - np.sqrt(2 / 21), 1 + np.sqrt(2 / 21)),
                ylim=plots.data_limits(roll, include=(1 - np.sqrt(2 / 21), 1 + np.sqrt(2 / 21))),
            )
            meta["portfolio_bias_plot"] = image(png, "bias")
    spec = spec_bias()
    if spec.height:
        meta["specific_bias_by_size_decile"] = MetadataValue.md(
            spec.to_pandas().to_markdown(index=False)
        )
        meta["specific_bias_median"] = float(
            spec.filter(pl.col("size_decile") == 0)["median_asset_bias"][0]
        )
    return meta


def specific_bias_by_decile(store: Store, last: dt.date) -> pl.DataFrame:
    """Per-asset specific bias statistic std(z) over the stored warm forecasts (after the
    specific risk warm-up, `specific_risk.warm`) of at most its last `BIAS_WINDOW` sessions
    (the outcomes dated after them), summarised by size
    decile (by each asset's median market cap; decile 0 = all assets): assets with at least 20
    outcomes. The cap keeps a daily run's cost independent of the history's length (over 10
    years the whole history is 5 million outcomes to join on every run; benchmark 4)."""
    dates = store.stored_dates("specific_risk", end=last)
    if len(dates) < 30:
        return pl.DataFrame()
    has_warm = "warm" in store.read("SELECT * FROM specific_risk LIMIT 0").columns
    first_warm = (
        store.read("SELECT min(date) AS d FROM specific_risk WHERE warm AND date <= ?", [last])[
            "d"
        ][0]
        if has_warm  # a file of 0.8 gains the column with specific_risk's next write
        else None
    )
    if first_warm is None or first_warm >= dates[-1]:
        return pl.DataFrame()  # nothing after the warm-up yet
    start = max(dates[max(0, len(dates) - BIAS_WINDOW)], first_warm + dt.timedelta(days=1))
    # aggregated in the store: one row per asset comes back, not one per asset and date. The
    # median cap in standard SQL (PostgreSQL has no median()): the mean of the two middle
    # values, the lower and upper percentile_disc(0.5), is DuckDB's median(x) bit for bit on
    # both stores (percentile_cont interpolates differently in the last bit). Rows are sorted
    # here, in byte order: a store's collation may differ
    z_sql, z_params = specific_z_sql(store, start, last)
    per = store.read(
        f"WITH z AS ({z_sql}), "
        "per AS (SELECT asset_id, stddev_samp(z) AS bias, count(*) AS n FROM z "
        "GROUP BY asset_id HAVING count(*) >= 20), "
        "caps AS (SELECT asset_id, (percentile_disc(0.5) WITHIN GROUP (ORDER BY market_cap) "
        "+ percentile_disc(0.5) WITHIN GROUP (ORDER BY market_cap DESC)) / 2 AS cap "
        "FROM universe WHERE date BETWEEN ? AND ? GROUP BY asset_id) "
        "SELECT per.*, caps.cap FROM per JOIN caps USING (asset_id)",
        [*z_params, start, last],
    ).sort("asset_id")
    if per.height == 0:
        return pl.DataFrame()
    per = per.with_columns(
        ((pl.col("cap").rank("ordinal") - 1) * N_DECILES // per.height + 1).alias("size_decile")
    )
    agg = [
        pl.len().alias("n_assets"),
        pl.col("bias").median().alias("median_asset_bias"),
        pl.col("bias").quantile(0.1).alias("p10"),
        pl.col("bias").quantile(0.9).alias("p90"),
    ]
    by = per.group_by("size_decile").agg(agg).sort("size_decile")
    total = per.select(agg).with_columns(
        pl.lit(0, dtype=by["size_decile"].dtype).alias("size_decile")
    )
    return pl.concat([total.select(by.columns), by])


@dataclass(frozen=True)
class _Universe:
    """A chunk's universe returns as arrays, each date a slice (the rows come in date order)."""

    ids: np.ndarray
    returns: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, uni: pl.DataFrame, chunk: list[dt.date]) -> "_Universe":
        days = uni["date"].to_numpy()
        at = np.asarray(chunk, dtype="datetime64[D]")
        return cls(
            uni["asset_id"].to_numpy().astype(np.str_),
            uni["asset_return"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            np.searchsorted(days, at, side="left"),
            np.searchsorted(days, at, side="right"),
        )


@dataclass(frozen=True)
class _Shared:
    """What a session's backtest computes from the factor model alone, whatever the covariance
    model: the assets' realised returns (`observed_returns`), the minimum-variance solve's
    `SpecificTerms` (None: no D^-1) and the standing portfolios' weights, for the snapshot
    whose exposures and specific risks they were computed from (the covariance models'
    snapshots of one date share those arrays, `load_risk_models_of`)."""

    snapshot: RiskSnapshot
    returns: np.ndarray
    seen: np.ndarray
    terms: SpecificTerms | None
    portfolios: list[str]
    weights: list[np.ndarray]

    def serves(self, m: RiskSnapshot) -> bool:
        """Whether `m` has this snapshot's assets, exposures and specific risks (the same
        arrays: another covariance model of the same date)."""
        s = self.snapshot
        return (
            m.asset_ids is s.asset_ids
            and m.exposures is s.exposures
            and m.specific_risk is s.specific_risk
        )


def _backtest_rows(
    snapshots: dict[dt.date, RiskSnapshot],
    chunk: list[dt.date],
    uni: _Universe,
    holdings: pl.DataFrame | None,
    cfg: PortfolioRiskSettings,
    problems: dict[str, list[dt.date]],
    label: str = "",
    shared: dict[dt.date, _Shared] | None = None,
) -> tuple[dict[str, list], list[dt.date], list[dt.date]]:
    """One covariance model's `risk_backtest` columns for the sessions of `chunk` (those with
    an earlier risk model in `snapshots`), the sessions backtested and the risk model dates
    they were backtested on; the rows that could not be computed are added to `problems`
    (keyed by portfolio, `label`, reason). ``shared``: per session, what the covariance
    models of a chunk share (`_Shared`), filled by the first model and used by the others
    (each session's O(N K^2) work done once, not once per model; the same bits)."""
    shared = {} if shared is None else shared
    cols: dict[str, list] = {c: [] for c in BACKTEST_SCHEMA}
    backtested: list[dt.date] = []  # dates with an earlier model
    model_days: list[dt.date] = []  # the model each was backtested on
    fdays = sorted(snapshots)
    for i, day in enumerate(chunk):  # loop over dates; each vectorised over assets
        at = bisect.bisect_left(fdays, day)
        if at == 0:
            continue
        prev = fdays[at - 1]
        backtested.append(day)
        model_days.append(prev)
        m = snapshots[prev]
        common = shared.get(day)
        if common is None or not common.serves(m):
            common = _shared_of(m, prev, i, uni, holdings, cfg)
            shared[day] = common
        with one_blas_thread():  # N x K products and a K x K solve (core/blas.py)
            mv, why = try_minimum_variance_weights(m, common.terms)
        names, kinds = [MIN_VARIANCE], [MIN_VARIANCE]
        ws = [mv if mv is not None else np.zeros(len(m.asset_ids))]
        reasons: list[str | None] = [why]
        names += common.portfolios
        kinds += ["standing"] * len(common.portfolios)
        ws += common.weights
        reasons += [None] * len(common.portfolios)
        w = np.vstack(ws)
        realised = portfolio_returns(w, common.returns, common.seen)
        predicted = decompose(m, w).total
        for p, name in enumerate(names):  # a loop over the few portfolios of a date
            if reasons[p] is not None:
                realised[p] = predicted[p] = np.nan
            elif not np.isfinite(predicted[p]):
                reasons[p] = NO_SPECIFIC_RISK
            elif np.isnan(realised[p]):
                reasons[p] = NO_RETURNS
            if reasons[p] is not None:
                problems.setdefault(f"{name}{label}: {reasons[p]}", []).append(day)
        cols["date"] += [day] * len(names)
        cols["portfolio"] += names
        cols["portfolio_kind"] += kinds
        cols["realised_return"].append(realised)
        cols["predicted_risk"].append(predicted)
        cols["reason"] += reasons
    for c in ("realised_return", "predicted_risk"):
        cols[c] = np.concatenate(cols[c]) if cols[c] else []
    return cols, backtested, model_days


def _shared_of(
    m: RiskSnapshot,
    prev: dt.date,
    i: int,
    uni: _Universe,
    holdings: pl.DataFrame | None,
    cfg: PortfolioRiskSettings,
) -> _Shared:
    """`_Shared` of the chunk's i-th session, backtested on snapshot `m` of `prev`."""
    r, seen = observed_returns(
        m.asset_ids,
        uni.ids[uni.starts[i] : uni.ends[i]],
        uni.returns[uni.starts[i] : uni.ends[i]],
    )
    with one_blas_thread():  # N x K^2 products (core/blas.py)
        terms = specific_terms(m)
    portfolios: list[str] = []
    weights: list[np.ndarray] = []
    if holdings is not None:
        al = align_holdings(m, holdings, prev, str(cfg.holdings), cfg.drop_unknown)
        portfolios, weights = list(al.portfolios), list(al.weights)
    return _Shared(m, r, seen, terms, portfolios, weights)


def _backtest_range(
    store: Store,
    dates: list[dt.date],
    settings: FactorCovarianceReportSettingsV2,
    holdings: pl.DataFrame | None,
) -> tuple[int, dict[str, list[dt.date]]]:
    """Store `risk_backtest` (every covariance model) and `specific_risk_bias` (shared) for
    `dates`, a chunk of sessions at a time (chunk k + 1 read while chunk k is computed,
    storage/read_ahead.py): the exposures, specific risks, returns and specific outcomes of a
    chunk are read once for every model, and each model adds its covariance. A model new to
    the file is backtested over the whole stored history first (`assets/models.py`). Returns
    the rows stored (of `default`) and, per reason, the dates with a row that could not be
    computed."""
    cfg = settings.portfolio_risk_settings
    ident = identity(settings)
    models = run_models(settings)
    first = history_start(store)
    before = {m.name: extension(store, ASSET, m.name, dates, first) for m in models}
    history = max(before.values(), key=len)  # every extension is this list or empty
    chunks = [(c, False) for c in date_chunks(history)] + [(c, True) for c in date_chunks(dates)]
    clauses = {m.name: store.model_clause("factor_covariance", m.name) for m in models}
    warm = warmups(settings)
    rows = 0
    problems: dict[str, list[dt.date]] = {}

    def read_chunk(
        item: tuple[list[dt.date], bool],
    ) -> tuple[dict[str | None, dict[dt.date, RiskSnapshot]], pl.DataFrame, pl.DataFrame | None]:
        """The risk models a date of the chunk is backtested on (each session's before it;
        the chunk's last model is first used by the next chunk: a daily run reads one model,
        not two), of every model the chunk is computed for, the universe's returns (in date
        order) and, in the run's range, the standardised specific outcomes with caps."""
        chunk, in_range = item
        names = [m.name for m in models if in_range or before[m.name]]
        snapshots = load_risk_models_of(
            store.read,
            calendar.previous_session(chunk[0]),
            calendar.previous_session(chunk[-1]),
            names,
            clause=lambda name: clauses[str(name)],
        )
        uni = store.read(
            "SELECT date, asset_id, asset_return FROM universe "
            "WHERE date BETWEEN ? AND ? ORDER BY date",
            [chunk[0], chunk[-1]],
        )
        zc = (
            store.read(*specific_z_sql(store, chunk[0], chunk[-1], with_caps=True))
            if in_range
            else None
        )
        return snapshots, uni, zc

    for (chunk, _), (snapshots, uni_frame, zc) in store.read_ahead(chunks, read_chunk):
        uni = _Universe.of(uni_frame, chunk)
        writes = []
        shared: dict[dt.date, _Shared] = {}  # the chunk's sessions, for every model
        counted: dict[tuple[dt.date, ...], np.ndarray] = {}
        for m in models:
            if m.name not in snapshots:
                continue
            label = "" if m.is_default else f" (model {m.name})"
            cols, backtested, model_days = _backtest_rows(
                snapshots[m.name], chunk, uni, holdings, cfg, problems, label, shared
            )
            if tuple(model_days) not in counted:
                counted[tuple(model_days)] = resume.return_counts(store, model_days)
            counts = counted[tuple(model_days)]
            warm_m = warmups(m.settings)
            model_warm = (counts > warm_m[COVARIANCE]) & (counts > warm_m[SPECIFIC])
            per_date = dict(zip(backtested, model_warm, strict=True))
            cols["warm"] = [bool(per_date[d]) for d in cols["date"]]
            bt = pl.DataFrame(cols, schema=BACKTEST_SCHEMA).fill_nan(None)
            writes.append(m.write(ASSET, bt))
            if m.is_default:
                rows += bt.height
                if zc is not None:  # the shared specific bias, of the run's range only
                    sp = resume.with_warm(
                        specific_bias_rows(zc.filter(pl.col("date").is_in(backtested))),
                        backtested,
                        counts > warm[SPECIFIC],
                    )
                    writes.append(TableWrite(SPECIFIC_BIAS, sp))
        store.replace(writes, date_span(chunk), **ident)
    return rows, problems


def _warm_of(store: Store, settings: FactorCovarianceReportSettingsV2) -> Callable:
    """Warm flags of backtested dates whose stored `warm` is NULL (rows written before 0.9):
    the model of the previous session was warm."""
    warm = warmups(settings)
    after = max(warm[COVARIANCE], warm[SPECIFIC])

    def flags(days: list[dt.date]) -> np.ndarray:
        prev = [calendar.previous_session(d) for d in days]  # a loop over dates
        return resume.warm_flags(store, prev, after)

    return flags


def _log_problems(context: AssetExecutionContext, problems: dict[str, list[dt.date]]) -> None:
    """One warning per portfolio and reason naming the first dates that could not be
    computed (their rows carry the reason)."""
    for what, days in problems.items():
        shown = ", ".join(str(d) for d in days[:3]) + (" ..." if len(days) > 3 else "")
        context.log.warning(
            f"risk_backtest: {what} on {len(days)} session(s) ({shown}); stored with NULL "
            "numbers and this reason, left out of the bias statistics"
        )


@asset(
    **PARTITIONED,
    deps=["specific_risk", "portfolio_risk", "factor_covariance", "universe"],
    group_name="evaluation",
    kinds={"numpy", "duckdb"},
)
@one_connection
def risk_backtest(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Realised vs predicted risk of the standing portfolios and of a minimum-variance
    portfolio built each date, and the specific risk bias statistic by size decile (tables
    `risk_backtest`, `specific_risk_bias`, `risk_backtest_summary`); metadata: full-sample bias
    statistics of the forecasts after their warm-up (and of all), 12-month windows, per-asset
    specific bias by size decile, plots. A date or portfolio that cannot be computed is a row
    with NULL numbers and its reason, and a warning in the run's log."""
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    # user-supplied factor returns: no exposures or specific risk, nothing to backtest
    if settings.factor_model_settings.universe.factor_returns:
        for m in run_models(settings):
            store.replace(
                [m.write(ASSET, pl.DataFrame(schema=BACKTEST_SCHEMA))],
                date_span(dates),
                **identity(settings),
            )
        store.replace(
            [TableWrite(SPECIFIC_BIAS, pl.DataFrame(schema=SPEC_TABLE_SCHEMA))],
            date_span(dates),
            **identity(settings),
        )
        on_last_session(context, {"skipped": "factor returns are supplied by the user"})
        return MaterializeResult()
    holdings = standing_holdings(settings.portfolio_risk_settings)
    warm = warmups(settings)
    warm_after = max(warm[COVARIANCE], warm[SPECIFIC])
    ident = identity(settings)
    # the per-asset specific bias summary reads only other steps' tables: it is read while the
    # range is backtested (storage/read_ahead.py)
    with store.read_meanwhile(lambda: specific_bias_by_decile(store, dates[-1])) as spec_bias:
        rows, problems = _backtest_range(store, dates, settings, holdings)
        summary = pl.DataFrame()
        for m in run_models(settings):
            frame = summaries.replace_summary(
                store, ASSET, SUMMARY, ident, _warm_of(store, m.settings), model=m.name
            )
            if m.is_default:
                summary = frame
        meta = _history_metadata(store, summary, dates[-1], warm_after, spec_bias)
    _log_problems(context, problems)
    overridden = settings.factor_cov_settings.warmup_length > 0
    # run totals, tables and the plot on the range's last session only (orchestration/metadata)
    on_last_session(
        context,
        {
            "dagster/row_count": rows,
            "rows_not_computed": sum(len(v) for v in problems.values()),
            "warm_up": summaries.note(warm_after, overridden),
            **meta,
        },
    )
    return MaterializeResult()
