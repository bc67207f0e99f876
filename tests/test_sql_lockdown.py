"""`factorcov sql` writes nowhere (issue 12, item 9).

Each hostile statement goes through the public command (`cli.main`, and the installed program in
a subprocess for a few) and must be refused with ONE line on stderr and exit code 2, while the
main DuckDB file (its bytes and a hash of every table), another DuckDB file and the directory
around them stay exactly as they were. The same statements succeed on a plain read-only
connection, which is why `Store.connect_query_only` exists.
"""

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

START, END = dt.date(2025, 3, 31), dt.date(2025, 4, 7)


@pytest.fixture(scope="module")
def main_db(tmp_path_factory):
    """Four sessions x 100 assets of the real pipeline."""
    tmp = tmp_path_factory.mktemp("lockdown")
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 100}}}))
    db = tmp / "main.duckdb"
    result = run_range(
        START, END, FactorcovStorage(database=str(db)), str(settings), logger=quiet_logger()
    )
    assert result.success, failure_messages(result)
    return db


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_hashes(path: Path) -> dict[str, str]:
    """A hash of every table's rows (sorted), read through a separate plain connection."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        out = {}
        for name in names:
            rows = con.execute(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall()
            out[name] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return out
    finally:
        con.close()


@pytest.fixture
def scene(main_db, tmp_path, monkeypatch):
    """The main file, another DuckDB file and a hard link of the main file, side by side."""
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(main_db))
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t AS SELECT range AS i FROM range(5)")
    con.close()
    hard = tmp_path / "hard.duckdb"
    os.link(main_db, hard)
    return {
        "main": main_db,
        "other": other,
        "hard": hard,
        "dir": tmp_path,
        "before": (
            _file_hash(main_db),
            table_hashes(main_db),
            _file_hash(other),
            table_hashes(other),
            sorted(p.name for p in main_db.parent.iterdir()),
            sorted(p.name for p in tmp_path.iterdir()),
        ),
    }


def _state(scene):
    return (
        _file_hash(scene["main"]),
        table_hashes(scene["main"]),
        _file_hash(scene["other"]),
        table_hashes(scene["other"]),
        sorted(p.name for p in scene["main"].parent.iterdir()),
        sorted(p.name for p in scene["dir"].iterdir()),
    )


HOSTILE = {
    "insert": "INSERT INTO factor_volatility VALUES (DATE '2025-04-01', 'X', 1.0)",
    "update": "UPDATE factor_volatility SET volatility = 0",
    "delete": "DELETE FROM factor_returns",
    "drop": "DROP TABLE factor_returns",
    "create": "CREATE TABLE evil AS SELECT 1",
    "drop view": "DROP VIEW exposures",
    "select then drop": "SELECT 1; DROP TABLE factor_returns",
    "attach other read-write": "ATTACH '{other}' AS o (READ_WRITE); DROP TABLE o.t",
    "attach other": "ATTACH '{other}' AS o",
    "attach hard link of the main file": "ATTACH '{hard}' AS h; DROP TABLE h.factor_returns",
    "attach a new file": "ATTACH '{dir}/new.duckdb' AS n",
    "attach in-memory": "ATTACH ':memory:' AS m",
    "copy to csv": "COPY factor_returns TO '{dir}/out.csv'",
    "copy to parquet": "COPY (SELECT 1 AS x) TO '{dir}/out.parquet' (FORMAT parquet)",
    "export database": "EXPORT DATABASE '{dir}/export'",
    "import database": "IMPORT DATABASE '{dir}'",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "load a file": "LOAD '{dir}/evil.duckdb_extension'",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_text": "SELECT * FROM read_text('/etc/passwd')",
    "glob": "SELECT * FROM glob('/*')",
    "enable external access": "SET enable_external_access = true",
    "reset external access": "RESET enable_external_access",
    "unlock configuration": "SET lock_configuration = false",
    "unlock then copy": "SET lock_configuration = false; COPY factor_returns TO '{dir}/o.csv'",
    "allowed directories": "SET allowed_directories = ['{dir}']",
    "profiling to a file": "SET profiling_output = '{dir}/profile.json'",
    "logging to a file": "CALL enable_logging(storage = 'file', storage_path = '{dir}/log')",
    "temp directory": "SET temp_directory = '{dir}/spill'",
    "persistent secret": "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "read over https": "SELECT * FROM read_csv('https://example.com/x.csv')",
    "copy to stdout": "COPY (SELECT 1 AS x) TO '/dev/stdout'",
    "attach sqlite": "ATTACH '{dir}/x.sqlite' AS q (TYPE sqlite)",
    "install from a file": "INSTALL '{dir}/evil.duckdb_extension'",
    "checkpoint on shutdown": "PRAGMA enable_checkpoint_on_shutdown",
    "memory limit": "SET memory_limit = '1TB'",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_statement_is_refused_in_one_line_and_nothing_changes(scene, name, capsys):
    sql = HOSTILE[name].format(**{k: scene[k] for k in ("other", "hard", "dir")})
    code = cli.main(["sql", sql])
    out = capsys.readouterr()
    assert code == 2, (name, out)
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("factorcov: error: SQL: "), out.err
    assert "Traceback" not in out.err and out.out == ""
    assert _state(scene) == scene["before"]


@pytest.mark.parametrize(
    "sql",
    ["CHECKPOINT", "FORCE CHECKPOINT", "VACUUM", "ANALYZE", "CREATE TEMP TABLE tmp AS SELECT 1"],
)
def test_statements_duckdb_accepts_change_nothing(scene, sql, capsys):
    assert cli.main(["sql", sql]) == 0, capsys.readouterr()
    assert _state(scene) == scene["before"]


def test_queries_still_work_under_the_lockdown(scene, capsys):
    sql = (
        "SELECT count(*) AS n FROM exposures e JOIN factor_returns f USING (date, factor) "
        "WHERE e.date = DATE '2025-04-07'"
    )
    assert cli.main(["sql", sql, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    with duckdb.connect(str(scene["main"]), read_only=True) as con:
        assert row["n"] == con.execute(sql).fetchall()[0][0] > 0
    assert _state(scene) == scene["before"]


@pytest.mark.parametrize(
    "sql",
    ["ATTACH '{other}' AS o (READ_WRITE); DROP TABLE o.t", "COPY factor_returns TO '{dir}/o.csv'"],
)
def test_the_same_attacks_work_on_a_plain_read_only_connection(scene, sql):
    """Why the lockdown exists: DuckDB's read_only protects only the file it opens."""
    with Store(scene["main"]).connect(read_only=True) as con:
        con.execute(sql.format(other=scene["other"], dir=scene["dir"])).fetchall()
    assert _state(scene) != scene["before"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", 'Parser Error: syntax error at or near "SELEC"'),
        ("SELECT * FROM factor_retuns", 'Did you mean "factor_returns"'),
        ("SELECT CAST('x' AS INTEGER)", "Conversion Error"),
        ("ATTACH '{other}' AS o (READ_WRITE)", "factorcov sql is read-only"),
    ],
)
def test_installed_command_prints_one_line_exit_2(scene, sql, message):
    env = {**os.environ, "FACTORCOV_DUCKDB": str(scene["main"])}
    proc = subprocess.run(
        [sys.executable, "-m", "factorcov_pipeline.cli", "sql", sql.format(other=scene["other"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert _state(scene) == scene["before"]
