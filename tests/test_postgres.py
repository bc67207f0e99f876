"""The PostgreSQL store against a real, throwaway PostgreSQL server (tests/pg_server.py).

The default pipeline over more than one full write chunk (86 sessions x 100 assets: a chunk
of FACTORCOV_CHUNK_SESSIONS = 84 and a second one, and more than the 30 stored dates
`risk_backtest`'s per-asset specific bias summary needs) run into PostgreSQL equals the same
run into a DuckDB file in every table, bit for bit, with every check passing (the tutorial's
tie-outs included), and its summary is the same on both stores and equals an independent
pandas computation; the `exposures` view exists there too; a write is one transaction; names
from user data are stored as data; the settings identity is enforced.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline import environment
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import (
    FactorcovPostgres,
    FactorcovStorage,
    storage_resource,
)
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import (
    SettingsMismatchError,
    Store,
    TableWrite,
    exposures_view,
)
from factorcov_pipeline.storage.postgres import PostgresStore, redact, to_dollar_params

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_stores, dump
from pg_server import postgres_server
from state_retention import kept_states

VOL_SCHEMA = {"date": pl.Date, "factor": pl.String, "volatility": pl.Float64, "warm": pl.Boolean}
# One full chunk (environment.DEFAULT_CHUNK_SESSIONS) and two sessions of the next.
SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=150))[:86]
N_ASSETS = 100
HOSTILE = "O'Reilly\"; DROP TABLE universe; --"


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def small_settings(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pgset") / "settings.json"
    # specific risk's warm-up (its largest half-life) at 20 sessions, so that risk_backtest's
    # per-asset summary, which starts after it and needs 20 outcomes per asset, runs
    path.write_text(
        json.dumps(
            {
                "factor_model_settings": {"universe": {"n_assets": N_ASSETS}},
                "specific_risk_settings": {"halflife": 20, "halflife_vra": 20},
            }
        )
    )
    return str(path)


@pytest.fixture(scope="module")
def both_runs(pg, small_settings, tmp_path_factory):
    """The default pipeline over `SESSIONS` into a DuckDB file and into PostgreSQL."""
    assert len(SESSIONS) > environment.DEFAULT_CHUNK_SESSIONS == environment.chunk_sessions()
    db = tmp_path_factory.mktemp("duck") / "fc.duckdb"
    url = pg.create_database("eq")
    results = {}
    for name, resource in (
        ("duckdb", FactorcovStorage(database=str(db))),
        ("postgres", FactorcovPostgres(url=url)),
    ):
        res = run_range(SESSIONS[0], SESSIONS[-1], resource, small_settings, logger=quiet_logger())
        assert res.success, failure_messages(res)
        results[name] = res
    return Store(db), PostgresStore(url), results


def test_postgres_run_equals_duckdb_run_in_every_table(both_runs):
    duck, pgs, _ = both_runs
    counts = assert_same_stores(duck, pgs)
    # every table of the SQL contract is there, with rows
    for table in (
        "universe",
        "planted_factor_returns",
        "exposures",
        "exposures_wide",
        "factor_returns",
        "specific_returns",
        "regression_stats",
        "factor_volatility",
        "volatility_regime",
        "factor_correlation",
        "factor_covariance",
        "covariance_report",
        "forecast_bias",
        "model_settings",
        "_forecast_state",
    ):
        assert counts.get(table, 0) > 0, table
    for table in ("specific_risk", "risk_backtest", "specific_risk_bias", "portfolio_risk"):
        assert table in counts, table
    assert counts["risk_backtest"] > 0 and counts["specific_risk_bias"] > 0
    n = len(SESSIONS) - 1
    assert counts["factor_volatility"] == n * 21
    assert counts["covariance_report"] == n * 21
    assert counts["specific_risk"] == n * N_ASSETS  # from the first session with returns


def test_every_check_passes_against_postgres(both_runs):
    _, _, results = both_runs
    evals = results["postgres"].get_asset_check_evaluations()
    names = {e.asset_check_key.name for e in evals}
    assert {"volatility_tieout", "correlation_tieout", "factor_returns_zero_sum"} <= names
    assert evals and all(e.passed for e in evals), [
        e.asset_check_key.name for e in evals if not e.passed
    ]
    duck_names = {e.asset_check_key.name for e in results["duckdb"].get_asset_check_evaluations()}
    assert names == duck_names


def test_exposures_is_a_view_in_postgres_with_the_duckdb_rows(both_runs):
    duck, pgs, _ = both_runs
    kinds = pgs.read(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name IN ('exposures', 'exposures_wide')"
    )
    assert dict(kinds.iter_rows()) == {"exposures": "VIEW", "exposures_wide": "BASE TABLE"}
    sql = "SELECT date, asset_id, factor, exposure FROM exposures WHERE date = ?"
    a = duck.read(sql, [SESSIONS[3]]).sort(["asset_id", "factor"])
    b = pgs.read(sql, [SESSIONS[3]]).sort(["asset_id", "factor"])
    assert a.height > 300 and a.equals(b)


def test_the_store_is_selected_by_the_environment(monkeypatch, pg):
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    assert isinstance(storage_resource(), FactorcovStorage)
    url = pg.url("postgres")
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", url)
    resource = storage_resource()
    assert isinstance(resource, FactorcovPostgres)
    store = resource.store()
    assert isinstance(store, PostgresStore) and store.url == url


def test_a_write_is_one_transaction(pg):
    """A failure after the DELETE and a first table's COPY leaves every old row."""
    store = PostgresStore(pg.create_database("tx"))
    day = dt.date(2025, 4, 1)
    old = pl.DataFrame(
        {"date": [day, day], "factor": ["a", "b"], "volatility": [1.0, 2.0], "warm": [True] * 2}
    )
    store.replace([TableWrite("factor_volatility", old)], (day, day), settings_json='{"x": 1}')
    old = old.with_columns(model=pl.lit("default"))  # a write without `model` is the default's
    new = old.with_columns(pl.col("volatility") * 10)
    bad = pl.DataFrame({"date": [day], "factor": ["a"], "not_a_column": [1.0]})
    with pytest.raises(ValueError, match="other columns"):
        store.replace(
            [TableWrite("factor_volatility", new), TableWrite("factor_volatility", bad)],
            (day, day),
            settings_json='{"x": 1}',
        )
    assert store.read_dates("factor_volatility", day, day).equals(old)
    with pytest.raises(SettingsMismatchError, match=r"x: stored 1, now 2"):
        store.replace([TableWrite("factor_volatility", new)], (day, day), settings_json='{"x": 2}')
    assert store.read_dates("factor_volatility", day, day).equals(old)
    assert store.stored_settings() == '{"x": 1}'


def test_both_stores_keep_the_same_states(pg, tmp_path, monkeypatch):
    """States written day by day through `replace`: PostgreSQL and DuckDB keep the same ones
    (those of the recent window and the last of each span before, storage/contract.py), with
    their bytes."""
    from factorcov_pipeline.storage import contract

    monkeypatch.setattr(contract, "STATE_KEEP_DAYS", 10)
    monkeypatch.setattr(contract, "STATE_KEEP_RECENT_DAYS", 7)
    stores = [PostgresStore(pg.create_database("states")), Store(tmp_path / "states.duckdb")]
    days = [dt.date(2024, 12, 20) + dt.timedelta(days=i) for i in range(0, 40, 3)]
    frame = pl.DataFrame(schema=VOL_SCHEMA)
    kept = []
    for store in stores:
        for day in days:
            store.replace(
                [TableWrite("factor_volatility", frame)],
                (day, day),
                state={"factor_volatility": {day: f"state {day}".encode()}},
            )
        rows = store.read("SELECT date, state FROM _forecast_state ORDER BY date").rows()
        kept.append([(d, bytes(b)) for d, b in rows])
    assert [d for d, _ in kept[1]] == kept_states(days, 10, 7)
    assert len(kept[1]) < len(days) - 3
    assert kept[0] == kept[1] and all(b == f"state {d}".encode() for d, b in kept[0])


def test_hostile_names_are_data_in_postgres(pg):
    """A factor name with quotes, a semicolon and SQL is a column name, a view literal and a
    value; nothing is executed and it reads back unchanged."""
    store = PostgresStore(pg.create_database("names"))
    day = dt.date(2025, 4, 1)
    wide = pl.DataFrame(
        {"date": [day], "asset_id": [HOSTILE], "category": ["Energy"], HOSTILE: [0.5]}
    )
    uni = pl.DataFrame(
        {
            "date": [day],
            "asset_id": [HOSTILE],
            "sector": ["Energy"],
            "market_cap": [1.0],
            "asset_return": [None],
        },
        schema_overrides={"asset_return": pl.Float64},
    )
    store.replace(
        [TableWrite("universe", uni), TableWrite("exposures_wide", wide)],
        (day, day),
        views=[exposures_view([HOSTILE], "Market")],
    )
    assert store.read_dates("exposures_wide", day, day).equals(wide)
    long = store.read("SELECT factor, exposure FROM exposures WHERE asset_id = ?", [HOSTILE])
    assert sorted(long.iter_rows()) == [("Energy", 1.0), ("Market", 1.0), (HOSTILE, 0.5)]
    assert "universe" in store.table_names()
    # a `?` inside a literal is not a placeholder
    assert store.read("SELECT '?' AS q, ? AS p", ["x"]).row(0) == ("?", "x")
    too_long = "F" * 64
    with pytest.raises(ValueError, match="63-byte identifier limit"):
        store.replace([TableWrite("exposures_wide", wide.rename({HOSTILE: too_long}))], (day, day))


def test_hostile_asset_ids_through_the_whole_pipeline_into_postgres(pg, tmp_path):
    from test_userdata_pipeline import END, START, settings_file, user_frame

    names = ["O'Reilly; DROP TABLE universe", 'x"); DELETE FROM exposures; --', "SELECT"]
    frame = user_frame(n_assets=120)
    ids = frame["asset_id"].unique().sort().to_list()[: len(names)]
    frame = frame.with_columns(pl.col("asset_id").replace(dict(zip(ids, names, strict=True))))
    data = tmp_path / "universe.parquet"
    frame.write_parquet(data)
    settings = settings_file(tmp_path, str(data))
    url = pg.create_database("ids")
    result = run_range(START, END, FactorcovPostgres(url=url), settings, logger=quiet_logger())
    assert result.success, failure_messages(result)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    store = PostgresStore(url)
    for table in ("universe", "exposures", "specific_returns"):
        stored = set(store.read(f"SELECT DISTINCT asset_id FROM {table}")["asset_id"].to_list())
        assert set(names) <= stored, table
    duck = tmp_path / "fc.duckdb"
    assert run_range(
        START, END, FactorcovStorage(database=str(duck)), settings, logger=quiet_logger()
    ).success
    assert_same_stores(Store(duck), store)


def test_placeholders_and_redaction():
    assert to_dollar_params("a = ? AND b = '?' AND \"c?\" = ?") == (
        "a = $1 AND b = '?' AND \"c?\" = $2"
    )
    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        PostgresStore("mysql://x")


def test_rerun_into_postgres_leaves_the_same_rows(both_runs, small_settings):
    """Re-materialising a range replaces its rows (no duplicates, same bits)."""
    _, pgs, _ = both_runs
    before = dump(pgs)
    res = run_range(
        SESSIONS[5],
        SESSIONS[9],
        FactorcovPostgres(url=pgs.url),
        small_settings,
        logger=quiet_logger(),
    )
    assert res.success, failure_messages(res)
    after = dump(pgs)
    for name, frame in before.items():
        if name in ("_forecast_state",):
            # every stored state is unchanged; the re-run adds at most its range end's states
            # (stored at block ends and a range's last session, assets/resume.py, and kept if
            # the last of their span, storage/contract.py)
            old = {(r["asset"], r["date"]): r["state"] for r in frame.iter_rows(named=True)}
            new = {(r["asset"], r["date"]): r["state"] for r in after[name].iter_rows(named=True)}
            assert all(new.get(key) == value for key, value in old.items())
            assert {day for _, day in set(new) - set(old)} <= {SESSIONS[9]}
            continue
        assert frame.height == after[name].height, name
    vols = after["factor_volatility"]["volatility"].to_numpy()
    assert np.array_equal(vols, before["factor_volatility"]["volatility"].to_numpy())


def test_identity_and_remove_on_postgres(pg):
    """`check_identity` (read-only, before a run) and `remove` (after a failed run) behave as on
    the DuckDB file."""
    store = PostgresStore(pg.create_database("ident"))
    store.check_identity('{"x": 1}')  # an empty database passes
    day = dt.date(2025, 4, 1)
    vol = pl.DataFrame({"date": [day], "factor": ["a"], "volatility": [1.0], "warm": [False]})
    store.replace(
        [TableWrite("factor_volatility", vol)],
        (day, day),
        state={"factor_volatility": {day: b"\x00state"}},
        settings_json='{"x": 1}',
    )
    store.check_identity('{"x": 1}')
    with pytest.raises(SettingsMismatchError, match="x: stored 1, now 2"):
        store.check_identity('{"x": 2}')
    assert store.remove(["factor_volatility", "no_such_table"], (day, day), []) == [
        "factor_volatility"
    ]
    assert store.read_dates("factor_volatility", day, day).height == 0
    assert store.read_state("factor_volatility", day) == b"\x00state"
    store.remove(["factor_volatility"], (day, day), ["factor_volatility"])
    assert store.read_state("factor_volatility", day) is None
    store.replace([TableWrite("factor_volatility", vol)], (day, day))
    store.read("SELECT 1 AS one")  # reads work after DDL
    with store.connect() as con:
        con.cursor().execute("DELETE FROM model_settings")
        con.commit()
    with pytest.raises(SettingsMismatchError, match="but no model_settings row"):
        store.check_identity('{"x": 1}')


def _specific_bias_by_decile_pandas(duck: Store, last: dt.date) -> pd.DataFrame:
    """`risk_backtest.specific_bias_by_decile` written again in pandas from the stored tables:
    z = u(t) / (s(t') / sqrt(252)), t' the forecast date before t, over the window after the
    specific risk's warm-up (at most 252 dates); per asset std(z) (ddof 1) with at least 20
    outcomes and
    its median cap over the window; deciles by that cap (ties in asset id order)."""
    last = pd.Timestamp(last)
    risk = duck.read("SELECT date, asset_id, specific_risk, warm FROM specific_risk").to_pandas()
    dates = sorted(d for d in risk["date"].unique() if d <= last)
    first_warm = risk.loc[risk["warm"], "date"].min()
    start = max(dates[max(0, len(dates) - 252)], min(d for d in dates if d > first_warm))
    prev = dict(zip(dates[1:], dates[:-1], strict=True))
    ret = duck.read("SELECT date, asset_id, specific_return FROM specific_returns").to_pandas()
    ret = ret[(ret["date"] >= start) & (ret["date"] <= last) & ret["date"].isin(prev.keys())]
    ret["prev"] = ret["date"].map(prev)
    z = ret.merge(risk, left_on=["prev", "asset_id"], right_on=["date", "asset_id"])
    z = z[z["specific_risk"] > 0]
    z["z"] = z["specific_return"] / (z["specific_risk"] / np.sqrt(252.0))
    per = z.groupby("asset_id")["z"].agg(["std", "count"])
    per = per[per["count"] >= 20]
    uni = duck.read("SELECT date, asset_id, market_cap FROM universe").to_pandas()
    uni = uni[(uni["date"] >= start) & (uni["date"] <= last)]
    per = per.join(uni.groupby("asset_id")["market_cap"].median()).sort_index()
    rank = per["market_cap"].rank(method="first").to_numpy() - 1
    per["size_decile"] = (rank * 10 // len(per) + 1).astype(int)
    out = per.groupby("size_decile")["std"].agg(["size", "median"]).reset_index()
    total = pd.DataFrame({"size_decile": [0], "size": [len(per)], "median": [per["std"].median()]})
    return pd.concat([total, out], ignore_index=True)


def test_specific_bias_summary_is_the_same_on_both_stores_and_ties_out(both_runs):
    """`risk_backtest`'s per-asset specific bias summary (Dagster metadata; its SQL aggregates
    in the store: stddev_samp, the median cap as the mean of the lower and upper
    percentile_disc(0.5), standard SQL where DuckDB also has median()) runs on PostgreSQL,
    gives DuckDB's numbers, and equals the pandas computation. Its branch needs 30 stored dates
    and 20 outcomes per asset after specific risk's warm-up: the run has 85 dates, a warm-up
    of 20."""
    import importlib

    rb = importlib.import_module("factorcov_pipeline.orchestration.assets.risk_backtest")
    duck, pgs, _ = both_runs
    last = SESSIONS[-1]
    assert len(duck.stored_dates("specific_risk", end=last)) >= 30
    a, b = rb.specific_bias_by_decile(duck, last), rb.specific_bias_by_decile(pgs, last)
    assert a.height == 11 and a.columns == b.columns
    assert a["size_decile"].to_list() == b["size_decile"].to_list() == list(range(11))
    assert a["n_assets"].to_list() == b["n_assets"].to_list()
    for col in ("median_asset_bias", "p10", "p90"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-13, atol=0)
    ref = _specific_bias_by_decile_pandas(duck, last)
    assert a["n_assets"].to_list() == ref["size"].to_list()
    assert a["n_assets"][0] > 50
    np.testing.assert_allclose(a["median_asset_bias"], ref["median"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_the_portable_median_is_duckdbs_median_on_both_stores(pg, tmp_path, n):
    """The median the assets send in standard SQL, the mean of the lower and upper
    percentile_disc(0.5), gives the same bits on DuckDB and PostgreSQL, equal to DuckDB's
    median(x) and to numpy's median (odd n: the middle value; even n: the two middle ones'
    mean). percentile_cont(0.5) does not: PostgreSQL interpolates lo + (hi - lo) / 2, DuckDB
    lo / 2 + hi / 2, different in the last bit for a third of even groups."""
    rng = np.random.default_rng(n)
    x = rng.lognormal(20.0, 2.0, size=(40, n))
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(40)]
    frame = pl.DataFrame(
        {"date": [d for d in days for _ in range(n)],
         "factor": [f"f{j}" for _ in days for j in range(n)],
         "volatility": x.ravel(), "warm": [True] * (40 * n)}
    )  # fmt: skip
    sql = (
        "SELECT date, (percentile_disc(0.5) WITHIN GROUP (ORDER BY volatility) "
        "+ percentile_disc(0.5) WITHIN GROUP (ORDER BY volatility DESC)) / 2 AS m "
        "FROM factor_volatility GROUP BY date ORDER BY date"
    )
    duck = Store(tmp_path / "m.duckdb")
    got = []
    for store in (duck, PostgresStore(pg.create_database("median"))):
        store.replace([TableWrite("factor_volatility", frame)], (days[0], days[-1]))
        got.append(store.read(sql)["m"].to_numpy())
    assert np.array_equal(got[0].view(np.uint64), got[1].view(np.uint64))
    median = duck.read(
        "SELECT median(volatility) AS m FROM factor_volatility GROUP BY date ORDER BY date"
    )["m"].to_numpy()
    assert np.array_equal(median.view(np.uint64), got[0].view(np.uint64))
    s = np.sort(x, axis=1)
    assert np.array_equal(got[0], (s[:, (n - 1) // 2] + s[:, n // 2]) / 2)
    np.testing.assert_allclose(got[0], np.median(x, axis=1), rtol=1e-15, atol=0)


PG_EDITS = {
    "not JSON": ("UPDATE model_settings SET settings_json = 'not json {'", "is not JSON"),
    "NULL": ("UPDATE model_settings SET settings_json = NULL", "settings_json is NULL"),
    "a view": (
        "ALTER TABLE model_settings RENAME TO kept; "
        "CREATE VIEW model_settings AS SELECT * FROM kept",
        "model_settings is a view, not the table",
    ),
    "two rows": ("INSERT INTO model_settings SELECT * FROM model_settings", "more than one row"),
}


@pytest.mark.parametrize("edit", list(PG_EDITS))
def test_a_hand_edited_settings_identity_is_one_line_on_postgres(pg, monkeypatch, capsys, edit):
    """`model_settings` edited by hand (issue 21.7): `factorcov materialize` says so in one line
    (exit 2) naming the database, and nothing is written; a write through the store is
    refused in its transaction too. (DuckDB: tests/test_environment.py.)"""
    from factorcov_pipeline import cli
    from factorcov_pipeline.core.settings import load_settings

    sql, needle = PG_EDITS[edit]
    url = pg.create_database("edit")
    store = PostgresStore(url)
    day, fingerprint = dt.date(2025, 4, 1), load_settings(None).fingerprint()
    vol = pl.DataFrame({"date": [day], "factor": ["Market"], "volatility": [0.2], "warm": [True]})
    store.replace([TableWrite("factor_volatility", vol)], (day, day), settings_json=fingerprint)
    with store.connect() as con, con.cursor() as cur:
        for statement in sql.split("; "):
            cur.execute(statement)
        con.commit()
    before = dump(store)
    for name in ("FACTORCOV_SETTINGS", "DAGSTER_HOME", "FACTORCOV_PARTITIONS_START"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FACTORCOV_DATABASE_URL", url)
    code = cli.main(["materialize", "--end", "2025-04-02"])
    out, err = capsys.readouterr()
    lines = (out + err).strip().splitlines()
    assert code == 2 and len(lines) == 1, out + err
    assert lines[0].startswith(f"factorcov: error: {store.location}: model_settings")
    assert needle in lines[0] and "point FACTORCOV_DATABASE_URL at a new database" in lines[0]
    with pytest.raises(SettingsMismatchError, match=needle):
        store.replace([TableWrite("factor_volatility", vol)], (day, day), settings_json=fingerprint)
    after = dump(store)
    assert sorted(after) == sorted(before)
    assert all(after[t].equals(before[t]) for t in before)


def test_a_write_analyses_the_tables_it_grew(pg):
    """PostgresStore.replace ANALYZEs, after its commit, each table the write at least doubled
    (or that was never analysed): the next step's queries are planned on statistics of the rows
    just written (risk_backtest's join of specific returns and risk ran 100 s instead of 5 s on
    the tutorial's year with the planner's guesses for an unanalysed table)."""
    store = PostgresStore(pg.create_database("stats"))

    def reltuples() -> float:  # the row count of the table's last ANALYZE (-1: none)
        sql = "SELECT reltuples AS t FROM pg_class WHERE relname = 'factor_volatility'"
        return float(store.read(sql)["t"][0])

    def write(days: list[dt.date]) -> None:
        frame = pl.DataFrame(
            {
                "date": [d for d in days for _ in range(50)],
                "factor": [f"f{i}" for _ in days for i in range(50)],
                "volatility": np.linspace(0.1, 0.3, 50 * len(days)),
                "warm": [True] * (50 * len(days)),
            }
        )
        store.replace([TableWrite("factor_volatility", frame)], (days[0], days[-1]))

    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(40)]
    write(days[:10])  # a new table
    assert reltuples() == 500
    with store.connect() as con, con.cursor() as cur:  # only our ANALYZE from now on
        cur.execute("ALTER TABLE factor_volatility SET (autovacuum_enabled = false)")
        con.commit()
    write(days[10:20])  # doubled: 500 rows more on 500
    assert reltuples() == 1000
    write(days[20:25])  # a quarter more: left to autovacuum's ANALYZE
    write(days[25:40])  # 750 more, fewer than the 1000 of the last ANALYZE
    assert reltuples() == 1000
    write(days)  # 2000 rows rewritten: at least as many as at the last ANALYZE
    assert reltuples() == 2000
