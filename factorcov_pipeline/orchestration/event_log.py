"""Dagster's SQLite storage with an event log that keeps its connections open.

deploy/dagster.yaml (the shipped instance file, README "Dagster UI") selects this storage with
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
  for the run's planned events) is stored in one transaction per database file, its
  materialisations and planned materialisations with multi-row statements as dagster-postgres
  stores materialisations, any other event with Dagster's own `store_event`;
* a run's per-partition check evaluations (one per session and check) wait in memory until the
  next event of another kind or any read of this process, then are stored together the same
  way (`FactorcovSqliteEventLogStorage.store_event`);
* a planned check event is serialised once, not once per planned partition;
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy import Connection, Engine, and_, bindparam, create_engine, event
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


# Asset events whose batches are stored with multi-row inserts (`_store_asset_events`).
MULTI_ROW_TYPES = frozenset(
    {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
)

# Check evaluations kept in memory until the next event of any other kind arrives, or this many
# are waiting, then stored together (`FactorcovSqliteEventLogStorage.store_event`).
PENDING_CHECK_EVALUATIONS = 1000


def _one_run_of_asset_events(events: Sequence[EventLogEntry]) -> bool:
    """The batch is of one multi-row event type, all of one run and with an asset key."""
    return (
        len(events) > 1
        and len({e.run_id for e in events}) == 1
        and len({e.dagster_event_type for e in events}) == 1
        and all(
            e.dagster_event is not None
            and e.dagster_event.event_type in MULTI_ROW_TYPES
            and e.dagster_event.asset_key is not None
            for e in events
        )
    )


def _deferrable(event: EventLogEntry) -> bool:
    """A check evaluation of a run's partition: its planned row exists (Dagster stores one per
    partition when the run starts), so storing it is an update that can wait for the next
    event."""
    dagster_event = event.dagster_event
    return (
        dagster_event is not None
        and dagster_event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        and bool(event.run_id)
        and getattr(dagster_event.event_specific_data, "partition", None) is not None
    )


class FactorcovSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with an engine per database file kept open (module docstring)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables_present: set[str] = set()
        # Open transactions of the batch being stored, by shard (None outside a batch).
        self._batch: dict[str, Connection] | None = None
        # Check evaluations waiting to be stored (`store_event`).
        self._pending: list[EventLogEntry] = []
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
                # Any read or write of this process first stores the check evaluations
                # waiting (`store_event`): it sees what Dagster's storage would have stored.
                self.flush_pending()
                with self._engine(shard).connect() as conn, conn.begin():
                    yield conn
                return
            conn = self._batch.get(shard)
            if conn is None:
                conn = self._engine(shard).connect()
                conn.begin()
                self._batch[shard] = conn
            yield conn

    def store_event(self, event: EventLogEntry) -> None:
        """Dagster's `store_event`, except that a run's per-partition check evaluation waits
        in memory for the next event of any other kind (or for `PENDING_CHECK_EVALUATIONS` of
        them) and is then stored with the others waiting, in one transaction
        (`_store_check_evaluations`).

        Why: a check step yields one evaluation per session (252 in the tutorial's year), and
        Dagster stores each alone: three statements and two commits, 1.3 ms each, 3.3 s of the
        recorded year. Events stay in order: anything else stored first stores what waits. A
        step always ends with an event of its own (STEP_SUCCESS or STEP_FAILURE), so a check
        step's evaluations are stored before the run goes on; if the process dies first, the
        evaluations of that one step are lost, and the run with them.
        """
        with self._db_lock:
            if self._batch is None:
                if _deferrable(event):
                    self._pending.append(event)
                    if len(self._pending) >= PENDING_CHECK_EVALUATIONS:
                        self.flush_pending()
                    return
                self.flush_pending()
            super().store_event(event)

    def flush_pending(self) -> None:
        """Store the check evaluations waiting (`store_event`) now. If the batch fails, each is
        stored on its own with Dagster's `store_event`, as Dagster's `handle_new_event` does
        for a failed batch."""
        with self._db_lock:
            if not self._pending or self._batch is not None:
                return
            events, self._pending = self._pending, []
            try:
                self._in_one_transaction(lambda: self._store_check_evaluations(events))
            except Exception:
                for entry in events:
                    super().store_event(entry)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store a batch (a step's per-session materialisations, a run's planned events) in one
        transaction per database file: multi-row inserts for one run's materialisations or
        planned materialisations (`_store_asset_events`), else Dagster's own `store_event` for
        each event.

        Dagster sends batches when DAGSTER_EVENT_BATCH_SIZE > 0 (`FactorcovSqliteStorage` sets
        it). If anything fails, every shard's transaction rolls back and Dagster stores the
        events one by one (`handle_new_event`'s fallback), so nothing is stored twice.
        """
        with self._db_lock:
            self.flush_pending()
            self._in_one_transaction(lambda: self._store_in_groups(events))

    def _store_in_groups(self, events: Sequence[EventLogEntry]) -> None:
        """The events in order, each run of consecutive events of one run and one multi-row
        type with multi-row statements, every other event with Dagster's `store_event` (a run's
        planned events are its planned materialisations then its planned checks)."""
        group: list[EventLogEntry] = []
        for entry in [*events, None]:
            if entry is not None and group and _one_run_of_asset_events([*group[-1:], entry]):
                group.append(entry)
                continue
            if len(group) > 1:
                self._store_asset_events(group)
            elif group:
                self.store_event(group[0])
            group = [] if entry is None else [entry]

    def _in_one_transaction(self, store: Callable[[], object]) -> None:
        """Run `store` with every connection it opens (one per database file) in one
        transaction, committed together at the end or rolled back together."""
        with self._db_lock:
            self._batch = {}
            try:
                store()
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

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of one run's materialisations (or planned materialisations), as
        dagster-postgres stores a batch of materialisations
        (`PostgresEventLogStorage.store_event_batch`): one multi-row insert into the run's shard
        and one into the index, the events' tags, and each asset's row updated with its last
        event of the batch only (every event is in the index, so each session's
        materialisation, what the UI counts, is there; the batch is of one type, so the last
        event sets what the events one by one would have left). SQLite returns RETURNING rows
        in any order; the ids are assigned in insertion order, so they are sorted to match."""
        rows = [self._event_to_row(entry) for entry in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_connection() as conn:
            ids = self._insert_returning_ids(conn, rows)
            self._store_asset_event_tags(conn, events, ids)
            last: dict[str, tuple[EventLogEntry, int]] = {}
            for entry, event_id in zip(events, ids, strict=True):
                last[entry.get_dagster_event().asset_key.to_string()] = (entry, event_id)  # type: ignore[union-attr]
            for entry, event_id in last.values():
                self._store_asset_event(conn, entry, event_id)

    @staticmethod
    def _insert_returning_ids(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert event rows into the index (one compiled statement, executed for many rows:
        SQLAlchemy's "insertmanyvalues"), returning their ids in the rows' order."""
        statement = SqlEventLogStorageTable.insert().returning(
            SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
        )
        return [int(row[0]) for row in conn.execute(statement, rows).fetchall()]

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        """Dagster's rows, one per planned partition (`SqlEventLogStorage`'s method of the same
        name), with the event serialised once rather than once per partition: the planned
        event of a 252-session range is 8 kB, serialised 252 times per check (1 s of the
        recorded tutorial year)."""
        planned = event.get_dagster_event().event_specific_data
        subset = planned.partitions_subset  # type: ignore[union-attr]
        partition_keys = subset.get_partition_keys() if subset else [None]
        serialized = serialize_value(event)
        timestamp = self._event_insert_timestamp(event)
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [
                    dict(
                        asset_key=planned.asset_key.to_string(),  # type: ignore[union-attr]
                        check_name=planned.check_name,  # type: ignore[union-attr]
                        partition=partition_key,
                        run_id=event.run_id,
                        execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                        evaluation_event=serialized,
                        evaluation_event_timestamp=timestamp,
                        evaluation_event_storage_id=event_id,
                    )
                    for partition_key in partition_keys
                ],
            )

    def _store_check_evaluations(self, events: Sequence[EventLogEntry]) -> None:
        """Check evaluations of runs' partitions (`_deferrable`) as Dagster stores each one
        (`SqliteEventLogStorage.store_event` then `_update_asset_check_evaluation`): the events
        into their run's shard and into the index, and each planned row of the partition updated
        with the evaluation, as multi-row statements. Raises if an update did not find exactly
        one planned row per event (the caller then stores them one by one, Dagster's way)."""
        rows = [self._event_to_row(entry) for entry in events]
        by_run: dict[str, list[dict[str, Any]]] = {}
        for entry, row in zip(events, rows, strict=True):
            by_run.setdefault(entry.run_id, []).append(row)
        for run_id, run_rows in by_run.items():
            with self.run_connection(run_id) as conn:
                conn.execute(SqlEventLogStorageTable.insert(), run_rows)
        table = AssetCheckExecutionsTable
        with self.index_connection() as conn:
            ids = self._insert_returning_ids(conn, rows)
            update = (
                table.update()
                .where(
                    and_(
                        table.c.asset_key == bindparam("k_asset_key"),
                        table.c.check_name == bindparam("k_check_name"),
                        table.c.run_id == bindparam("k_run_id"),
                        table.c.partition == bindparam("k_partition"),
                    )
                )
                .values(
                    execution_status=bindparam("v_status"),
                    evaluation_event=bindparam("v_event"),
                    evaluation_event_timestamp=bindparam("v_timestamp"),
                    evaluation_event_storage_id=bindparam("v_event_id"),
                    materialization_event_storage_id=bindparam("v_materialization_id"),
                )
            )
            params = []
            for entry, row, event_id in zip(events, rows, ids, strict=True):
                evaluation = entry.get_dagster_event().event_specific_data
                target = evaluation.target_materialization_data  # type: ignore[union-attr]
                params.append(
                    {
                        "k_asset_key": evaluation.asset_key.to_string(),  # type: ignore[union-attr]
                        "k_check_name": evaluation.check_name,  # type: ignore[union-attr]
                        "k_run_id": entry.run_id,
                        "k_partition": evaluation.partition,  # type: ignore[union-attr]
                        "v_status": (
                            AssetCheckExecutionRecordStatus.SUCCEEDED.value
                            if evaluation.passed  # type: ignore[union-attr]
                            else AssetCheckExecutionRecordStatus.FAILED.value
                        ),
                        "v_event": row["event"],  # the event as serialised for its row
                        "v_timestamp": self._event_insert_timestamp(entry),
                        "v_event_id": event_id,
                        "v_materialization_id": target.storage_id if target else None,
                    }
                )
            updated = conn.execute(update, params).rowcount
            if updated != len(events):
                raise RuntimeError(f"{updated} planned check rows for {len(events)} evaluations")

    def delete_events(self, run_id: str) -> None:
        with self._db_lock:
            stale = self._engines.pop(run_id, None)
            if stale is not None:
                stale.dispose()
        super().delete_events(run_id)

    def dispose(self) -> None:
        with self._db_lock:
            self.flush_pending()
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
