"""Portfolio risk end to end, checked from the PUBLIC tables only.

This module imports nothing from factorcov_pipeline: the pipeline and `factorcov risk` run as
subprocesses, and every expected number is computed here with duckdb + numpy from the SQL
contract (the `exposures` view, `factor_covariance`, `specific_risk`, `universe`):
total risk = sqrt(h'(X F X' + diag(s^2)) h).
"""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

START = "2025-03-31"
END = "2025-05-09"  # 29 sessions


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACTORCOV_DUCKDB": str(db)}
    return subprocess.run(
        [sys.executable, "-m", "factorcov_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("risk")
    ids = [f"A{i + 1:06d}" for i in range(300)]
    rows = (
        [("equal", a, 1 / 100) for a in ids[:100]]
        + [("bench", a, 1 / 300) for a in ids]
        + [("longshort", a, 0.02 if i < 50 else -0.02) for i, a in enumerate(ids[100:200])]
    )
    holdings = tmp / "standing.csv"
    pd.DataFrame(rows, columns=["portfolio", "asset_id", "weight"]).to_csv(holdings, index=False)
    settings = tmp / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "factor_model_settings": {"universe": {"n_assets": 300}},
                "portfolio_risk_settings": {
                    "holdings": str(holdings),
                    "benchmark": "bench",
                    "drop_unknown": True,
                },
            }
        )
    )
    db = tmp / "fc.duckdb"
    res = _cli(db, "materialize", "--start", START, "--end", END, "--settings", str(settings))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp, db, holdings


def _sql(db: Path, sql: str, params=None) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).df()


def _model(db: Path, day: str):
    """X (N, K), F (K, K), s (N,) of `day` from the public tables, assets = specific_risk's."""
    spec = _sql(db, "SELECT asset_id, specific_risk FROM specific_risk WHERE date = ?", [day])
    expo = _sql(db, "SELECT asset_id, factor, exposure FROM exposures WHERE date = ?", [day])
    cov = _sql(
        db, "SELECT factor_1, factor_2, covariance FROM factor_covariance WHERE date = ?", [day]
    )
    f = cov.pivot(index="factor_1", columns="factor_2", values="covariance")
    factors = list(f.index)
    f = f.loc[factors, factors].to_numpy()
    x = (
        expo.pivot(index="asset_id", columns="factor", values="exposure")
        .reindex(index=spec["asset_id"], columns=factors)
        .fillna(0.0)
    )
    return spec["asset_id"].tolist(), x.to_numpy(), f, spec["specific_risk"].to_numpy(), factors


def _weights(ids: list[str], frame: pd.DataFrame) -> np.ndarray:
    w = pd.Series(0.0, index=ids)
    w.loc[frame["asset_id"]] = frame["weight"].to_numpy()
    return w.to_numpy()


def test_every_asset_with_an_exposure_has_a_specific_risk(built):
    _, db, _ = built
    counts = _sql(
        db,
        "SELECT e.date, count(*) AS n_expo, count(s.specific_risk) AS n_spec, "
        "min(s.specific_risk) AS lo, max(s.specific_risk) AS hi "
        "FROM exposures_wide e LEFT JOIN specific_risk s USING (date, asset_id) "
        "WHERE e.date > DATE '2025-03-31' GROUP BY e.date",
    )
    assert len(counts) == 28
    assert (counts["n_expo"] == counts["n_spec"]).all()
    assert (counts["lo"] > 0.05).all() and (counts["hi"] < 2.0).all()


def test_total_risk_from_the_public_tables(built):
    tmp, db, _ = built
    day = "2025-05-09"
    ids, x, f, s, factors = _model(db, day)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ids), 40, replace=False)
    port = pd.DataFrame(
        {"asset_id": [ids[i] for i in pick], "weight": rng.uniform(-0.02, 0.05, 40)}
    )
    bench = pd.DataFrame({"asset_id": ids, "weight": np.full(len(ids), 1 / len(ids))})
    port.to_csv(tmp / "p.csv", index=False)
    bench.to_parquet(tmp / "b.parquet")
    res = _cli(
        db,
        "risk",
        "--portfolio",
        str(tmp / "p.csv"),
        "--date",
        day,
        "--benchmark",
        str(tmp / "b.parquet"),
        "--format",
        "json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out) == [
        "date",
        "total_risk",
        "factor_risk",
        "specific_risk",
        "factors",
        "groups",
        "specific_contribution",
        "active",
        "beta",
        "warnings",
    ]
    h = _weights(ids, port)
    b = _weights(ids, bench)
    v = x @ f @ x.T + np.diag(s**2)
    np.testing.assert_allclose(out["total_risk"], np.sqrt(h @ v @ h), rtol=1e-12)
    np.testing.assert_allclose(out["factor_risk"], np.sqrt(h @ x @ f @ x.T @ h), rtol=1e-12)
    np.testing.assert_allclose(out["specific_risk"], np.sqrt(np.sum(h**2 * s**2)), rtol=1e-12)
    contrib = sum(r["contribution"] for r in out["factors"]) + out["specific_contribution"]
    np.testing.assert_allclose(contrib, out["total_risk"], rtol=1e-12)
    assert [r["factor"] for r in out["factors"]] == factors
    expo = {r["factor"]: r["exposure"] for r in out["factors"]}
    np.testing.assert_allclose([expo[k] for k in factors], x.T @ h, rtol=1e-12, atol=1e-15)
    groups = {g["factor_group"]: g["contribution"] for g in out["groups"]}
    assert set(groups) == {"market", "trbc", "style"}
    np.testing.assert_allclose(
        sum(groups.values()) + out["specific_contribution"], out["total_risk"], rtol=1e-12
    )
    a = h - b
    np.testing.assert_allclose(out["active"]["total_risk"], np.sqrt(a @ v @ a), rtol=1e-12)
    np.testing.assert_allclose(out["beta"], (h @ v @ b) / (b @ v @ b), rtol=1e-12)
    a_sum = sum(r["contribution"] for r in out["active"]["factors"])
    np.testing.assert_allclose(
        a_sum + out["active"]["specific_contribution"], out["active"]["total_risk"], rtol=1e-12
    )
    # the other formats carry the same numbers
    csv = _cli(db, "risk", "--portfolio", str(tmp / "p.csv"), "--date", day, "--format", "csv")
    rows = pd.read_csv(pd.io.common.StringIO(csv.stdout))
    total = rows.query("item == 'summary' and name == 'total_risk'")["value"].iloc[0]
    np.testing.assert_allclose(total, out["total_risk"], rtol=1e-12)
    table = _cli(db, "risk", "--portfolio", str(tmp / "p.csv"), "--date", day)
    total_line = next(ln for ln in table.stdout.splitlines() if ln.startswith("total risk"))
    assert table.returncode == 0 and f"{100 * out['total_risk']:.2f}" in total_line


def test_standing_portfolio_risk_table_from_the_public_tables(built):
    _, db, holdings = built
    hold = pd.read_csv(holdings)
    stored = _sql(db, "SELECT * FROM portfolio_risk ORDER BY date, portfolio")
    contrib = _sql(db, "SELECT * FROM portfolio_risk_contributions")
    assert stored["date"].nunique() == 28 and set(stored["portfolio"]) == {
        "equal",
        "bench",
        "longshort",
    }
    for day in ["2025-04-01", "2025-04-22", "2025-05-09"]:
        ids, x, f, s, _ = _model(db, day)
        v = x @ f @ x.T + np.diag(s**2)
        b = _weights(ids, hold[hold.portfolio.eq("bench") & hold.asset_id.isin(ids)])
        for name in ["equal", "bench", "longshort"]:
            part = hold[hold.portfolio.eq(name) & hold.asset_id.isin(ids)]  # unknown dropped
            h = _weights(ids, part)
            row = stored[(stored.date == pd.Timestamp(day)) & (stored.portfolio == name)].iloc[0]
            np.testing.assert_allclose(row.total_risk, np.sqrt(h @ v @ h), rtol=1e-12)
            np.testing.assert_allclose(
                row.active_risk, np.sqrt((h - b) @ v @ (h - b)), rtol=1e-10, atol=1e-14
            )
            np.testing.assert_allclose(row.beta, (h @ v @ b) / (b @ v @ b), rtol=1e-12)
            c = contrib[(contrib.date == pd.Timestamp(day)) & (contrib.portfolio == name)]
            np.testing.assert_allclose(c.contribution.sum(), row.total_risk, rtol=1e-12)


def test_backtest_realised_and_predicted_risk(built):
    _, db, holdings = built
    hold = pd.read_csv(holdings)
    bt = _sql(db, "SELECT * FROM risk_backtest ORDER BY date, portfolio")
    assert set(bt["portfolio_kind"]) == {"standing", "min_variance"}
    day, prev = "2025-04-22", "2025-04-21"
    pr = _sql(db, "SELECT portfolio, total_risk FROM portfolio_risk WHERE date = ?", [prev])
    uni = _sql(db, "SELECT asset_id, asset_return FROM universe WHERE date = ?", [day])
    ids = _model(db, prev)[0]
    r = uni.set_index("asset_id")["asset_return"].reindex(ids).fillna(0.0)
    for name in ["equal", "longshort"]:
        row = bt[(bt.date == pd.Timestamp(day)) & (bt.portfolio == name)].iloc[0]
        exp_pred = pr.set_index("portfolio").loc[name, "total_risk"]
        np.testing.assert_allclose(row.predicted_risk, exp_pred, rtol=1e-12)
        part = hold[hold.portfolio.eq(name) & hold.asset_id.isin(ids)]
        np.testing.assert_allclose(
            row.realised_return, _weights(ids, part) @ r.to_numpy(), rtol=1e-12, atol=1e-16
        )
    mv = bt[bt.portfolio == "min_variance"]
    assert len(mv) == 27 and (mv.predicted_risk > 0).all()
    spec = _sql(db, "SELECT * FROM specific_risk_bias")
    assert set(spec["size_decile"]) == set(range(1, 11)) and (spec["bias"] > 0).all()


def _refused(db: Path, *args: str) -> str:
    res = _cli(db, "risk", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr  # one line, no traceback
    return lines[0]


def test_bad_holdings_are_refused_clearly(built):
    tmp, db, _ = built
    day = "2025-05-09"
    ok = _sql(db, "SELECT asset_id FROM specific_risk WHERE date = ? LIMIT 3", [day])["asset_id"]
    cases = {
        "unknown.csv": (
            f"asset_id,weight\n{ok[0]},0.5\nNOPE1,0.2\nNOPE2,0.3\n",
            "2 asset id(s) not in the model on 2025-05-09: NOPE1, NOPE2",
        ),
        "nan.csv": (
            f"asset_id,weight\n{ok[0]},0.5\n{ok[1]},NaN\n",
            f"weight is missing, NaN or infinite for asset(s) {ok[1]}",
        ),
        "blank.csv": (f"asset_id,weight\n{ok[0]},0.5\n{ok[1]},\n", f"asset(s) {ok[1]}"),
        "dup.csv": (
            f"asset_id,weight\n{ok[0]},0.5\n{ok[0]},0.5\n",
            f"listed more than once: {ok[0]}",
        ),
        "empty.csv": ("asset_id,weight\n", "has no holdings (empty)"),
        "cols.csv": ("asset,weight\nA,1\n", "missing column(s) ['asset_id']"),
        "text.csv": (f"asset_id,weight\n{ok[0]},abc\n", "weight is not numeric"),
    }
    for name, (text, expected) in cases.items():
        path = tmp / name
        path.write_text(text)
        msg = _refused(db, "--portfolio", str(path), "--date", day)
        assert expected in msg and str(path) in msg, (name, msg)
    # a date without a forecast names the nearest ones; a non-date is refused
    msg = _refused(db, "--portfolio", str(tmp / "unknown.csv"), "--date", "2025-05-10")
    assert "no risk forecast stored for 2025-05-10" in msg
    assert "nearest stored dates: 2025-05-09 (before), none after" in msg
    msg = _refused(db, "--portfolio", str(tmp / "unknown.csv"), "--date", "2025-04-18")
    assert "nearest stored dates: 2025-04-17 (before), 2025-04-21 (after)" in msg
    assert "not a date" in _refused(db, "--portfolio", str(tmp / "x.csv"), "--date", "05/09")
    assert "not found" in _refused(db, "--portfolio", str(tmp / "missing.csv"), "--date", day)
    # --drop-unknown: the rest is reported, the dropped weight named on stderr
    res = _cli(
        db,
        "risk",
        "--portfolio",
        str(tmp / "unknown.csv"),
        "--date",
        day,
        "--drop-unknown",
        "--format",
        "json",
    )
    assert res.returncode == 0, res.stderr
    assert "dropped 2 asset id(s)" in res.stderr and "weight 0.5" in res.stderr
    ids, x, f, s, _ = _model(db, day)
    h = _weights(ids, pd.DataFrame({"asset_id": [ok[0]], "weight": [0.5]}))
    v = x @ f @ x.T + np.diag(s**2)
    np.testing.assert_allclose(json.loads(res.stdout)["total_risk"], np.sqrt(h @ v @ h), rtol=1e-12)
    assert dt.date.fromisoformat(json.loads(res.stdout)["date"]) == dt.date(2025, 5, 9)


def test_specific_bias_by_size_decile_equals_pandas(built):
    """`specific_risk_bias` of a date, recomputed in pandas from the stored specific returns,
    the previous session's specific risk and market caps."""
    _, db, _ = built
    day, prev = "2025-04-22", "2025-04-21"
    u = _sql(db, "SELECT asset_id, specific_return FROM specific_returns WHERE date = ?", [day])
    s = _sql(db, "SELECT asset_id, specific_risk FROM specific_risk WHERE date = ?", [prev])
    caps = _sql(db, "SELECT asset_id, market_cap FROM universe WHERE date = ?", [prev])
    frame = u.merge(s, on="asset_id").merge(caps, on="asset_id")
    frame = frame[frame.specific_risk > 0].sort_values("asset_id").reset_index(drop=True)
    frame["z"] = frame.specific_return / (frame.specific_risk / np.sqrt(252))
    rank = frame.market_cap.rank(method="first").astype(int) - 1
    frame["size_decile"] = rank * 10 // len(frame) + 1
    expected = frame.groupby("size_decile").agg(
        n_assets=("z", "size"), bias=("z", lambda z: np.sqrt(np.mean(z**2)))
    )
    got = _sql(
        db,
        "SELECT size_decile, n_assets, bias FROM specific_risk_bias WHERE date = ? "
        "ORDER BY size_decile",
        [day],
    ).set_index("size_decile")
    assert list(got.index) == list(range(1, 11))
    np.testing.assert_array_equal(got.n_assets.to_numpy(), expected.n_assets.to_numpy())
    np.testing.assert_allclose(got.bias.to_numpy(), expected.bias.to_numpy(), rtol=1e-12)


def test_specific_bias_rows_equal_a_per_date_stable_sort_bit_for_bit():
    """`specific_bias_rows` ranks all dates at once (polars, in parallel); a stable sort of each
    date's caps gives the same deciles, counts and bits, with equal caps (ranked in row order,
    i.e. asset id order) and a missing cap (ranked last, as NaN sorts) among them."""
    import polars as pl

    from factorcov_pipeline.orchestration.assets.risk_backtest import (
        N_DECILES,
        specific_bias_rows,
    )

    rng = np.random.default_rng(11)
    days = [dt.date(2025, 4, 1) + dt.timedelta(days=i) for i in range(5)]
    sizes = [37, 1, 12, 250, 9]
    date, z, cap = [], [], []
    for d, n in zip(days, sizes, strict=True):
        c = rng.choice([1.0, 2.0, 3.0, 7.5], size=n) * 1e9  # many ties
        if n > 5:
            c[3] = np.nan
        date += [d] * n
        z += list(rng.normal(size=n))
        cap += list(c)
    zc = pl.DataFrame({"date": date, "z": z, "market_cap": cap}).with_columns(
        pl.when(pl.col("market_cap").is_nan()).then(None).otherwise(pl.col("market_cap"))
    )
    got = specific_bias_rows(zc)
    rows = []
    for d in days:
        part = zc.filter(pl.col("date") == d)
        c = part["market_cap"].fill_null(np.nan).to_numpy()
        rank = np.empty(c.size, dtype=np.int64)
        rank[np.argsort(c, kind="stable")] = np.arange(c.size)
        decile = rank * N_DECILES // c.size + 1
        zz = part["z"].to_numpy()
        for k in range(1, N_DECILES + 1):
            sel = decile == k
            if sel.any():
                total = 0.0
                for v in zz[sel]:  # the order np.bincount adds in
                    total += v * v
                rows.append((d, k, int(sel.sum()), np.sqrt(total / sel.sum())))
    assert got.rows() == rows


def test_specific_risk_rerun_mid_history_replays_from_a_stored_state(built, tmp_path, monkeypatch):
    """States are stored at chunk ends, not every session: a partition in the middle of the
    history re-materialised alone replays from the nearest earlier state and stores the same
    forecasts, bit for bit."""
    import shutil

    from factorcov_pipeline.orchestration.assets import common
    from factorcov_pipeline.orchestration.resources import FactorcovStorage
    from factorcov_pipeline.orchestration.runner import quiet_logger, run_range
    from factorcov_pipeline.storage import contract

    tmp, db, _ = built
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    query = "SELECT * FROM specific_risk ORDER BY date, asset_id"
    before = _sql(copy, query)
    monkeypatch.setattr(common, "CHUNK_SESSIONS", 4)  # a state every 4 sessions
    monkeypatch.setattr(contract, "STATE_KEEP_DAYS", 14)  # the last of each 14-day span kept
    monkeypatch.setattr(contract, "STATE_KEEP_RECENT_DAYS", 0)  # and the latest
    replayed = []
    for start, end in ((START, END), ("2025-04-22", "2025-04-22")):
        result = run_range(
            dt.date.fromisoformat(start),
            dt.date.fromisoformat(end),
            FactorcovStorage(database=str(copy), lock_timeout_seconds=5.0),
            str(tmp / "settings.json"),
            logger=quiet_logger(),
            selection=["specific_risk"],
        )
        assert result.success
        (event,) = [
            e
            for e in result.get_asset_materialization_events()
            if e.partition == end and e.asset_key.to_user_string() == "specific_risk"
        ]
        replayed.append(event.materialization.metadata["replayed_sessions"].value)
    assert replayed[1] > 0  # 2025-04-22 replayed sessions after the state before it
    pd.testing.assert_frame_equal(_sql(copy, query), before, check_exact=True)
    kept = _sql(copy, "SELECT date FROM _forecast_state WHERE asset = 'specific_risk'")["date"]
    spans = [(d.date() - dt.date(1970, 1, 1)).days // 14 for d in pd.to_datetime(kept)]
    assert len(kept) >= 3 and len(spans) == len(set(spans))  # one state per 14-day span
