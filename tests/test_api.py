"""The Python API (`factorcov_pipeline.RiskModel`, issue 23.1) on a small materialised DuckDB
file (tests/api_store.py: 8 sessions x 100 assets).

Every frame is compared with the stored tables read through a separate DuckDB connection and
reshaped with pandas (exactly: the API must hand over the stored numbers); the risk numbers
with the dense asset covariance V = X F X' + diag(s^2) built in numpy from the public tables
(1e-12); `RiskReport.to_dict()` with `factorcov risk --format json` (equal); docs/api.md runs
as written and equals the command's numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from api_store import LAST, N_ASSETS, SESSIONS, build

from factorcov_pipeline import RiskModel, cli
from factorcov_pipeline.api.errors import (
    ClosedError,
    ExportError,
    HoldingsError,
    NoForecastError,
    RiskModelError,
    UnknownAssetError,
    UnknownModelError,
)
from factorcov_pipeline.storage import StoreBusyError, StoreFileError

REPO = Path(__file__).resolve().parents[1]
DAY = LAST


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = build(tmp_path_factory.mktemp("api"))
    shutil.copy(path, _reference(path))
    return path


def _reference(db: Path) -> Path:
    """A copy of the store that the expected numbers are read from: in one process DuckDB
    keeps one instance per file, and an open RiskModel's is locked down (api/connections.py)."""
    return db.with_name(db.stem + "-reference.duckdb")


@pytest.fixture
def m(db):
    with RiskModel.open(db) as model:
        yield model


def _sql(db: Path, sql: str, params=None) -> pd.DataFrame:
    path = _reference(db) if _reference(db).exists() else db
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).df()


def _public_model(db: Path, day: dt.date):
    """X (N, K), F (K, K), s (N,), asset ids and factors of `day` from the public tables
    (the `exposures` view, factor_covariance, specific_risk), pivoted with pandas."""
    spec = _sql(
        db, "SELECT asset_id, specific_risk FROM specific_risk WHERE date = ? ORDER BY 1", [day]
    )
    expo = _sql(db, "SELECT asset_id, factor, exposure FROM exposures WHERE date = ?", [day])
    cov = _sql(
        db, "SELECT factor_1, factor_2, covariance FROM factor_covariance WHERE date = ?", [day]
    )
    f = cov.pivot(index="factor_1", columns="factor_2", values="covariance")
    factors = sorted(f.index)
    f = f.loc[factors, factors].to_numpy()
    x = (
        expo.pivot(index="asset_id", columns="factor", values="exposure")
        .reindex(index=spec["asset_id"], columns=factors)
        .fillna(0.0)
        .to_numpy()
    )
    return spec["asset_id"].tolist(), factors, x, f, spec["specific_risk"].to_numpy()


def _cli(argv: list[str], db: Path, monkeypatch, capsys, columns: int = 100):
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", str(columns))
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- import ----------------------------------------------------------------------------------


def test_import_is_light_and_risk_model_is_loaded_on_first_use():
    code = textwrap.dedent(
        """
        import sys
        import factorcov_pipeline
        heavy = [m for m in ("polars", "duckdb", "dagster", "numpy") if m in sys.modules]
        assert heavy == [], heavy
        from factorcov_pipeline import RiskModel
        assert RiskModel.__module__ == "factorcov_pipeline.api.model"
        try:
            factorcov_pipeline.NoSuchThing
        except AttributeError as err:
            assert "NoSuchThing" in str(err)
        else:
            raise AssertionError("no AttributeError")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- the frames are the stored tables --------------------------------------------------------


def test_dates_and_factors(m, db):
    stored = _sql(db, "SELECT DISTINCT date FROM factor_covariance ORDER BY 1")["date"]
    assert m.dates() == [d.date() for d in stored] == SESSIONS[1:]
    groups = _sql(db, "SELECT DISTINCT factor, factor_group FROM factor_returns")
    assert m.factors() == sorted(groups["factor"]) and len(m.factors()) == 21
    assert m.factor_groups() == dict(zip(groups["factor"], groups["factor_group"], strict=True))


@pytest.mark.parametrize(("method", "table", "value"), [
    ("covariance", "factor_covariance", "covariance"),
    ("correlation", "factor_correlation", "correlation"),
])  # fmt: skip
def test_matrices_are_the_stored_pairs(m, db, method, table, value):
    for day in (SESSIONS[1], DAY):
        got = getattr(m, method)(day)
        stored = _sql(db, f"SELECT factor_1, factor_2, {value} FROM {table} WHERE date = ?", [day])
        expected = stored.pivot(index="factor_1", columns="factor_2", values=value)
        names = sorted(expected.index)
        assert got.columns == ["factor", *names] and got["factor"].to_list() == names
        np.testing.assert_array_equal(
            got.drop("factor").to_numpy(), expected.loc[names, names].to_numpy()
        )
    # ISO strings and datetimes are dates too
    assert getattr(m, method)(DAY.isoformat()).equals(getattr(m, method)(DAY))
    assert getattr(m, method)(dt.datetime(DAY.year, DAY.month, DAY.day, 16)).equals(
        getattr(m, method)(DAY)
    )


def test_volatility_exposures_specific_risk_are_the_stored_rows(m, db):
    vol = m.volatility(DAY)
    stored = _sql(db, "SELECT factor, volatility FROM factor_volatility WHERE date = ?", [DAY])
    stored = stored.sort_values("factor")
    assert vol["factor"].to_list() == stored["factor"].tolist()
    np.testing.assert_array_equal(vol["volatility"].to_numpy(), stored["volatility"].to_numpy())
    assert vol["factor_group"].to_list() == [m.factor_groups()[f] for f in stored["factor"]]
    ids, factors, x, _, s = _public_model(db, DAY)
    expo = m.exposures(DAY)
    assert expo.columns == ["asset_id", *factors] and expo["asset_id"].to_list() == ids
    np.testing.assert_array_equal(expo.drop("asset_id").to_numpy(), x)
    spec = m.specific_risk(DAY)
    assert spec.columns == ["asset_id", "specific_risk", "reason", "warm"]
    assert spec["asset_id"].to_list() == ids
    np.testing.assert_array_equal(spec["specific_risk"].to_numpy(), s)
    # the pandas form is one call away
    assert m.covariance(DAY).to_pandas().set_index("factor").shape == (21, 21)
    # the base date has exposures but no forecasts
    assert m.exposures(SESSIONS[0]).height == N_ASSETS
    with pytest.raises(NoForecastError, match="no specific risk forecast stored for 2025-03-31"):
        m.specific_risk(SESSIONS[0])


def test_snapshot_and_asset_covariance_equal_the_dense_model(m, db):
    ids, factors, x, f, s = _public_model(db, DAY)
    snap = m.snapshot(DAY)
    assert snap.asset_ids.tolist() == ids and snap.factors == factors
    np.testing.assert_array_equal(snap.exposures, x)
    np.testing.assert_array_equal(snap.covariance, f)
    pick = [ids[7], ids[2], ids[40]]
    got = m.asset_covariance(DAY, pick)
    assert got.columns == ["asset_id", *pick] and got["asset_id"].to_list() == pick
    idx = [ids.index(a) for a in pick]
    v = x @ f @ x.T + np.diag(s**2)
    np.testing.assert_allclose(got.drop("asset_id").to_numpy(), v[np.ix_(idx, idx)], rtol=1e-12)
    with pytest.raises(UnknownAssetError, match=r"1 asset id\(s\) not in the model on .*: NOPE"):
        m.asset_covariance(DAY, [ids[0], "NOPE"])
    with pytest.raises(UnknownAssetError, match="more than once"):
        m.asset_covariance(DAY, [ids[0], ids[0]])


# ---- portfolio risk --------------------------------------------------------------------------


def _holdings(db: Path):
    ids = _sql(db, "SELECT asset_id FROM specific_risk WHERE date = ? ORDER BY 1", [DAY])
    ids = ids["asset_id"].tolist()
    rng = np.random.default_rng(3)
    pick = rng.choice(len(ids), 25, replace=False)
    port = pd.DataFrame(
        {"asset_id": [ids[i] for i in pick], "weight": rng.uniform(-0.02, 0.08, 25)}
    )
    bench = pd.DataFrame({"asset_id": ids, "weight": np.full(len(ids), 1 / len(ids))})
    return port, bench


def test_risk_report_equals_the_dense_asset_covariance(m, db):
    ids, factors, x, f, s = _public_model(db, DAY)
    port, bench = _holdings(db)
    h = pd.Series(0.0, index=ids)
    h[port["asset_id"]] = port["weight"].to_numpy()
    h = h.to_numpy()
    b = bench.set_index("asset_id")["weight"].reindex(ids).to_numpy()
    v = x @ f @ x.T + np.diag(s**2)
    rep = m.risk(port, DAY, benchmark=bench)
    sigma = np.sqrt(h @ v @ h)
    np.testing.assert_allclose(rep.total_risk, sigma, rtol=1e-12)
    np.testing.assert_allclose(rep.factor_risk, np.sqrt(h @ x @ f @ x.T @ h), rtol=1e-12)
    np.testing.assert_allclose(rep.specific_risk, np.sqrt(np.sum(h**2 * s**2)), rtol=1e-12)
    fr = rep.factors
    assert fr["factor"].to_list() == factors
    np.testing.assert_allclose(fr["exposure"].to_numpy(), x.T @ h, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fr["volatility"].to_numpy(), np.sqrt(np.diag(f)), rtol=1e-14)
    # marginal contribution = d sigma / d x_k: a central finite difference of
    # sigma(x) = sqrt(x'Fx + specific variance) in each factor exposure
    xh, spec_var = x.T @ h, np.sum(h**2 * s**2)
    eps = 1e-6
    for k in range(len(factors)):
        up, dn = xh.copy(), xh.copy()
        up[k] += eps
        dn[k] -= eps
        fd = (np.sqrt(up @ f @ up + spec_var) - np.sqrt(dn @ f @ dn + spec_var)) / (2 * eps)
        np.testing.assert_allclose(fr["marginal_contribution"][k], fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        fr["contribution"].to_numpy(), xh * fr["marginal_contribution"].to_numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        fr["contribution"].sum() + rep.specific_contribution, rep.total_risk, rtol=1e-12
    )
    np.testing.assert_allclose(fr["share"].sum() + rep.specific_contribution / sigma, 1.0)
    np.testing.assert_allclose(rep.specific_contribution, np.sum(h**2 * s**2) / sigma)
    a = h - b
    np.testing.assert_allclose(rep.active.total_risk, np.sqrt(a @ v @ a), rtol=1e-12)
    np.testing.assert_allclose(rep.beta, (h @ v @ b) / (b @ v @ b), rtol=1e-12)
    assert rep.warnings == []


def test_every_holdings_form_gives_the_same_report(m, db, tmp_path):
    port, _ = _holdings(db)
    port.to_csv(tmp_path / "p.csv", index=False)
    port.to_parquet(tmp_path / "p.parquet")
    reference = m.risk(pl.from_pandas(port), DAY).to_dict()
    forms = [
        port,
        str(tmp_path / "p.csv"),
        tmp_path / "p.parquet",
        dict(zip(port["asset_id"], port["weight"], strict=True)),
        port.set_index("asset_id")["weight"],
    ]
    for form in forms:
        assert m.risk(form, DAY.isoformat()).to_dict() == reference, type(form)


def test_to_dict_is_the_commands_json(m, db, tmp_path, monkeypatch, capsys):
    port, bench = _holdings(db)
    port.to_csv(tmp_path / "p.csv", index=False)
    bench.to_parquet(tmp_path / "b.parquet")
    for extra in ([], ["--benchmark", str(tmp_path / "b.parquet")]):
        code, out, err = _cli(
            ["risk", "--portfolio", str(tmp_path / "p.csv"), "--date", str(DAY), *extra,
             "--format", "json"],
            db, monkeypatch, capsys,
        )  # fmt: skip
        assert code == 0, err
        rep = m.risk(tmp_path / "p.csv", DAY, tmp_path / "b.parquet" if extra else None)
        assert json.loads(out) == rep.to_dict()
        assert list(json.loads(out))[-1] == "warnings" and json.loads(out)["warnings"] == []


# ---- refusals --------------------------------------------------------------------------------


def test_refusals_carry_the_commands_messages(m, db, tmp_path, monkeypatch, capsys):
    pd.DataFrame({"asset_id": ["NOPE1", "NOPE2"], "weight": [0.5, 0.5]}).to_csv(
        tmp_path / "u.csv", index=False
    )
    cases = [
        (lambda: m.risk(tmp_path / "u.csv", DAY), HoldingsError,
         ["risk", "--portfolio", str(tmp_path / "u.csv"), "--date", str(DAY)]),
        (lambda: m.risk(tmp_path / "u.csv", "2025-04-05"), NoForecastError,
         ["risk", "--portfolio", str(tmp_path / "u.csv"), "--date", "2025-04-05"]),
        (lambda: m.risk(tmp_path / "missing.csv", DAY), HoldingsError,
         ["risk", "--portfolio", str(tmp_path / "missing.csv"), "--date", str(DAY)]),
    ]  # fmt: skip
    for call, kind, argv in cases:
        with pytest.raises(kind) as err:
            call()
        code, out, cli_err = _cli(argv, db, monkeypatch, capsys)
        assert code == 2 and out == ""
        assert cli_err == f"factorcov: error: {err.value}\n"
    with pytest.raises(NoForecastError) as err:
        m.risk(tmp_path / "u.csv", "2025-04-05")
    assert str(err.value) == (
        f"no risk forecast stored for 2025-04-05 in {db}; nearest stored dates: "
        "2025-04-04 (before), 2025-04-07 (after)"
    )
    with pytest.raises(NoForecastError, match=r"none before, 2025-04-01 \(after\)"):
        m.covariance("2025-03-01")
    with pytest.raises(ValueError, match="date '04/09/2025' is not a date"):
        m.covariance("04/09/2025")
    with pytest.raises(TypeError, match="not int"):
        m.covariance(20250409)
    with pytest.raises(HoldingsError, match="expected a CSV/Parquet path"):
        m.risk([("A", 1.0)], DAY)
    with pytest.raises(HoldingsError, match=r"weight is not a number for asset\(s\) A000001"):
        m.risk({"A000001": True, "A000002": 0.5}, DAY)


def test_open_refuses_a_missing_file_another_model_and_use_after_close(db, tmp_path):
    missing = tmp_path / "none.duckdb"
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        RiskModel.open(missing)
    assert not missing.exists()
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StoreFileError, match="not a DuckDB database file"):
        RiskModel.open(tmp_path / "x.csv")
    with pytest.raises(UnknownModelError) as err:
        RiskModel.open(db, model="eigen")
    assert str(err.value) == f"model 'eigen' is not stored in {db}; stored models: default"
    m = RiskModel.open(str(db))
    m.close()
    m.close()  # twice is harmless
    with pytest.raises(ClosedError, match="closed"):
        m.dates()
    assert "closed" in repr(m)


def test_open_without_a_path_reads_the_configured_store(db, monkeypatch):
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    with RiskModel.open() as m:
        assert m.location == str(db) and m.dates()[-1] == DAY


def test_nothing_can_be_written_and_a_failed_query_does_not_break_the_model(m, db):
    tables = "SELECT table_name FROM information_schema.tables ORDER BY 1"
    before = _sql(db, tables)
    _reference(db).rename(_reference(db).with_suffix(".away"))  # read the store itself below
    for statement in (
        "CREATE TABLE pwned AS SELECT 1 AS a",
        "DELETE FROM factor_covariance",
        f"COPY factor_covariance TO '{db.parent / 'leak.csv'}'",
    ):
        with pytest.raises(RiskModelError, match=r"^SQL: "):
            m.sql(statement)
    with pytest.raises(RiskModelError, match="SQL: Parser Error"):
        m.sql("SELEC 1")
    assert m.sql("SELECT count(*) AS n FROM factor_covariance")["n"][0] == 21 * 21 * 7
    assert m.covariance(DAY).height == 21
    assert not (db.parent / "leak.csv").exists()
    m.close()
    try:
        assert _sql(db, tables).equals(before)
        assert _sql(db, "SELECT count(*) AS n FROM factor_covariance")["n"][0] == 21 * 21 * 7
    finally:
        _reference(db).with_suffix(".away").rename(_reference(db))


def test_open_waits_for_a_run_holding_the_file(db, tmp_path):
    """A writer (another process with the file open read-write, as a run holds it) is waited
    for up to `wait` seconds, as `factorcov sql --wait` does; beyond it, StoreBusyError."""
    copy = tmp_path / "held.duckdb"
    shutil.copy(db, copy)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(copy)!r})\n"
         "print('held', flush=True)\n"
         "time.sleep(float(sys.argv[1]))\n"
         "con.close()\n", "2.5"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match="locked by another process"):
            RiskModel.open(copy, wait=0.3)
        started = time.monotonic()
        with RiskModel.open(copy, wait=60) as m:
            assert m.dates()[-1] == DAY
        assert time.monotonic() - started > 0.5  # it waited for the holder
    finally:
        holder.wait(timeout=60)


# ---- several covariance models (issue 22's `model` column) ---------------------------------


def test_a_model_column_selects_one_covariance_model(db, tmp_path):
    copy = tmp_path / "models.duckdb"
    shutil.copy(db, copy)
    with duckdb.connect(str(copy)) as con:
        # the pipeline's own `model` column (issue 22.1); a second model's rows made by hand,
        # registered as the pipeline registers a model
        con.execute("INSERT INTO covariance_models VALUES ('eigen', '{}', now()::TIMESTAMP)")
        con.execute(
            "INSERT INTO factor_covariance BY NAME SELECT date, factor_1, factor_2, "
            "4 * covariance AS covariance, warm, 'eigen' AS model FROM factor_covariance "
            "WHERE date = ?",
            [DAY],
        )
        con.execute(
            "INSERT INTO factor_volatility BY NAME SELECT date, factor, "
            "2 * volatility AS volatility, warm, 'eigen' AS model FROM factor_volatility "
            "WHERE date = ?",
            [DAY],
        )
    with RiskModel.open(copy) as base, RiskModel.open(copy, model="eigen") as eigen:
        assert base.dates() == SESSIONS[1:] and eigen.dates() == [DAY]
        np.testing.assert_array_equal(
            eigen.covariance(DAY).drop("factor").to_numpy(),
            4 * base.covariance(DAY).drop("factor").to_numpy(),
        )
        np.testing.assert_array_equal(
            eigen.volatility(DAY)["volatility"].to_numpy(),
            2 * base.volatility(DAY)["volatility"].to_numpy(),
        )
        port = {a: 0.1 for a in base.specific_risk(DAY)["asset_id"].head(10)}
        r0, r1 = base.risk(port, DAY), eigen.risk(port, DAY)
        np.testing.assert_allclose(r1.factor_risk, 2 * r0.factor_risk, rtol=1e-12)
        np.testing.assert_allclose(r1.specific_risk, r0.specific_risk, rtol=1e-15)
        with pytest.raises(
            NoForecastError, match=r"nearest stored dates: none before, 2025-04-09 \(after\)"
        ):
            eigen.covariance(SESSIONS[3])
    with pytest.raises(UnknownModelError, match=r"stored models: default, eigen$"):
        RiskModel.open(copy, model="fast")


# ---- warnings (issue 21.3 / 21.4) -------------------------------------------------------------


def test_warnings_from_reason_warm_and_an_exactly_fitted_regression(
    db, tmp_path, monkeypatch, capsys
):
    """The `reason` and `warm` columns the pipeline writes and regression_stats.exactly_fitted,
    set here on a copy of the store: each problem of a held asset or of the date is one
    warning, in the report, the JSON and on stderr; a warm date whose specific risks were
    estimated from the assets' own returns gives none (the other tests)."""
    copy = tmp_path / "warn.duckdb"
    shutil.copy(db, copy)
    ids = _sql(copy, "SELECT asset_id FROM specific_risk WHERE date = ? ORDER BY 1", [DAY])
    ids = ids["asset_id"].tolist()
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE specific_risk SET reason = NULL")
        con.execute("UPDATE factor_covariance SET warm = date > ?", [SESSIONS[4]])
        con.execute("UPDATE specific_risk SET warm = asset_id <> ?", [ids[3]])
        con.execute(
            "UPDATE specific_risk SET reason = 'single_asset_category' WHERE asset_id IN (?, ?)",
            [ids[0], ids[50]],  # ids[50] is not held
        )
        con.execute("UPDATE specific_risk SET reason = 'short_history' WHERE asset_id = ?",
                    [ids[1]])  # fmt: skip
        con.execute(
            "UPDATE specific_risk SET specific_risk = 2.4e-17 WHERE asset_id = ? AND date = ?",
            [ids[2], SESSIONS[4]],
        )
        con.execute("UPDATE regression_stats SET exactly_fitted = (date = ?)", [SESSIONS[4]])
    port = {a: 0.25 for a in ids[:4]}
    with RiskModel.open(copy) as m:
        assert m.specific_risk(DAY).columns == ["asset_id", "specific_risk", "reason", "warm"]
        late = m.risk(port, DAY).warnings
        early = m.risk(port, SESSIONS[4]).warnings
    assert late == [
        f"specific risk on {DAY} not estimated from the asset's own returns "
        f"(short_history: too few returns of its own: the structural forecast alone) for 1 "
        f"held asset(s): {ids[1]}",
        f"specific risk on {DAY} not estimated from the asset's own returns "
        f"(single_asset_category: it is the only asset of its category (its specific return "
        f"is absorbed by the category's factor)) for 1 held asset(s): {ids[0]}",
        f"specific risk on {DAY} is within its warm-up (specific_risk.warm is false) for 1 "
        f"held asset(s): {ids[3]}",
    ]
    day4 = SESSIONS[4]
    assert early[0].startswith(f"{day4} is within the factor covariance's warm-up")
    assert early[1].startswith(f"the factor regression of {day4} is exactly fitted")
    assert f"specific risk below 1e-06 on {day4} for 1 held asset(s): {ids[2]}" in early[4]
    assert len(early) == 6
    pd.DataFrame({"asset_id": list(port), "weight": list(port.values())}).to_csv(
        tmp_path / "p.csv", index=False
    )
    code, out, err = _cli(
        ["risk", "--portfolio", str(tmp_path / "p.csv"), "--date", str(day4), "--format", "json"],
        copy, monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["warnings"] == early
    assert err.splitlines() == [f"factorcov: warning: {w}" for w in early]


# ---- export ----------------------------------------------------------------------------------


def test_export_writes_x_f_and_specific_variances(m, db, tmp_path, monkeypatch, capsys):
    ids, factors, x, f, s = _public_model(db, DAY)
    paths = m.export(DAY, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == [
        "exposures.parquet", "factor_covariance.parquet", "specific_variance.parquet",
    ]  # fmt: skip
    xe = pl.read_parquet(paths["exposures"])
    fe = pl.read_parquet(paths["factor_covariance"])
    se = pl.read_parquet(paths["specific_variance"])
    assert xe.columns == ["date", "asset_id", *factors] and xe["asset_id"].to_list() == ids
    assert fe.columns == ["date", "factor", *factors] and fe["factor"].to_list() == factors
    assert se.columns == ["date", "asset_id", "specific_variance", "specific_risk"]
    assert set(xe["date"]) == set(fe["date"]) == set(se["date"]) == {DAY}
    np.testing.assert_array_equal(xe.drop("date", "asset_id").to_numpy(), x)
    np.testing.assert_array_equal(fe.drop("date", "factor").to_numpy(), f)
    np.testing.assert_array_equal(se["specific_risk"].to_numpy(), s)
    np.testing.assert_array_equal(se["specific_variance"].to_numpy(), s**2)
    with pytest.raises(ExportError, match="exist"):
        m.export(DAY, tmp_path / "out")
    m.export(SESSIONS[2], tmp_path / "out", overwrite=True)
    assert set(pl.read_parquet(paths["exposures"])["date"]) == {SESSIONS[2]}
    # the command writes the same files
    code, out, err = _cli(
        ["export", "--date", str(DAY), "--out", str(tmp_path / "cli")], db, monkeypatch, capsys
    )
    assert code == 0, err
    assert out.split() == [str(tmp_path / "cli" / p.name) for p in paths.values()]
    for name in ("exposures", "factor_covariance", "specific_variance"):
        m.export(DAY, tmp_path / "out", overwrite=True)
        assert pl.read_parquet(tmp_path / "cli" / f"{name}.parquet").equals(
            pl.read_parquet(paths[name])
        )
    code, _, err = _cli(
        ["export", "--date", str(DAY), "--out", str(tmp_path / "cli")], db, monkeypatch, capsys
    )
    assert code == 2 and "--force" in err and len(err.splitlines()) == 1
    code, _, err = _cli(
        ["export", "--date", "2025-04-05", "--out", str(tmp_path / "x")], db, monkeypatch, capsys
    )
    assert code == 2 and "nearest stored dates: 2025-04-04 (before)" in err
    assert not (tmp_path / "x").exists()


# ---- docs/api.md runs as written and equals the command --------------------------------------


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_api_page_runs_and_equals_the_command(db, tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    shutil.copy(db, tmp_path / "data" / "factorcov.duckdb")
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks((REPO / "docs" / "api.md").read_text())
    assert len(blocks) >= 10
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "no forecast stored for 2025-04-05 in data/factorcov.duckdb; nearest" in printed
    assert "holdings (portfolio): 1 asset id(s) not in the model on" in printed
    assert namespace["n_dates"] == len(SESSIONS) - 1
    code, out, err = _cli(
        ["risk", "--portfolio", "portfolio.csv", "--benchmark", "benchmark.csv",
         "--date", str(namespace["d"]), "--format", "json"],
        tmp_path / "data" / "factorcov.duckdb", monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == namespace["report"]


def test_the_readme_example_runs(db, tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text().split("## Python API")[1]
    (block,) = _python_blocks(readme.split("\n## ")[0])
    (tmp_path / "data").mkdir()
    shutil.copy(db, tmp_path / "data" / "factorcov.duckdb")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["rep"].total_risk > 0 and namespace["d"] == DAY
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "exposures.parquet", "factor_covariance.parquet", "specific_variance.parquet",
    ]  # fmt: skip
