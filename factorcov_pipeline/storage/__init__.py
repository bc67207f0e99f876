"""Storage: the SQL contract (`contract`), the `Store` interface (`base`) and its two
implementations, DuckDB (`duckdb`, the default; `Store` is its class) and PostgreSQL
(`postgres`, imported on demand so the DuckDB path needs no PostgreSQL driver).

Re-exports the names of the former `storage.py` module so that
`from factorcov_pipeline.storage import ...` keeps working.
"""

from factorcov_pipeline.storage.base import BaseStore
from factorcov_pipeline.storage.contract import (
    DATE_COLUMN,
    EXPOSURES_TABLE,
    EXPOSURES_VIEW,
    SETTINGS_TABLE,
    STATE_TABLE,
    TABLE_COLUMNS,
    SettingsMismatchError,
    StoreBusyError,
    TableWrite,
    ViewDef,
    exposures_view,
    quote_ident,
    quote_literal,
)
from factorcov_pipeline.storage.duckdb import (
    DEFAULT_DATABASE,
    DEFAULT_MEMORY_LIMIT,
    ENV_DATABASE,
    ENV_MEMORY,
    Store,
    StoreFileError,
    holding_connections,
    query_polars,
)


def store_from_env(lock_timeout: float = 120.0) -> BaseStore:
    """The store the environment selects, without Dagster: PostgreSQL when
    `FACTORCOV_DATABASE_URL` is set (`storage.postgres.PostgresStore`), else the DuckDB file of
    `FACTORCOV_DUCKDB` (`Store`). The Dagster resources make the same choice
    (`orchestration.resources.storage_resource`)."""
    from factorcov_pipeline import environment

    url = environment.database_url()
    if url:
        from factorcov_pipeline.storage.postgres import PostgresStore

        return PostgresStore(url, lock_timeout=lock_timeout)
    return Store.from_env(lock_timeout)


__all__ = [
    "DATE_COLUMN",
    "DEFAULT_DATABASE",
    "DEFAULT_MEMORY_LIMIT",
    "ENV_DATABASE",
    "ENV_MEMORY",
    "EXPOSURES_TABLE",
    "EXPOSURES_VIEW",
    "SETTINGS_TABLE",
    "STATE_TABLE",
    "TABLE_COLUMNS",
    "BaseStore",
    "SettingsMismatchError",
    "Store",
    "StoreBusyError",
    "StoreFileError",
    "TableWrite",
    "ViewDef",
    "exposures_view",
    "holding_connections",
    "query_polars",
    "quote_ident",
    "quote_literal",
    "store_from_env",
]
