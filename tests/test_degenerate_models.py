"""Degenerate models, warm-up and the bias summaries through the whole pipeline, on DuckDB and
PostgreSQL (issues 21.3, 21.4, 21.5, 21.7), checked from the public tables against numbers
computed here independently.

Two real-looking universes of user data:

- `sectors`: 36 stocks in Technology (15), Financials (12), Energy (8) and Utilities (one
  stock: its specific return is 0 by construction), Market + Size + Momentum, 46 sessions with
  one session without any return (a gap), short half-lives so that forecasts become warm
  within the range, two standing portfolios;
- `exact`: 7 stocks and 8 factors (Market, 3 sectors, 4 styles): fitted exactly on every date
  (0.8.0: `numpy.linalg.LinAlgError: Singular matrix` in risk_backtest, and specific risks of
  2.4e-17 stored without a word).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.resources import FactorcovPostgres, FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store
from factorcov_pipeline.storage.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).parent))
from pg_compare import assert_same_stores
from pg_server import postgres_server

START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 7, 31))[:46]
GAP = SESSIONS[20]  # no stock has a return
W_VOL, W_COR, W_SPEC = 8, 12, 15  # ceil of the largest half-life (or full_history), below
W_COV = max(W_VOL, W_COR)
MIN_HISTORY, FULL_HISTORY = 5, 15


def sectors_universe() -> pl.DataFrame:
    rng = np.random.default_rng(11)
    stocks = (
        [(f"T{i:02d}", "Technology") for i in range(15)]
        + [(f"F{i:02d}", "Financials") for i in range(12)]
        + [(f"E{i:02d}", "Energy") for i in range(8)]
        + [("U00", "Utilities")]
    )
    size = rng.normal(0, 1, len(stocks))
    beta = rng.uniform(0.6, 1.4, len(stocks))
    rows = []
    for t, day in enumerate(SESSIONS):
        market = rng.normal(0, 0.01)
        for i, (asset, sector) in enumerate(stocks):
            ret = None
            if t > 0 and day != GAP:
                ret = float(beta[i] * market + rng.normal(0, 0.015))
            rows.append(
                {
                    "date": day,
                    "asset_id": asset,
                    "sector": sector,
                    "market_cap": float(1e9 * math.exp(size[i] + 0.001 * t)),
                    "total_return": ret,
                    "descriptor_size": float(size[i]),
                    "descriptor_momentum": float(rng.normal()),
                }
            )
    return pl.DataFrame(rows)


def exact_universe() -> pl.DataFrame:
    rng = np.random.default_rng(5)
    stocks = [("A0", "Energy"), ("A1", "Energy"), ("A2", "Financials"), ("A3", "Financials")]
    stocks += [("A4", "Technology"), ("A5", "Technology"), ("A6", "Technology")]
    rows = []
    for t, day in enumerate(SESSIONS[:36]):
        for i, (asset, sector) in enumerate(stocks):
            row = {
                "date": day,
                "asset_id": asset,
                "sector": sector,
                "market_cap": 1e9 * (1 + i),
                "total_return": None if t == 0 else float(rng.normal(0, 0.01)),
            }
            for style in ("size", "value", "momentum", "volatility"):
                row[f"descriptor_{style}"] = float(rng.normal())
            rows.append(row)
    return pl.DataFrame(rows)


def _settings(tmp: Path, name: str, data: Path, sectors: list[str], styles: list[str]) -> str:
    holdings = tmp / f"{name}-holdings.csv"
    pd.DataFrame(
        [("tech", f"T{i:02d}", 1 / 15) for i in range(15)]
        + [("mixed", "U00", 0.5), ("mixed", "E00", 0.5)]
        if name == "sectors"
        else [("all", f"A{i}", 1 / 7) for i in range(7)],
        columns=["portfolio", "asset_id", "weight"],
    ).to_csv(holdings, index=False)
    path = tmp / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "factor_model_settings": {
                    "universe": {"dataset": str(data)},
                    "exposures": {
                        "exposures": [
                            {"hierarchy": "market"},
                            {"hierarchy": "trbc", "factors": sectors},
                            {"hierarchy": "style", "factors": styles},
                        ]
                    },
                },
                "factor_cov_settings": {"halflife_vol": 8, "halflife_cor": 12},
                "specific_risk_settings": {
                    "halflife": 10,
                    "halflife_vra": 6,
                    "min_history": MIN_HISTORY,
                    "full_history": FULL_HISTORY,
                },
                "portfolio_risk_settings": {"holdings": str(holdings), "drop_unknown": True},
            }
        )
    )
    return str(path)


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


# PostgreSQL runs stop at 29 sessions: from 30 stored dates risk_backtest's per-asset specific
# bias summary sends `median(...)`, which PostgreSQL lacks (issue 21.1, fixed separately);
# DuckDB runs the first 29 sessions (compared with PostgreSQL), then continues to the end.
PG_END = SESSIONS[28]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pg):
    """Both universes into a DuckDB file (`store`, and a copy after the first 29 sessions)
    and a PostgreSQL database of those 29 sessions."""
    tmp = tmp_path_factory.mktemp("degenerate-models")
    out = {}
    for name, frame, sectors, styles in (
        ("sectors", sectors_universe(), ["Energy", "Financials", "Technology", "Utilities"],
         ["Size", "Momentum"]),
        ("exact", exact_universe(), ["Energy", "Financials", "Technology"],
         ["Size", "Value", "Momentum", "Volatility"]),
    ):  # fmt: skip
        data = tmp / f"{name}.parquet"
        frame.write_parquet(data)
        settings = _settings(tmp, name, data, sectors, styles)
        end = frame["date"].max()
        db, db29 = tmp / f"{name}.duckdb", tmp / f"{name}-29.duckdb"
        url = pg.create_database(name)
        for resource, span in (
            (FactorcovStorage(database=str(db)), (START, PG_END)),
            (FactorcovPostgres(url=url), (START, PG_END)),
        ):
            result = run_range(*span, resource, settings, logger=quiet_logger())
            assert result.success, failure_messages(result)
        db29.write_bytes(db.read_bytes())
        # the rest as a second run: it continues from the stored recursion states
        nxt = SESSIONS[SESSIONS.index(PG_END) + 1]
        result = run_range(
            nxt, end, FactorcovStorage(database=str(db)), settings, logger=quiet_logger()
        )
        assert result.success, failure_messages(result)
        out[name] = (Store(db), PostgresStore(url), settings, db, end, Store(db29))
    return out


def _store(runs, name: str, which: str):
    """The whole range (DuckDB), or PostgreSQL's 29 sessions."""
    return runs[name][0] if which == "duckdb" else runs[name][1]


def _counts(store, days: list[dt.date]) -> np.ndarray:
    """Sessions with factor returns up to and including each day."""
    fr = sorted(set(store.read("SELECT DISTINCT date FROM factor_returns")["date"].to_list()))
    return np.searchsorted(
        np.array(fr, dtype="datetime64[D]"), np.array(days, "datetime64[D]"), "right"
    )


@pytest.mark.parametrize("which", ["duckdb", "postgres"])
def test_warm_flags_follow_the_half_lives(runs, which):
    """Every forecast table's `warm`: more than W sessions with returns up to its date, W the
    largest half-life of the forecast (8, 12, 12 and 15 here); published from the first date
    on (row counts as without the flag)."""
    store = _store(runs, "sectors", which)
    for table, w in (
        ("factor_volatility", W_VOL),
        ("volatility_regime", W_VOL),
        ("factor_correlation", W_COR),
        ("factor_covariance", W_COV),
        ("specific_risk", W_SPEC),
    ):
        per = store.read(
            f"SELECT date, min(CAST(warm AS INTEGER)) AS lo, max(CAST(warm AS INTEGER)) AS hi "
            f"FROM {table} GROUP BY date ORDER BY date"
        )
        days = per["date"].to_list()
        last = SESSIONS[-1] if which == "duckdb" else PG_END
        assert days[0] == SESSIONS[1] and days[-1] == last, table
        assert per["lo"].to_list() == per["hi"].to_list(), table  # one flag per date
        expected = (_counts(store, days) > w).astype(int).tolist()
        assert per["lo"].to_list() == expected, table
        assert 0 < sum(expected) < len(days), table
    n_dates = 45 if which == "duckdb" else 28
    assert store.read("SELECT count(*) AS n FROM covariance_report")["n"][0] == n_dates * 7
    assert "warm" not in store.read("SELECT * FROM covariance_report LIMIT 0").columns


@pytest.mark.parametrize("which", ["duckdb", "postgres"])
def test_specific_risk_says_why_it_was_not_estimated_from_own_returns(runs, which):
    store = _store(runs, "sectors", which)
    spec = store.read("SELECT * FROM specific_risk ORDER BY date, asset_id").to_pandas()
    u = store.read("SELECT date, asset_id, specific_return FROM specific_returns").to_pandas()
    assert not store.read("SELECT * FROM regression_stats WHERE exactly_fitted")["date"].len()
    # the only Utilities stock: its specific return is 0 by construction; its forecast is the
    # structural one (a number, not ~1e-17), with the reason, on every date (the gap too)
    alone = spec[spec["asset_id"] == "U00"]
    assert (u[u["asset_id"] == "U00"]["specific_return"].abs() < 1e-12).all()
    assert set(alone["reason"]) == {"single_asset_category"}
    assert (alone["specific_risk"] > 0.01).all()
    # the others: own informative returns h up to each date decide the reason
    others = u[u["asset_id"] != "U00"].sort_values("date")
    h = others.groupby("asset_id").cumcount() + 1
    hist = others.assign(h=h)[["date", "asset_id", "h"]]
    got = spec[spec["asset_id"] != "U00"].merge(hist, on=["date", "asset_id"], how="left")
    got["h"] = got.groupby("asset_id")["h"].ffill().fillna(0)  # the gap: no new return
    expected = np.where(
        got["h"] >= FULL_HISTORY,
        None,
        np.where(got["h"] <= MIN_HISTORY, "short_history", "partial_history"),
    )
    assert got["reason"].fillna("NULL").tolist() == pd.Series(expected).fillna("NULL").tolist()
    assert got["specific_risk"].notna().all()


@pytest.mark.parametrize("which", ["duckdb", "postgres"])
def test_a_session_without_returns_is_missing_not_zero(runs, which):
    """Issue 21.7: on the gap session every backtest portfolio's realised return is NULL with
    reason `no_returns` (0.8.0 stored 0), the forecast is still there, and the outcomes of
    forecast_bias are NULL too; the summaries skip them."""
    store = _store(runs, "sectors", which)
    bt = store.read("SELECT * FROM risk_backtest ORDER BY date, portfolio")
    gap = bt.filter(pl.col("date") == GAP)
    assert gap["portfolio"].to_list() == ["min_variance", "mixed", "tech"]
    assert gap["realised_return"].null_count() == 3
    assert set(gap["reason"]) == {"no_returns"} and gap["predicted_risk"].null_count() == 0
    rest = bt.filter(pl.col("date") != GAP)
    assert rest["reason"].null_count() == rest.height
    assert rest["realised_return"].null_count() == 0
    fo = store.read("SELECT * FROM forecast_outcomes WHERE date = ?", [GAP])
    assert fo.height == 7 + 20 and fo["realised_return"].null_count() == fo.height


def _summary_rows(frame: pd.DataFrame, warm_col: str) -> dict[tuple[str, str], dict]:
    """The documented summary computed with pandas: per sample and portfolio, the std (ddof 1)
    of z = realised / (predicted / sqrt(252)), its count, band, first and last date."""
    frame = frame.assign(z=frame["realised_return"] / (frame["predicted_risk"] / math.sqrt(252)))
    out = {}
    for sample in ("warm", "all"):
        part = frame[frame[warm_col]] if sample == "warm" else frame
        for name, g in part.groupby("portfolio"):
            z = g["z"].dropna()
            out[(sample, name)] = {
                "n_obs": len(z),
                "full_sample_bias": z.std(ddof=1),
                "band_high": 1 + math.sqrt(2 / len(z)),
                "first_date": g.loc[z.index, "date"].min(),
                "last_date": g.loc[z.index, "date"].max(),
            }
    return out


def _assert_summary(stored: pl.DataFrame, expected: dict, as_of: dt.date) -> None:
    assert stored.height == len(expected)
    for row in stored.iter_rows(named=True):
        want = expected[(row["sample"], row["portfolio"])]
        assert row["n_obs"] == want["n_obs"], row
        assert row["full_sample_bias"] == pytest.approx(want["full_sample_bias"], rel=1e-12)
        assert row["band_high"] == pytest.approx(want["band_high"], rel=1e-14)
        assert (row["first_date"], row["last_date"]) == (
            pd.Timestamp(want["first_date"]).date(),
            pd.Timestamp(want["last_date"]).date(),
        )
        assert row["n_windows_12m"] == 0 and row["as_of"] == as_of  # 45 dates: no 12 months


@pytest.mark.parametrize("which", ["duckdb", "postgres"])
def test_summaries_tie_out(runs, which):
    """forecast_bias_summary from factor_returns and factor_covariance alone (the random
    portfolios rebuilt from their documented recipe, keyed by factor name), and
    risk_backtest_summary from risk_backtest, both with and without the warm-up."""
    store = _store(runs, "sectors", which)
    fr = store.read("SELECT date, factor, factor_return FROM factor_returns").to_pandas()
    cov = store.read("SELECT date, factor_1, factor_2, covariance FROM factor_covariance")
    names = sorted(set(fr["factor"]))
    f = fr.pivot(index="date", columns="factor", values="factor_return")
    days = sorted(set(cov["date"].to_list()))
    cube = {
        d: g.to_pandas()
        .pivot(index="factor_1", columns="factor_2", values="covariance")
        .loc[names, names]
        .to_numpy()
        / 252.0
        for (d,), g in cov.group_by("date")
    }
    weights = {n: np.eye(len(names))[i] for i, n in enumerate(names)}
    draws = []
    for n in names:
        words = [int.from_bytes(hashlib.sha256(n.encode()).digest()[i : i + 4], "little")
                 for i in range(0, 32, 4)]  # fmt: skip
        draws.append(np.random.default_rng([0, *words]).standard_normal(20))
    rand = np.array(draws).T
    for i, row in enumerate(rand / np.linalg.norm(rand, axis=1, keepdims=True)):
        weights[f"random_{i + 1:02d}"] = row
    counts = _counts(store, days)
    rows = []
    for t in range(1, len(days)):
        ret = (
            f.loc[pd.Timestamp(days[t])].reindex(names)
            if pd.Timestamp(days[t]) in f.index
            else None
        )
        for name, w in weights.items():
            realised = float(ret.to_numpy() @ w) if ret is not None else np.nan
            predicted = math.sqrt(w @ cube[days[t - 1]] @ w * 252.0)
            rows.append((days[t], name, realised, predicted, bool(counts[t - 1] > W_COV)))
    frame = pd.DataFrame(
        rows, columns=["date", "portfolio", "realised_return", "predicted_risk", "w"]
    )
    stored_outcomes = store.read("SELECT * FROM forecast_outcomes ORDER BY date, portfolio")
    assert stored_outcomes.height == len(frame)
    _assert_summary(
        store.read("SELECT * FROM forecast_bias_summary"), _summary_rows(frame, "w"), days[-1]
    )
    bt = store.read("SELECT * FROM risk_backtest").to_pandas()
    model = _counts(store, [calendar.previous_session(d.date()) for d in bt["date"]])
    assert bt["warm"].tolist() == (model > max(W_COV, W_SPEC)).tolist()
    _assert_summary(
        store.read("SELECT * FROM risk_backtest_summary"), _summary_rows(bt, "warm"), days[-1]
    )


def test_postgres_equals_duckdb_in_every_table(runs):
    for name in ("sectors", "exact"):
        pgs, duck = runs[name][1], runs[name][5]
        counts = assert_same_stores(duck, pgs)
        for table in ("forecast_outcomes", "forecast_bias_summary", "risk_backtest_summary"):
            assert counts[table] > 0, (name, table)


@pytest.mark.parametrize("which", ["duckdb", "postgres"])
def test_an_exactly_fitted_model_completes_and_says_why(runs, which):
    store = _store(runs, "exact", which)
    n = 35 if which == "duckdb" else 28  # dates with returns
    spec = store.read("SELECT * FROM specific_risk")
    assert spec.height == n * 7
    assert spec["specific_risk"].null_count() == spec.height
    assert set(spec["reason"]) == {"exactly_fitted"}
    bt = store.read("SELECT * FROM risk_backtest")
    assert bt.height == (n - 1) * 2
    assert set(bt["reason"]) == {"no_specific_risk"}
    assert bt["predicted_risk"].null_count() == bt.height
    pr = store.read("SELECT * FROM portfolio_risk")
    assert pr.height == n and pr["total_risk"].null_count() == n
    summary = store.read("SELECT * FROM risk_backtest_summary")
    assert set(summary["n_obs"]) == {0} and summary["full_sample_bias"].null_count() == 4


def test_the_exact_fit_run_says_why_in_its_log(runs, tmp_path, monkeypatch, capsys):
    _, _, settings, _, end, _ = runs["exact"]
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "cli.duckdb"))
    code = cli.main(["materialize", "--start", str(START), "--end", str(end),
                     "--settings", settings])  # fmt: skip
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 0, text
    assert "LinAlgError" not in text
    assert "specific_risk: no forecast on 35 date(s)" in text
    assert "exactly_fitted 245 asset-date(s)" in text
    assert "risk_backtest: min_variance: no_specific_risk on 34 session(s)" in text
    assert "portfolio_risk: all: no risk on 35 session(s)" in text


@pytest.mark.parametrize("which", ["duckdb", "postgres"])
def test_files_of_0_8_gain_the_columns_on_their_next_write(runs, tmp_path, which):
    """A store written before `warm`/`reason` existed (columns dropped here) gains them with
    its next write, NULL on its old rows; the backtest summary reads those rows as the warm
    flags they would have had (so it equals the full run's)."""
    _, _, settings, db, end, _ = runs["sectors"]
    if which == "duckdb":
        path = tmp_path / "old.duckdb"
        path.write_bytes(Path(db).read_bytes())
        store, resource = Store(path), FactorcovStorage(database=str(path))
        execute = _duck_execute(path)
    else:
        # the module's database, whose other tests have run (this one changes it)
        url = runs["sectors"][1].url
        resource, end = FactorcovPostgres(url=url), PG_END
        store, execute = PostgresStore(url), _pg_execute(url)
    before = store.read("SELECT * FROM risk_backtest_summary ORDER BY sample, portfolio")
    for table, cols in (
        ("factor_volatility", ["warm"]),
        ("specific_risk", ["warm", "reason"]),
        ("risk_backtest", ["warm", "reason"]),
    ):
        for col in cols:
            execute(f"ALTER TABLE {table} DROP COLUMN {col}")
    last3 = SESSIONS[SESSIONS.index(end) - 2 : SESSIONS.index(end) + 1]
    result = run_range(last3[0], last3[-1], resource, settings, logger=quiet_logger())
    assert result.success, failure_messages(result)
    for table in ("factor_volatility", "specific_risk", "risk_backtest"):
        rows = store.read(f"SELECT date, warm FROM {table}")
        old = rows.filter(pl.col("date") < last3[0])
        new = rows.filter(pl.col("date") >= last3[0])
        assert old["warm"].null_count() == old.height and new["warm"].null_count() == 0, table
    after = store.read("SELECT * FROM risk_backtest_summary ORDER BY sample, portfolio")
    assert after.equals(before)


def _duck_execute(path: Path):
    import duckdb

    def run(sql: str) -> None:
        with duckdb.connect(str(path)) as con:
            con.execute(sql)

    return run


def _pg_execute(url: str):
    import adbc_driver_postgresql.dbapi as dbapi

    def run(sql: str) -> None:
        with dbapi.connect(url) as con, con.cursor() as cur:
            cur.execute(sql)
            con.commit()

    return run


def _write_together(url: str, frame: pl.DataFrame, n: int) -> list[BaseException]:
    """`n` threads replacing the summary at the same moment (a barrier); their errors."""
    import threading

    from factorcov_pipeline.storage import TableWrite
    from factorcov_pipeline.storage.contract import WHOLE_TABLE_SPAN

    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store = PostgresStore(url)
            barrier.wait()
            store.replace([TableWrite("forecast_bias_summary", frame)], WHOLE_TABLE_SPAN)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_summary_replacements_leave_one_summary(pg):
    """`--parallel` runs of forecast_bias replace the summary at the same time: PostgreSQL keeps
    one summary, not the union of both (READ COMMITTED deletes only committed rows; the
    replacement takes its table lock first). Found by tests/test_parallel.py (164 rows)."""
    from factorcov_pipeline.core.backtest import SUMMARY_SCHEMA

    url = pg.create_database("race")
    rest = [c for c in SUMMARY_SCHEMA if c not in ("sample", "portfolio", "as_of")]
    frame = (
        pl.DataFrame({"sample": ["warm", "all"], "portfolio": ["p", "p"], "as_of": [START] * 2})
        .with_columns([pl.lit(None, dtype=SUMMARY_SCHEMA[c]).alias(c) for c in rest])
        .select(list(SUMMARY_SCHEMA))
    )
    assert not _write_together(url, frame, 1)
    for _ in range(10):
        assert not _write_together(url, frame, 3)
        n = PostgresStore(url).read("SELECT count(*) AS n FROM forecast_bias_summary")["n"][0]
        assert n == 2
