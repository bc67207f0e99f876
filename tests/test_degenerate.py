"""Degenerate regression dates are recorded per date, warned about and named in a check.

A real-looking small universe (Market + 3 TRBC sectors = 4 factors): Financials has one asset
(its specific return is 0 by construction), Energy has no asset on two dates (its factor is
empty), and on one date only 4 assets have returns (4 assets for 4 factors: fitted exactly).
"""

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 5, 30))[:14]
SECTORS = ["Energy", "Financials", "Technology"]
EMPTY_DAY = SESSIONS[6]  # no Energy row: Energy has no regressed asset on it and the next day
THIN_DAY = SESSIONS[10]  # only 4 assets have a return


def universe() -> pl.DataFrame:
    rng = np.random.default_rng(3)
    assets = (
        [(f"E{i}", "Energy") for i in range(5)]
        + [("F0", "Financials")]
        + [(f"T{i}", "Technology") for i in range(5)]
    )
    rows = []
    for t, day in enumerate(SESSIONS):
        for a, sector in assets:
            if day == EMPTY_DAY and sector == "Energy":
                continue
            ret = None if t == 0 else float(rng.normal(0.0, 0.01))
            if day == THIN_DAY and a not in ("E0", "E1", "F0", "T0"):
                ret = None
            rows.append((day, a, sector, 1e9 * (1 + ord(a[-1]) % 5), ret))
    return pl.DataFrame(
        rows,
        schema=["date", "asset_id", "sector", "market_cap", "total_return"],
        orient="row",
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("degenerate")
    data = tmp / "u.parquet"
    universe().write_parquet(data)
    settings = tmp / "s.json"
    settings.write_text(
        json.dumps(
            {
                "factor_model_settings": {
                    "universe": {"dataset": str(data)},
                    "exposures": {
                        "exposures": [
                            {"hierarchy": "market"},
                            {"hierarchy": "trbc", "factors": SECTORS},
                        ]
                    },
                }
            }
        )
    )
    db = tmp / "fc.duckdb"
    result = run_range(
        SESSIONS[0],
        SESSIONS[-1],
        FactorcovStorage(database=str(db), lock_timeout_seconds=5.0),
        str(settings),
        logger=quiet_logger(),
    )
    return tmp, str(settings), db, result


def test_each_case_is_recorded_per_date(setup):
    _, _, db, result = setup
    assert result.success, failure_messages(result)  # defined numbers: the run succeeds
    stats = Store(db).read("SELECT * FROM regression_stats ORDER BY date")
    by_date = {r["date"]: r for r in stats.iter_rows(named=True)}
    after_gap = SESSIONS[7]
    for day, row in by_date.items():
        expect_empty = "Energy" if day in (EMPTY_DAY, after_gap) else None
        assert row["empty_categories"] == expect_empty, day
        single = "Financials; Technology" if day == THIN_DAY else "Financials"  # T0 alone
        assert row["single_asset_categories"] == single, day
        assert row["exactly_fitted"] == (row["n_assets"] <= 4 or row["r_squared"] >= 1 - 1e-12)
    assert by_date[THIN_DAY]["n_assets"] == 4 and by_date[THIN_DAY]["exactly_fitted"]
    assert sum(r["exactly_fitted"] for r in by_date.values()) == 1
    # one asset in Financials: its specific return is 0 by construction
    spec = Store(db).read("SELECT * FROM specific_returns WHERE asset_id = 'F0'")
    assert spec.height == len(by_date)
    assert float(spec["specific_return"].abs().max()) < 1e-15
    # the empty sector's factor return is 0
    fr = Store(db).read(
        "SELECT factor_return FROM factor_returns WHERE factor = 'Energy' AND date IN (?, ?)",
        [EMPTY_DAY, after_gap],
    )
    assert fr["factor_return"].to_list() == [0.0, 0.0]


def test_each_case_is_named_in_the_check_metadata(setup):
    _, _, _, result = setup
    evals = {
        c.partition: c
        for c in result.get_asset_check_evaluations()
        if c.asset_check_key.name == "regression_degenerate_cases"
    }
    assert set(evals) == {str(d) for d in SESSIONS}  # one evaluation per session
    assert all(c.passed and c.severity.value == "WARN" for c in evals.values())  # informational
    text = {day: c.description or "" for day, c in evals.items()}
    fitted = [day for day, t in text.items() if "exactly fitted" in t]
    assert fitted == [str(THIN_DAY)]
    empty = [day for day, t in text.items() if "no asset" in t]
    assert len(empty) == 2 and "Energy" in text[str(EMPTY_DAY)]
    single = [day for day, t in text.items() if "one asset" in t]
    assert len(single) == len(SESSIONS) - 1 and any("Financials" in text[d] for d in single)
    counts = {day: c.metadata["degenerate_cases"].value for day, c in evals.items()}
    assert all(counts[d] == ("exactly fitted" in t) + ("no asset" in t) + ("one asset" in t)
               for d, t in text.items())  # fmt: skip


def test_each_case_is_named_in_the_command_output(setup, capsys, monkeypatch):
    tmp, settings, _, _ = setup
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp / "cli.duckdb"))
    code = cli.main(["materialize", "--start", str(SESSIONS[0]), "--end", str(SESSIONS[-1]),
                     "--settings", settings])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    warnings = [line for line in out.splitlines() if "degenerate regression" in line]
    assert len(warnings) == 3, out
    text = " ".join(warnings)
    assert "exactly fitted" in text and str(THIN_DAY) in text
    assert "no asset" in text and "Energy" in text and str(EMPTY_DAY) in text
    assert "one asset" in text and "Financials" in text
