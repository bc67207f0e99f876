"""Dagster's SQLite storage with an event log that keeps its connections open.

`dagster.yaml` (shipped at the repository root, README "Dagster UI") selects this storage with
`storage: custom:`, Dagster's documented extension point for instance storage. Runs, schedules and
the on-disk layout under DAGSTER_HOME are Dagster's own (`DagsterSqliteStorage`): an existing
DAGSTER_HOME keeps working, and `dagster dev` reads the same files.

Why: a range run records one event per session for every asset and check (materialisation,
planned materialisation, check evaluation and its planned event), about 8,000 events for the
tutorial's year. Dagster's `SqliteEventLogStorage` opens a new SQLAlchemy engine and SQLite
connection for every statement batch (`NullPool`), so each event pays an engine build, a cold
statement compile, an fsync'd commit and a close that checkpoints the write-ahead log. Profiled
with cProfile on `factorcov materialize` (252 sessions, 8,144 events): 93 of the run's 116 s were
in `store_event` (commits 15 s, closes 11 s, statement compiles 22 s, engine builds 8 s).

What changes, and only this (every statement and table is Dagster's):

* one engine per database file (and the answer to "does the index have table X" remembered
  once yes) (the index and the most recently used run shards), so connections
  and compiled statements are reused;
* a batch of events (Dagster sends one per step for the per-session materialisations, and one
  for the run's planned events) is stored with Dagster's own `store_event` per event, in one
  transaction per database file instead of one per statement;
* `PRAGMA synchronous=NORMAL` on each connection. The databases are in WAL mode (Dagster sets it
  when it creates them); with NORMAL, SQLite's documentation says a commit is durable against an
  application crash and the database cannot be corrupted, and only the last transactions before
  a power loss or OS crash may roll back (https://www.sqlite.org/pragma.html#pragma_synchronous).
  For a run's event log, that is the right trade: the tables themselves live in DuckDB or
  PostgreSQL, which keep their own durability.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

# Dagster groups a step's per-session materialisations (and a run's planned events) into batches
# of at most this many events when the variable is set (dagster._core.instance.utils).
EVENT_BATCH_SIZE_VAR = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = "1000"

# Run shards kept open besides the index: the run being written, and a few a UI process reads.
OPEN_RUN_SHARDS = 4


def _set_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _one_run_of_materialisations(events: Sequence[EventLogEntry]) -> bool:
    """The batch is materialisations only, all of one run and with an asset key."""
    return (
        len(events) > 1
        and len({e.run_id for e in events}) == 1
        and all(
            e.dagster_event is not None
            and e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
            and e.dagster_event.asset_key is not None
            for e in events
        )
    )


class FactorcovSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with an engine per database file kept open (module docstring)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables_present: set[str] = set()
        # Open transactions of the batch being stored, by shard (None outside a batch).
        self._batch: dict[str, Connection] | None = None
        super().__init__(base_dir, inst_data=inst_data)
        # Re-entrant: a batch holds the lock while Dagster's `store_event` connects per event.
        self._db_lock = threading.RLock()  # type: ignore[assignment]

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> FactorcovSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=4,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _set_pragmas)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        run_shards = [name for name in self._engines if name != "index"]
        for stale in run_shards[: max(0, len(run_shards) - OPEN_RUN_SHARDS)]:
            self._engines.pop(stale).dispose()
        return engine

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before most asset writes, building an engine each time; a table, once
        # created by a migration, stays.
        if table_name in self._tables_present:
            return True
        present = super().has_table(table_name)
        if present:
            self._tables_present.add(table_name)
        return present

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        with self._db_lock:
            if self._batch is None:
                with self._engine(shard).connect() as conn, conn.begin():
                    yield conn
                return
            conn = self._batch.get(shard)
            if conn is None:
                conn = self._engine(shard).connect()
                conn.begin()
                self._batch[shard] = conn
            yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store a batch (a step's per-session materialisations, a run's planned events) with
        Dagster's own `store_event` for each event, in one transaction per database file.

        Dagster sends batches when DAGSTER_EVENT_BATCH_SIZE > 0 (`FactorcovSqliteStorage` sets
        it). If anything fails, every shard's transaction rolls back and Dagster stores the
        events one by one (`handle_new_event`'s fallback), so nothing is stored twice.
        """
        with self._db_lock:
            self._batch = {}
            try:
                if _one_run_of_materialisations(events):
                    self._store_materialisations(events)
                else:
                    for entry in events:
                        self.store_event(entry)
                for conn in self._batch.values():
                    conn.commit()
            except BaseException:
                for conn in self._batch.values():
                    conn.rollback()
                raise
            finally:
                for conn in self._batch.values():
                    conn.close()
                self._batch = None

    def _store_materialisations(self, events: Sequence[EventLogEntry]) -> None:
        """A step's materialisations as dagster-postgres stores a batch of them
        (`PostgresEventLogStorage.store_event_batch`): one multi-row insert into the run's
        shard and one into the index, the events' tags, and the asset's row updated with the
        last event only (every event is in the index, so each session's materialisation, what
        the UI counts, is there). SQLite returns RETURNING rows in any order; the ids are
        assigned in insertion order, so they are sorted to match the events."""
        statement = self.prepare_insert_event_batch(events)
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(statement)
        with self.index_transaction() as conn:
            rows = conn.execute(statement.returning(SqlEventLogStorageTable.c.id)).fetchall()
            ids = sorted(int(row[0]) for row in rows)
            self._store_asset_event_tags(conn, events, ids)
            self._store_asset_event(conn, events[-1], ids[-1])

    def delete_events(self, run_id: str) -> None:
        with self._db_lock:
            stale = self._engines.pop(run_id, None)
            if stale is not None:
                stale.dispose()
        super().delete_events(run_id)

    def dispose(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()
        super().dispose()


class FactorcovSqliteStorage(DagsterSqliteStorage):
    """`DagsterSqliteStorage` (same files under `base_dir`) with `FactorcovSqliteEventLogStorage`."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data=inst_data)
        # Batches are what make a long range cheap to record (store_event_batch); a value the
        # user set wins.
        os.environ.setdefault(EVENT_BATCH_SIZE_VAR, EVENT_BATCH_SIZE)
        self._event_log_storage.dispose()
        self._event_log_storage = FactorcovSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> FactorcovSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return ConfigurableClassData(
            __name__,
            FactorcovSqliteEventLogStorage.__name__,
            f"base_dir: {_event_logs_directory(self.base_dir)}\n",
        )
