"""A model of the user's own factor returns (`universe.factor_returns`): names are data.

Through in-process runs (`run_range`) and `factorcov materialize`: hostile names (quotes, SQL,
unicode, spaces, hyphens), one factor and 300 factors give forecasts equal to plain pandas
`ewm` to 1e-12; the universe, exposures and regression steps do not run; a range the file
does not cover is refused before any work, naming the file's first and last dates; the
warm-up hides the first sessions' forecasts and starts the regime adjustment after them.
"""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
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

START = dt.date(2025, 3, 31)  # the default partitions start (tests run in-process)
HOSTILE = (
    'O\'Reilly "x"; DROP TABLE factor_returns; --',
    "Ünïcödé 因子 ✓",
    "  spaced  name ",
    "SIZE-US",
    "MTUM",
)


def write_file(tmp: Path, names, n: int, **extra: object) -> tuple[str, list[dt.date]]:
    frame = factor_etf_returns(START, n, names=names, seed=len(names))
    for col, value in extra.items():
        frame = frame.with_columns(pl.lit(value).alias(col))
    path = tmp / f"fr-{len(names)}-{n}.parquet"
    frame.write_parquet(path)
    return str(path), sorted(set(frame["date"].to_list()))


def settings_for(tmp: Path, path: str, **cov: object) -> str:
    data = {
        "factor_model_settings": {"universe": {"factor_returns": path}},
        "factor_cov_settings": cov,
    }
    out = tmp / f"settings-{len(list(tmp.glob('settings-*')))}.json"
    out.write_text(json.dumps(data))
    return str(out)


def run(db: Path, settings: str, start: dt.date, end: dt.date, selection: object = "auto"):
    """In-process run; `selection="auto"`: what `factorcov materialize` selects; None: the
    whole job (as the UI and the schedule run it)."""
    return run_range(
        start,
        end,
        FactorcovStorage(database=str(db), lock_timeout_seconds=5.0),
        settings,
        logger=quiet_logger(),
        selection=assets_for(load_settings(settings)) if selection == "auto" else selection,  # type: ignore[arg-type]
    )


def pandas_forecasts(
    path: str, halflife_vol: float = 60.0, halflife_cor: float = 120.0
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Plain pandas: vol = sqrt(252 ewm(F^2)), corr = ewm(f_i f_j) / sqrt(ewm(f_i^2) ewm(f_j^2))."""
    wide = (
        pl.read_parquet(path)
        .to_pandas()
        .pivot(index="date", columns="factor", values="factor_return")
    )
    wide = wide.sort_index()[sorted(wide.columns)]
    names = list(wide.columns)
    vol = np.sqrt(252.0 * (wide**2).ewm(halflife=halflife_vol).mean())
    F = wide.to_numpy()
    k = F.shape[1]
    prod = pd.DataFrame((F[:, :, None] * F[:, None, :]).reshape(len(F), k * k))
    cov = prod.ewm(halflife=halflife_cor).mean().to_numpy().reshape(len(F), k, k)
    d = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    return vol, cov / (d[:, :, None] * d[:, None, :]), names


def stored_forecasts(db: Path, names: list[str], days: list[dt.date]):
    from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube

    store = Store(db)
    vol = long_to_matrix(store.read("SELECT * FROM factor_volatility"), days, names, "volatility")
    corr = pairs_to_cube(store.read("SELECT * FROM factor_correlation"), days, names, "correlation")
    return vol, corr


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    path, days = write_file(tmp, HOSTILE, 40)
    settings = settings_for(tmp, path)
    db = tmp / "fc.duckdb"
    result = run(db, settings, days[0], days[-1])
    return tmp, path, days, settings, db, result


def test_hostile_names_equal_plain_pandas_ewm(hostile):
    _, path, days, _, db, result = hostile
    assert result.success, failure_messages(result)
    checks = result.get_asset_check_evaluations()
    assert {c.asset_check_key.name for c in checks} >= {"volatility_tieout", "correlation_tieout"}
    assert all(c.passed for c in checks), [c.description for c in checks if not c.passed]
    vol_pd, corr_pd, names = pandas_forecasts(path)
    assert sorted(HOSTILE) == names
    vol, corr = stored_forecasts(db, names, days)
    np.testing.assert_allclose(vol, vol_pd.to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(corr, np.clip(corr_pd, -1, 1), rtol=0, atol=1e-12)
    assert np.abs(corr).max() <= 1.0  # never 1 + 2.2e-16
    store = Store(db)
    # the report's columns are the user's names, alphabetical; the SQL-looking name did nothing
    report = store.read("SELECT * FROM covariance_report")
    assert report.columns == ["date", "factor", *names, "model"]
    assert report.height == len(days) * len(names)
    assert store.read("SELECT count(*) AS n FROM factor_returns")["n"][0] == len(days) * 5
    groups = store.read("SELECT DISTINCT factor_group FROM factor_returns")["factor_group"]
    assert groups.to_list() == ["user"]  # no factor_group column: one group


def test_universe_exposures_and_regression_do_not_run(hostile):
    tmp, _, days, settings, db, result = hostile
    steps = {e.step_key for e in result.all_events if e.step_key}
    assert not {s for s in steps if s.startswith(("universe", "exposures"))}
    store = Store(db)
    assert store.stored_dates("universe") == []
    assert store.stored_dates("regression_stats") == []
    # the whole job (as the UI or the schedule runs it): both steps skip before any work
    db2 = tmp / "all.duckdb"
    full = run(db2, settings, days[0], days[-1], selection=None)
    assert full.success, failure_messages(full)
    metas = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in full.get_asset_materialization_events()
    }
    assert "skipped" in metas["universe"] and "skipped" in metas["exposures"]
    q = "SELECT * FROM factor_covariance ORDER BY date, factor_1, factor_2"
    assert Store(db2).read(q).equals(store.read(q))


def test_factor_group_column_is_kept(tmp_path):
    path, days = write_file(tmp_path, ("A", "B"), 5, factor_group="etf")
    db = tmp_path / "g.duckdb"
    assert run(db, settings_for(tmp_path, path), days[0], days[-1]).success
    groups = Store(db).read("SELECT DISTINCT factor_group FROM factor_returns")["factor_group"]
    assert groups.to_list() == ["etf"]


def test_one_factor(tmp_path):
    path, days = write_file(tmp_path, ("ONLY",), 30)
    db = tmp_path / "one.duckdb"
    result = run(db, settings_for(tmp_path, path), days[0], days[-1])
    assert result.success, failure_messages(result)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    vol_pd, _, names = pandas_forecasts(path)
    vol, corr = stored_forecasts(db, names, days)
    np.testing.assert_allclose(vol, vol_pd.to_numpy(), rtol=1e-12, atol=0)
    assert (corr == 1.0).all()


def test_three_hundred_factors(tmp_path):
    names = tuple(f"F{i:03d} ü'\"" for i in range(300))
    path, days = write_file(tmp_path, names, 8)
    db = tmp_path / "k300.duckdb"
    result = run(db, settings_for(tmp_path, path), days[0], days[-1])
    assert result.success, failure_messages(result)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    vol_pd, corr_pd, sorted_names = pandas_forecasts(path)
    vol, corr = stored_forecasts(db, sorted_names, days)
    np.testing.assert_allclose(vol, vol_pd.to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(corr, np.clip(corr_pd, -1, 1), rtol=0, atol=1e-12)
    assert (
        len(Store(db).read("SELECT * FROM covariance_report LIMIT 1").columns) == 303
    )  # date, factor, 300, model


# ---- range errors: refused before any work, naming the file's span and the request ----------


@pytest.mark.parametrize("offset", ["after", "past_end"])
def test_range_outside_the_file_is_refused_in_process(hostile, offset):
    tmp, path, days, settings, _, _ = hostile
    later = calendar.sessions(days[-1] + dt.timedelta(days=1), days[-1] + dt.timedelta(days=30))
    start = later[2] if offset == "after" else days[5]
    end = later[5]
    db = tmp / f"range-{offset}.duckdb"
    result = run(db, settings, start, end)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert path in message and str(days[0]) in message and str(days[-1]) in message
    assert f"{start} .. {end}" in message
    assert Store(db).stored_dates("factor_returns") == []  # nothing written


@pytest.mark.parametrize("offset", ["after", "past_end"])
def test_range_outside_the_file_is_refused_by_the_command(hostile, offset, capsys, monkeypatch):
    tmp, path, days, settings, _, _ = hostile
    later = calendar.sessions(days[-1] + dt.timedelta(days=1), days[-1] + dt.timedelta(days=30))
    start = later[2] if offset == "after" else days[5]
    db = tmp / f"cli-{offset}.duckdb"
    assert path
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(["materialize", "--start", str(start), "--end", str(later[5]),
                     "--settings", settings])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert path in err and str(days[0]) in err and str(days[-1]) in err
    assert f"{start} .. {later[5]}" in err
    assert len(err.strip().splitlines()) == 1
    assert not db.exists()  # refused before any work


def test_hostile_names_through_the_command(hostile, capsys, monkeypatch):
    tmp, _, days, settings, db, _ = hostile
    db2 = tmp / "cli.duckdb"
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db2))
    code = cli.main(["materialize", "--start", str(days[0]), "--end", str(days[-1]),
                     "--settings", settings])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "universe" not in out and "exposures" not in out  # not selected
    q = "SELECT * FROM factor_covariance ORDER BY date, factor_1, factor_2"
    assert Store(db2).read(q).equals(Store(db).read(q))


# ---- warm-up ------------------------------------------------------------------------------


def test_warmup_hides_the_first_sessions_and_changes_no_number(hostile):
    tmp, path, days, _, db, _ = hostile
    n = 10
    db_w = tmp / "warm.duckdb"
    result = run(db_w, settings_for(tmp, path, warmup_length=n), days[0], days[-1])
    assert result.success, failure_messages(result)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    store, plain = Store(db_w), Store(db)
    for table in ("factor_volatility", "factor_correlation", "factor_covariance",
                  "covariance_report"):  # fmt: skip
        assert store.stored_dates(table) == days[n:], table
        q = f"SELECT * FROM {table} WHERE date >= ? ORDER BY ALL"
        got, ref = store.read(q, [days[n]]), plain.read(q, [days[n]])
        if table != "covariance_report":  # the report has no `warm` (its columns are factors)
            # warmup_length overrides the derived warm-up: every published row is warm
            assert got["warm"].all(), table
            got, ref = got.drop("warm"), ref.drop("warm")
        assert got.equals(ref), table


def test_warmup_starts_the_regime_adjustment_after_it(hostile):
    tmp, path, days, _, _, _ = hostile
    n, h_vra = 10, 20.0
    db = tmp / "warm-vra.duckdb"
    settings = settings_for(tmp, path, warmup_length=n, halflife_vra=h_vra)
    result = run(db, settings, days[0], days[-1])
    assert result.success, failure_messages(result)
    # plain pandas: B_t^2 = mean_k f_kt^2 / var_k,t-1 (ewm of squares), the first n left out
    wide = (
        pl.read_parquet(path)
        .to_pandas()
        .pivot(index="date", columns="factor", values="factor_return")
    )
    var = (wide**2).ewm(halflife=60.0).mean()
    b2 = ((wide**2) / var.shift(1)).mean(axis=1)
    b2.iloc[:n] = np.nan
    lam = np.sqrt(b2.ewm(halflife=h_vra).mean().fillna(1.0))
    got = Store(db).read("SELECT date, vra_multiplier FROM volatility_regime ORDER BY date")
    assert got["date"].to_list() == days[n:]
    np.testing.assert_allclose(got["vra_multiplier"].to_numpy(), lam.to_numpy()[n:], rtol=1e-12)


def test_warmup_default_keeps_the_tutorial_settings_json():
    from factorcov_pipeline.core.settings import FactorCovarianceSettings, parse_settings

    assert "warmup_length" not in FactorCovarianceSettings().model_dump()
    s = parse_settings({"factor_cov_settings": {"warmup_length": 5}})
    assert s.factor_cov_settings.model_dump()["warmup_length"] == 5
    with pytest.raises(ValueError, match="warmup_length"):
        parse_settings({"factor_cov_settings": {"warmup_length": -1}})
