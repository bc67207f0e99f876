"""Storage: one transaction per write, by column name, rollback on error, lock retry."""

import datetime as dt
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from factorcov_pipeline.storage import Store, StoreBusyError, TableWrite

D1, D2 = dt.date(2025, 4, 1), dt.date(2025, 4, 2)


def _fr(day: dt.date, value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [day, day],
            "factor": ["Market", "Size"],
            "factor_group": ["market", "style"],
            "factor_return": [value, -value],
        }
    )


def test_replace_is_idempotent_and_matches_columns_by_name(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1))
    reordered = _fr(D1, 0.02).select(["factor_return", "factor", "date", "factor_group"])
    store.replace([TableWrite("factor_returns", reordered)], (D1, D1))
    store.replace([TableWrite("factor_returns", reordered)], (D1, D1))
    got = store.read("SELECT * FROM factor_returns ORDER BY factor")
    assert got.columns == ["date", "factor", "factor_group", "factor_return"]
    assert got["factor_return"].to_list() == [0.02, -0.02]


def test_a_failing_write_leaves_the_old_rows(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D2))
    bad = _fr(D1, 0.05).with_columns(pl.lit("x").alias("unexpected"))
    with pytest.raises(ValueError, match="unexpected"):
        store.replace(
            [TableWrite("factor_returns", _fr(D1, 0.03)), TableWrite("factor_returns", bad)],
            (D1, D2),
        )
    assert store.read("SELECT factor_return FROM factor_returns ORDER BY factor")[
        "factor_return"
    ].to_list() == [0.01, -0.01]


def test_names_with_quotes_are_data(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    evil = "O'Reilly; DROP TABLE universe"
    frame = pl.DataFrame(
        {"date": [D1], "factor": [evil], "factor_group": ["style"], "factor_return": [1.0]}
    )
    store.replace([TableWrite("factor_returns", frame)], (D1, D1))
    assert store.read("SELECT factor FROM factor_returns")["factor"].to_list() == [evil]


def test_settings_identity(tmp_path):
    from factorcov_pipeline.storage import SettingsMismatchError

    store = Store(tmp_path / "s.duckdb")
    store.replace(
        [TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1), settings_json='{"a": {"b": 1}}'
    )
    with pytest.raises(SettingsMismatchError, match=r"a\.b: stored 1, now 2"):
        store.replace(
            [TableWrite("factor_returns", _fr(D1, 0.09))], (D1, D1), settings_json='{"a": {"b": 2}}'
        )
    assert store.read("SELECT max(factor_return) AS m FROM factor_returns")["m"][0] == 0.01


def test_a_locked_file_gives_a_clear_busy_error(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).replace([TableWrite("factor_returns", _fr(D1, 0.01))], (D1, D1))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(path)!r})
            print("locked", flush=True)
            time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(StoreBusyError, match="locked by another process"),
            Store(path, lock_timeout=0.5).connect(read_only=True),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone the file opens and the rows are intact
    assert Store(path).read("SELECT count(*) AS n FROM factor_returns")["n"][0] == 2
