"""Resources: the store (one resource per backend) and the model settings, configured from
environment variables.

- `FACTORCOV_DATABASE_URL`: a PostgreSQL database (`postgresql://...`); when set, every table
  goes there (`FactorcovPostgres`) instead of the DuckDB file.
- `FACTORCOV_DUCKDB`: the DuckDB file (default `data/factorcov.duckdb`).
- `FACTORCOV_SETTINGS`: a JSON/YAML settings file (default: the tutorial's settings).
- `FACTORCOV_LOCK_TIMEOUT`: seconds to wait for another process's lock on the file (default 120).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from dagster import ConfigurableResource, EnvVar, InitResourceContext

from factorcov_pipeline import environment
from factorcov_pipeline.core import ewma
from factorcov_pipeline.core.settings import FactorCovarianceReportSettingsV2, load_settings
from factorcov_pipeline.orchestration.interrupts import stop_if_interrupted
from factorcov_pipeline.storage import BaseStore, Store, holding_connections
from factorcov_pipeline.storage.duckdb import checkpoint_in_background

F = TypeVar("F", bound=Callable[..., Any])

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

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[FactorcovStorage]:
        """The resource for one run (Dagster builds it once per run with the in-process
        executor), holding one DuckDB connection to the file from the first step that opens it
        to the end of the run (`storage.duckdb.holding_connections`), as `factorcov materialize`
        does. Opening the file and closing it cost ~16 ms, paid by each of a run's 21 steps
        before 0.6.0: 0.23 s of a 1.7 s daily run (benchmark 4). Other processes wait for the
        run to end (up to FACTORCOV_LOCK_TIMEOUT), no longer for its next step."""
        with holding_connections():
            yield self


ENV_DATABASE_URL = "FACTORCOV_DATABASE_URL"


class FactorcovPostgres(ConfigurableResource):
    """A PostgreSQL database every asset writes to (`storage.postgres.PostgresStore`), shared by
    every process of a run or of parallel runs. `url` is normally
    `EnvVar("FACTORCOV_DATABASE_URL")` (see `storage_resource`)."""

    url: str
    lock_timeout_seconds: float = 0.0

    def store(self) -> BaseStore:
        from factorcov_pipeline.storage.postgres import PostgresStore

        # Outside a Dagster run (the command's own summary) an EnvVar is not resolved yet.
        url = os.environ.get(self.url, "") if isinstance(self.url, EnvVar) else self.url
        if not url:
            raise ValueError(f"{ENV_DATABASE_URL} is empty: set it to postgresql://...")
        timeout = self.lock_timeout_seconds or environment.lock_timeout()
        return PostgresStore(url, lock_timeout=timeout)


def storage_resource() -> FactorcovStorage | FactorcovPostgres:
    """The store resource the environment selects: PostgreSQL when `FACTORCOV_DATABASE_URL` is
    set, else the DuckDB file (the default)."""
    if os.environ.get(ENV_DATABASE_URL):
        return FactorcovPostgres(url=EnvVar(ENV_DATABASE_URL))
    return FactorcovStorage()


class FactorcovSettings(ConfigurableResource):
    """The report settings in force (the tutorial's `FactorCovarianceReportSettingsV2`)."""

    settings_file: str = ""

    def load(self) -> FactorCovarianceReportSettingsV2:
        """The settings in force; also hands FACTORCOV_JIT to the core, which reads no
        environment (`core.ewma.JIT_MODE`)."""
        ewma.JIT_MODE = environment.jit_mode()
        return load_settings(self.settings_file or environment.settings_file())


def one_connection(fn: F) -> F:
    """Run an asset or check body with one DuckDB connection for the whole step
    (`storage.duckdb.holding_connections`: opening the file costs ~13 ms, and a step opened it
    up to 30 times; inside a run, the run's connection). Generator bodies (checks yielding one
    evaluation per session) hold it until their last evaluation. Every step starts here, so
    here a signal that Python lost during an earlier step stops the run
    (`interrupts.stop_if_interrupted`)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            stop_if_interrupted()
            with holding_connections():
                yield from fn(*args, **kwargs)

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        stop_if_interrupted()
        with holding_connections():
            result = fn(*args, **kwargs)
            checkpoint_in_background()  # the step's rows are stored (storage/duckdb.py)
            return result

    return plain  # type: ignore[return-value]
