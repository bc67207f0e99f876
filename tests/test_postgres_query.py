"""`factorcov sql` and `factorcov show` against PostgreSQL (FACTORCOV_DATABASE_URL), on a real
throwaway server (tests/pg_server.py).

The same run stored in a DuckDB file and in PostgreSQL prints the same text for the README's
queries (every format) and for `show`; hostile statements are refused in one line with exit
code 2 and leave every table (hashed) and the server as they were, as a member of
`pg_read_all_data` and as a user that may only SELECT the pipeline's tables. A URL whose user
could change the server for good from inside a query (a superuser, REPLICATION, a member of
pg_signal_backend or of a superuser role) is refused before any query runs.
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
from pg_compare import fingerprint
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


def role_url(url: str, role: str) -> str:
    """`url` (the superuser's) for another login role."""
    return url.replace("postgresql://postgres@", f"postgresql://{role}@")


@pytest.fixture(scope="module")
def readers(stores) -> dict[str, str]:
    """Login roles that may only read, as the README says to create them: a member of
    pg_read_all_data ("postgres", what the tests query as) and one granted SELECT on the
    pipeline's tables ("select-only")."""
    _, url = stores
    with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
        cur.execute("CREATE ROLE fc_read_all LOGIN")
        cur.execute("GRANT pg_read_all_data TO fc_read_all")
        cur.execute("CREATE ROLE fc_reader LOGIN")
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO fc_reader")
    return {"postgres": role_url(url, "fc_read_all"), "select-only": role_url(url, "fc_reader")}


@pytest.fixture
def cli_on(stores, readers, monkeypatch, capsys) -> Callable[[str], Runner]:
    """cli_on("duckdb" | "postgres" | "select-only" | "superuser" | a URL)(argv, columns=100)
    -> (exit code, stdout, stderr); "postgres" is the pg_read_all_data member."""
    db, url = stores

    def backend(which: str) -> Runner:
        def run(argv: list[str], columns: int = 100) -> tuple[int, str, str]:
            monkeypatch.setenv("COLUMNS", str(columns))
            monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
            if which == "duckdb":
                monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)
            else:
                target = {**readers, "superuser": url}.get(which, which)
                monkeypatch.setenv("FACTORCOV_DATABASE_URL", target)
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


def test_readme_queries_print_the_same_on_duckdb_and_postgres(cli_on, stores, readers):
    db_path, _ = stores
    redacted = PostgresStore(readers["postgres"]).location
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


def test_show_prints_the_same_for_a_subset_and_refuses_the_same(cli_on, stores, readers):
    db_path, _ = stores
    url = readers["postgres"]
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
    "set_config session authorization": "SELECT set_config('session_authorization', "
    "'postgres', true), query_to_xml('DELETE FROM factor_returns RETURNING 1', true, false, '')",
    "replication slot": "SELECT pg_create_physical_replication_slot('fc_slot', true)",
    "set_config role then a replication slot": "SELECT set_config('role', 'postgres', true), "
    "query_to_xml('SELECT pg_create_physical_replication_slot(''fc_slot'', true)', true, "
    "true, '')",
    "reload the configuration": "SELECT pg_reload_conf()",
    "write a server file": "SELECT lo_export(lo_from_bytea(0, 'x'), '{marker}')",
}


def test_the_fingerprint_sees_every_kind_of_change(stores):
    """The premise of the hostile statements' test: a changed value, a slot, a role attribute
    and a large object each change `pg_compare.fingerprint`."""
    _, url = stores
    before = fingerprint(url)
    changes = [
        ("UPDATE factor_volatility SET volatility = -volatility WHERE factor = 'Market'",) * 2,
        ("SELECT pg_create_physical_replication_slot('fc_probe')",
         "SELECT pg_drop_replication_slot('fc_probe')"),
        ("ALTER ROLE fc_reader REPLICATION", "ALTER ROLE fc_reader NOREPLICATION"),
        ("SELECT lo_from_bytea(4242, 'x')", "SELECT lo_unlink(4242)"),
    ]  # fmt: skip
    with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
        for change, undo in changes:
            cur.execute(change)
            assert fingerprint(url) != before, change
            cur.execute(undo)
            assert fingerprint(url) == before, undo


@pytest.mark.parametrize("user", ["postgres", "select-only"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_statement_is_refused_in_one_line_and_nothing_changes(
    cli_on, stores, tmp_path, name, user
):
    _, url = stores
    before = fingerprint(url)
    marker = tmp_path / "pwned"
    sql = HOSTILE[name].format(marker=marker)
    code, out, err = cli_on(user)(["sql", sql])
    assert code == 2, (name, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("factorcov: error: SQL: "), err
    assert "Traceback" not in err and out == ""
    assert fingerprint(url) == before  # every table, slot, role and large object
    assert not marker.exists()


ATTACK = (
    "SELECT set_config('role', 'postgres', true), query_to_xml("
    "'select pg_create_physical_replication_slot(''fc_attack'', true)', true, true, '')"
)


@pytest.mark.parametrize("argv", [["sql", ATTACK], ["show", str(LAST)]])
def test_a_superuser_url_is_refused_before_any_query(cli_on, stores, argv):
    """A superuser cannot be confined inside its session: PostgreSQL lets its query switch back
    from SET ROLE and from SET SESSION AUTHORIZATION (set_config('role' |
    'session_authorization', ...)), and a replication slot created so outlived 0.8.0's
    read-only transaction (issue 21.7). sql and show refuse the URL in one line saying what to
    use instead; the query never runs."""
    _, url = stores
    before = fingerprint(url)
    code, out, err = cli_on("superuser")(argv)
    assert (code, out) == (2, ""), err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "as postgres, which is a superuser" in err
    assert "GRANT pg_read_all_data TO factorcov_reader" in err
    assert fingerprint(url) == before
    assert before["slots"] == []


def test_a_session_cannot_be_confined_by_session_authorization(stores, readers):
    """Why the superuser is refused rather than demoted: after SET SESSION AUTHORIZATION to a
    role that may only read, a query of the same session becomes the superuser again."""
    _, url = stores
    with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        cur.execute("SET SESSION AUTHORIZATION fc_read_all")
        cur.execute("SELECT set_config('session_authorization', 'postgres', true) AS s")
        cur.fetchall()
        cur.execute("SELECT current_user AS u, (SELECT rolsuper FROM pg_roles "
                    "WHERE rolname = current_user) AS su")  # fmt: skip
        assert cur.fetchall() == [("postgres", True)]
        cur.execute("ROLLBACK")


@pytest.mark.parametrize(
    ("role", "grant", "power"),
    [
        ("fc_replicator", "ALTER ROLE {role} REPLICATION", "has REPLICATION: replication slots"),
        ("fc_signaller", "GRANT pg_signal_backend TO {role}", "is a member of pg_signal_backend"),
        ("fc_member", "GRANT postgres TO {role}", "is a superuser (through role postgres)"),
    ],
)
def test_a_role_with_powers_a_rollback_does_not_undo_is_refused(cli_on, stores, role, grant, power):
    _, url = stores
    with pg_dbapi.connect(url, autocommit=True) as con, con.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute("GRANT pg_read_all_data TO " + role)
        cur.execute(grant.format(role=role))
    code, out, err = cli_on(role_url(url, role))(["sql", "SELECT 1 AS one"])
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1, err
    assert f"as {role}, which {power}" in err, err


def test_what_a_reader_can_still_write_is_rolled_back(cli_on, stores):
    """PostgreSQL lets a read-only transaction create a large object; the command's
    transaction always ends in ROLLBACK, so nothing stays (README)."""
    _, url = stores
    before = fingerprint(url)
    sql = "SELECT lo_from_bytea(0, 'x') AS o"
    for user in ("postgres", "select-only"):
        code, out, err = cli_on(user)(["sql", "--format", "csv", sql])
        assert code == 0 and out.startswith("o\n") and int(out.split()[1]) > 0, err  # it ran
        assert fingerprint(url) == before  # ... and left nothing


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


def test_queries_work_as_either_reader(cli_on):
    sql = f"SELECT count(*) AS n FROM exposures WHERE date = DATE '{LAST}'"
    outs = [cli_on(who)(["sql", "--format", "csv", sql]) for who in ("postgres", "select-only")]
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
