"""Bad environment variables and a hand-edited settings identity, through the `factorcov`
command (issue 21.7): each is one line naming the problem, exit code 2, nothing written.

0.8.0 printed tracebacks for `FACTORCOV_PARTITIONS_START=9999-12-31` or `0001-01-01` (the
calendar's year arithmetic), a malformed IPv6 `FACTORCOV_DATABASE_URL` (urllib's "Invalid IPv6
URL"), a 300-character `FACTORCOV_DUCKDB` file name ("File name too long" mid-run) and a
`model_settings.settings_json` edited to non-JSON, NULL or replaced by a view. The PostgreSQL
store's identity cases are in tests/test_postgres.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from factorcov_pipeline import cli, environment
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.settings import load_settings
from factorcov_pipeline.storage import Store, TableWrite

DAY = dt.date(2025, 4, 1)


def _factorcov(monkeypatch, capsys, argv: list[str], **env: str) -> tuple[int, str, str]:
    for name in ("FACTORCOV_DATABASE_URL", "FACTORCOV_SETTINGS", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1, out + err
    assert "Traceback" not in out + err
    return lines[0]


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "1884-12-31"])
def test_a_partitions_start_outside_the_calendar_is_one_line(monkeypatch, capsys, tmp_path, value):
    db = tmp_path / "fc.duckdb"
    for argv in (["materialize", "--end", "2025-04-02"], ["sql", "SELECT 1"]):
        line = _one_line(
            *_factorcov(
                monkeypatch,
                capsys,
                argv,
                FACTORCOV_PARTITIONS_START=value,
                FACTORCOV_DUCKDB=str(db),
            )
        )
        assert line.startswith(f"factorcov: error: FACTORCOV_PARTITIONS_START={value!r} is")
        assert (
            f"outside the New York Stock Exchange calendar's range {calendar.FIRST_SUPPORTED}"
            in (line)
        )
        assert str(calendar.last_supported()) in line
    assert not db.exists()


def test_the_first_supported_session_is_a_valid_start(monkeypatch):
    monkeypatch.setenv("FACTORCOV_PARTITIONS_START", "1885-01-02")
    assert environment.partitions_start(calendar.DEFAULT_START) == dt.date(1885, 1, 2)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://u:secret@[::1:5432/db", "is not a valid URL (Invalid IPv6 URL"),
        ("postgresql://u:secret@[::1]:5432x/db", "is not a valid URL (Port could not be cast"),
        ("postgresql://u:secret@host:99999/db", "is not a valid URL (Port out of range"),
        ("mysql://u:secret@host/db", "is not a PostgreSQL URL"),
    ],
)
def test_a_malformed_database_url_is_one_line_without_its_password(
    monkeypatch, capsys, tmp_path, url, needle
):
    db = tmp_path / "fc.duckdb"
    for argv in (
        ["materialize", "--end", "2025-04-02"],
        ["sql", "SELECT 1"],
        ["show", "2025-04-01"],
    ):
        line = _one_line(
            *_factorcov(
                monkeypatch, capsys, argv, FACTORCOV_DATABASE_URL=url, FACTORCOV_DUCKDB=str(db)
            )
        )
        assert line.startswith("factorcov: error: FACTORCOV_DATABASE_URL=") and needle in line
        assert "secret" not in line and "u:***@" in line
    assert not db.exists()


def test_hide_password():
    assert environment.hide_password("postgresql://u:p@ss@h:5/db") == "postgresql://u:***@h:5/db"
    assert environment.hide_password("postgresql://u@[::1/db") == "postgresql://u@[::1/db"
    assert environment.hide_password("postgresql://h/db?x=@") == "postgresql://h/db?x=@"


@pytest.mark.parametrize(("size", "ok"), [(300, False), (252, False), (251, True)])
def test_a_duckdb_file_name_too_long_for_the_file_system_is_one_line(
    monkeypatch, capsys, tmp_path, size, ok
):
    """The file system allows 255 bytes a name, and DuckDB names its log `<file>.wal`: 251
    bytes is the longest name that works (a 252-byte name failed at the first commit)."""
    db = tmp_path / ("f" * (size - len(".duckdb")) + ".duckdb")
    argv = ["sql", "SELECT 1 AS one"]
    code, out, err = _factorcov(monkeypatch, capsys, argv, FACTORCOV_DUCKDB=str(db))
    if ok:
        assert environment.database() == str(db)
        Store(db).replace(
            [TableWrite("t", pl.DataFrame({"date": [DAY], "x": [1.0]}))], (DAY, DAY)
        )  # DuckDB writes it, its .wal included
        assert db.exists()
        return
    line = _one_line(code, out, err)
    assert line.startswith("factorcov: error: FACTORCOV_DUCKDB=")
    assert f"has a file name of {size} bytes: at most 251" in line
    code, out, err = _factorcov(
        monkeypatch, capsys, ["materialize", "--end", "2025-04-02"], FACTORCOV_DUCKDB=str(db)
    )
    assert _one_line(code, out, err) == line
    assert list(tmp_path.iterdir()) == []


# ---- a hand-edited settings identity (DuckDB; PostgreSQL: tests/test_postgres.py) -----------

EDITS = {
    "not JSON": ("UPDATE model_settings SET settings_json = 'not json {'", "is not JSON"),
    "NULL": ("UPDATE model_settings SET settings_json = NULL", "settings_json is NULL"),
    "a view": (
        "ALTER TABLE model_settings RENAME TO kept; "
        "CREATE VIEW model_settings AS SELECT * FROM kept",
        "model_settings is a view, not the table",
    ),
    "two rows": (
        "INSERT INTO model_settings SELECT * FROM model_settings",
        "holds more than one row",
    ),
    "not an object": (
        "UPDATE model_settings SET settings_json = '[1, 2]'",
        "is not a JSON object",
    ),
}


def _store_with_identity(path: Path) -> Store:
    """A store holding one table's rows and the default settings as its identity."""
    store = Store(path)
    vol = pl.DataFrame({"date": [DAY], "factor": ["Market"], "volatility": [0.2]})
    store.replace(
        [TableWrite("factor_volatility", vol)],
        (DAY, DAY),
        settings_json=load_settings(None).fingerprint(),
    )
    return store


def _dump(path: Path) -> dict[str, list]:
    with duckdb.connect(str(path), read_only=True) as con:
        names = [
            r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()
        ]
        return {n: sorted(map(repr, con.sql(f'SELECT * FROM "{n}"').fetchall())) for n in names}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_hand_edited_settings_identity_is_one_line_and_nothing_is_written(
    monkeypatch, capsys, tmp_path, edit
):
    sql, needle = EDITS[edit]
    db = tmp_path / "fc.duckdb"
    store = _store_with_identity(db)
    with duckdb.connect(str(db)) as con:
        con.execute(sql)
    before = _dump(db)
    argv = ["materialize", "--end", "2025-04-02"]
    line = _one_line(*_factorcov(monkeypatch, capsys, argv, FACTORCOV_DUCKDB=str(db)))
    assert line.startswith(f"factorcov: error: {db}: model_settings") and needle in line
    assert "point FACTORCOV_DUCKDB at a new file" in line
    assert _dump(db) == before
    with pytest.raises(Exception, match=needle):  # a write through the store is refused too
        store.replace(
            [TableWrite("factor_volatility", pl.DataFrame({"date": [DAY], "factor": ["x"],
                                                           "volatility": [1.0]}))],
            (DAY, DAY),
            settings_json=load_settings(None).fingerprint(),
        )  # fmt: skip
    assert _dump(db) == before


def test_the_settings_row_restored_lets_the_run_check_pass(tmp_path):
    db = tmp_path / "fc.duckdb"
    store = _store_with_identity(db)
    fingerprint = load_settings(None).fingerprint()
    store.check_identity(fingerprint)
    assert json.loads(store.stored_settings() or "") == json.loads(fingerprint)
