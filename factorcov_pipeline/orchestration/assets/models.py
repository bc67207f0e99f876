"""The covariance models of a run (issue 22): what every per-model asset shares.

A file holds several covariance models of one factor model: `factor_cov_settings` (named
`default`) and the `models` of the settings file, each a set of covariance settings. They are
computed together, per session, inside the same assets (ARCHITECTURE.md, "Several covariance
models"): each asset reads what the models share once (the factor returns, the exposures, the
specific risk) and loops over the models for the K x K work and the per-model evaluation.
Their rows carry `model` (the tables of `storage.contract.MODEL_TABLES`), and a write replaces
the rows of its own model only (`TableWrite.keys`), so a model removed from the settings keeps
its rows.

A model added to a file that already holds a history has no rows before the run's range: the
run then computes it over the whole stored history, from the first session of the file
(`extension`), its recursions from the first factor return on; from the next run on it continues like the
others. Recursion states are per model: `factor_volatility` for `default` (as before) and
`factor_volatility@<model>` for the others (`Model.state_key`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.settings import DEFAULT_MODEL, FactorCovarianceReportSettingsV2
from factorcov_pipeline.orchestration.assets.common import date_chunks
from factorcov_pipeline.storage import BaseStore, TableWrite
from factorcov_pipeline.storage.contract import MODEL_COLUMN


@dataclass(frozen=True)
class Model:
    """One covariance model of a run: its name and the settings it is computed with (the
    file's settings with its covariance settings as `factor_cov_settings`)."""

    name: str
    settings: FactorCovarianceReportSettingsV2

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_MODEL

    def state_key(self, asset: str) -> str:
        """The key of this model's recursion states of `asset` in `_forecast_state`."""
        return asset if self.is_default else f"{asset}@{self.name}"

    def rows(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with this model's `model` column, last."""
        return frame.with_columns(pl.lit(self.name, dtype=pl.String).alias(MODEL_COLUMN))

    def write(self, table: str, frame: pl.DataFrame) -> TableWrite:
        """A write of this model's rows of `table`, replacing only this model's rows."""
        return TableWrite(table, self.rows(frame), keys={MODEL_COLUMN: [self.name]})


def run_models(settings: FactorCovarianceReportSettingsV2) -> list[Model]:
    """The models of the settings in force, `default` first."""
    return [Model(name, settings.for_model(name)) for name in settings.model_names()]


def identity(settings: FactorCovarianceReportSettingsV2) -> dict[str, Any]:
    """The identity arguments of every write (`BaseStore.replace`): the file's settings and
    each covariance model's (checked against `covariance_models`; a model is added to it by
    the write of its first rows)."""
    return {"settings_json": settings.fingerprint(), "models": settings.models_json()}


def history_start(store: BaseStore) -> dt.date | None:
    """The first session of the stored history: the first session of the universe (the base
    date, which has no returns) or, for user factor returns, the first factor return; None
    on a new file."""
    days = []
    for table in ("universe", "factor_returns"):
        if store.has_table(table):
            found = store.read(f"SELECT min(date) AS d FROM {table}")["d"][0]
            if found is not None:
                days.append(found)
    return min(days) if days else None


def extension(
    store: BaseStore, table: str, model: str, dates: list[dt.date], start: dt.date | None
) -> list[dt.date]:
    """The sessions before the run's range that `model` must be computed for: the stored
    history from `start` (`history_start`) when `table` holds none of the model's rows
    before the range (a model added to a file with a history); else none. Computed in chunks
    of its own (`chunks`), as the run that first built the file computed the others."""
    if start is None or start >= dates[0] or store.has_rows_before(table, dates[0], model):
        return []
    return calendar.sessions(start, calendar.previous_session(dates[0]))


def chunks(before: list[dt.date], dates: list[dt.date], size: int = 0) -> list[list[dt.date]]:
    """`common.date_chunks` of a model's sessions: those of its `extension` and the run's
    range, chunked apart (a chunk never spans both), so a model added later is computed in
    the chunks a file built with it from the start would have (forecast_bias' rolling sums
    depend on where a chunk starts in their last bits)."""
    return [*date_chunks(before, size), *date_chunks(dates, size)]
