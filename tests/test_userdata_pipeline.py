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


# Every asset and check: the tutorial tie-outs see a no-observation day as a NaN row.
GAP_SELECTION = None


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


def test_user_factor_returns_give_the_same_covariance(built, tmp_path):
    """`universe.factor_returns`: the regression's own factor returns fed back as a user file
    give the same forecasts (to 1e-12); the universe asset stores nothing."""
    _, _, db, _, _ = built
    fr = Store(db).read("SELECT date, factor, factor_return FROM factor_returns ORDER BY 1, 2")
    path = tmp_path / "factor_returns.csv"
    fr.write_csv(path)
    settings = settings_file(tmp_path, factor_returns=str(path))
    db2 = tmp_path / "fr.duckdb"
    result = run(db2, settings)  # every asset: universe and exposures skip
    assert result.success, failure_messages(result)
    evaluations = result.get_asset_check_evaluations()
    names = {e.asset_check_key.name for e in evaluations}
    assert {"factor_returns_zero_sum", "volatility_tieout", "correlation_tieout"} <= names
    assert all(e.passed for e in evaluations)
    assert Store(db2).stored_dates("universe") == []
    q = "SELECT * FROM factor_covariance ORDER BY date, factor_1, factor_2"
    a, b = Store(db).read(q), Store(db2).read(q)
    assert a.select("date", "factor_1", "factor_2").equals(b.select("date", "factor_1", "factor_2"))
    np.testing.assert_allclose(b["covariance"].to_numpy(), a["covariance"].to_numpy(), rtol=1e-12)


def test_user_factor_returns_file_is_the_model(built, tmp_path):
    """The file's factors are the model (no settings subset needed): a file without Momentum
    gives the same forecasts for every other pair (the EWMA is pairwise)."""
    _, _, db, _, _ = built
    fr = Store(db).read("SELECT date, factor, factor_return FROM factor_returns")
    path = tmp_path / "factor_returns.csv"
    fr.filter(pl.col("factor") != "Momentum").write_csv(path)
    db2 = tmp_path / "x.duckdb"
    result = run(db2, settings_file(tmp_path, factor_returns=str(path)))
    assert result.success, failure_messages(result)
    q = (
        "SELECT * FROM factor_covariance WHERE factor_1 <> 'Momentum' AND factor_2 <> 'Momentum' "
        "ORDER BY date, factor_1, factor_2"
    )
    a, b = Store(db).read(q), Store(db2).read(q)
    assert a.select("date", "factor_1", "factor_2").equals(b.select("date", "factor_1", "factor_2"))
    np.testing.assert_allclose(b["covariance"].to_numpy(), a["covariance"].to_numpy(), rtol=1e-12)


# ---- bad input through run_range: a failed run naming the culprit, nothing stored changes ----

GOOD_END = SESSIONS[8]


@pytest.fixture()
def good_store(built, tmp_path):
    """A fresh DuckDB file holding a good materialisation of [START, GOOD_END], and the dataset
    path its settings point at (tests overwrite that file with bad data)."""
    _, data, _, _, _ = built
    path = tmp_path / "universe.parquet"
    good = pl.read_parquet(data)
    good.write_parquet(path)
    settings = settings_file(tmp_path, str(path))
    db = tmp_path / "fc.duckdb"
    result = run(db, settings, START, GOOD_END)
    assert result.success, failure_messages(result)
    return db, settings, path, good


def _row(frame: pl.DataFrame, day: dt.date, k: int = 0) -> tuple[str, pl.Expr]:
    asset = frame.filter(pl.col("date") == day).sort("asset_id")["asset_id"][k]
    return asset, (pl.col("date") == day) & (pl.col("asset_id") == asset)


def _set(frame: pl.DataFrame, where: pl.Expr, column: str, value: object) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(where).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


BAD_DAY = SESSIONS[10]


def _bad_nan(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    asset, where = _row(f, BAD_DAY)
    return _set(f, where, "total_return", float("nan")), [str(BAD_DAY), asset, "NaN"]


def _bad_inf(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    asset, where = _row(f, BAD_DAY, 2)
    return _set(f, where, "total_return", float("inf")), [str(BAD_DAY), asset, "infinite"]


def _bad_duplicate(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    asset, where = _row(f, BAD_DAY, 1)
    return pl.concat([f, f.filter(where)]), [str(BAD_DAY), asset, "duplicate"]


def _bad_cap(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    asset, where = _row(f, BAD_DAY, 3)
    return _set(f, where, "market_cap", -5.0), [str(BAD_DAY), asset, "market_cap"]


def _missing_cap(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    asset, where = _row(f, BAD_DAY, 4)
    return _set(f, where, "market_cap", None), [str(BAD_DAY), asset, "market_cap", "missing"]


def _bad_sector(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    asset, where = _row(f, BAD_DAY, 5)
    return _set(f, where, "sector", "Tech'nology; DROP TABLE universe"), [
        str(BAD_DAY), asset, "unknown sector", "Tech'nology; DROP TABLE universe"
    ]  # fmt: skip


def _percent(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    return f.with_columns(pl.col("total_return") * 100), ["percent", "divide by 100"]


def _holiday(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    good_friday = dt.date(2025, 4, 18)
    row = (
        f.filter(pl.col("date") == SESSIONS[-1])
        .head(1)
        .with_columns(pl.lit(good_friday).alias("date"))
    )
    return pl.concat([f, row]), [str(good_friday), row["asset_id"][0], "not exchange sessions"]


def _missing_style(f: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    return f.drop("descriptor_size"), ["'size'", "factors"]


@pytest.mark.parametrize(
    "make_bad",
    [
        _bad_nan,
        _bad_inf,
        _bad_duplicate,
        _bad_cap,
        _missing_cap,
        _bad_sector,
        _percent,
        _holiday,
        _missing_style,
    ],
)
def test_bad_dataset_fails_clearly_and_changes_nothing(good_store, make_bad):
    db, settings, path, good = good_store
    before = snapshot(db)
    bad, expected = make_bad(good)
    bad.write_parquet(path)
    result = run(db, settings, SESSIONS[9], END)  # the next range of the same file
    assert not result.success
    message = " ".join(failure_messages(result))
    assert message.startswith("universe") and "InputDataError" in message
    for needle in [str(path), *expected]:
        assert needle in message, (needle, message)
    assert_unchanged(before, db)


@pytest.mark.parametrize(
    ("patch", "needles"),
    [
        ({"factor_cov_settings": {"halflife_voll": 60}}, ["halflife_voll", "unknown key"]),
        ({"factor_cov_settings": {"nw_lags_cor": "two"}}, ["nw_lags_cor", "'two'"]),
        (
            {"factor_model_settings": {"modelconstruction": {"return_clip_bounds": [0.1, 0.2]}}},
            ["return_clip_bounds"],
        ),
    ],
)
def test_bad_settings_file_fails_clearly_and_changes_nothing(good_store, tmp_path, patch, needles):
    db, settings, _, _ = good_store
    before = snapshot(db)
    data = json.loads(Path(settings).read_text())
    for section, values in patch.items():
        data.setdefault(section, {}).update(values)
    bad = tmp_path / "bad-settings.json"
    bad.write_text(json.dumps(data))
    result = run(db, str(bad), SESSIONS[9], END)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "SettingsError" in message and str(bad) in message
    for needle in needles:
        assert needle in message, (needle, message)
    assert_unchanged(before, db)


def test_thin_and_empty_sectors_give_a_defined_result(built, tmp_path):
    """One asset in Utilities (fewer assets than factors in that category) and no Energy asset
    on one date: the run succeeds with finite factor returns; with thin_category_shrinkage the
    thin sector's return is pulled towards 0."""
    _, data, _, _, _ = built
    frame = pl.read_parquet(data)
    utilities = frame.filter(pl.col("sector") == "Utilities")["asset_id"].unique().sort()
    empty_day = SESSIONS[5]
    frame = frame.filter(
        ~pl.col("asset_id").is_in(utilities[1:].implode())
        & ~((pl.col("date") == empty_day) & (pl.col("sector") == "Energy"))
    )
    path = tmp_path / "thin.parquet"
    frame.write_parquet(path)
    out = {}
    for shrink in (0.0, 0.5):
        s = json.loads(Path(settings_file(tmp_path, str(path))).read_text())
        s["factor_model_settings"]["modelconstruction"] = {"thin_category_shrinkage": shrink}
        sp = tmp_path / f"thin-{shrink}.json"
        sp.write_text(json.dumps(s))
        db = tmp_path / f"thin-{shrink}.duckdb"
        result = run(db, str(sp), START, SESSIONS[8], selection=GAP_SELECTION)
        assert result.success, failure_messages(result)
        fr = Store(db).read("SELECT * FROM factor_returns ORDER BY date, factor")
        assert fr["factor_return"].is_finite().all()
        vol = Store(db).read("SELECT volatility FROM factor_volatility")["volatility"]
        assert vol.is_finite().all()
        out[shrink] = fr.filter(pl.col("factor") == "Utilities")["factor_return"].abs().sum()
    assert out[0.5] < out[0.0]
