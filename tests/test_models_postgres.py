"""Several covariance models on PostgreSQL (issue 22.1): the same contract as the DuckDB file.

One throwaway server for the module (tests/pg_server.py). A user factor file (4 factors, 60
sessions) with `default`, an eigen-adjusted and a fast model:

* three models in one run store every table as the DuckDB file of the same run, bit for bit;
* a model added later equals one built with it from the start (the same runs), bit for bit;
* a removed model keeps its rows; a changed model is refused naming the model and the keys,
  nothing written;
* a database written before the `model` column gains it with 'default' on its old rows, in
  the column order of a new one;
* a write with `model` keys replaces that model's rows only (both stores, at the store level);
* `RiskModel(model=...)` and `compare()` read PostgreSQL as they read the file.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import polars as pl
import pytest

from factorcov_pipeline import RiskModel
from factorcov_pipeline.api.errors import UnknownModelError
from factorcov_pipeline.core.settings import load_settings
from factorcov_pipeline.examples.factor_etfs import factor_etf_returns
from factorcov_pipeline.orchestration.resources import FactorcovPostgres, FactorcovStorage
from factorcov_pipeline.orchestration.runner import (
    assets_for,
    failure_messages,
    quiet_logger,
    run_range,
)
from factorcov_pipeline.storage import BaseStore, SettingsMismatchError, Store, TableWrite
from factorcov_pipeline.storage.contract import MODEL_TABLES

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_bits, dump
from pg_server import postgres_server
from tablehash import store_hashes

START = dt.date(2025, 3, 31)
NAMES = ("MTUM", "QUAL", "SIZE", "USMV")
BASE_COV = {"halflife_vol": 10.0, "halflife_cor": 20.0}
MODELS = {
    "eigen": {
        "eigen_adjustment_scale": 1.2,
        "eigen_adjustment_simulations": 16,
        "eigen_adjustment_seed": 7,
    },
    "fast": {"halflife_vol": 5.0, "halflife_cor": 10.0},
}


def _settings(tmp: Path, body: dict) -> str:
    path = tmp / f"settings-{len(list(tmp.glob('settings-*')))}.json"
    path.write_text(json.dumps(body))
    return str(path)


def _run(resource: object, settings: str, start: dt.date, end: dt.date):
    return run_range(
        start,
        end,
        resource,  # type: ignore[arg-type]
        settings,
        logger=quiet_logger(),
        selection=assets_for(load_settings(settings)),
    )


def _ok(result) -> None:
    assert result.success, failure_messages(result)


def _same_stores(a: BaseStore, b: BaseStore, skip: tuple[str, ...] = ("_forecast_state",)) -> None:
    da, db_ = dump(a), dump(b)
    assert set(da) == set(db_)
    for name in da:
        if name not in skip:
            assert_same_bits(da[name], db_[name], name)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory):
    """(tmp, universe block, days, server) with the factor file written."""
    tmp = tmp_path_factory.mktemp("models_pg")
    frame = factor_etf_returns(START, 60, names=NAMES, seed=5)
    path = tmp / "factors.parquet"
    frame.write_parquet(path)
    days = sorted(set(frame["date"].to_list()))
    with postgres_server() as server:
        yield tmp, {"universe": {"factor_returns": str(path)}}, days, server


def _body(universe: dict, models: dict | None) -> dict:
    body = {"factor_model_settings": universe, "factor_cov_settings": BASE_COV}
    return body if models is None else {**body, "models": models}


def test_three_models_store_the_bits_of_the_duckdb_file(pg) -> None:
    tmp, universe, days, server = pg
    settings = _settings(tmp, _body(universe, MODELS))
    url = server.create_database("three")
    _ok(_run(FactorcovPostgres(url=url), settings, days[0], days[-1]))
    db = tmp / "three.duckdb"
    _ok(_run(FactorcovStorage(database=str(db)), settings, days[0], days[-1]))
    from factorcov_pipeline.storage.postgres import PostgresStore

    pg_store = PostgresStore(url)
    _same_stores(pg_store, Store(db), skip=())
    assert pg_store.stored_models() == Store(db).stored_models()
    with pg_store.connect() as con, con.cursor() as cur:  # a role that may only read
        cur.execute("CREATE ROLE fc_models_reader LOGIN")
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO fc_models_reader")
        con.commit()
    reader = url.replace("postgresql://postgres@", "postgresql://fc_models_reader@")
    with RiskModel.open(reader, model="eigen") as m:
        assert m.models() == ["default", "eigen", "fast"]
        cov = m.covariance(days[-1])
        board = m.compare()
        with pytest.raises(UnknownModelError, match="stored models: default, eigen, fast"):
            RiskModel.open(reader, model="slow")
    with RiskModel.open(db, model="eigen") as m:
        assert cov.equals(m.covariance(days[-1]))
        assert board.equals(m.compare())


def test_a_model_added_later_removed_and_changed(pg) -> None:
    tmp, universe, days, server = pg
    from factorcov_pipeline.storage.postgres import PostgresStore

    added, from_start = server.create_database("added"), server.create_database("start")
    first, last = days[:-2], days[-2]
    _ok(
        _run(
            FactorcovPostgres(url=added), _settings(tmp, _body(universe, None)), first[0], first[-1]
        )
    )
    both = _settings(tmp, _body(universe, MODELS))
    _ok(_run(FactorcovPostgres(url=from_start), both, first[0], first[-1]))
    for url in (added, from_start):
        _ok(_run(FactorcovPostgres(url=url), both, last, last))
    _same_stores(PostgresStore(added), PostgresStore(from_start))
    # removed: fast keeps its rows, not updated
    store = PostgresStore(added)
    before = dump(store)
    day = days[-1]
    _ok(
        _run(
            FactorcovPostgres(url=added),
            _settings(tmp, _body(universe, {"eigen": MODELS["eigen"]})),
            day,
            day,
        )
    )
    after = dump(store)
    for table in MODEL_TABLES:
        if table in after:
            old = before[table].filter(pl.col("model") == "fast")
            assert_same_bits(after[table].filter(pl.col("model") == "fast"), old, table)
    assert sorted(after["model_leaderboard"]["model"].to_list()) == ["default", "eigen"]
    # changed: refused before anything is written, naming the model and the key
    changed = _body(universe, {"eigen": {**MODELS["eigen"], "eigen_adjustment_seed": 8}})
    settings = load_settings(_settings(tmp, changed))
    hashes = store_hashes(store)
    with pytest.raises(
        SettingsMismatchError, match=r"model 'eigen': eigen_adjustment_seed: stored 7, now 8"
    ):
        store.check_identity(settings.fingerprint(), settings.models_json())
    result = _run(FactorcovPostgres(url=added), _settings(tmp, changed), day, day)
    assert not result.success
    assert "eigen_adjustment_seed: stored 7, now 8" in " ".join(failure_messages(result))
    assert store_hashes(store) == hashes


def test_an_old_database_gains_the_model_column(pg) -> None:
    tmp, universe, days, server = pg
    from factorcov_pipeline.storage.postgres import PostgresStore

    old, new = server.create_database("old"), server.create_database("new")
    plain = _settings(tmp, _body(universe, None))
    _ok(_run(FactorcovPostgres(url=old), plain, days[0], days[-2]))
    store = PostgresStore(old)
    with store.connect() as con, con.cursor() as cur:
        for table in MODEL_TABLES:
            cur.execute(f'ALTER TABLE IF EXISTS "{table}" DROP COLUMN IF EXISTS model')
        cur.execute("DROP TABLE covariance_models")
        con.commit()
    with store.connect() as con, con.cursor() as cur:
        cur.execute("CREATE ROLE fc_old_reader LOGIN")
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO fc_old_reader")
        con.commit()
    with RiskModel.open(old.replace("postgresql://postgres@", "postgresql://fc_old_reader@")) as m:
        assert m.models() == ["default"]
    settings = _settings(tmp, _body(universe, {"fast": MODELS["fast"]}))
    _ok(_run(FactorcovPostgres(url=old), settings, days[-1], days[-1]))
    _ok(_run(FactorcovPostgres(url=new), settings, days[0], days[-2]))
    _ok(_run(FactorcovPostgres(url=new), settings, days[-1], days[-1]))
    a, b = dump(store), dump(PostgresStore(new))
    for table in MODEL_TABLES:
        if table in b:
            assert a[table].columns == b[table].columns, table
            assert_same_bits(a[table], b[table], table)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_write_with_model_keys_replaces_that_models_rows_only(pg, backend) -> None:
    tmp, _, _, server = pg
    from factorcov_pipeline.storage.postgres import PostgresStore

    store: BaseStore = (
        Store(tmp / f"keys-{backend}.duckdb")
        if backend == "duckdb"
        else PostgresStore(server.create_database("keys"))
    )
    day = dt.date(2025, 4, 1)

    def vol(model: str, value: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "date": [day],
                "factor": ["F"],
                "volatility": [value],
                "warm": [True],
                "model": [model],
            }
        )

    keys = {"model": ["a"]}
    store.replace([TableWrite("factor_volatility", vol("a", 1.0), keys)], (day, day))
    store.replace([TableWrite("factor_volatility", vol("b", 2.0), {"model": ["b"]})], (day, day))
    store.replace([TableWrite("factor_volatility", vol("a", 3.0), keys)], (day, day))
    rows = store.read("SELECT model, volatility FROM factor_volatility ORDER BY model")
    assert rows.rows() == [("a", 3.0), ("b", 2.0)]
    # a frame without `model` is the default model's: it leaves a and b alone
    plain = vol("x", 4.0).drop("model")
    store.replace([TableWrite("factor_volatility", plain)], (day, day))
    rows = store.read("SELECT model, volatility FROM factor_volatility ORDER BY model")
    assert rows.rows() == [("a", 3.0), ("b", 2.0), ("default", 4.0)]
    assert store.read_dates("factor_volatility", day, day, model="b")["volatility"].to_list() == [
        2.0
    ]
    assert store.stored_dates("factor_volatility", model="c") == []
