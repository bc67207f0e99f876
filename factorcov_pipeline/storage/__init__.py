"""Storage: the SQL contract and the stores behind it (`factorcov_pipeline.storage.duckdb`).

Re-exports the names of the former `storage.py` module so that
`from factorcov_pipeline.storage import ...` keeps working.
"""

from factorcov_pipeline.storage.duckdb import (
    DATE_COLUMN,
    DEFAULT_DATABASE,
    DEFAULT_MEMORY_LIMIT,
    ENV_DATABASE,
    ENV_MEMORY,
    EXPOSURES_TABLE,
    EXPOSURES_VIEW,
    SETTINGS_TABLE,
    STATE_TABLE,
    TABLE_COLUMNS,
    SettingsMismatchError,
    Store,
    StoreBusyError,
    TableWrite,
    ViewDef,
    exposures_view,
    query_polars,
    quote_ident,
    quote_literal,
)

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
    "SettingsMismatchError",
    "Store",
    "StoreBusyError",
    "TableWrite",
    "ViewDef",
    "exposures_view",
    "query_polars",
    "quote_ident",
    "quote_literal",
]
