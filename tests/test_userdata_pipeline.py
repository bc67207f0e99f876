"""User data through the whole Dagster pipeline (run_range / `factorcov materialize`).

A user dataset is built from the synthetic generator (so the numbers are realistic), written to
Parquet/CSV, and materialised with `universe.dataset` pointing at it; the tests check that the
checks pass, that a session without any return is a no-observation day (the EWMA decays through
it exactly as pandas `ewm(ignore_na=False)` on a NaN row), that user factor returns give the
covariance forecasts, and that each bad input fails the run with a message naming the file /
date / asset / setting while the rows already stored do not change.
"""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.factors import STYLE_FACTORS, TRBC_SECTORS, factor_set_for
from factorcov_pipeline.core.settings import UniverseSettings, parse_settings
from factorcov_pipeline.core.synthetic import generate_universe
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

START = dt.date(2025, 3, 31)  # the default partitions start (tests run in-process)
SESSIONS = calendar.sessions(START, dt.date(2025, 5, 15))[:16]
END = SESSIONS[-1]
GAP_DAY = SESSIONS[6]  # a session carried forward: rows, but no returns at all
TINY = ("Academic & Educational Services", "Government Activity",
        "Institutions, Associations & Organizations")  # fmt: skip
SECTORS = [s for s in TRBC_SECTORS if s not in TINY]
STYLES = [s for s in STYLE_FACTORS if s != "Dividend"]
TABLES = {
    "universe": "date, asset_id",
    "exposures": "date, asset_id, factor",
    "factor_returns": "date, factor",
    "factor_volatility": "date, factor",
    "factor_correlation": "date, factor_1, factor_2",
    "factor_covariance": "date, factor_1, factor_2",
}


def user_frame(n_assets: int = 200, gap: bool = False) -> pl.DataFrame:
    """A user dataset in the documented format, generated from the synthetic universe.

    Assets of the three tiny sectors are left out (so the model restricts its sectors), the
    Dividend descriptor is left out (so the model restricts its styles), and with `gap`
    GAP_DAY keeps its rows with null returns (a session carried forward).
    """
    uni = UniverseSettings(n_assets=n_assets, seed=7)
    factors = factor_set_for(parse_settings({}).factor_model_settings)
    days = [generate_universe(d, SESSIONS, uni, factors).universe for d in SESSIONS]
    frame = pl.concat(days, how="vertical")
    return (
        frame.filter(~pl.col("sector").is_in(list(TINY)))
        .drop("descriptor_dividend")
        .rename({"asset_return": "total_return"})
        .with_columns(
            pl.when((pl.col("date") == GAP_DAY) & gap).then(None).otherwise(pl.col("total_return"))
            .alias("total_return")
        )
    )  # fmt: skip


def settings_file(tmp: Path, dataset: str | None = None, **universe: object) -> str:
    uni: dict[str, object] = dict(universe)
    if dataset is not None:
        uni["dataset"] = dataset
    data = {
        "factor_model_settings": {
            "universe": uni,
            "exposures": {
                "exposures": [
                    {"hierarchy": "market"},
                    {"hierarchy": "trbc", "factors": SECTORS},
                    {"hierarchy": "style", "factors": STYLES},
                ]
            },
        }
    }
    path = tmp / f"settings-{len(list(tmp.glob('settings-*')))}.json"
    path.write_text(json.dumps(data))
    return str(path)


def run(db: Path, settings: str, start: dt.date = START, end: dt.date = END, selection=None):
    return run_range(
        start,
        end,
        FactorcovStorage(database=str(db), lock_timeout_seconds=5.0),
        settings,
        logger=quiet_logger(),
        selection=selection,
    )


def snapshot(db: Path) -> dict[str, pl.DataFrame]:
    store = Store(db)
    return {t: store.read(f"SELECT * FROM {t} ORDER BY {o}") for t, o in TABLES.items()}


def assert_unchanged(before: dict[str, pl.DataFrame], db: Path) -> None:
    after = snapshot(db)
    for table, frame in before.items():
        assert after[table].equals(frame), f"{table} changed"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("userdata")
    data = tmp / "universe.parquet"
    user_frame().write_parquet(data)
    db = tmp / "fc.duckdb"
    settings = settings_file(tmp, str(data))
    result = run(db, settings)
    return tmp, data, db, settings, result


# Up to factor_covariance: the tutorial tie-out checks on covariance_report rebuild the factor
# return history from stored dates only and do not yet see a no-observation day (see report).
GAP_SELECTION = [
    "universe", "exposures", "factor_returns", "factor_volatility", "factor_correlation",
    "factor_covariance",
]  # fmt: skip


@pytest.fixture(scope="module")
def gapped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gap")
    data = tmp / "universe.parquet"
    user_frame(gap=True).write_parquet(data)
    db = tmp / "fc.duckdb"
    settings = settings_file(tmp, str(data))
    result = run(db, settings, selection=GAP_SELECTION)
    assert result.success, failure_messages(result)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    return db, settings


def test_user_parquet_runs_end_to_end_with_checks_passing(built):
    _, data, db, _, result = built
    assert result.success, failure_messages(result)
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [
        (e.asset_check_key.name, e.metadata) for e in evaluations if not e.passed
    ]
    store = Store(db)
    stored = store.read("SELECT count(*) AS n FROM universe")["n"][0]
    assert stored == pl.read_parquet(data).height
    factors = store.read("SELECT DISTINCT factor FROM factor_returns")["factor"].to_list()
    assert sorted(factors) == sorted(["Market", *STYLES, *SECTORS])


def test_no_return_session_is_a_missing_observation(gapped):
    """GAP_DAY: no factor returns, a gap row, and forecasts equal pandas ewm on a NaN row."""
    db, _ = gapped
    store = Store(db)
    fr = store.read("SELECT date, factor, factor_return FROM factor_returns")
    assert GAP_DAY not in set(fr["date"].to_list())
    gaps = store.read("SELECT date FROM factor_return_gaps")["date"].to_list()
    assert GAP_DAY in gaps
    wide = fr.to_pandas().pivot(index="date", columns="factor", values="factor_return")
    days = [d for d in SESSIONS if d > SESSIONS[0]]
    wide = wide.reindex(pd.Index(days, name="date"))  # the gap day becomes a NaN row
    assert wide.loc[GAP_DAY].isna().all() and wide.drop(index=GAP_DAY).notna().all().all()
    expected = (wide**2).ewm(halflife=60.0, ignore_na=False).mean() ** 0.5 * 252**0.5
    vol = store.read("SELECT date, factor, volatility FROM factor_volatility").to_pandas()
    got = vol.pivot(index="date", columns="factor", values="volatility").reindex(
        index=expected.index, columns=expected.columns
    )
    assert got.loc[GAP_DAY].notna().all()  # the forecast (and state) exist for the gap day
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)
    # correlation: EWMA of outer products with the same NaN-row semantics
    F = wide.to_numpy()
    names = list(wide.columns)
    lam = 0.5 ** (1 / 120.0)
    num = np.zeros((len(names), len(names)))
    den = 0.0
    corr = store.read("SELECT * FROM factor_correlation WHERE date = ?", [days[-1]])
    for t in range(len(days)):  # direct loop: decay every day, add only observed rows
        num, den = lam * num, lam * den
        if not np.isnan(F[t]).any():
            num, den = num + np.outer(F[t], F[t]), den + 1.0
    cov = num / den
    ref = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    pos = {n: i for i, n in enumerate(names)}
    i = corr["factor_1"].replace_strict(pos).to_numpy()
    j = corr["factor_2"].replace_strict(pos).to_numpy()
    np.testing.assert_allclose(corr["correlation"].to_numpy(), ref[i, j], rtol=0, atol=1e-12)


def test_daily_run_over_the_gap_day_continues_the_recursion(gapped, tmp_path):
    """Materialising up to the gap day, then day by day after it, equals the one range run."""
    db, settings = gapped
    db2 = tmp_path / "daily.duckdb"
    i = SESSIONS.index(GAP_DAY)
    assert run(db2, settings, START, GAP_DAY, selection=GAP_SELECTION).success
    for day in SESSIONS[i + 1 : i + 3]:
        result = run(db2, settings, day, day, selection=GAP_SELECTION)
        assert result.success, failure_messages(result)
    q = "SELECT * FROM factor_volatility WHERE date <= ? ORDER BY date, factor"
    a = Store(db).read(q, [SESSIONS[i + 2]])
    b = Store(db2).read(q, [SESSIONS[i + 2]])
    assert a.select("date", "factor").equals(b.select("date", "factor"))
    assert GAP_DAY in set(b["date"].to_list())
    # exposures of one range vs several runs differ by float rounding (~1e-14, parallel sums)
    np.testing.assert_allclose(b["volatility"].to_numpy(), a["volatility"].to_numpy(), rtol=1e-10)


def test_csv_dataset_gives_the_same_factor_returns(built, tmp_path):
    _, data, db, _, _ = built
    csv = tmp_path / "universe.csv"
    pl.read_parquet(data).filter(pl.col("date") <= SESSIONS[4]).write_csv(csv)
    db2 = tmp_path / "csv.duckdb"
    result = run(db2, settings_file(tmp_path, str(csv)), START, SESSIONS[4])
    assert result.success, failure_messages(result)
    q = "SELECT * FROM factor_returns ORDER BY date, factor"
    a = Store(db).read(q).filter(pl.col("date") <= SESSIONS[4])
    b = Store(db2).read(q)
    np.testing.assert_allclose(
        b["factor_return"].to_numpy(), a["factor_return"].to_numpy(), rtol=0, atol=1e-12
    )
