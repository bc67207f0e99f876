"""`RiskModel`: the stored risk model, read-only, for notebooks and the `factorcov` command.

    from factorcov_pipeline import RiskModel

    with RiskModel.open("data/factorcov.duckdb") as m:    # or a postgresql:// URL
        d = m.dates()[-1]
        m.covariance(d)                 # factor + one column per factor, annualised
        rep = m.risk({"A000001": 0.6, "A000002": 0.4}, d)
        rep.total_risk, rep.factors, rep.to_dict()

One read layer under `factorcov sql`, `show`, `risk` and `export`: the store is opened through
`BaseStore.connect_query_only()` (DuckDB: the file read-only with external access disabled and
its configuration locked; PostgreSQL: one READ ONLY transaction), so nothing through it can
write. docs/api.md is a worked example (run by the tests).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from factorcov_pipeline.api.connections import read_only_connection
from factorcov_pipeline.api.errors import (
    ClosedError,
    ModelDataError,
    NoForecastError,
    UnknownAssetError,
    UnknownModelError,
)
from factorcov_pipeline.api.holdings import HoldingsLike, holdings_input
from factorcov_pipeline.api.reader import StoreReader
from factorcov_pipeline.api.report import RiskReport, report
from factorcov_pipeline.api.risk_models import load_risk_models, no_forecast, require_forecast
from factorcov_pipeline.api.risk_warnings import risk_warnings
from factorcov_pipeline.core.holdings import align_holdings, brief, printable, validate_holdings
from factorcov_pipeline.core.portfolio import RiskSnapshot
from factorcov_pipeline.core.settings import DEFAULT_MODEL
from factorcov_pipeline.storage import BaseStore
from factorcov_pipeline.storage.contract import MODEL_COLUMN, MODEL_TABLES, MODELS_TABLE
from factorcov_pipeline.storage.query import QueryConnection

DEFAULT_WAIT = 10.0
LEADERBOARD_TABLE = "model_leaderboard"

DateLike = dt.date | str


def as_date(value: DateLike) -> dt.date:
    """A `datetime.date` from a date, a datetime (its date) or an ISO string (YYYY-MM-DD).

    Raises
    ------
    ValueError
        ``value`` is a string that is not an ISO date.
    TypeError
        ``value`` is neither a date nor a string.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"date {printable(value)!r} is not a date (YYYY-MM-DD)") from None
    raise TypeError(
        f"a date must be a datetime.date or an ISO string (YYYY-MM-DD), not {type(value).__name__}"
    )


def _square(
    frame: pl.DataFrame, names: Sequence[str], value: str, table: str, day: dt.date, where: str
) -> np.ndarray:
    """The K x K matrix of long rows ``factor_1, factor_2, <value>`` on ``names``; refuses a
    missing pair (`ModelDataError`)."""
    k = len(names)
    pos = pl.DataFrame({"f": list(names), "k": np.arange(k)})
    ij = frame.join(pos, left_on="factor_1", right_on="f").join(
        pos.rename({"k": "l"}), left_on="factor_2", right_on="f"
    )
    out = np.full((k, k), np.nan)
    out[ij["k"].to_numpy(), ij["l"].to_numpy()] = ij[value].to_numpy()
    if np.isnan(out).any():
        raise ModelDataError(
            f"{table} in {where} lacks pairs of factors on {day} (or holds NULL): re-run "
            "`factorcov materialize` for that date"
        )
    return out


def _matrix_frame(names: Sequence[str], matrix: np.ndarray) -> pl.DataFrame:
    """A K x K matrix as a frame: a ``factor`` column, then one column per factor."""
    data: dict[str, Any] = {"factor": list(names)}
    data.update({n: matrix[:, j] for j, n in enumerate(names)})
    return pl.DataFrame(data)


class RiskModel:
    """The risk model stored by the pipeline (a DuckDB file or a PostgreSQL database), read-only.

    Open one with `RiskModel.open` (or `RiskModel.from_store`); close it with `close()` or use
    it as a context manager. Dates are `datetime.date` or ISO strings (``"2026-03-31"``);
    frames are polars (``.to_pandas()`` gives pandas). Volatilities, covariances and risks are
    annualised (daily x 252). Factors are in name order, the order of ``covariance_report``'s
    columns.

    While a `RiskModel` is open on a DuckDB file, the file is open read-only in this process:
    other readers (``factorcov sql``, another notebook, more models in this process) can open
    it too, but a run that writes it (``factorcov materialize``, the schedule) waits for it
    (``FACTORCOV_LOCK_TIMEOUT``) and then fails; close the model (or use ``with``) before
    materialising. In this process, other DuckDB connections to the file must use the same
    configuration (DuckDB keeps one instance per file): query through `sql` instead. On
    PostgreSQL the model reads inside one READ ONLY transaction, and runs are not blocked.

    Attributes
    ----------
    location : str
        Where the data is: the file's path, or the URL without its password.
    model : str
        The covariance model read (``"default"``: the one of ``factor_cov_settings``; the
        settings file's ``models`` add others, `models` lists them).
    """

    def __init__(self, store: BaseStore, model: str = DEFAULT_MODEL, timeout: float = 0.0) -> None:
        """Use `RiskModel.open` or `RiskModel.from_store`."""
        self.location = store.location
        self.model = model
        self._stack = ExitStack()
        self._columns: dict[str, list[str]] = {}
        try:
            con = self._stack.enter_context(read_only_connection(store, timeout))
            self._read: StoreReader | None = StoreReader(con, store.location)
            self._model_column = self._check_model(model)
        except BaseException:
            self._stack.close()
            raise

    # ---- opening and closing ----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        source: str | os.PathLike[str] | None = None,
        *,
        model: str = DEFAULT_MODEL,
        wait: float = DEFAULT_WAIT,
        timeout: float = 0.0,
    ) -> RiskModel:
        """Open a stored risk model read-only.

        Parameters
        ----------
        source : str or os.PathLike, optional
            A DuckDB file written by ``factorcov materialize``, or a ``postgresql://`` URL.
            None: the configured store (``FACTORCOV_DATABASE_URL`` when set, else
            ``FACTORCOV_DUCKDB``, default ``data/factorcov.duckdb``), as the ``factorcov``
            command reads it.
        model : str, default "default"
            The covariance model to read: ``default`` (the one of ``factor_cov_settings``) or
            a name of the settings' ``models``; a name the store does not hold is refused
            listing the stored ones (`models`).
        wait : float, default 10
            Seconds to wait while a run holds the DuckDB file (PostgreSQL: a lock), as
            ``factorcov sql --wait`` does.
        timeout : float, default 0
            Stop any query still running this many seconds after opening (0: no limit).

        Returns
        -------
        RiskModel

        Raises
        ------
        FileNotFoundError
            The DuckDB file does not exist (nothing is created).
        factorcov_pipeline.storage.StoreFileError
            The path is not a DuckDB database file.
        factorcov_pipeline.storage.StoreBusyError
            A run held the file for longer than ``wait`` seconds, or the PostgreSQL server
            cannot be reached.
        UnknownModelError
            ``model`` is not stored; the message lists the stored models.
        ValueError
            ``FACTORCOV_DATABASE_URL`` is not a PostgreSQL URL.
        """
        from factorcov_pipeline.storage import Store, store_from_env

        store: BaseStore
        if source is None:
            store = store_from_env(lock_timeout=wait)
        else:
            text = os.fspath(source)
            if text.startswith(("postgresql://", "postgres://")):
                from factorcov_pipeline.storage.postgres import PostgresStore

                store = PostgresStore(text, lock_timeout=wait)
            else:
                store = Store(Path(text), lock_timeout=wait)
        return cls(store, model=model, timeout=timeout)

    @classmethod
    def from_store(
        cls, store: BaseStore, *, model: str = DEFAULT_MODEL, timeout: float = 0.0
    ) -> RiskModel:
        """Open ``store`` (a `factorcov_pipeline.storage.BaseStore`) read-only; see `open`."""
        return cls(store, model=model, timeout=timeout)

    def close(self) -> None:
        """Close the connection (the DuckDB file is released; PostgreSQL's read-only
        transaction is rolled back). Closing twice is harmless."""
        self._read = None
        self._stack.close()

    def __enter__(self) -> RiskModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._read is None else "open"
        return f"RiskModel({self.location!r}, model={self.model!r}, {state})"

    @property
    def reader(self) -> StoreReader:
        """The open connection's reader (`api.reader.StoreReader`).

        Raises
        ------
        ClosedError
            The model was closed.
        """
        if self._read is None:
            raise ClosedError(f"the RiskModel of {self.location} is closed")
        return self._read

    @property
    def connection(self) -> QueryConnection:
        """The read-only `storage.query.QueryConnection` (``factorcov sql`` streams through it)."""
        return self.reader.con

    # ---- what is stored ---------------------------------------------------------------------

    def _table_columns(self, table: str) -> list[str]:
        if table not in self._columns:
            self._columns[table] = self.reader.columns(table)
        return self._columns[table]

    def _stored_models(self) -> list[str]:
        """The covariance models the store holds: the ``covariance_models`` table (one row per
        model, a few rows), or for a file written before it existed the distinct ``model``s of
        ``factor_covariance`` (``default`` when it has no such column)."""
        if self.reader.has_table(MODELS_TABLE):
            rows = self.reader.rows(f"SELECT model FROM {MODELS_TABLE} ORDER BY created_at, model")
            return [str(r[0]) for r in rows]
        columns = self._table_columns("factor_covariance")
        if MODEL_COLUMN in columns:
            rows = self.reader.rows("SELECT DISTINCT model FROM factor_covariance ORDER BY model")
            return [str(r[0]) for r in rows]
        return [DEFAULT_MODEL] if columns else []

    def _check_model(self, model: str) -> bool:
        """Whether the covariance tables carry a ``model`` column; refuses an unknown model."""
        columns = self._table_columns("factor_covariance")
        stored = self._stored_models()
        if model not in stored and (columns or model != DEFAULT_MODEL):
            listed = ", ".join(printable(m) for m in stored) or "none (no forecasts yet)"
            raise UnknownModelError(
                f"model {printable(model)!r} is not stored in {self.location}; stored models: "
                f"{listed}"
            )
        return MODEL_COLUMN in columns

    def models(self) -> list[str]:
        """The covariance models the store holds, in the order they were added (``default``
        first): each can be opened with ``model=``.

        Returns
        -------
        list of str
            Empty before the first forecast.
        """
        return self._stored_models()

    def model_clause(self, table: str) -> tuple[str, list[Any]]:
        """``AND model = ?`` for a covariance table of a store with several models."""
        if table in MODEL_TABLES and MODEL_COLUMN in self._table_columns(table):
            return " AND model = ?", [self.model]
        return "", []

    def _need(self, *tables: str) -> None:
        missing = [t for t in tables if not self.reader.has_table(t)]
        if missing:
            raise NoForecastError(
                f"{self.location} holds no forecasts yet: run `factorcov materialize` first"
            )

    def _dates(self, table: str) -> list[dt.date]:
        clause, params = self.model_clause(table)
        frame = self.reader.frame(
            f"SELECT DISTINCT date FROM {table} WHERE date IS NOT NULL{clause} ORDER BY date",
            params,
        )
        return frame["date"].to_list()

    def dates(self) -> list[dt.date]:
        """The dates with a factor covariance forecast, in order.

        Returns
        -------
        list of datetime.date
            Empty when the store holds no forecasts yet.
        """
        if not self.reader.has_table("factor_covariance"):
            return []
        return self._dates("factor_covariance")

    def factors(self) -> list[str]:
        """The model's factors, in name order (the covariance's rows and columns).

        Returns
        -------
        list of str
            The factors of the latest covariance forecast; empty before the first.
        """
        if not self.reader.has_table("factor_covariance"):
            return []
        clause, params = self.model_clause("factor_covariance")
        rows = self.reader.rows(
            "SELECT DISTINCT factor_1 FROM factor_covariance WHERE date = "
            f"(SELECT max(date) FROM factor_covariance WHERE date IS NOT NULL{clause}){clause}",
            [*params, *params],
        )
        return sorted(str(r[0]) for r in rows)

    def factor_groups(self) -> dict[str, str]:
        """Each factor's group (``market``, ``style``, the category scheme such as ``trbc``,
        or a user factor's group), from ``factor_returns``.

        Returns
        -------
        dict of str to str
        """
        if not self.reader.has_table("factor_returns"):
            return {}
        rows = self.reader.rows(
            "SELECT factor, min(factor_group) AS factor_group FROM factor_returns GROUP BY factor"
        )
        return {str(f): str(g or "") for f, g in rows}

    # ---- the forecasts of a date ------------------------------------------------------------

    def _pairs(self, table: str, value: str, day: dt.date) -> tuple[list[str], np.ndarray]:
        self._need(table)
        clause, params = self.model_clause(table)
        rows = self.reader.frame(
            f"SELECT factor_1, factor_2, {value} FROM {table} WHERE date = ?{clause}",
            [day, *params],
        )
        if rows.height == 0:
            raise NoForecastError(no_forecast(day, self.location, self._dates(table)))
        names = sorted(set(rows["factor_1"].to_list()) | set(rows["factor_2"].to_list()))
        return names, _square(rows, names, value, table, day, self.location)

    def covariance(self, date: DateLike) -> pl.DataFrame:
        """The factor covariance forecast at ``date`` (annualised).

        Parameters
        ----------
        date : datetime.date or str
            A forecast date (`dates`).

        Returns
        -------
        polars.DataFrame
            A ``factor`` column and one Float64 column per factor: row i, column j is the
            covariance of factors i and j (K rows, K + 1 columns, factors in name order).
            ``.drop("factor").to_numpy()`` is the K x K matrix.

        Raises
        ------
        NoForecastError
            No forecast at ``date``; the message names the nearest stored dates.
        ModelDataError
            The stored matrix lacks pairs.
        """
        day = as_date(date)
        names, matrix = self._pairs("factor_covariance", "covariance", day)
        return _matrix_frame(names, matrix)

    def correlation(self, date: DateLike) -> pl.DataFrame:
        """The factor correlation forecast at ``date``: the same layout as `covariance`.

        Raises
        ------
        NoForecastError
            No forecast at ``date``; the message names the nearest stored dates.
        ModelDataError
            The stored matrix lacks pairs.
        """
        day = as_date(date)
        names, matrix = self._pairs("factor_correlation", "correlation", day)
        return _matrix_frame(names, matrix)

    def volatility(self, date: DateLike) -> pl.DataFrame:
        """The factor volatility forecasts at ``date`` (annualised), as ``factor_volatility``
        stores them.

        Returns
        -------
        polars.DataFrame
            ``factor`` (name order), ``factor_group`` (null for a factor without returns),
            ``volatility``.

        Raises
        ------
        NoForecastError
            No forecast at ``date``; the message names the nearest stored dates.
        """
        day = as_date(date)
        self._need("factor_volatility")
        clause, params = self.model_clause("factor_volatility")
        vol = self.reader.frame(
            f"SELECT factor, volatility FROM factor_volatility WHERE date = ?{clause}",
            [day, *params],
        )
        if vol.height == 0:
            raise NoForecastError(no_forecast(day, self.location, self._dates("factor_volatility")))
        groups = self.factor_groups()
        vol = vol.sort("factor")  # Python's order, as the other frames (not the collation's)
        return vol.select(
            "factor",
            pl.col("factor")
            .replace_strict(groups, default=None, return_dtype=pl.String)
            .alias("factor_group"),
            "volatility",
        )

    def exposures(self, date: DateLike) -> pl.DataFrame:
        """The exposures of ``date`` (the ``exposures`` view, wide): Market 1, the asset's own
        category 1, its style exposures, 0 elsewhere.

        Returns
        -------
        polars.DataFrame
            ``asset_id`` (sorted) and one Float64 column per factor (`factors` order): the
            N x K matrix X of the model.

        Raises
        ------
        NoForecastError
            No exposures stored for ``date``; the message names the nearest stored dates.
        """
        day = as_date(date)
        self._need("exposures")
        long = self.reader.frame(
            "SELECT asset_id, factor, exposure FROM exposures WHERE date = ?", [day]
        )
        if long.height == 0:
            raise NoForecastError(
                no_forecast(day, self.location, self._dates("exposures_wide"), "exposures")
            )
        names = self.factors() or sorted(set(long["factor"].to_list()))
        wide = long.pivot(on="factor", index="asset_id", values="exposure").sort("asset_id")
        return wide.select(
            "asset_id",
            *[
                (pl.col(n).fill_null(0.0) if n in wide.columns else pl.lit(0.0))
                .cast(pl.Float64)
                .alias(n)
                for n in names
            ],
        )

    def specific_risk(self, date: DateLike) -> pl.DataFrame:
        """The specific risk forecasts at ``date`` (annualised specific volatilities).

        Returns
        -------
        polars.DataFrame
            ``asset_id`` (sorted), ``specific_risk``, and, where the store has them, ``reason``
            (why a value was not estimated from the asset's own returns; null when it was) and
            ``warm`` (false within the warm-up).

        Raises
        ------
        NoForecastError
            No forecast at ``date``; the message names the nearest stored dates.
        """
        day = as_date(date)
        self._need("specific_risk")
        extra = [c for c in ("reason", "warm") if c in self._table_columns("specific_risk")]
        frame = self.reader.frame(
            "SELECT asset_id, specific_risk"
            + "".join(f", {c}" for c in extra)
            + " FROM specific_risk WHERE date = ?",
            [day],
        ).sort("asset_id")
        if frame.height == 0:
            raise NoForecastError(
                no_forecast(
                    day, self.location, self._dates("specific_risk"), "specific risk forecast"
                )
            )
        return frame

    def snapshot(self, date: DateLike) -> RiskSnapshot:
        """The risk model of ``date`` as numpy arrays on one asset axis: the assets with an
        exposure and a specific risk forecast on the date (sorted), ``exposures`` X (N, K),
        ``covariance`` F (K, K), ``specific_risk`` s (N,), factors in name order.

        Raises
        ------
        NoForecastError
            No covariance or no specific risk forecast at ``date``; the message names the
            nearest dates that have both.
        ModelDataError
            The stored covariance lacks pairs, or a specific risk is NULL.
        """
        day = as_date(date)
        self._need("factor_covariance", "specific_risk", "exposures_wide", "factor_returns")
        model = self.model if self._model_column else None
        require_forecast(self.reader.frame, day, self.location, model)
        snap = load_risk_models(self.reader.frame, day, day, model).get(day)
        if snap is None:
            raise NoForecastError(
                f"no exposures stored for {day} in {self.location} for the assets with a "
                "specific risk forecast: re-run `factorcov materialize` for that date"
            )
        if np.isnan(snap.covariance).any():
            raise ModelDataError(
                f"factor_covariance in {self.location} lacks pairs of factors on {day}: re-run "
                "`factorcov materialize` for that date"
            )
        if np.isnan(snap.specific_risk).any():
            raise ModelDataError(
                f"specific_risk in {self.location} holds NULL on {day}: re-run "
                "`factorcov materialize` for that date"
            )
        return snap

    def asset_covariance(self, date: DateLike, asset_ids: Sequence[str]) -> pl.DataFrame:
        """The asset covariance V = X F X' + diag(s^2) of ``asset_ids`` at ``date``
        (annualised), from the factor model (Grinold and Kahn 2000, chapter 3).

        Parameters
        ----------
        date : datetime.date or str
        asset_ids : sequence of str
            Assets of the model on ``date``, each once.

        Returns
        -------
        polars.DataFrame
            An ``asset_id`` column (in the order given) and one Float64 column per asset;
            ``.drop("asset_id").to_numpy()`` is the matrix.

        Raises
        ------
        NoForecastError
            No risk forecast at ``date``.
        UnknownAssetError
            Ids not in the model on ``date`` (named), or an id given twice.
        """
        snap = self.snapshot(date)
        day = as_date(date)
        ids = [str(a) for a in asset_ids]
        given = pl.DataFrame({"asset_id": ids}, schema={"asset_id": pl.String})
        twice = given.filter(pl.col("asset_id").is_duplicated())["asset_id"].unique().sort()
        if twice.len():
            raise UnknownAssetError(f"asset id(s) given more than once: {brief(twice.to_list())}")
        pos = pl.DataFrame({"asset_id": snap.asset_ids, "_n": np.arange(len(snap.asset_ids))})
        j = given.join(pos, on="asset_id", how="left", maintain_order="left")
        unknown = j.filter(pl.col("_n").is_null())["asset_id"].to_list()
        if unknown:
            raise UnknownAssetError(
                f"{len(unknown)} asset id(s) not in the model on {day}: {brief(sorted(unknown))}"
            )
        idx = j["_n"].to_numpy()
        x = snap.exposures[idx]
        v = x @ snap.covariance @ x.T
        v[np.diag_indices_from(v)] += snap.specific_risk[idx] ** 2
        data: dict[str, Any] = {"asset_id": ids}
        data.update({a: v[:, i] for i, a in enumerate(ids)})
        return pl.DataFrame(data)

    # ---- portfolio risk ---------------------------------------------------------------------

    def risk(
        self,
        holdings: HoldingsLike,
        date: DateLike,
        benchmark: HoldingsLike | None = None,
        *,
        drop_unknown: bool = False,
    ) -> RiskReport:
        """The risk report of a portfolio at ``date`` (optionally against a benchmark), as
        ``factorcov risk`` prints it: `RiskReport.to_dict()` is ``--format json``.

        Parameters
        ----------
        holdings : path, polars.DataFrame, pandas.DataFrame, pandas.Series or mapping
            A CSV/Parquet file or a frame with columns ``asset_id, weight``, a Series of
            weights indexed by asset id, or ``{asset_id: weight}``. Weights are used as given
            (not renormalised) and must be finite numbers of a numeric type.
        date : datetime.date or str
            Exposures of that date; covariance and specific risk forecast at it.
        benchmark : same types as ``holdings``, optional
            Adds the active risk (``active``) and the portfolio's ``beta`` to it.
        drop_unknown : bool, default False
            Leave out asset ids not in the model on ``date`` (a warning reports the weight
            dropped) instead of refusing them.

        Returns
        -------
        RiskReport

        Raises
        ------
        HoldingsError
            Unreadable holdings, a non-numeric, missing, NaN or infinite weight, a duplicate
            asset, no rows, unknown asset ids (named), weights whose risk is not finite, or a
            benchmark of zero risk; the message names the holdings.
        NoForecastError
            No risk forecast at ``date``; the message names the nearest dates.
        """
        day = as_date(date)
        frame, source = holdings_input(holdings, "portfolio")
        held = validate_holdings(frame, source)
        bench, bench_source = None, ""
        if benchmark is not None:
            bframe, bench_source = holdings_input(benchmark, "benchmark")
            bench = validate_holdings(bframe, bench_source)
        snap = self.snapshot(day)
        warnings: list[str] = []
        h = align_holdings(snap, held, day, source, drop_unknown)
        if h.unknown:
            warnings.append(
                f"dropped {len(h.unknown)} asset id(s) not in the model on {day} from "
                f"{printable(source)}, weight {h.dropped_weight[0]:.6g}"
            )
        weights = h.weights[0]
        bench_weights = None
        if bench is not None:
            b = align_holdings(snap, bench, day, bench_source, drop_unknown)
            if b.unknown:
                warnings.append(
                    f"dropped {len(b.unknown)} asset id(s) not in the model on {day} from "
                    f"{printable(bench_source)}, weight {b.dropped_weight[0]:.6g}"
                )
            bench_weights = b.weights[0]
        nonzero = weights != 0
        if bench_weights is not None:
            nonzero |= bench_weights != 0
        warnings += risk_warnings(
            self.reader,
            day,
            snap.asset_ids[nonzero].tolist(),
            self.model_clause("factor_covariance"),
        )
        return report(snap, day, weights, source, bench_weights, bench_source, warnings)

    # ---- the leaderboard --------------------------------------------------------------------

    def compare(self) -> pl.DataFrame:
        """The leaderboard of the stored covariance models (the ``model_leaderboard`` table,
        written by every run), best first: which model's forecasts held up out of sample over
        the stored history, after their warm-up.

        Returns
        -------
        polars.DataFrame
            One row per model: ``model``, ``rank`` (1 is best), ``score`` (the mean of the
            model's ranks on three criteria: the bias of every test portfolio, the realised
            volatility of the minimum-variance portfolio and the Gaussian negative
            log-likelihood), ``n_obs`` and the statistics (README, "The leaderboard";
            `core.leaderboard.LEADERBOARD_SCHEMA`), then ``as_of``, the last forecast date.
            Independent of the ``model`` the `RiskModel` was opened with.

        Raises
        ------
        NoForecastError
            The store holds no leaderboard yet (run ``factorcov materialize``).
        """
        if not self.reader.has_table(LEADERBOARD_TABLE):
            raise NoForecastError(
                f"{self.location} holds no model leaderboard yet: run `factorcov materialize`"
            )
        return self.reader.frame(f"SELECT * FROM {LEADERBOARD_TABLE} ORDER BY rank, model")

    # ---- export and SQL ---------------------------------------------------------------------

    def export(
        self, date: DateLike, directory: str | os.PathLike[str], *, overwrite: bool = False
    ) -> dict[str, Path]:
        """Write the model of ``date`` for an optimiser: X, F and the specific variances as
        Parquet files in ``directory`` (created if needed). Columns: docs/api.md, "Export".

        Parameters
        ----------
        date : datetime.date or str
        directory : str or os.PathLike
        overwrite : bool, default False
            Replace files of an earlier export; otherwise existing files are refused.

        Returns
        -------
        dict of str to pathlib.Path
            ``exposures``, ``factor_covariance`` and ``specific_variance``: the files written.

        Raises
        ------
        NoForecastError
            No risk forecast at ``date``.
        ExportError
            A file exists (without ``overwrite``) or cannot be written.
        """
        from factorcov_pipeline.api.export import write_export

        day = as_date(date)
        return write_export(self.snapshot(day), day, Path(directory), overwrite)

    def sql(self, query: str) -> pl.DataFrame:
        """The result of one read-only SQL query (the same rules as ``factorcov sql``: no
        writes, no other files, no settings). Values of types Arrow cannot carry faithfully
        (INTERVAL, BIT, nested values, ...) come as the database's text.

        Raises
        ------
        RiskModelError
            The query failed or was refused; the message is the database's.
        """
        from factorcov_pipeline.api.errors import RiskModelError

        con = self.connection

        def run() -> pl.DataFrame:
            opened = con.open(query)
            if opened is None:
                return pl.DataFrame()
            stream = opened.reader()
            if isinstance(stream, pa.RecordBatchReader):  # DuckDB: the schema even if empty
                table = stream.read_all()
            else:
                batches = list(stream)
                if not batches:
                    return pl.DataFrame(schema=dict.fromkeys(opened.columns, pl.Null))
                table = pa.Table.from_batches(batches)
            out = pl.from_arrow(table)
            assert isinstance(out, pl.DataFrame)
            return out

        try:
            return self.reader.run(run)
        except con.errors as err:
            raise RiskModelError(f"SQL: {con.describe_error(err)}") from None
