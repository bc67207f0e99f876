"""`risk_backtest`: are the specific and portfolio risk forecasts calibrated?

Two tables, one row per session t (the realised date) and unit:

- `risk_backtest(date, portfolio, portfolio_kind, realised_return, predicted_risk)`: each
  standing portfolio (kind `standing`, weights of `portfolio_risk_settings`) and the fully
  invested minimum-variance portfolio built from the forecasts of the previous session (kind
  `min_variance`, `core/portfolio.minimum_variance_weights`): the daily return realised at t
  (sum of weight x asset return; an asset without a return at t counts 0) and the annualised
  risk forecast made at the previous session. Optimised portfolios are the classic test of
  under-forecast risk: the optimiser loads on what the model thinks is cheap (USE4 notes,
  section 6).
- `specific_risk_bias(date, size_decile, n_assets, bias)`: the cross-sectional bias statistic
  sqrt(mean z^2) of z = specific_return(t) / (specific_risk(t-1) / sqrt(252)) over the assets of
  each size decile (1 = smallest, by market cap at t-1).

Metadata (over the whole stored history, and after its first third, the recursions' warm-up):
the full-sample bias statistic of every backtest portfolio with its 95% band and 12-month
windows (`core/backtest.bias_report`), the per-asset specific bias statistic by size decile
(median over assets; at most the last year), and plots.
"""

import bisect
import datetime as dt
from collections.abc import Callable

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.api.risk_models import load_risk_models
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import bias_report, rolling_bias
from factorcov_pipeline.core.blas import one_blas_thread
from factorcov_pipeline.core.forecaster import ANNUALISATION_DAYS
from factorcov_pipeline.core.holdings import align_holdings
from factorcov_pipeline.core.portfolio import (
    RiskSnapshot,
    decompose,
    minimum_variance_weights,
    realised_returns,
)
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2
from factorcov_pipeline.orchestration.assets.common import PARTITIONED, date_chunks, date_span
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
SPECIFIC_BIAS = "specific_risk_bias"
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
}
SPEC_SCHEMA = {"date": pl.Date, "size_decile": pl.Int32, "n_assets": pl.Int32, "bias": pl.Float64}


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


def _history_metadata(store: Store, last: dt.date, spec_bias: Callable[[], pl.DataFrame]) -> dict:
    """Full-history summaries and plots (module docstring); `spec_bias()` gives
    `specific_bias_by_decile`, asked for last (it may still be being read)."""
    meta: dict = {}
    hist = store.read(
        "SELECT * FROM risk_backtest WHERE date <= ? ORDER BY date, portfolio", [last]
    )
    if hist.height:
        wide_r = hist.pivot(on="portfolio", index="date", values="realised_return").sort("date")
        wide_p = hist.pivot(on="portfolio", index="date", values="predicted_risk").sort("date")
        names = [c for c in wide_r.columns if c != "date"]
        kind_of = dict(zip(hist["portfolio"], hist["portfolio_kind"], strict=False))
        z = wide_r.select(names).to_numpy() / (wide_p.select(names).to_numpy() / ROOT_DAYS)
        kinds = [kind_of[n] for n in names]
        report = bias_report(z, names, kinds)
        meta["portfolio_bias"] = MetadataValue.md(report.to_pandas().to_markdown(index=False))
        # the same after the first third of the history: the recursions' warm-up (a few
        # sessions of data make nearly singular forecasts that an optimiser exploits) left out
        late = bias_report(z[z.shape[0] // 3 :], names, kinds)
        meta["portfolio_bias_after_first_third"] = MetadataValue.md(
            late.to_pandas().to_markdown(index=False)
        )
        for label, rep in (("", report), ("_after_first_third", late)):
            mv = rep.filter(pl.col("portfolio") == MIN_VARIANCE)
            if mv.height and mv["full_sample_bias"][0] is not None:
                meta[f"min_variance_bias{label}"] = float(mv["full_sample_bias"][0])
        if z.shape[0] >= 21 and figures_wanted():
            roll, _ = rolling_bias(z, 21)
            dates = wide_r["date"].to_list()[20:]
            png = plots.line_chart(
                dates,
                {n: roll[:, i] for i, n in enumerate(names)},
                "Bias statistic, rolling 21 sessions (realised / predicted risk)",
                "bias",
                band=(1 - np.sqrt(2 / 21), 1 + np.sqrt(2 / 21)),
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
    """Per-asset specific bias statistic std(z) over the stored history after its first third
    (the recursion's warm-up) and at most its last `BIAS_WINDOW` sessions, summarised by size
    decile (by each asset's median market cap; decile 0 = all assets): assets with at least 20
    outcomes. The cap keeps a daily run's cost independent of the history's length (over 10
    years the whole history is 5 million outcomes to join on every run; benchmark 4)."""
    dates = store.stored_dates("specific_risk", end=last)
    if len(dates) < 30:
        return pl.DataFrame()
    start = dates[max(len(dates) // 3, len(dates) - BIAS_WINDOW)]
    # aggregated in DuckDB: one row per asset comes back, not one per asset and date
    z_sql, z_params = specific_z_sql(store, start, last)
    per = store.read(
        f"WITH z AS ({z_sql}), "
        "per AS (SELECT asset_id, stddev_samp(z) AS bias, count(*) AS n FROM z "
        "GROUP BY asset_id HAVING count(*) >= 20), "
        "caps AS (SELECT asset_id, median(market_cap) AS cap FROM universe "
        "WHERE date BETWEEN ? AND ? GROUP BY asset_id) "
        "SELECT per.*, caps.cap FROM per JOIN caps USING (asset_id) ORDER BY asset_id",
        [*z_params, start, last],
    )
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


def _backtest_range(
    store: Store,
    dates: list[dt.date],
    settings: FactorCovarianceReportSettingsV2,
    holdings: pl.DataFrame | None,
) -> int:
    """Store `risk_backtest` and `specific_risk_bias` for `dates`, a chunk of sessions at a
    time (chunk k + 1 read while chunk k is computed, storage/read_ahead.py); the rows stored."""
    cfg = settings.portfolio_risk_settings
    rows = 0

    def read_chunk(
        chunk: list[dt.date],
    ) -> tuple[dict[dt.date, RiskSnapshot], pl.DataFrame, pl.DataFrame]:
        """The risk models a date of the chunk is backtested on (each session's before it;
        the chunk's last model is first used by the next chunk: a daily run reads one model,
        not two), the universe's returns (in date order) and the standardised specific
        outcomes with caps."""
        models = load_risk_models(
            store.read,
            calendar.previous_session(chunk[0]),
            calendar.previous_session(chunk[-1]),
        )
        uni = store.read(
            "SELECT date, asset_id, asset_return FROM universe "
            "WHERE date BETWEEN ? AND ? ORDER BY date",
            [chunk[0], chunk[-1]],
        )
        zc = store.read(*specific_z_sql(store, chunk[0], chunk[-1], with_caps=True))
        return models, uni, zc

    for chunk, (models, uni, zc) in store.read_ahead(date_chunks(dates), read_chunk):
        # each date's universe rows as arrays, split once (in date order)
        u_days = uni["date"].to_numpy()
        u_ids = uni["asset_id"].to_numpy().astype(np.str_)
        u_ret = uni["asset_return"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        bounds = np.searchsorted(u_days, np.asarray(chunk, dtype="datetime64[D]"), side="left")
        ends = np.searchsorted(u_days, np.asarray(chunk, dtype="datetime64[D]"), side="right")
        cols: dict[str, list] = {c: [] for c in BACKTEST_SCHEMA}
        backtested: list[dt.date] = []  # dates with an earlier model
        fdays = sorted(models)
        for i, day in enumerate(chunk):  # loop over dates; each vectorised over assets
            at = bisect.bisect_left(fdays, day)
            if at == 0:
                continue
            prev = fdays[at - 1]
            backtested.append(day)
            m = models[prev]
            with one_blas_thread():  # N x K products and a K x K solve (core/blas.py)
                mv = minimum_variance_weights(m)
            names, kinds, ws = [MIN_VARIANCE], [MIN_VARIANCE], [mv]
            if holdings is not None:
                al = align_holdings(m, holdings, prev, str(cfg.holdings), cfg.drop_unknown)
                names += al.portfolios
                kinds += ["standing"] * len(al.portfolios)
                ws += list(al.weights)
            w = np.vstack(ws)
            r = realised_returns(
                m.asset_ids, u_ids[bounds[i] : ends[i]], u_ret[bounds[i] : ends[i]]
            )
            cols["date"] += [day] * len(names)
            cols["portfolio"] += names
            cols["portfolio_kind"] += kinds
            cols["realised_return"].append(w @ r)
            cols["predicted_risk"].append(decompose(m, w).total)
        for c in ("realised_return", "predicted_risk"):
            cols[c] = np.concatenate(cols[c]) if cols[c] else []
        bt_all = pl.DataFrame(cols, schema=BACKTEST_SCHEMA)
        sp_all = specific_bias_rows(zc.filter(pl.col("date").is_in(backtested)))
        store.replace(
            [TableWrite(ASSET, bt_all), TableWrite(SPECIFIC_BIAS, sp_all)],
            date_span(chunk),
            settings_json=settings.fingerprint(),
        )
        rows += bt_all.height
    return rows


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
    `risk_backtest`, `specific_risk_bias`); metadata: full-sample bias statistics, 12-month
    windows, per-asset specific bias by size decile, plots."""
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    # user-supplied factor returns: no exposures or specific risk, nothing to backtest
    if settings.factor_model_settings.universe.factor_returns:
        for table, schema in ((ASSET, BACKTEST_SCHEMA), (SPECIFIC_BIAS, SPEC_SCHEMA)):
            store.replace(
                [TableWrite(table, pl.DataFrame(schema=schema))],
                date_span(dates),
                settings_json=settings.fingerprint(),
            )
        on_last_session(context, {"skipped": "factor returns are supplied by the user"})
        return MaterializeResult()
    holdings = standing_holdings(settings.portfolio_risk_settings)
    # the per-asset specific bias summary reads only other steps' tables: it is read while the
    # range is backtested (storage/read_ahead.py)
    with store.read_meanwhile(lambda: specific_bias_by_decile(store, dates[-1])) as spec_bias:
        rows = _backtest_range(store, dates, settings, holdings)
        meta = _history_metadata(store, dates[-1], spec_bias)
    # run totals, tables and the plot on the range's last session only (orchestration/metadata)
    on_last_session(context, {"dagster/row_count": rows, **meta})
    return MaterializeResult()
