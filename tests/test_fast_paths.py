"""Every fast path equals the straightforward one.

- The recursion state is stored every STATE_EVERY sessions and at a range's end (not after
  every session): any block length gives the same tables bit for bit, and a partition in the
  middle of the history re-materialised alone replays from the nearest stored state.
- States older than the recent window are kept only as the last of each span of STATE_KEEP_DAYS
  days: daily runs leave one state per span, not one per session, and a later run replays from
  the kept one with the same rows; a re-run of the latest session resumes from the state before.
- Runs not recorded in DAGSTER_HOME use a throw-away instance that does not index
  per-session events: the run's events and the stored tables equal a run in Dagster's own
  ephemeral instance; a run recorded in a real instance shows every session materialised.
"""

import datetime as dt
import threading

import dagster as dg
import pytest
from state_retention import kept_states

from factorcov_pipeline.examples.factor_etfs import factor_etf_returns
from factorcov_pipeline.orchestration.assets import common, resume
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store, contract

START = dt.date(2025, 3, 31)
TABLES = {
    "factor_volatility": "date, factor",
    "volatility_regime": "date",
    "factor_correlation": "date, factor_1, factor_2",
    "factor_covariance": "date, factor_1, factor_2",
    "covariance_report": "date, factor",
    "forecast_bias": "window_end, portfolio",
}
# Every recursion feature at once: Newey-West, regime adjustment, shrinkage, standardised.
SETTINGS = {
    "halflife_vol": 20.0,
    "halflife_cor": 30.0,
    "halflife_vra": 15.0,
    "nw_lags_vol": 2,
    "nw_lags_cor": 1,
    "shrink_cor_method": "LIS",
    "combine_standardized": True,
}


def _settings(tmp, path, **cov):
    import json

    out = tmp / f"s-{len(list(tmp.glob('s-*')))}.json"
    out.write_text(
        json.dumps(
            {
                "factor_model_settings": {"universe": {"factor_returns": str(path)}},
                "factor_cov_settings": {**SETTINGS, **cov},
            }
        )
    )
    return str(out)


def _run(db, settings, start, end, instance=None):
    return run_range(
        start,
        end,
        FactorcovStorage(database=str(db), lock_timeout_seconds=5.0),
        settings,
        instance=instance,
        logger=quiet_logger(),
        selection=[
            "factor_returns",
            "factor_volatility",
            "factor_correlation",
            "factor_covariance",
            "covariance_report",
            "forecast_bias",
        ],
    )


def _assert_same(db, ref):
    """Bit for bit, except forecast_bias: its rolling windows are summed over a different
    number of sessions in a daily run than in a range run (rounding, to 1e-12)."""
    from polars.testing import assert_frame_equal

    for table, frame in _tables(db).items():
        if table == "forecast_bias":
            assert_frame_equal(frame, ref[table], rtol=1e-12, atol=0)
        else:
            assert frame.equals(ref[table]), table


def _tables(db):
    store = Store(db)
    return {t: store.read(f"SELECT * FROM {t} ORDER BY {o}") for t, o in TABLES.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fast")
    frame = factor_etf_returns(START, 30, names=("A b", "C'd", "É"), seed=5)
    path = tmp / "fr.parquet"
    frame.write_parquet(path)
    days = sorted(set(frame["date"].to_list()))
    settings = _settings(tmp, path, warmup_length=3)
    db = tmp / "ref.duckdb"
    result = _run(db, settings, days[0], days[-1])
    assert result.success, failure_messages(result)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    return tmp, settings, days, db, result


def test_state_every_block_length_gives_the_same_tables(reference, tmp_path, monkeypatch):
    _, settings, days, db_ref, _ = reference
    monkeypatch.setattr(resume, "STATE_EVERY", 4)
    monkeypatch.setattr(contract, "STATE_KEEP_DAYS", 1)  # every state kept: where they are written
    monkeypatch.setattr(common, "MATRIX_ROWS_PER_CHUNK", 3 * 3 * 3)  # K x K writes: 3 sessions
    db = tmp_path / "blocks.duckdb"
    assert _run(db, settings, days[0], days[-1]).success
    _assert_same(db, _tables(db_ref))
    # volatility states at the block ends (every 4 sessions from the first) and at the end;
    # correlation states at the end of each 3-session write
    q = "SELECT date FROM _forecast_state WHERE asset = ? ORDER BY 1"
    vol_states = Store(db).read(q, ["factor_volatility"])["date"].to_list()
    assert vol_states == [days[i] for i in range(3, len(days), 4)] + [days[-1]] * (
        len(days) % 4 > 0
    )
    cor_states = Store(db).read(q, ["factor_correlation"])["date"].to_list()
    assert cor_states == [days[min(i + 2, len(days) - 1)] for i in range(0, len(days), 3)]


def test_day_by_day_and_mid_history_rerun_equal_the_range(reference, tmp_path, monkeypatch):
    _, settings, days, db_ref, _ = reference
    monkeypatch.setattr(resume, "STATE_EVERY", 4)
    monkeypatch.setattr(contract, "STATE_KEEP_DAYS", 1)
    db = tmp_path / "daily.duckdb"
    assert _run(db, settings, days[0], days[9]).success
    for day in days[10:]:  # daily runs continue from the stored state
        result = _run(db, settings, day, day)
        assert result.success, failure_messages(result)
    ref = _tables(db_ref)
    _assert_same(db, ref)
    # a partition in the middle of a range run, alone: replayed from the nearest stored
    # state (states after sessions 4, 8, ..., 20, and the last), same rows
    db = tmp_path / "mid.duckdb"
    assert _run(db, settings, days[0], days[-1]).success
    result = _run(db, settings, days[18], days[18])
    assert result.success, failure_messages(result)
    meta = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert meta["factor_volatility"]["replayed_sessions"].value == 2
    assert meta["factor_correlation"]["replayed_sessions"].value == 2
    _assert_same(db, ref)


def test_daily_runs_keep_one_state_per_span_and_resume_from_it(reference, tmp_path, monkeypatch):
    """Daily runs store a state every session; the states of the last 3 days stay, and before
    them only the last of each 7-day span; a mid-history partition re-run alone replays from
    the kept state before it, and a re-run of the latest session from the session before:
    the same tables as the range run."""
    _, settings, days, db_ref, _ = reference
    monkeypatch.setattr(contract, "STATE_KEEP_DAYS", 7)
    monkeypatch.setattr(contract, "STATE_KEEP_RECENT_DAYS", 3)
    db = tmp_path / "kept.duckdb"
    assert _run(db, settings, days[0], days[4]).success
    for day in days[5:]:
        result = _run(db, settings, day, day)
        assert result.success, failure_messages(result)
    ref = _tables(db_ref)
    _assert_same(db, ref)
    store = Store(db)
    q = "SELECT date FROM _forecast_state WHERE asset = ? ORDER BY 1"
    for asset in ("factor_volatility", "factor_correlation"):
        kept = store.read(q, [asset])["date"].to_list()
        written = store.stored_dates(asset)  # a daily run stores its session's state
        assert kept == kept_states(written, 7, 3), asset
        assert kept[-2:] == days[-2:] and len(kept) < len(written) // 2, asset
    # a partition in the middle, alone: replayed from the last kept state before it
    mid = days[18]
    before = [d for d in store.read(q, ["factor_volatility"])["date"].to_list() if d < mid]
    result = _run(db, settings, mid, mid)
    assert result.success, failure_messages(result)
    meta = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    replayed = len([d for d in days if before[-1] < d < mid])
    assert replayed > 0
    assert meta["factor_volatility"]["replayed_sessions"].value == replayed
    _assert_same(db, ref)
    # the latest session again: continued from the session before's state, nothing replayed
    result = _run(db, settings, days[-1], days[-1])
    assert result.success, failure_messages(result)
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "factor_volatility"
    ]
    assert event.materialization.metadata["replayed_sessions"].value == 0
    _assert_same(db, ref)


def test_state_pruning_keeps_the_last_state_of_each_span_in_sql(tmp_path, monkeypatch):
    """The pruning statement alone, on states written out of order and two assets: per asset,
    the states of the last 7 days and the last state of each span before stay, bytes
    untouched; the other asset is not touched."""
    monkeypatch.setattr(contract, "STATE_KEEP_DAYS", 10)
    monkeypatch.setattr(contract, "STATE_KEEP_RECENT_DAYS", 7)
    store = Store(tmp_path / "states.duckdb")
    first = dt.date(2024, 12, 20)
    dates = [first + dt.timedelta(days=i) for i in range(0, 40, 3)]
    blobs = {d: f"state {d}".encode() for d in dates}
    with store.connect() as con:
        con.execute("CREATE TABLE _forecast_state (asset VARCHAR, date DATE, state BLOB)")
        for d in reversed(dates):
            con.execute(
                "INSERT INTO _forecast_state VALUES ('a', ?, ?), ('b', ?, ?)",
                [d, blobs[d], d, blobs[d]],
            )
        con.execute(contract.state_pruning_sql(), ["a", "a"])
    kept = store.read("SELECT date, state FROM _forecast_state WHERE asset = 'a' ORDER BY 1")
    assert kept["date"].to_list() == kept_states(dates, 10, 7)
    assert len(kept) < len(dates) - 3
    assert [bytes(b) for b in kept["state"].to_list()] == [blobs[d] for d in kept["date"]]
    assert store.read("SELECT count(*) AS n FROM _forecast_state WHERE asset = 'b'")["n"][0] == len(
        dates
    )


def test_throwaway_instance_equals_dagsters_ephemeral_instance(reference, tmp_path):
    _, settings, days, db_ref, fast = reference
    db = tmp_path / "ephemeral.duckdb"
    slow = _run(db, settings, days[0], days[-1], instance=dg.DagsterInstance.ephemeral())
    assert slow.success
    ref = _tables(db_ref)
    for table, frame in _tables(db).items():
        assert frame.equals(ref[table]), table

    def summary(result):
        mats = sorted(
            (e.asset_key.to_user_string(), e.partition)
            for e in result.get_asset_materialization_events()
        )
        checks = sorted(
            (c.asset_check_key.name, c.passed) for c in result.get_asset_check_evaluations()
        )
        return mats, checks

    assert summary(fast) == summary(slow)
    # one materialisation per session and asset, as the UI counts them
    assert len(summary(fast)[0]) == 6 * len(days)


def test_throwaway_event_log_answers_asset_questions_as_sqlite_would(reference, tmp_path):
    """The throw-away event log answers a step's data-version questions (asset records, latest
    observation) without SQLite while it holds no asset event: the same answers as SQLite,
    which it asks again once it holds one."""
    from dagster._core.event_api import EventLogCursor
    from dagster._core.events import AssetObservationData
    from dagster._core.storage.event_log import InMemoryEventLogStorage

    from factorcov_pipeline.orchestration.instance import throwaway_instance

    _, settings, days, _, _ = reference
    instance = throwaway_instance()
    assert _run(tmp_path / "t.duckdb", settings, days[0], days[3], instance).success
    storage = instance.event_log_storage
    assert not storage.asset_events and not storage.observations
    keys = [dg.AssetKey(k) for k in ("factor_returns", "factor_volatility", "nowhere")]
    sql = InMemoryEventLogStorage
    assert storage.get_asset_records(keys) == sql.get_asset_records(storage, keys) == []
    earlier = EventLogCursor.from_storage_id(7).to_string()
    ranged = dg.AssetRecordsFilter(asset_key=keys[0], asset_partitions=[str(d) for d in days])
    for name in ("fetch_observations", "fetch_materializations"):
        for target, limit, cursor in ((keys[0], 1, None), (ranged, 5, earlier), (keys[1], 0, None)):
            fast = getattr(storage, name)(target, limit, cursor)
            slow = getattr(sql, name)(storage, target, limit, cursor)
            assert (fast.records, fast.cursor, fast.has_more) == (
                slow.records,
                slow.cursor,
                slow.has_more,
            )
    # an asset event stored (e.g. by a recorded run's kind of event): SQLite is asked again
    storage.store_event(
        dg.EventLogEntry(
            error_info=None,
            level="INFO",
            user_message="",
            run_id="r",
            timestamp=0.0,
            dagster_event=dg.DagsterEvent(
                event_type_value="ASSET_OBSERVATION",
                job_name="j",
                event_specific_data=AssetObservationData(
                    dg.AssetObservation(asset_key="factor_returns")
                ),
            ),
        )
    )
    assert storage.asset_events and storage.observations
    records = storage.get_asset_records(keys)
    assert [r.asset_entry.asset_key for r in records] == [keys[0]]
    assert len(storage.fetch_observations(keys[0], 1).records) == 1
    assert storage.fetch_materializations(keys[0], 1).records == []  # SQLite's answer


def test_a_recorded_run_shows_every_session_materialised(reference, tmp_path):
    _, settings, days, _, _ = reference
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = _run(tmp_path / "recorded.duckdb", settings, days[0], days[-1], instance)
        assert result.success
        for asset in ("factor_volatility", "factor_covariance", "covariance_report"):
            done = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert done == {str(d) for d in days}, asset


def _metadata(result):
    return sorted(
        (
            e.asset_key.to_user_string(),
            e.partition,
            sorted(e.step_materialization_data.materialization.metadata.items()),
        )
        for e in result.get_asset_materialization_events()
        if e.partition is not None
    )


def test_per_session_metadata_in_one_pass_equals_dagsters_api(reference, tmp_path, monkeypatch):
    """`metadata.per_session` builds Dagster's per-partition metadata record once; with that
    shortcut off it calls `context.add_asset_metadata` per session. Same metadata on every
    session's materialisation (numbers and text compared by value, figures and tables by
    kind)."""
    from factorcov_pipeline.orchestration import metadata

    _, settings, days, _, fast = reference
    monkeypatch.setattr(metadata, "_add_in_one_pass", lambda context, by_key: False)
    slow = _run(tmp_path / "public.duckdb", settings, days[0], days[-1])
    assert slow.success

    scalar = (dg.FloatMetadataValue, dg.IntMetadataValue, dg.TextMetadataValue)

    def comparable(result):
        return [
            (a, p, [(k, v if isinstance(v, scalar) else type(v).__name__) for k, v in items])
            for a, p, items in _metadata(result)
        ]

    assert comparable(fast) == comparable(slow)
    numbers = [v for _, _, items in _metadata(fast) for _, v in items if isinstance(v, scalar)]
    assert len(numbers) >= 4 * (len(days) - 4)  # each published session carries its own numbers


@pytest.mark.parametrize("launched", ["factorcov materialize", "the UI"])
def test_a_run_opens_the_duckdb_file_once(reference, tmp_path, monkeypatch, launched):
    """One connection for the whole run: `run_range` holds it for the command, and the storage
    resource (built once per run by the in-process executor) for a run launched from the UI or
    the schedule, which executes the daily job itself."""
    import duckdb

    from factorcov_pipeline.definitions import defs
    from factorcov_pipeline.orchestration.resources import FactorcovSettings
    from factorcov_pipeline.storage import duckdb as store_module

    _, settings, days, _, _ = reference
    opened = []
    real = duckdb.connect

    def counting(*args, **kwargs):
        # A step's background writer connects to the database the run holds open (DuckDB's
        # instance cache: no file open, ~20 us); only the other connections open the file.
        if not threading.current_thread().name.startswith("factorcov-writer"):
            opened.append(args[0] if args else kwargs.get("database"))
        return real(*args, **kwargs)

    db = tmp_path / "count.duckdb"
    assert _run(db, settings, days[0], days[-2]).success
    monkeypatch.setattr(store_module.duckdb, "connect", counting)
    if launched == "factorcov materialize":
        result = _run(db, settings, days[-1], days[-1])
    else:
        job = defs.resolve_job_def("factorcov_daily")
        result = job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            partition_key=str(days[-1]),
            resources={
                "storage": FactorcovStorage(database=str(db), lock_timeout_seconds=5.0),
                "model": FactorcovSettings(settings_file=settings),
            },
            raise_on_error=False,
        )
    assert result.success, failure_messages(result)
    assert len(result.get_step_success_events()) > 10
    # the run's one connection, plus the command's consistency check after it
    assert 0 < len(opened) <= 2, opened
