"""`factorcov sql` and `factorcov show` against PostgreSQL (FACTORCOV_DATABASE_URL), on a real
throwaway server (tests/pg_server.py).

The same run stored in a DuckDB file and in PostgreSQL prints the same text for the README's
queries (every format) and for `show`; hostile statements are refused in one line with exit
code 2 and leave every table (hashed) as it was, whether the URL's user is a superuser (the
query then runs as `pg_read_all_data`) or a user that may only SELECT.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg_dbapi
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import FactorcovPostgres, FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store
from factorcov_pipeline.storage.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).parent))
from pg_server import postgres_server
from tablehash import store_hashes

REPO = Path(__file__).resolve().parents[1]
SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=20))[:8]
LAST = SESSIONS[-1]
README_DATE = "2026-03-31"


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def stores(pg, tmp_path_factory) -> tuple[Path, str]:
    """The default pipeline over 8 sessions x 100 assets, into a DuckDB file and PostgreSQL."""
    tmp = tmp_path_factory.mktemp("pgquery")
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 100}}}))
    db = tmp / "fc.duckdb"
    url = pg.create_database("query")
    for resource in (FactorcovStorage(database=str(db)), FactorcovPostgres(url=url)):
        result = run_range(SESSIONS[0], LAST, resource, str(settings), logger=quiet_logger())
        assert result.success, failure_messages(result)
    return db, url


Runner = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli_on(stores, monkeypatch, capsys) -> Callable[[str], Runner]:
    """cli_on("duckdb" | "postgres" | a URL)(argv, columns=100) -> (exit code, stdout, stderr)."""
    db, url = stores

    def backend(which: str) -> Runner:
        def run(argv: list[str], columns: int = 100) -> tuple[int, str, str]:
            monkeypatch.setenv("COLUMNS", str(columns))
            monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
            if which == "duckdb":
                monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
            else:
                monkeypatch.setenv("FACTORCOV_DATABASE_URL", url if which == "postgres" else which)
            code = cli.main(argv)
            out = capsys.readouterr()
            return code, out.out, out.err

        return run

    return backend


def readme_query_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("Then query the forecasts with SQL")[1].split("```bash")[1].split("```")[0]
    return [ln.strip() for ln in block.splitlines() if ln.strip()]


# ---- the same output from both stores -------------------------------------------------------


def test_readme_queries_print_the_same_on_duckdb_and_postgres(cli_on, stores):
    db_path, url = stores
    redacted = PostgresStore(url).location
    lines = readme_query_lines()
    assert any(ln.startswith("factorcov sql ") for ln in lines)
    assert any(ln.startswith("factorcov show ") for ln in lines)
    db, url = cli_on("duckdb"), cli_on("postgres")
    for line in lines:
        argv = shlex.split(line.replace(README_DATE, str(LAST)), comments=True)[1:]
        code_d, out_d, err_d = db(argv)
        code_p, out_p, err_p = url(argv)
        assert code_d == code_p == 0, (line, err_d, err_p)
        if argv[0] == "show":  # its heading names where the forecasts are stored
            assert str(db_path) in out_d and redacted in out_p
            out_d, out_p = (
                out_d.replace(str(db_path), "<store>"),
                out_p.replace(redacted, "<store>"),
            )
        assert out_p == out_d, line
        assert len(out_d.splitlines()) >= 2, (line, out_d)  # something was printed


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "markdown"])
def test_every_format_prints_the_same(cli_on, fmt):
    sql = (
        f"SELECT f.date, f.factor, f.factor_group, f.factor_return, v.volatility "
        f"FROM factor_returns f JOIN factor_volatility v USING (date, factor) "
        f"WHERE f.date >= DATE '{SESSIONS[2]}' ORDER BY f.date, f.factor"
    )
    argv = ["sql", "--format", fmt, "--limit", "50", sql]
    code_d, out_d, err_d = cli_on("duckdb")(argv, columns=80)
    code_p, out_p, err_p = cli_on("postgres")(argv, columns=80)
    assert code_d == code_p == 0, (err_d, err_p)
    assert (out_p, err_p) == (out_d, err_d)
    assert "50" in (out_d + err_d)  # the limit cut the rows, and it says so


def test_show_prints_the_same_for_a_subset_and_refuses_the_same(cli_on, stores):
    db_path, url = stores
    argv = ["show", str(LAST), "--factors", "Market", "Size", "Value"]
    _, out_d, _ = cli_on("duckdb")(argv, columns=60)
    code, out_p, err = cli_on("postgres")(argv, columns=60)
    assert code == 0, err
    assert out_p.replace(PostgresStore(url).location, "<store>") == out_d.replace(
        str(db_path), "<store>"
    )
    assert out_p.count("\n") > 8
    for argv, message in (
        (["show", str(SESSIONS[0] - dt.timedelta(days=3))], "nearest stored dates: none before"),
        (["show", str(LAST), "--factors", "Sise"], "--factors: 'Sise' not stored"),
    ):
        results = [cli_on(b)(argv) for b in ("duckdb", "postgres")]
        for code, out, err in results:
            assert code == 2 and out == "" and message in err, err
            assert len(err.strip().splitlines()) == 1
        assert results[0][2].split(" in ")[0] == results[1][2].split(" in ")[0]


def test_postgres_types_come_as_postgres_prints_them(cli_on):
    sql = "SELECT 1.25::numeric AS n, INTERVAL '3 days' AS i, ARRAY[1.5, NULL] AS l, 7 AS k"
    code, out, err = cli_on("postgres")(["sql", sql], columns=200)
    assert code == 0, err
    assert re.split(r"\s{2,}", out.splitlines()[2].strip()) == ["1.25", "3 days", "{1.5,NULL}", "7"]
    code, out, err = cli_on("postgres")(["sql", "--format", "json", sql])
    assert code == 0, err
    assert json.loads(out) == [{"n": 1.25, "i": "3 days", "l": [1.5, None], "k": 7}]


def test_a_trailing_semicolon_and_comment_are_one_query(cli_on):
    argv = ["sql", "--format", "csv", "SELECT count(*) AS n FROM factor_returns; -- a note"]
    code, out, err = cli_on("postgres")(argv)
    assert code == 0, err
    assert out == cli_on("duckdb")(argv)[1] == f"n\n{21 * (len(SESSIONS) - 1)}\n"


@pytest.mark.parametrize(
    ("backend", "slow"),
    [
        ("postgres", "SELECT pg_sleep(30)"),
        ("duckdb", "SELECT sum(hash(range)) AS s FROM range(1000000000000)"),
    ],
)
def test_a_query_past_its_timeout_is_stopped_in_one_line(cli_on, backend, slow):
    t0 = time.monotonic()
    code, out, err = cli_on(backend)(["sql", "--timeout", "1", slow])
    assert code == 2 and out == ""
    assert err.strip() == "factorcov: error: SQL: the query was stopped after 1 s (--timeout)"
    assert time.monotonic() - t0 < 20


def test_a_url_that_is_not_postgresql_is_one_line(cli_on):
    code, _, err = cli_on("mysql://u@h/db")(["sql", "SELECT 1"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a PostgreSQL URL" in err


def test_an_unreachable_server_is_one_line(cli_on, pg):
    dead = f"postgresql://postgres@127.0.0.1:{pg.port + 1}/none"
    for argv in (["sql", "SELECT 1"], ["show", str(LAST)]):
        code, out, err = cli_on(dead)(argv)
        assert code == 2 and out == "", err
        assert len(err.strip().splitlines()) == 1 and "cannot connect to PostgreSQL at" in err


# ---- hostile statements --------------------------------------------------------------------

HOSTILE = {
    "insert": "INSERT INTO factor_volatility (date, factor, volatility) "
    "VALUES (DATE '2025-04-01', 'X', 1.0)",
    "update": "UPDATE factor_volatility SET volatility = 0",
    "delete": "DELETE FROM factor_returns",
    "truncate": "TRUNCATE factor_returns",
    "drop": "DROP TABLE factor_returns",
    "drop view": "DROP VIEW exposures",
    "create": "CREATE TABLE evil AS SELECT 1 AS x",
    "create temp": "CREATE TEMP TABLE evil AS SELECT 1 AS x",
    "alter": "ALTER TABLE factor_returns RENAME TO f",
    "select then drop": "SELECT 1; DROP TABLE factor_returns",
    "select then delete": "SELECT 1 AS x; DELETE FROM factor_returns;",
    "data-modifying with": "WITH d AS (DELETE FROM factor_returns RETURNING *) "
    "SELECT count(*) FROM d",
    "select for update": "SELECT * FROM factor_returns FOR UPDATE",
    "copy to program": "COPY factor_returns TO PROGRAM 'touch {marker}'",
    "copy query to program": "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "copy to file": "COPY factor_returns TO '{marker}'",
    "copy from": "COPY factor_returns FROM '/etc/passwd'",
    "set role": "SET ROLE postgres",
    "reset role": "RESET ROLE",
    "session authorization": "SET SESSION AUTHORIZATION postgres",
    "read-write": "SET TRANSACTION READ WRITE",
    "default read-write": "SET default_transaction_read_only = off",
    "set_config read-write": "SELECT set_config('transaction_read_only', 'off', false)",
    "set_config role then read a file": "SELECT set_config('role', 'postgres', true), "
    "pg_read_file('/etc/passwd')",
    "set_config role then write through dynamic SQL": "SELECT set_config('role', 'postgres', "
    "true), query_to_xml('DELETE FROM factor_returns RETURNING 1', true, false, '')",
    "read a server file": "SELECT pg_read_file('/etc/passwd')",
    "list a server directory": "SELECT pg_ls_dir('/')",
    "import a large object": "SELECT lo_import('/etc/passwd')",
    "do block": "DO $$ BEGIN DELETE FROM factor_returns; END $$",
    "create extension": "CREATE EXTENSION IF NOT EXISTS plpgsql",
    "alter system": "ALTER SYSTEM SET work_mem = '1GB'",
    "prepare": "PREPARE p AS DELETE FROM factor_returns",
    "vacuum": "VACUUM factor_returns",
    "grant": "GRANT ALL ON factor_returns TO PUBLIC",
    "comment": "COMMENT ON TABLE factor_returns IS 'x'",
}


@pytest.fixture(scope="module")
def reader_url(pg, stores) -> str:
    """A login role that may only SELECT the pipeline's tables (not a superuser)."""
    _, url = stores
    with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
        cur.execute("CREATE ROLE fc_reader LOGIN")
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO fc_reader")
    return url.replace("postgresql://postgres@", "postgresql://fc_reader@")


@pytest.mark.parametrize("user", ["superuser", "select-only"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_statement_is_refused_in_one_line_and_no_table_changes(
    cli_on, stores, reader_url, tmp_path, name, user
):
    _, url = stores
    store = PostgresStore(url)
    before = store_hashes(store)
    marker = tmp_path / "pwned"
    sql = HOSTILE[name].format(marker=marker)
    code, out, err = cli_on("postgres" if user == "superuser" else reader_url)(["sql", sql])
    assert code == 2, (name, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("factorcov: error: SQL: "), err
    assert "Traceback" not in err and out == ""
    assert store_hashes(store) == before
    assert not marker.exists()


LARGE_OBJECT = (
    "SELECT set_config('role', 'postgres', true) AS r, "
    "query_to_xml('SELECT lo_from_bytea(0, ''x'')', true, false, '') AS x"
)


def test_what_a_superuser_query_can_still_do_is_rolled_back(cli_on, stores, reader_url):
    """The role is a safeguard, not a sandbox (README): a superuser's query can switch back to
    the superuser and create a large object, which PostgreSQL allows in a read-only
    transaction; the command's transaction always ends in ROLLBACK, so nothing stays. A user
    that may only SELECT cannot switch roles at all."""
    _, url = stores
    store = PostgresStore(url)
    before = store_hashes(store)
    code, out, _ = cli_on("postgres")(["sql", "--format", "csv", LARGE_OBJECT])
    assert code == 0 and "lo_from_bytea" in out  # it ran ...
    kept = store.read("SELECT count(*) AS n FROM pg_largeobject_metadata")["n"][0]
    assert kept == 0  # ... and left nothing
    assert store_hashes(store) == before
    code, out, err = cli_on(reader_url)(["sql", LARGE_OBJECT])
    assert code == 2 and out == "" and 'permission denied to set role "postgres"' in err, err


@pytest.mark.parametrize(
    ("sql", "message", "refused"),
    [
        ("SELECT 1; DROP TABLE factor_returns", "a second statement after ';'", True),
        ("SET ROLE postgres", "SET is not a query", True),
        ("COPY factor_returns TO PROGRAM 'true'", "COPY is not a query", True),
        ("DELETE FROM factor_returns", "DELETE is not a query", True),
        ("SELECT pg_read_file('/etc/passwd')", "permission denied for function pg_read_file", True),
        ("SELECT * FROM factor_retuns", 'relation "factor_retuns" does not exist', False),
        ("SELEC 1", 'syntax error at or near "SELEC"', False),
    ],
)
def test_refusals_and_errors_say_why(cli_on, sql, message, refused):
    code, _, err = cli_on("postgres")(["sql", sql])
    assert code == 2 and message in err, err
    assert ("(factorcov sql is read-only:" in err) == refused, err


def test_queries_work_as_the_select_only_user_and_as_the_superuser(cli_on, reader_url):
    sql = f"SELECT count(*) AS n FROM exposures WHERE date = DATE '{LAST}'"
    outs = [cli_on(who)(["sql", "--format", "csv", sql]) for who in ("postgres", reader_url)]
    duck = cli_on("duckdb")(["sql", "--format", "csv", sql])
    assert outs[0] == outs[1] == duck
    assert int(duck[1].splitlines()[1]) > 0


def test_duckdb_and_postgres_stores_hold_the_same_rows(stores):
    """The premise of the comparisons above (tests/test_postgres.py checks it in depth)."""
    db, url = stores
    duck, pgs = store_hashes(Store(db)), store_hashes(PostgresStore(url))
    assert duck == pgs


def test_a_negative_timeout_is_refused(cli_on):
    code, out, err = cli_on("postgres")(["sql", "--timeout", "-1", "SELECT 1"])
    assert (code, out) == (2, "")
    assert err.strip() == "factorcov: error: --timeout -1 is negative (0: no limit)"
