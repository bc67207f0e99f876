"""Several covariance models in one file (issue 22.1) and the leaderboard (22.3), on DuckDB.

Two small histories reach every path:

* a user factor file (4 factors, 80 sessions; half-lives 10/20, so the forecasts are warm
  from the 21st session and the leaderboard scores ~59 dates) with three models: `default`,
  an eigen-adjusted one (adjusted from 2K = 8 observations) and a fast one;
* the synthetic model (21 factors, 90 assets, 45 sessions, two standing portfolios), for the
  asset-level tables (`portfolio_risk`, `risk_backtest`) of a model added later.

What is asserted:

* each model's rows of every per-model table are, bit for bit, those of a file built with that
  model's settings alone (so `default` is exactly the file without `models`);
* a model added later is computed over the stored history by the next run (one new session),
  every table equal bit for bit to a file built with it from the start by the same runs;
* a removed model keeps its rows, no longer updated; a model whose settings changed is refused
  before anything is written, naming the model and the keys (command and in-process run);
* a validity check failing on one model fails the session naming that model;
* the `model_leaderboard` table equals `core.leaderboard.leaderboard` called on inputs read
  here from the public tables with duckdb and pandas;
* a file written before the `model` column existed gains it with `'default'` on its old rows,
  its columns in the order of a new file's;
* the leaderboard's UI metadata (table, two plots), `factorcov compare`, `--model` of `show`,
  `risk` and `export`, `RiskModel(model=...)`, and an unknown model refused listing the stored
  ones.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline import RiskModel
from factorcov_pipeline.api.errors import UnknownModelError
from factorcov_pipeline.cli import main
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.backtest import random_portfolio_weights
from factorcov_pipeline.core.leaderboard import LEADERBOARD_SCHEMA, leaderboard
from factorcov_pipeline.core.settings import load_settings
from factorcov_pipeline.examples.factor_etfs import factor_etf_returns
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import (
    assets_for,
    failure_messages,
    quiet_logger,
    run_range,
)
from factorcov_pipeline.storage import Store
from factorcov_pipeline.storage.contract import MODEL_TABLES

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_bits
from tablehash import assert_tables_unchanged, table_hashes

START = dt.date(2025, 3, 31)
NAMES = ("MTUM", "QUAL", "SIZE", "USMV")
N_SESSIONS = 80
BASE_COV = {"halflife_vol": 10.0, "halflife_cor": 20.0}
MODELS = {
    "eigen": {
        "eigen_adjustment_scale": 1.2,
        "eigen_adjustment_simulations": 16,
        "eigen_adjustment_seed": 7,
    },
    "fast": {"halflife_vol": 5.0, "halflife_cor": 10.0},
}
# the module (the package `orchestration.assets` exports the asset under the same name)
covariance_asset = importlib.import_module(
    "factorcov_pipeline.orchestration.assets.factor_covariance"
)
INTERNAL = ("_forecast_state",)


def write_settings(tmp: Path, body: dict) -> str:
    path = tmp / f"settings-{len(list(tmp.glob('settings-*')))}.json"
    path.write_text(json.dumps(body))
    return str(path)


def run(db: Path, settings: str, start: dt.date, end: dt.date):
    result = run_range(
        start,
        end,
        FactorcovStorage(database=str(db), lock_timeout_seconds=5.0),
        settings,
        logger=quiet_logger(),
        selection=assets_for(load_settings(settings)),
    )
    return result


def ok(result) -> None:
    assert result.success, failure_messages(result)


def tables(db: Path, skip: tuple[str, ...] = INTERNAL) -> dict[str, pl.DataFrame]:
    """Every table of `db` (rows sorted by every column), without wall-clock columns."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        ]
        for name in names:
            if name in skip:
                continue
            frame = pl.from_arrow(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            frame = frame.drop("created_at", strict=False)
            out[name] = frame.sort(frame.columns) if frame.height else frame
    return out


def of_model(frame: pl.DataFrame, model: str) -> pl.DataFrame:
    part = frame.filter(pl.col("model") == model).drop("model")
    return part.sort(part.columns) if part.height else part


# ---- the user factor file: three models ------------------------------------------------------


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory):
    """(tmp, universe settings, days, db of the three models in one run)."""
    tmp = tmp_path_factory.mktemp("models")
    frame = factor_etf_returns(START, N_SESSIONS, names=NAMES, seed=11)
    path = tmp / "factors.parquet"
    frame.write_parquet(path)
    days = sorted(set(frame["date"].to_list()))
    universe = {"universe": {"factor_returns": str(path)}}
    settings = write_settings(
        tmp, {"factor_model_settings": universe, "factor_cov_settings": BASE_COV, "models": MODELS}
    )
    db = tmp / "three.duckdb"
    ok(run(db, settings, days[0], days[-1]))
    return tmp, universe, days, db


def test_each_model_equals_a_file_of_its_own_settings(user) -> None:
    """Every per-model table holds, for each model, the rows of a file built with that model's
    settings alone (no `models`), bit for bit; the shared tables equal theirs."""
    tmp, universe, days, db = user
    three = tables(db)
    merged = {"default": BASE_COV} | {m: {**BASE_COV, **o} for m, o in MODELS.items()}
    for name, cov in merged.items():
        alone = tmp / f"alone-{name}.duckdb"
        ok(run(alone, write_settings(tmp, {"factor_model_settings": universe,
                                           "factor_cov_settings": cov}), days[0], days[-1]))  # fmt: skip
        single = tables(alone)
        for table in MODEL_TABLES:
            if table not in single:
                continue
            assert set(single[table]["model"].unique()) <= {"default"}, table
            mine = of_model(three[table], name)
            assert mine.height == single[table].height > 0 or table.startswith("portfolio"), table
            assert_same_bits(mine, of_model(single[table], "default"), f"{table}/{name}")
        if name == "default":  # the shared tables are the same file's
            for table in ("factor_returns", "factor_return_gaps"):
                if table in single:
                    assert_same_bits(three[table], single[table], table)
    # one covariance_models row per model, with its whole settings
    stored = {
        r["model"]: json.loads(r["settings_json"]) for r in three["covariance_models"].to_dicts()
    }
    assert set(stored) == {"default", "eigen", "fast"}
    assert (
        stored["fast"]["halflife_vol"] == 5.0 and stored["eigen"]["eigen_adjustment_scale"] == 1.2
    )
    # recursion states per model
    with duckdb.connect(str(db), read_only=True) as con:
        keys = {r[0] for r in con.execute("SELECT DISTINCT asset FROM _forecast_state").fetchall()}
    assert {"factor_volatility@eigen", "factor_correlation@fast", "factor_volatility"} <= keys


def test_the_model_setting_is_not_the_files_identity(user) -> None:
    """`models` is not part of the settings fingerprint; `default` is the factor_cov_settings."""
    tmp, universe, _, db = user
    body = {"factor_model_settings": universe, "factor_cov_settings": BASE_COV}
    plain = load_settings(write_settings(tmp, body))
    with_models = load_settings(write_settings(tmp, {**body, "models": MODELS}))
    assert plain.fingerprint() == with_models.fingerprint()
    assert Store(db).stored_settings() == plain.fingerprint()
    assert list(with_models.covariance_models()) == ["default", "eigen", "fast"]


def _independent_inputs(db: Path, names: tuple[str, ...], models: list[str]):
    """The leaderboard's inputs from the public tables, with duckdb + pandas: forecast dates
    (the union over the models), factor returns pivoted on them, and per model the previous
    forecast date's covariance / 252 and the stored warm flag of that forecast."""
    with duckdb.connect(str(db), read_only=True) as con:
        cov = con.execute(
            "SELECT model, date, factor_1, factor_2, covariance, warm FROM factor_covariance"
        ).df()
        ret = con.execute("SELECT date, factor, factor_return FROM factor_returns").df()
    days = sorted(cov["date"].unique())
    r = ret.pivot(index="date", columns="factor", values="factor_return").reindex(days)[list(names)]
    out = {}
    for m in models:
        part = cov[cov["model"] == m]
        cube = np.full((len(days), len(names), len(names)), np.nan)
        pos = {d: i for i, d in enumerate(days)}
        fi = {f: i for i, f in enumerate(names)}
        for row in part.itertuples():  # written differently from core.panel: row by row
            cube[pos[row.date], fi[row.factor_1], fi[row.factor_2]] = row.covariance
        warm = part.groupby("date")["warm"].all().reindex(days, fill_value=False)
        prior = np.roll(cube, 1, axis=0)
        prior[0] = np.nan
        warm_prior = warm.shift(1, fill_value=False).to_numpy(dtype=bool)
        out[m] = (prior / 252.0, warm_prior)
    return [pd.Timestamp(d).date() for d in days], r.to_numpy(dtype=float), out


def _assert_leaderboard(db: Path, names: tuple[str, ...], models: list[str]) -> pl.DataFrame:
    days, returns, forecasts = _independent_inputs(db, names, models)
    expected = leaderboard(
        days, names, returns, forecasts, random_portfolio_weights(list(names), 20)
    ).table
    with duckdb.connect(str(db), read_only=True) as con:
        stored = pl.from_arrow(
            con.sql("SELECT * FROM model_leaderboard ORDER BY rank").to_arrow_table()
        )
    assert isinstance(stored, pl.DataFrame)
    assert stored.columns == [*LEADERBOARD_SCHEMA, "as_of"]
    assert stored["as_of"].unique().to_list() == [days[-1]]
    assert_same_bits(stored.drop("as_of"), expected, "model_leaderboard")
    return stored


def test_the_leaderboard_table_ties_out(user) -> None:
    _, _, days, db = user
    stored = _assert_leaderboard(db, NAMES, ["default", "eigen", "fast"])
    assert sorted(stored["model"].to_list()) == ["default", "eigen", "fast"]
    assert stored["rank"].to_list() == [1, 2, 3]
    # warm from the 21st session with returns (half-life 20): T - 21 scored dates
    assert stored["n_obs"].to_list() == [N_SESSIONS - 21] * 3
    assert stored["first_date"].unique().to_list() == [days[21]]
    for col in ("gaussian_nll", "min_variance_volatility", "mean_abs_bias_minus_1", "qlike"):
        assert stored[col].is_not_null().all(), col


def test_a_check_failing_on_one_model_names_it(user, monkeypatch) -> None:
    """A non-finite covariance of the eigen model on one date: the PSD check fails on that
    session only, naming the model; `default` alone would have passed."""
    tmp, universe, days, _ = user
    bad_day = days[30]
    original = covariance_asset.eigen_adjusted

    def broken(store, eigen, fc_dates, cov):
        out = original(store, eigen, fc_dates, cov)
        if bad_day in fc_dates:
            out = out.copy()
            out[fc_dates.index(bad_day), 0, 1] = np.nan
        return out

    monkeypatch.setattr(covariance_asset, "eigen_adjusted", broken)
    settings = write_settings(
        tmp, {"factor_model_settings": universe, "factor_cov_settings": BASE_COV, "models": MODELS}
    )
    result = run(tmp / "broken.duckdb", settings, days[0], days[-1])
    assert not result.success
    evals = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == "factor_covariance_symmetric_psd"
    ]
    failed = [e for e in evals if not e.passed]
    assert [e.partition for e in failed] == [str(bad_day)]
    assert failed[0].description.startswith("model eigen: NaN or infinite entries")
    assert failed[0].metadata["failed_models"].value == 1


# ---- the synthetic model: a model added later, removed, changed --------------------------------


SYN_START = dt.date(2025, 3, 31)
SYN_SESSIONS = calendar.sessions(SYN_START, SYN_START + dt.timedelta(days=80))[:47]


def _synthetic(tmp: Path, models: dict | None, cov: dict | None = None) -> str:
    ids = [f"A{i + 1:06d}" for i in range(90)]
    holdings = tmp / "standing.csv"
    if not holdings.exists():
        rows = [("equal", a, 1 / 45) for a in ids[:45]] + [("long", a, 1 / 20) for a in ids[20:40]]
        pd.DataFrame(rows, columns=["portfolio", "asset_id", "weight"]).to_csv(
            holdings, index=False
        )
    body: dict = {
        "factor_model_settings": {"universe": {"n_assets": 90}},
        "factor_cov_settings": {**BASE_COV, **(cov or {})},
        "specific_risk_settings": {
            "halflife": 10.0,
            "halflife_vra": 5.0,
            "min_history": 2,
            "full_history": 5,
        },
        "portfolio_risk_settings": {"holdings": str(holdings), "drop_unknown": True},
    }
    if models is not None:
        body["models"] = models
    return write_settings(tmp, body)


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory):
    """File A: `default` over the first 45 sessions, then one session with `eigen` and `fast`
    added; file B: all three models from the start, the same two runs. (tmp, A, B)"""
    tmp = tmp_path_factory.mktemp("added")
    first, last = SYN_SESSIONS[:45], SYN_SESSIONS[45]
    a, b = tmp / "added.duckdb", tmp / "from_start.duckdb"
    ok(run(a, _synthetic(tmp, None), first[0], first[-1]))
    ok(run(b, _synthetic(tmp, MODELS), first[0], first[-1]))
    before = tables(a)
    ok(run(a, _synthetic(tmp, MODELS), last, last))
    ok(run(b, _synthetic(tmp, MODELS), last, last))
    return tmp, a, b, before


def test_a_model_added_later_equals_one_built_from_the_start(added) -> None:
    _, a, b, before = added
    ta, tb = tables(a), tables(b)
    assert set(ta) == set(tb)
    for name in ta:
        assert_same_bits(ta[name], tb[name], name)
    # the new models span the whole history, their recursions from the first return on
    for model in ("eigen", "fast"):
        for table in ("factor_covariance", "risk_backtest", "portfolio_risk", "forecast_outcomes"):
            days = of_model(ta[table], model)["date"].unique().sort().to_list()
            assert days == of_model(ta[table], "default")["date"].unique().sort().to_list()
            assert days[0] <= SYN_SESSIONS[3], (table, model)
    # the default model's old rows were left alone
    for table in ("factor_covariance", "risk_backtest"):
        old = of_model(ta[table], "default").filter(pl.col("date") < SYN_SESSIONS[45])
        assert_same_bits(old, of_model(before[table], "default"), table)
    # covariance_models lists them; the run checked each model's sessions of its range
    assert sorted(ta["covariance_models"]["model"].to_list()) == ["default", "eigen", "fast"]


def test_a_removed_model_keeps_its_rows(added) -> None:
    tmp, a, _, _ = added
    day = SYN_SESSIONS[46]
    before = tables(a)
    ok(run(a, _synthetic(tmp, {"eigen": MODELS["eigen"]}), day, day))
    after = tables(a)
    for table in MODEL_TABLES:
        if table not in after:
            continue
        assert_same_bits(of_model(after[table], "fast"), of_model(before[table], "fast"), table)
        if table not in ("forecast_bias_summary", "risk_backtest_summary", "forecast_bias"):
            assert day in of_model(after[table], "eigen")["date"].to_list(), table
            assert day not in of_model(after[table], "fast")["date"].to_list(), table
    assert sorted(after["covariance_models"]["model"].to_list()) == ["default", "eigen", "fast"]
    assert sorted(after["model_leaderboard"]["model"].to_list()) == ["default", "eigen"]


def test_changed_model_settings_are_refused_naming_model_and_keys(added, capsys, monkeypatch):
    tmp, a, _, _ = added
    changed = {"eigen": {**MODELS["eigen"], "eigen_adjustment_scale": 1.3}, "fast": MODELS["fast"]}
    settings = _synthetic(tmp, changed)
    day = SYN_SESSIONS[46]
    hashes = table_hashes(a)
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(a))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    code = main(["materialize", "--start", str(day), "--end", str(day), "--settings", settings])
    err = capsys.readouterr()
    assert code == 2
    line = (err.err + err.out).strip().splitlines()[-1]
    assert "model 'eigen': eigen_adjustment_scale: stored 1.2, now 1.3" in line
    assert "fast" not in line.split("holds covariance models")[1].split(". Use")[0]
    assert_tables_unchanged(hashes, a)
    # the UI's path (no check before the run): refused by the first write, nothing written
    result = run(a, settings, day, day)
    assert not result.success
    assert "model 'eigen': eigen_adjustment_scale" in " ".join(failure_messages(result))
    assert_tables_unchanged(hashes, a)


def test_the_synthetic_leaderboard_ties_out(added) -> None:
    _, _, b, _ = added
    from factorcov_pipeline.core.factors import factor_set_for

    names = factor_set_for(load_settings(None).factor_model_settings).names
    _assert_leaderboard(b, names, ["default", "eigen", "fast"])


def test_each_models_backtest_equals_a_file_of_its_own_settings(added) -> None:
    """`risk_backtest` of each model of file B (three models) equals, bit for bit, that of a
    file built with the model's settings alone: what the models share per session
    (`risk_backtest._Shared`: realised returns, the solve's X'D^-1X, the standing weights) is
    computed by the first model and used by the others, with each model's own covariance."""
    tmp, _, b, before = added
    first = SYN_SESSIONS[:45]
    ours = tables(b)["risk_backtest"].filter(pl.col("date") <= first[-1])
    assert_same_bits(
        of_model(ours, "default"), of_model(before["risk_backtest"], "default"), "default"
    )
    for name, overrides in MODELS.items():
        own = tmp / f"own-{name}.duckdb"
        ok(run(own, _synthetic(tmp, None, overrides), first[0], first[-1]))
        alone = of_model(tables(own)["risk_backtest"], "default")
        mine = of_model(ours, name)
        assert mine.height == alone.height > 0
        assert_same_bits(mine, alone, name)
        assert not mine["predicted_risk"].equals(of_model(ours, "default")["predicted_risk"])


def test_the_backtest_does_a_sessions_shared_work_once_for_every_model(tmp_path, monkeypatch):
    """With three models, each backtested session's realised returns and specific terms of
    the minimum-variance solve are computed once (not once per model)."""
    module = importlib.import_module("factorcov_pipeline.orchestration.assets.risk_backtest")
    calls = {"specific_terms": 0, "observed_returns": 0}

    def counted(name: str):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    for name in calls:
        monkeypatch.setattr(module, name, counted(name))
    days = SYN_SESSIONS[:8]
    db = tmp_path / "shared.duckdb"
    ok(run(db, _synthetic(tmp_path, MODELS), days[0], days[-1]))
    backtest = tables(db)["risk_backtest"]
    sessions = of_model(backtest, "default")["date"].n_unique()
    assert sessions > 0
    for model in MODELS:
        assert of_model(backtest, model)["date"].n_unique() == sessions
    assert calls == {"specific_terms": sessions, "observed_returns": sessions}


# ---- a file written before the `model` column existed ----------------------------------------


def test_an_old_file_gains_the_model_column(user, tmp_path) -> None:
    """The `model` column and `covariance_models` removed from a file (as 0.9's first files
    lack them): the next run adds the column with 'default' on the old rows, in the place a
    new file has it, and computes a new model over the history."""
    _, universe, days, _ = user
    old, new = tmp_path / "old.duckdb", tmp_path / "new.duckdb"
    body = {"factor_model_settings": universe, "factor_cov_settings": BASE_COV}
    ok(run(old, write_settings(tmp_path, body), days[0], days[-2]))
    with duckdb.connect(str(old)) as con:
        for table in MODEL_TABLES:
            if con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]
            ).fetchone():
                con.execute(f'ALTER TABLE "{table}" DROP COLUMN model')
        con.execute("DROP TABLE covariance_models")
    hashes = table_hashes(old)
    with RiskModel.open(old) as m:  # readable as before: every row is `default`'s
        assert m.models() == ["default"] and m.dates()[-1] == days[-2]
        with pytest.raises(UnknownModelError, match="stored models: default"):
            RiskModel.open(old, model="eigen")
    assert_tables_unchanged(hashes, old)
    settings = write_settings(tmp_path, {**body, "models": {"eigen": MODELS["eigen"]}})
    ok(run(old, settings, days[-1], days[-1]))
    ok(run(new, settings, days[0], days[-2]))
    ok(run(new, settings, days[-1], days[-1]))
    t_old, t_new = tables(old), tables(new)
    for table in MODEL_TABLES:
        if table in t_new:
            assert t_old[table].columns == t_new[table].columns, table
            assert_same_bits(t_old[table], t_new[table], table)
    assert t_old["covariance_report"].columns[-1] == "model"


# ---- the read layer, the command and the UI ----------------------------------------------------


def test_risk_model_reads_each_model(user) -> None:
    _, _, days, db = user
    day = days[-1]
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT model, factor_1, factor_2, covariance FROM factor_covariance WHERE date = ?",
            [day],
        ).df()
    for model in ("default", "eigen", "fast"):
        with RiskModel.open(db, model=model) as m:
            assert m.models() == ["default", "eigen", "fast"]
            cov = m.covariance(day)
            part = rows[rows["model"] == model].pivot(
                index="factor_1", columns="factor_2", values="covariance"
            )
            assert np.array_equal(cov.drop("factor").to_numpy(), part.to_numpy())
            assert m.dates()[-1] == day
            board = m.compare()
            assert board["model"].to_list()[0] == board.filter(pl.col("rank") == 1)["model"][0]
    with pytest.raises(UnknownModelError, match=r"'nope' is not stored .*default, eigen, fast"):
        RiskModel.open(db, model="nope")


def test_compare_prints_the_leaderboard_like_sql(user, capsys, monkeypatch) -> None:
    _, _, _, db = user
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    with RiskModel.open(db) as m:
        board = m.compare()
    assert main(["compare", "--format", "csv"]) == 0
    csv_out = capsys.readouterr().out
    parsed = pl.read_csv(csv_out.encode(), try_parse_dates=True)
    assert parsed.columns == board.columns and parsed.height == 3
    assert np.array_equal(parsed["gaussian_nll"].to_numpy(), board["gaussian_nll"].to_numpy())
    assert main(["compare", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == board["model"].to_list()
    assert main(["compare", "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| model | rank | score |") and len(md) == 2 + 3
    assert main(["compare"]) == 0
    table = capsys.readouterr().out
    assert table.rstrip().endswith("3 rows") and "default" in table and "gaussian_nll" in table
    assert main(["show", "--model", "fast", str(board["last_date"][0])]) == 0
    fast = capsys.readouterr().out
    assert main(["show", str(board["last_date"][0])]) == 0
    assert capsys.readouterr().out != fast  # another model's volatilities
    assert main(["show", "--model", "slow", str(board["last_date"][0])]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"factorcov: error: model 'slow' is not stored in {db}; stored models: default, eigen, fast"
    )


def test_risk_and_export_take_the_model(added, capsys, monkeypatch, tmp_path) -> None:
    _, a, _, _ = added
    day = str(SYN_SESSIONS[45])
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(a))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    portfolio = tmp_path / "p.csv"
    pd.DataFrame({"asset_id": ["A000001", "A000002"], "weight": [0.6, 0.4]}).to_csv(
        portfolio, index=False
    )
    reports = {}
    for model in ("default", "eigen"):
        assert main(["risk", "--portfolio", str(portfolio), "--date", day, "--format", "json",
                     "--model", model]) == 0  # fmt: skip
        reports[model] = json.loads(capsys.readouterr().out)
        with RiskModel.open(a, model=model) as m:
            assert m.risk(str(portfolio), day).to_dict() == reports[model]
        out = tmp_path / model
        assert main(["export", "--date", day, "--out", str(out), "--model", model]) == 0
        capsys.readouterr()
        exported = pl.read_parquet(out / "factor_covariance.parquet")
        with RiskModel.open(a, model=model) as m:
            cov = m.covariance(day)
        assert np.array_equal(
            exported.drop("date", "factor").to_numpy(), cov.drop("factor").to_numpy()
        )
    assert reports["default"]["factor_risk"] != reports["eigen"]["factor_risk"]
    assert main(["risk", "--portfolio", str(portfolio), "--date", day, "--model", "x"]) == 2
    assert "stored models: default, eigen, fast" in capsys.readouterr().err


def test_the_leaderboard_page_shows_a_table_and_each_models_rolling_bias(user, tmp_path) -> None:
    """A recorded run's `model_leaderboard` materialisation: the table, two plots (PNG)."""
    import base64

    import dagster as dg

    _, universe, days, _ = user
    settings = write_settings(
        tmp_path,
        {"factor_model_settings": universe, "factor_cov_settings": BASE_COV, "models": MODELS},
    )
    result = run_range(
        days[0],
        days[-1],
        FactorcovStorage(database=str(tmp_path / "ui.duckdb")),
        settings,
        instance=dg.DagsterInstance.ephemeral(),
        logger=quiet_logger(),
        selection=assets_for(load_settings(settings)),
    )
    ok(result)
    (event,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == "model_leaderboard"
        and e.materialization.partition == str(days[-1])
    ]
    meta = event.metadata
    assert meta["models"].value == 3 and meta["as_of"].value == str(days[-1])
    records = meta["leaderboard"].value.records
    assert [r.data["model"] for r in records] == [
        r.data["model"] for r in sorted(records, key=lambda r: r.data["rank"])
    ]
    for key in ("rolling_min_variance_bias", "rolling_factor_bias"):
        text = meta[key].value
        png = base64.b64decode(text.split("base64,")[1].rstrip(")"))
        assert png.startswith(b"\x89PNG")
        (tmp_path / f"{key}.png").write_bytes(png)
