"""`portfolio_risk`: predicted risk of the user's standing portfolios every session
(`portfolio_risk_settings`), with Euler contributions per factor (`core/portfolio.py`)."""

import datetime as dt

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from factorcov_pipeline.api.holdings import load_standing_holdings
from factorcov_pipeline.api.risk_models import load_risk_models, load_risk_models_of
from factorcov_pipeline.core.holdings import HoldingsError, align_holdings
from factorcov_pipeline.core.portfolio import RiskSnapshot, beta, decompose
from factorcov_pipeline.core.settings import DEFAULT_MODEL, PortfolioRiskSettings
from factorcov_pipeline.orchestration.assets.common import PARTITIONED, date_chunks, date_span
from factorcov_pipeline.orchestration.assets.models import (
    extension,
    history_start,
    identity,
    run_models,
)
from factorcov_pipeline.orchestration.metadata import figures_wanted, image, on_last_session
from factorcov_pipeline.orchestration.partitions import partition_dates
from factorcov_pipeline.orchestration.resources import (
    FactorcovSettings,
    FactorcovStorage,
    one_connection,
)
from factorcov_pipeline.render import plots
from factorcov_pipeline.storage import Store

ASSET = "portfolio_risk"
CONTRIBUTIONS = "portfolio_risk_contributions"
SPECIFIC_ROW = "specific"
RISK_SCHEMA = {
    "date": pl.Date,
    "portfolio": pl.String,
    "total_risk": pl.Float64,
    "factor_risk": pl.Float64,
    "specific_risk": pl.Float64,
    "active_risk": pl.Float64,
    "beta": pl.Float64,
}
CONTRIB_SCHEMA = {
    "date": pl.Date,
    "portfolio": pl.String,
    "factor": pl.String,
    "exposure": pl.Float64,
    "contribution": pl.Float64,
}


def standing_holdings(cfg: PortfolioRiskSettings) -> pl.DataFrame | None:
    """The standing portfolios of the settings (None when there are none); the benchmark, if
    named, must be one of them."""
    if cfg.holdings is None:
        return None
    holdings = load_standing_holdings(cfg.holdings, cfg.table)
    names = holdings["portfolio"].unique(maintain_order=True).to_list()
    if cfg.benchmark is not None and cfg.benchmark not in names:
        raise HoldingsError(
            f"portfolio_risk_settings.benchmark {cfg.benchmark!r} is not a portfolio of "
            f"{cfg.holdings}; portfolios: {', '.join(names[:10])}"
        )
    return holdings


def risk_rows(
    store: Store,
    cfg: PortfolioRiskSettings,
    holdings: pl.DataFrame,
    chunk: list[dt.date],
    models: dict[dt.date, RiskSnapshot] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, float]:
    """`portfolio_risk` and contribution rows of the dates of ``chunk`` (the risk models
    ``models`` of its dates, read from the store when not given), and the largest weight
    dropped (unknown assets, with ``drop_unknown``)."""
    if models is None:
        models = load_risk_models(store.read, chunk[0], chunk[-1])
    risks, contribs, dropped = [], [], 0.0
    for day, model in sorted(models.items()):  # loop over dates; portfolios vectorised
        source = str(cfg.holdings)
        al = align_holdings(model, holdings, day, source, cfg.drop_unknown)
        dropped = max(dropped, float(np.abs(al.dropped_weight).max(initial=0.0)))
        d = decompose(model, al.weights)
        p = len(al.portfolios)
        active = np.full(p, np.nan)
        betas = np.full(p, np.nan)
        if cfg.benchmark is not None:
            b = al.weights[al.portfolios.index(cfg.benchmark)]
            active = decompose(model, al.weights - b).total
            betas = beta(model, al.weights, b)
        risks.append(
            pl.DataFrame(
                {
                    "date": [day] * p,
                    "portfolio": al.portfolios,
                    "total_risk": d.total,
                    "factor_risk": d.factor,
                    "specific_risk": d.specific,
                    "active_risk": active,
                    "beta": betas,
                },
                schema=RISK_SCHEMA,
            ).fill_nan(None)
        )
        k = len(model.factors)
        contribs.append(
            pl.DataFrame(
                {
                    "date": [day] * (p * (k + 1)),
                    "portfolio": np.repeat(np.asarray(al.portfolios, dtype=object), k + 1),
                    "factor": np.tile(np.asarray([*model.factors, SPECIFIC_ROW], dtype=object), p),
                    "exposure": np.concatenate(
                        [d.exposures, np.full((p, 1), np.nan)], axis=1
                    ).ravel(),
                    "contribution": np.concatenate(
                        [d.contributions, d.specific_contribution[:, None]], axis=1
                    ).ravel(),
                },
                schema=CONTRIB_SCHEMA,
            ).fill_nan(None)
        )
    risk = pl.concat(risks) if risks else pl.DataFrame(schema=RISK_SCHEMA)
    contrib = pl.concat(contribs) if contribs else pl.DataFrame(schema=CONTRIB_SCHEMA)
    return risk, contrib, dropped


NO_HOLDINGS = (
    "no standing portfolios: `portfolio_risk_settings.holdings` is not set, so the tables "
    "`portfolio_risk` and `portfolio_risk_contributions` are empty. Set it to a CSV/Parquet "
    "file (or a DuckDB file with `table`) of `portfolio, asset_id, weight` in the settings file "
    "(README, Settings) to report their risk every session; `factorcov risk --portfolio FILE "
    "--date D` reports one portfolio without it."
)


def _warn_missing(context: AssetExecutionContext, store: Store, dates: list[dt.date]) -> None:
    """A warning naming the portfolios and first dates whose risk could not be computed (an
    asset without a specific risk forecast: NULL risks)."""
    clause, params = store.model_clause(ASSET, DEFAULT_MODEL)
    bad = store.read(
        "SELECT portfolio, min(date) AS first, count(*) AS n FROM portfolio_risk "
        f"WHERE date BETWEEN ? AND ? AND total_risk IS NULL{clause} GROUP BY portfolio "
        "ORDER BY portfolio",
        [dates[0], dates[-1], *params],
    )
    for name, first, n in bad.iter_rows():
        context.log.warning(
            f"portfolio_risk: {name}: no risk on {n} session(s) from {first}: it holds assets "
            "without a specific risk forecast (specific_risk.reason says why)"
        )


def risk_plot(store: Store, last: dt.date) -> MetadataValue:
    """Markdown with a plot of each portfolio's predicted total risk over the last year (the
    `default` covariance model's)."""
    clause, params = store.model_clause(ASSET, DEFAULT_MODEL)
    hist = store.read(
        "SELECT date, portfolio, total_risk FROM portfolio_risk WHERE date BETWEEN ? AND ?"
        f"{clause} ORDER BY date",
        [last - dt.timedelta(days=366), last, *params],
    )
    if hist.height == 0:
        return MetadataValue.md("no standing portfolio risk stored yet")
    wide = hist.pivot(on="portfolio", index="date", values="total_risk").sort("date")
    series = {c: wide[c].to_list() for c in wide.columns if c != "date"}
    png = plots.line_chart(
        wide["date"].to_list(), series, "Predicted total risk (annualised)", "volatility"
    )
    return image(png, "predicted risk")


@asset(
    **PARTITIONED,
    deps=["factor_covariance", "specific_risk", "exposures"],
    group_name="specific_risk",
    kinds={"numpy", "duckdb"},
)
@one_connection
def portfolio_risk(
    context: AssetExecutionContext, storage: FactorcovStorage, model: FactorcovSettings
) -> MaterializeResult:
    """Predicted total, factor, specific and active risk and beta of every standing portfolio
    (`portfolio_risk_settings.holdings`), and each factor's Euler contribution (table
    `portfolio_risk_contributions`, plus a `specific` row), on every session with a forecast.
    No holdings set: the tables are written empty, and the metadata and the run's log say how
    to set them. A portfolio holding an asset without a specific risk forecast (see
    `specific_risk.reason`) gets NULL risks, with a warning."""
    settings = model.load()
    store = storage.store()
    dates = partition_dates(context)
    cfg = settings.portfolio_risk_settings
    # user-supplied factor returns: no exposures or specific risk, so no portfolio risk
    user_returns = bool(settings.factor_model_settings.universe.factor_returns)
    holdings = None if user_returns else standing_holdings(cfg)
    rows, dropped = 0, 0.0
    models = run_models(settings)
    ident = identity(settings)
    # a model new to the file is reported over the stored history (assets/models.py); without
    # holdings there is nothing to report
    first = history_start(store) if holdings is not None else None
    before = {m.name: extension(store, ASSET, m.name, dates, first) for m in models}
    history = max(before.values(), key=len)
    chunks = [(c, False) for c in date_chunks(history)] + [(c, True) for c in date_chunks(dates)]
    clauses = {m.name: store.model_clause("factor_covariance", m.name) for m in models}
    for chunk, in_range in chunks:
        chunk_models = [m for m in models if in_range or before[m.name]]
        snapshots = (
            load_risk_models_of(
                store.read,
                chunk[0],
                chunk[-1],
                [m.name for m in chunk_models],
                clause=lambda name: clauses[str(name)],
            )
            if holdings is not None
            else {}
        )
        writes = []
        for m in chunk_models:
            if holdings is None:
                risk = pl.DataFrame(schema=RISK_SCHEMA)
                contrib = pl.DataFrame(schema=CONTRIB_SCHEMA)
            else:
                risk, contrib, d = risk_rows(store, cfg, holdings, chunk, snapshots[m.name])
                dropped = max(dropped, d)
            writes += [m.write(ASSET, risk), m.write(CONTRIBUTIONS, contrib)]
            if m.is_default:
                rows += risk.height
        store.replace(writes, date_span(chunk), **ident)
    meta: dict = {"dagster/row_count": rows, "max_weight_dropped": dropped}
    if holdings is not None:
        meta["portfolios"] = holdings["portfolio"].n_unique()
        if figures_wanted():
            meta["predicted_risk_plot"] = risk_plot(store, dates[-1])
        _warn_missing(context, store, dates)
    elif not user_returns:
        meta["holdings"] = MetadataValue.md(NO_HOLDINGS)
        context.log.info(f"portfolio_risk: {NO_HOLDINGS}")
    on_last_session(context, meta)  # totals and the plot on the range's last session only
    return MaterializeResult()
