"""Resources: the DuckDB store and the model settings, configured from environment variables.

- `FACTORCOV_DUCKDB`: the DuckDB file (default `data/factorcov.duckdb`).
- `FACTORCOV_SETTINGS`: a JSON/YAML settings file (default: the tutorial's settings).
- `FACTORCOV_LOCK_TIMEOUT`: seconds to wait for another process's lock on the file (default 120).
"""

from __future__ import annotations

from dagster import ConfigurableResource

from factorcov_pipeline import environment
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2, load_settings
from factorcov_pipeline.storage import Store

ENV_SETTINGS = environment.SETTINGS
ENV_LOCK_TIMEOUT = environment.LOCK_TIMEOUT


class FactorcovStorage(ConfigurableResource):
    """The DuckDB file every asset writes to (one transaction per materialised date range).

    Swapping the backend (another DuckDB file, or a warehouse behind the same `Store` interface)
    is a change of this resource only; the assets call `store()` and nothing else.
    """

    database: str = ""
    lock_timeout_seconds: float = 0.0

    def store(self) -> Store:
        path = self.database or environment.database()
        timeout = self.lock_timeout_seconds or environment.lock_timeout()
        return Store(path, lock_timeout=timeout)


class FactorcovSettings(ConfigurableResource):
    """The report settings in force (the tutorial's `FactorCovarianceReportSettingsV2`)."""

    settings_file: str = ""

    def load(self) -> FactorCovarianceReportSettingsV2:
        return load_settings(self.settings_file or environment.settings_file())
