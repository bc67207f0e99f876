"""The SQL contract every store implements: the tables and their fixed columns, the views, the
internal tables, and the identifier/literal quoting the writes use.

Backend-neutral (no driver imports): `storage.duckdb` and `storage.postgres` both build their
tables from `TABLE_COLUMNS` (DuckDB type names; `storage.postgres` maps them to PostgreSQL's)
and their views from `ViewDef`s, whose SQL is standard (it runs unchanged on both).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from factorcov_pipeline.core.leaderboard import LEADERBOARD_SCHEMA
from factorcov_pipeline.core.settings import DEFAULT_MODEL

# The column that says which covariance model a row belongs to (issue 22). Part of the key of
# every table whose rows depend on the covariance settings (`MODEL_TABLES`); appended last, so
# that a file written before it existed (which gains it on its next write, `'default'` on its
# old rows) and a new file have the same columns in the same order.
MODEL_COLUMN = "model"

# The bias summaries of forecast_bias and risk_backtest (`core/backtest.bias_report`): one row
# per sample (`warm`: outcomes whose forecast was warm, the default reading; `all`: every
# outcome) and portfolio, over the whole stored history up to `as_of` (its last session, the
# same on every row); first_date/last_date: the portfolio's first and last outcome used.
SUMMARY_COLUMNS: dict[str, str] = {
    "sample": "VARCHAR",
    "portfolio": "VARCHAR",
    "portfolio_kind": "VARCHAR",
    "n_obs": "INTEGER",
    "full_sample_bias": "DOUBLE",
    "band_low": "DOUBLE",
    "band_high": "DOUBLE",
    "n_windows_12m": "INTEGER",
    "share_12m_inside_band": "DOUBLE",
    "min_12m_bias": "DOUBLE",
    "max_12m_bias": "DOUBLE",
    "first_date": "DATE",
    "last_date": "DATE",
    "as_of": "DATE",
}

# DuckDB type names of the polars types of frames defined in the core.
POLARS_TO_SQL: dict[type, str] = {
    pl.String: "VARCHAR",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Float64: "DOUBLE",
    pl.Date: "DATE",
    pl.Boolean: "BOOLEAN",
}

# The SQL contract: tables and columns users query (documented in the README). Tables whose
# columns depend on the model (universe descriptors, the wide covariance report) list only their
# fixed leading columns; the rest is taken from the first write and must not change afterwards.
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "universe": {
        "date": "DATE",
        "asset_id": "VARCHAR",
        "sector": "VARCHAR",
        "market_cap": "DOUBLE",
        "asset_return": "DOUBLE",
    },
    "planted_factor_returns": {
        "date": "DATE",
        "factor": "VARCHAR",
        "factor_group": "VARCHAR",
        "factor_return": "DOUBLE",
    },
    # One row per asset and session: its TRBC category (sector or industry group, the model's
    # category factor) and one DOUBLE column per style factor, named as the factor. The long
    # `exposures` view (EXPOSURES_VIEW) unpivots it; storing it wide keeps 10 years x 10,000
    # assets at 25 million rows instead of 500 million (issue 5).
    "exposures_wide": {"date": "DATE", "asset_id": "VARCHAR", "category": "VARCHAR"},
    "factor_returns": {
        "date": "DATE",
        "factor": "VARCHAR",
        "factor_group": "VARCHAR",
        "factor_return": "DOUBLE",
    },
    "specific_returns": {"date": "DATE", "asset_id": "VARCHAR", "specific_return": "DOUBLE"},
    "regression_stats": {
        "date": "DATE",
        "n_assets": "INTEGER",
        "r_squared": "DOUBLE",
        "n_clipped": "INTEGER",
        "thin_categories": "INTEGER",
        "degenerate": "BOOLEAN",
        "exactly_fitted": "BOOLEAN",
        "empty_categories": "VARCHAR",
        "single_asset_categories": "VARCHAR",
    },
    # `warm` (0.9): false while the forecast is in its warm-up (core/warmup.py), true after it.
    "factor_volatility": {
        "date": "DATE",
        "factor": "VARCHAR",
        "volatility": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    },
    "volatility_regime": {
        "date": "DATE",
        "bias_statistic": "DOUBLE",
        "vra_multiplier": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    },
    "factor_correlation": {
        "date": "DATE",
        "factor_1": "VARCHAR",
        "factor_2": "VARCHAR",
        "correlation": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    },
    "factor_covariance": {
        "date": "DATE",
        "factor_1": "VARCHAR",
        "factor_2": "VARCHAR",
        "covariance": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    },
    # the factors' columns come from the first write; `model` after them (APPENDED_COLUMNS)
    "covariance_report": {"date": "DATE", "factor": "VARCHAR", "model": "VARCHAR"},
    "forecast_bias": {
        "window_end": "DATE",
        "portfolio": "VARCHAR",
        "portfolio_kind": "VARCHAR",
        "n_obs": "INTEGER",
        "bias": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    },
    # One row per session t with a forecast at the previous forecast date and per test
    # portfolio of forecast_bias: the return realised at t and the risk forecast before it
    # (the outcomes the bias summaries are computed from, as risk_backtest's).
    "forecast_outcomes": {
        "date": "DATE",
        "portfolio": "VARCHAR",
        "portfolio_kind": "VARCHAR",
        "realised_return": "DOUBLE",
        "predicted_risk": "DOUBLE",
        "warm": "BOOLEAN",
        "model": "VARCHAR",
    },
    "forecast_bias_summary": {**SUMMARY_COLUMNS, "model": "VARCHAR"},
    "specific_risk": {
        "date": "DATE",
        "asset_id": "VARCHAR",
        "specific_risk": "DOUBLE",
        "warm": "BOOLEAN",
        "reason": "VARCHAR",
    },
    "portfolio_risk": {
        "date": "DATE",
        "portfolio": "VARCHAR",
        "total_risk": "DOUBLE",
        "factor_risk": "DOUBLE",
        "specific_risk": "DOUBLE",
        "active_risk": "DOUBLE",
        "beta": "DOUBLE",
        "model": "VARCHAR",
    },
    "portfolio_risk_contributions": {
        "date": "DATE",
        "portfolio": "VARCHAR",
        "factor": "VARCHAR",
        "exposure": "DOUBLE",
        "contribution": "DOUBLE",
        "model": "VARCHAR",
    },
    "risk_backtest": {
        "date": "DATE",
        "portfolio": "VARCHAR",
        "portfolio_kind": "VARCHAR",
        "realised_return": "DOUBLE",
        "predicted_risk": "DOUBLE",
        "warm": "BOOLEAN",
        "reason": "VARCHAR",
        "model": "VARCHAR",
    },
    "risk_backtest_summary": {**SUMMARY_COLUMNS, "model": "VARCHAR"},
    "specific_risk_bias": {
        "date": "DATE",
        "size_decile": "INTEGER",
        "n_assets": "INTEGER",
        "bias": "DOUBLE",
        "warm": "BOOLEAN",
    },
    # One row per covariance model (`core/leaderboard.LEADERBOARD_SCHEMA`, ranked) over the
    # stored history up to `as_of`, replaced as a whole by every run.
    "model_leaderboard": {
        **{c: POLARS_TO_SQL[type(t)] for c, t in LEADERBOARD_SCHEMA.items()},
        "as_of": "DATE",
    },
}

# Tables whose rows belong to one covariance model (`MODEL_COLUMN` in their key): a write
# replaces the rows of the models it names (`TableWrite.keys`), never another model's.
MODEL_TABLES = (
    "factor_volatility",
    "volatility_regime",
    "factor_correlation",
    "factor_covariance",
    "covariance_report",
    "forecast_bias",
    "forecast_outcomes",
    "forecast_bias_summary",
    "portfolio_risk",
    "portfolio_risk_contributions",
    "risk_backtest",
    "risk_backtest_summary",
)
# Contract columns created after the columns a first write brings (the wide report's factors):
# where a column added to an existing table lands (ALTER TABLE ... ADD COLUMN appends).
APPENDED_COLUMNS = (MODEL_COLUMN,)
# The value the old rows of a table take when a later release adds a contract column to it
# (SQL literals; a column not listed is NULL on them): rows written before several models
# existed are the `default` model's.
ADDED_COLUMN_VALUES = {MODEL_COLUMN: "'" + DEFAULT_MODEL + "'"}

# Every covariance model the store holds: its name, its whole covariance settings (canonical
# JSON, `FactorCovarianceReportSettingsV2.model_json`) and when its first rows were written.
MODELS_TABLE = "covariance_models"
MODELS_COLUMNS = {"model": "VARCHAR", "settings_json": "VARCHAR", "created_at": "TIMESTAMP"}

# Tables that hold one summary of the whole stored history, replaced as a whole by every
# write (`WHOLE_TABLE_SPAN` as the write's dates; their rows are keyed by `as_of`).
SUMMARY_TABLES = ("forecast_bias_summary", "risk_backtest_summary", "model_leaderboard")
WHOLE_TABLE_SPAN = (dt.date(1, 1, 1), dt.date(9999, 12, 31))

# Views of the SQL contract (created by the asset that writes their table, see `ViewDef`).
EXPOSURES_VIEW = "exposures"
EXPOSURES_TABLE = "exposures_wide"

# Tables whose partition column is not `date`.
DATE_COLUMN: dict[str, str] = {
    "forecast_bias": "window_end",
    **{table: "as_of" for table in SUMMARY_TABLES},
}

STATE_TABLE = "_forecast_state"
# Recursion states kept per asset: every state of the last STATE_KEEP_RECENT_DAYS calendar days
# up to the latest (re-running the last weeks resumes from the state just before them), and
# before that the last one of each span of STATE_KEEP_DAYS days (spans counted from
# 1970-01-01). A daily schedule stores a state every session, and DuckDB's checkpoint rewrites
# every stored state of the table when one is added (0.23 ms per 183 kB specific risk state,
# measured; after 5 years of daily runs about 0.3 s a run, and ~46 MB of file a year). A
# partition older than the recent window replays at most about two spans of returns from the
# state before it (`orchestration/assets/resume.py`), with the same result bit for bit.
STATE_KEEP_DAYS = 365
STATE_KEEP_RECENT_DAYS = 31
SETTINGS_TABLE = "model_settings"


# The recursion states of an asset, its per-model states (`<asset>@<model>`) included, of a
# range of dates (`state_removal_params`); the same SQL in both stores.
STATE_REMOVAL_SQL = (
    f"DELETE FROM {STATE_TABLE} WHERE (asset = ? OR substr(asset, 1, length(?)) = ?) "
    "AND date BETWEEN ? AND ?"
)


def state_removal_params(asset: str, start: dt.date, end: dt.date) -> list[Any]:
    """The parameters of STATE_REMOVAL_SQL."""
    prefix = f"{asset}@"
    return [asset, prefix, prefix, start, end]


def state_pruning_sql() -> str:
    """DELETE of one asset's states (parameters: asset, asset) older than the recent window
    that are not the last of their span; the same statement in DuckDB and PostgreSQL (date -
    date is a number of days and date - integer a date in both; a span's number is a floor)."""
    span, recent = int(STATE_KEEP_DAYS), int(STATE_KEEP_RECENT_DAYS)
    return (
        f"DELETE FROM {STATE_TABLE} WHERE asset = ? AND date IN ("
        "SELECT date FROM (SELECT date, max(date) OVER (PARTITION BY "
        f"floor((date - DATE '1970-01-01') / {span})) AS last_of_span, "
        f"max(date) OVER () AS latest FROM {STATE_TABLE} WHERE asset = ?) AS spans "
        f"WHERE date < last_of_span AND date < latest - {recent})"
    )


class StoreBusyError(RuntimeError):
    """The DuckDB file is locked by another process for longer than the lock timeout."""


class SettingsMismatchError(RuntimeError):
    """The DuckDB file holds forecasts made with other settings than the ones in force."""


def models_mismatch(
    location: str, stored: Mapping[str, str], current: Mapping[str, str]
) -> str | None:
    """The refusal of models whose settings differ from those the store holds them with (one
    line naming each model and the keys that differ), or None when every model of `current`
    is new or the same. `stored`, `current`: name -> canonical settings JSON."""
    differing = []
    for name, now in current.items():
        before = stored.get(name)
        if before is not None and before != now:
            diffs = _diff_settings(json.loads(before), json.loads(now))
            differing.append(f"model {name!r}: " + "; ".join(diffs))
    if not differing:
        return None
    return (
        f"{location} holds covariance models made with other settings; "
        + " | ".join(differing)
        + ". Use the settings each model was built with (SELECT model, settings_json FROM "
        "covariance_models), give the changed settings a new model name (computed over the "
        "stored history by the next run), or delete the model's rows first (README, Several "
        "covariance models)."
    )


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (factor names become column names of `covariance_report`)."""
    return '"' + name.replace('"', '""') + '"'


def stored_identity(
    kind: str | None, values: Sequence[Any], location: str, afresh: str
) -> str | None:
    """The settings JSON a store was built with, from what its `model_settings` relation holds:
    `kind` its type ('BASE TABLE', 'VIEW' or None when there is none) and `values` its
    `settings_json` values (at most two are needed). None when there is no table or no row (a
    new store, or `_refuse_unidentified`'s case). A relation edited by hand is refused in one
    line naming it (SettingsMismatchError), before anything is written: a view in its place,
    more than one row, a NULL, a value that is not a JSON object (the identity check compares
    the stored text and lists the settings that differ, which needs the stored JSON). `afresh`
    says how to start afresh (the store's variable)."""
    if kind is None:
        return None
    where = f"{location}: {SETTINGS_TABLE}"
    restore = f"restore the table from a backup, or {afresh}"
    if kind != "BASE TABLE":
        raise SettingsMismatchError(
            f"{where} is a {kind.lower()}, not the table in which factorcov keeps the settings "
            f"the data were made with: drop the {kind.lower()} and {restore}"
        )
    if not values:
        return None
    if len(values) > 1:
        raise SettingsMismatchError(
            f"{where} holds more than one row, but one settings row identifies the data: " + restore
        )
    value = values[0]
    if value is None:
        raise SettingsMismatchError(f"{where}.settings_json is NULL: {restore}")
    if not isinstance(value, str):
        raise SettingsMismatchError(
            f"{where}.settings_json is a {type(value).__name__}, not text: {restore}"
        )
    shown = value if len(value) <= 40 else value[:40] + "..."
    try:
        parsed = json.loads(value)
    except ValueError:
        raise SettingsMismatchError(
            f"{where}.settings_json is not JSON ({shown!r}): {restore}"
        ) from None
    if not isinstance(parsed, dict):
        raise SettingsMismatchError(
            f"{where}.settings_json is not a JSON object ({shown!r}): {restore}"
        )
    return value


def _diff_settings(stored: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(stored) | set(current)):
            out += _diff_settings(stored.get(key), current.get(key), f"{prefix}{key}.")
        return out
    if stored != current:
        return [f"{prefix.rstrip('.')}: stored {stored!r}, now {current!r}"]
    return []


@dataclass(frozen=True)
class TableWrite:
    """Rows of one table replacing the rows of `dates` in that table.

    `keys`: replace only the stored rows whose columns hold these values, e.g.
    `{"model": ["eigen"]}` replaces one model's rows of the dates and leaves the other
    models'. A frame without `model` written to a table of `MODEL_TABLES` is the `default`
    model's (`with_model_key`)."""

    table: str
    frame: pl.DataFrame
    keys: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def with_model_key(self) -> TableWrite:
        """This write with its `model` column and key made explicit: a frame of a per-model
        table written without them (code and files of before 0.9) is the `default` model's."""
        if self.table not in MODEL_TABLES or MODEL_COLUMN in self.frame.columns:
            return self
        frame = self.frame.with_columns(pl.lit(DEFAULT_MODEL, dtype=pl.String).alias(MODEL_COLUMN))
        keys = {MODEL_COLUMN: [DEFAULT_MODEL], **self.keys}
        return TableWrite(self.table, frame, keys)


def delete_sql(table: str, keys: Mapping[str, Sequence[str]]) -> tuple[str, int]:
    """The standard-SQL DELETE of a write's dates (`?` placeholders: start, end, then the
    keys' values in order) restricted to `keys`, and the number of key values."""
    date_col = DATE_COLUMN.get(table, "date")
    sql = f"DELETE FROM {quote_ident(table)} WHERE {date_col} BETWEEN ? AND ?"
    n = 0
    for column, values in keys.items():
        if not values:
            sql += " AND 1 = 0"  # no value: nothing to replace
            continue
        sql += f" AND {quote_ident(column)} IN ({', '.join('?' * len(values))})"
        n += len(values)
    return sql, n


def key_values(keys: Mapping[str, Sequence[str]]) -> list[str]:
    """The keys' values in the order of `delete_sql`'s placeholders."""
    return [str(v) for values in keys.values() for v in values]


def table_columns_in_order(
    table: str, frame_columns: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The columns of a new `table`: the contract's fixed columns, then the columns of the
    first write (`frame_columns`: name and type) that the contract does not fix, then the
    contract's `APPENDED_COLUMNS` (so a new table's columns are those an old one has after
    ALTER TABLE appended them)."""
    contract = TABLE_COLUMNS.get(table, {})
    appended = APPENDED_COLUMNS if table in MODEL_TABLES else ()
    cols = {c: t for c, t in contract.items() if c not in appended}
    for name, dtype in frame_columns:
        if name not in appended:
            cols.setdefault(name, dtype)
    for name in appended:
        if name in contract:
            cols[name] = contract[name]
        else:
            found = dict(frame_columns).get(name)
            if found is not None:
                cols[name] = found
    return list(cols.items())


def distinct_dates_sql(
    table: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    clause: tuple[str, list[Any]] = ("", []),
) -> tuple[str, list[Any]]:
    """The standard-SQL query (column `d`, ascending) of the distinct dates stored in `table`,
    optionally only those in [start, end] and matching `clause` (an ` AND ...` condition and
    its parameters, `BaseStore.model_clause`), and its parameters; every Store runs it."""
    date_col = DATE_COLUMN.get(table, "date")
    where, params = [], []
    if clause[0]:
        where.append(clause[0].removeprefix(" AND "))
        params.extend(clause[1])
    if start is not None:
        where.append(f"{date_col} >= ?")
        params.append(start)
    if end is not None:
        where.append(f"{date_col} <= ?")
        params.append(end)
    sql = f"SELECT DISTINCT {date_col} AS d FROM {quote_ident(table)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY 1", params


def quote_literal(text: str) -> str:
    """Quote an SQL string literal (factor names inside view definitions)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ViewDef:
    """A view of the SQL contract, (re)created in the transaction of the write it describes.

    `migrate_sql` upgrades a file written by an older layout in which `name` was a table: it
    runs (inside the same transaction) before that table is dropped and the view created.
    """

    name: str
    sql: str
    migrate_sql: str | None = None


def exposures_view(styles: Sequence[str], market_factor: str | None) -> ViewDef:
    """The long `exposures` view (date, asset_id, factor, exposure) over `exposures_wide`.

    Rows: the Market factor (exposure 1, when the model has one), the asset's own category
    (exposure 1; zero category dummies are not rows) and every style. Plain `UNION ALL` of
    standard SQL, so the same definition works on another warehouse (docs/scaling.md).
    Migration from the long table of factorcov 0.1 (`exposures` was a table): its rows for
    dates not yet in `exposures_wide` are pivoted into it (category = the one factor that is
    neither Market nor a style).
    """
    one = "CAST(1.0 AS DOUBLE PRECISION)"
    src = quote_ident(EXPOSURES_TABLE)
    parts = []
    if market_factor is not None:
        parts.append(
            f"SELECT date, asset_id, {quote_literal(market_factor)} AS factor, {one} AS exposure "
            f"FROM {src}"
        )
    parts.append(f"SELECT date, asset_id, category AS factor, {one} AS exposure FROM {src}")
    for style in styles:
        parts.append(
            f"SELECT date, asset_id, {quote_literal(style)} AS factor, "
            f"CAST({quote_ident(style)} AS DOUBLE PRECISION) AS exposure FROM {src}"
        )
    not_category = [market_factor, *styles] if market_factor is not None else list(styles)
    pivots = "".join(
        f", max(exposure) FILTER (WHERE factor = {quote_literal(s)}) AS {quote_ident(s)}"
        for s in styles
    )
    excluded = ", ".join(quote_literal(f) for f in not_category) or "NULL"
    migrate = (
        f"INSERT INTO {src} BY NAME SELECT date, asset_id, "
        f"max(factor) FILTER (WHERE factor NOT IN ({excluded})) AS category{pivots} "
        f"FROM {quote_ident(EXPOSURES_VIEW)} "
        f"WHERE date NOT IN (SELECT DISTINCT date FROM {src}) GROUP BY date, asset_id"
    )
    return ViewDef(EXPOSURES_VIEW, "\nUNION ALL\n".join(parts), migrate)
