"""The read-only connection of a `RiskModel`, shared per DuckDB file within a process.

`BaseStore.connect_query_only()` opens a DuckDB file read-only and locks its configuration
(external access disabled). DuckDB keeps one database instance per file and process, and a
second connection with a different configuration is refused ("Can't open a connection to same
database file with a different configuration"); a second lock-down of a locked instance is
refused too. So in one process (a notebook re-running ``m = RiskModel.open(...)``, or a
`factorcov` command run in-process while a model is open) the file is opened once: every model
of that file gets its own cursor of the one locked-down connection (a cursor is a separate
connection to the same instance, with the same lock-down: DuckDB's Python API,
``DuckDBPyConnection.cursor``), and the file is closed when the last of them closes. A
PostgreSQL model has its own connection and READ ONLY transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from factorcov_pipeline.storage import BaseStore, Store
from factorcov_pipeline.storage.duckdb import DuckDBQueryConnection
from factorcov_pipeline.storage.query import QueryConnection


@dataclass
class _Shared:
    """One locked-down connection of a file and how many models use it."""

    stack: ExitStack
    con: DuckDBQueryConnection
    users: int = 0


_SHARED: dict[Path, _Shared] = {}
_LOCK = threading.Lock()


@contextmanager
def read_only_connection(store: BaseStore, timeout: float = 0.0) -> Iterator[QueryConnection]:
    """A read-only `QueryConnection` of ``store`` (see the module docstring); a query still
    running ``timeout`` seconds (0: no limit) after the connection opened is stopped."""
    if not isinstance(store, Store):
        with store.connect_query_only(timeout=timeout) as con:
            yield con
        return
    key = store.path.resolve()
    with _LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            stack = ExitStack()
            try:
                base = stack.enter_context(store.connect_query_only(timeout=0.0))
            except BaseException:
                stack.close()
                raise
            assert isinstance(base, DuckDBQueryConnection)
            shared = _SHARED[key] = _Shared(stack, base)
        shared.users += 1
        cursor = shared.con.con.cursor()
    con = DuckDBQueryConnection(cursor, timeout)
    timer = threading.Timer(timeout, con.interrupt) if timeout > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield con
    finally:
        if timer is not None:
            timer.cancel()
        with _LOCK:
            cursor.close()
            shared.users -= 1
            if shared.users == 0:
                del _SHARED[key]
                shared.stack.close()
