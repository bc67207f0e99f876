"""`factorcov sql` formats and `factorcov show` (issue 10, item 7), on the tutorial's full year
(100 assets, so 251 forecast dates and 5,271 rows of covariance_report as in the tutorial).

Every number printed is compared with the stored tables (read through a separate connection):
exactly for CSV/JSON/markdown, to the printed decimals for the readable formats.
"""

import datetime as dt
import io
import json
import re
import shlex
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.render.textgrid import grid
from factorcov_pipeline.storage import Store

REPO = Path(__file__).resolve().parents[1]
LAST = dt.date(2026, 3, 31)
VOL_QUERY = (
    "SELECT * FROM factor_volatility WHERE date = DATE '2026-03-31' ORDER BY volatility DESC"
)


@pytest.fixture(scope="module")
def year_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("terminal")
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 100}}}))
    db = tmp / "year.duckdb"
    result = run_range(
        dt.date(2025, 3, 31), LAST, FactorcovStorage(database=str(db)), str(settings),
        logger=quiet_logger(),
    )  # fmt: skip
    assert result.success, failure_messages(result)
    return db


@pytest.fixture
def sh(year_db, monkeypatch, capsys):
    """Run `factorcov ...` at a terminal width; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(year_db))

    def run(argv, columns=100):
        monkeypatch.setenv("COLUMNS", str(columns))
        code = cli.main(argv)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _stored(db: Path, sql: str) -> pl.DataFrame:
    return Store(db).read(sql)


# ---- the README --------------------------------------------------------------------------


def readme_query_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("Then query the forecasts with SQL")[1].split("```bash")[1].split("```")[0]
    return [ln.strip() for ln in block.splitlines() if ln.strip()]


def test_readme_query_lines_run_as_written(sh):
    # pip installs no `duckdb` program: no command line of the README may start with one
    readme = (REPO / "README.md").read_text()
    assert not re.search(r"^\s*duckdb ", readme, flags=re.MULTILINE)
    lines = readme_query_lines()
    assert lines and all(ln.startswith("factorcov ") for ln in lines), lines
    for line in lines:
        argv = shlex.split(line, comments=True)
        code, out, err = sh(argv[1:])
        assert code == 0, (line, err)
        promised = re.search(r"#\s*([\d,]+)", line)
        if promised:  # the README's comment states the result
            assert promised.group(1).replace(",", "") in out.split(), (line, out)


def test_readme_vol_query_shows_all_21_rows_with_full_names(sh, year_db):
    code, out, _ = sh(["sql", VOL_QUERY])
    assert code == 0
    stored = _stored(year_db, VOL_QUERY)
    assert stored.height == 21
    lines = out.splitlines()
    assert lines[-1] == "21 rows" and "…" not in out
    body = lines[2:-1]
    assert len(body) == 21 and all(len(ln) <= 100 for ln in lines)
    for line, row in zip(body, stored.iter_rows(named=True), strict=True):
        date, factor, vol, warm, model = re.split(r"\s{2,}", line)
        assert date == str(row["date"]) and factor == row["factor"] and warm == "true"
        assert model == row["model"] == "default"  # one covariance model: `default` (issue 22)
        assert abs(float(vol) - row["volatility"]) <= 5e-7


# ---- sql: the table format ---------------------------------------------------------------


def test_table_states_its_limit(sh):
    code, out, _ = sh(["sql", "SELECT * FROM covariance_report ORDER BY date, factor"])
    assert code == 0
    assert out.splitlines()[-1].startswith("showing 1000 of 5271 rows (--limit 1000;")
    code, out, _ = sh(["sql", "SELECT * FROM factor_returns ORDER BY ALL", "--limit", "7"])
    assert out.splitlines()[-1].startswith("showing 7 of 5271 rows")
    assert len(out.splitlines()) == 2 + 7 + 1
    code, out, _ = sh(["sql", "SELECT * FROM factor_returns ORDER BY ALL", "--limit", "0"])
    assert out.splitlines()[-1] == "5271 rows" and len(out.splitlines()) == 2 + 5271 + 1
    code, _, err = sh(["sql", "SELECT 1", "--limit", "-1"])
    assert code == 2 and "--limit -1 is negative" in err


@pytest.mark.parametrize("columns", [60, 100, 160])
def test_wide_kxk_result_fits_the_terminal_in_blocks_and_keeps_every_number(sh, year_db, columns):
    sql = f"SELECT * FROM covariance_report WHERE date = DATE '{LAST}' ORDER BY factor"
    code, out, _ = sh(["sql", sql], columns=columns)
    assert code == 0
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= columns
    assert lines[-1] == "21 rows"
    stored = _stored(year_db, sql)
    factors = stored["factor"].to_list()
    columns_all = [*factors, "model"]  # the factor columns, then `model` (issue 22), last
    # Rebuild the matrix from the blocks: every block lists the 21 rows in order; a long name
    # folds onto continuation lines (which start blank), its values are on the first line.
    blocks = out.split("\n\n")
    assert len(blocks) > 1
    values: dict[tuple[str, str], float] = {}
    seen_columns: list[str] = []
    for block in blocks:
        block_lines = [
            ln
            for ln in block.splitlines()
            if ln and not ln.startswith("(column") and ln != f"{len(factors)} rows"
        ]
        rule = next(i for i, ln in enumerate(block_lines) if ln.startswith("----------  "))
        dashes = block_lines[rule].split()
        key_width, n_cols = len(dashes[1]), len(dashes) - 2
        cols = columns_all[len(seen_columns) : len(seen_columns) + n_cols]
        seen_columns += cols
        groups: list[list[str]] = []
        for line in block_lines[rule + 1 :]:
            if line.startswith(str(LAST)):
                groups.append([line])
            else:
                groups[-1].append(line)
        assert len(groups) == len(factors)
        for group, factor in zip(groups, factors, strict=True):
            name = " ".join(ln[12 : 12 + key_width].strip() for ln in group)
            assert name == factor  # the full name, in every block
            cells = group[0][12 + key_width :].split()
            for col, x in zip(cols, cells, strict=True):
                if col == "model":
                    assert x == "default"
                else:
                    values[factor, col] = float(x)
    assert seen_columns == columns_all
    for row in stored.iter_rows(named=True):
        for col in factors:
            assert abs(values[row["factor"], col] - row[col]) <= 5e-7


def test_a_value_wider_than_the_terminal_is_folded_not_cut(sh, year_db):
    code, out, _ = sh(["sql", "SELECT settings_json FROM model_settings"], columns=80)
    assert code == 0
    assert max(len(ln) for ln in out.splitlines()) <= 80
    stored = _stored(year_db, "SELECT settings_json FROM model_settings").item()
    assert "".join(out.split()).find("".join(stored.split())) >= 0


def test_grid_header_wraps_and_null_nan_are_shown(sh):
    code, out, _ = sh(["sql", "SELECT 'nan'::DOUBLE AS x, NULL::DOUBLE AS y, 1.5 AS z, true AS b"])
    assert code == 0
    assert out.splitlines()[2].split() == ["NaN", "null", "1.5", "true"]
    lines = grid(["a long header of words", "v"], [["x", "1"]], [False, True], 40)
    assert lines[0].startswith("a long") and any(ln.startswith("words") for ln in lines)


# ---- sql: machine-readable formats -------------------------------------------------------


def test_csv_is_every_row_at_full_precision(sh, year_db):
    sql = "SELECT * FROM factor_covariance ORDER BY date, factor_1, factor_2"
    code, out, err = sh(["sql", "--format", "csv", sql])
    assert code == 0 and err == ""
    got = pl.read_csv(io.StringIO(out), try_parse_dates=True)
    stored = _stored(year_db, sql)
    assert got.height == stored.height == 251 * 21 * 21
    assert got.equals(stored)


def test_json_is_a_list_of_objects_with_iso_dates(sh, year_db):
    sql = f"SELECT * FROM factor_volatility WHERE date = DATE '{LAST}' ORDER BY factor"
    code, out, _ = sh(["sql", "--format", "json", sql])
    assert code == 0
    got = json.loads(out)
    stored = _stored(year_db, sql).to_dicts()
    assert [set(o) for o in got] == [{"date", "factor", "volatility", "warm", "model"}] * 21
    assert got == [{**r, "date": r["date"].isoformat()} for r in stored]
    code, out, _ = sh(["sql", "--format", "json", "SELECT 'nan'::DOUBLE AS a, 2 AS a"])
    assert json.loads(out) == [{"a": None, "a_2": 2}]
    code, out, _ = sh(["sql", "--format", "json", "SELECT 1 AS a WHERE false"])
    assert json.loads(out) == []


def test_markdown_table(sh, year_db):
    sql = "SELECT * FROM regression_stats WHERE date <= DATE '2025-04-10' ORDER BY date"
    code, out, _ = sh(["sql", "--format", "markdown", sql])
    assert code == 0
    lines = out.splitlines()
    stored = _stored(year_db, sql)
    assert lines[0] == "| " + " | ".join(stored.columns) + " |"
    assert lines[1] == "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"
    assert len(lines) == 2 + stored.height
    for line, row in zip(lines[2:], stored.iter_rows(), strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(row[0]) and float(cells[2]) == row[2]


def test_machine_format_with_a_limit_says_so_on_stderr(sh):
    code, out, err = sh(["sql", "--format", "csv", "--limit", "5", "SELECT * FROM factor_returns"])
    assert code == 0 and len(out.splitlines()) == 6
    assert err.strip() == "factorcov: wrote 5 of 5271 rows (--limit 5)"


# ---- show --------------------------------------------------------------------------------


def parse_show(out: str) -> tuple[list[tuple[int, str, str, float]], np.ndarray]:
    """The numbered volatility table and the correlation matrix rebuilt from its blocks."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(r"\s*#\s+factor\s", ln))
    vols = []
    for line in lines[start + 2 :]:
        if not line:
            break
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 1:  # a long name folded onto a continuation line
            code, name, group, vol = vols.pop()
            vols.append((code, f"{name} {parts[0]}", group, vol))
            continue
        code, name, group, vol, _pct = parts
        vols.append((int(code), name, group, float(vol)))
    k = len(vols)
    corr = np.full((k, k), np.nan)
    header: list[int] = []
    for line in lines[lines.index("Correlation forecasts (rows and columns: # above)") + 1 :]:
        tokens = line.split()
        if not tokens or tokens[0].startswith("(") or set(tokens[0]) == {"-"}:
            continue
        if tokens[0] == "#":
            header = [int(t) for t in tokens[1:]]
            continue
        corr[int(tokens[0]) - 1, [h - 1 for h in header]] = [float(t) for t in tokens[1:]]
    return vols, corr


def _stored_session(db: Path, day: dt.date) -> tuple[dict[str, float], pl.DataFrame]:
    vol = _stored(db, f"SELECT factor, volatility FROM factor_volatility WHERE date = '{day}'")
    corr = _stored(db, f"SELECT * FROM factor_correlation WHERE date = '{day}'")
    return dict(vol.iter_rows()), corr


@pytest.mark.parametrize("columns", [100, 72, 140])
def test_show_prints_vols_and_correlations_that_tie_out_within_the_width(sh, year_db, columns):
    code, out, err = sh(["show", str(LAST)], columns=columns)
    assert code == 0, err
    assert max(len(ln) for ln in out.splitlines()) <= columns
    vols, corr = parse_show(out)
    stored_vol, stored_corr = _stored_session(year_db, LAST)
    assert [v[0] for v in vols] == list(range(1, 22))
    assert sorted(v[1] for v in vols) == sorted(stored_vol)
    assert [v[3] for v in vols] == sorted((v[3] for v in vols), reverse=True)
    for _, name, _, vol in vols:
        assert abs(vol - stored_vol[name]) <= 5e-7
    assert {v[2] for v in vols} == {"market", "trbc", "style"}
    index = {v[1]: v[0] - 1 for v in vols}
    assert not np.isnan(corr).any()
    for f1, f2, c in stored_corr.select("factor_1", "factor_2", "correlation").iter_rows():
        assert abs(corr[index[f1], index[f2]] - c) <= 5e-4 + 1e-12
    if columns == 100:  # 21 factors: two blocks of at most 12 columns
        assert out.count("(columns ") == 2


def test_show_a_subset_of_factors(sh, year_db):
    day = dt.date(2025, 6, 9)
    chosen = ["Market", "Real Estate", "Size", "Value"]
    code, out, _ = sh(["show", str(day), "--factors", *chosen])
    assert code == 0
    vols, corr = parse_show(out)
    assert sorted(v[1] for v in vols) == sorted(chosen)
    stored_vol, stored_corr = _stored_session(year_db, day)
    order = [v[1] for v in vols]
    assert order == sorted(chosen, key=lambda f: -stored_vol[f])
    pivot = {
        (a, b): c
        for a, b, c in stored_corr.select("factor_1", "factor_2", "correlation").iter_rows()
    }
    expected = np.array([[pivot[a, b] for b in order] for a in order])
    np.testing.assert_allclose(corr, expected, atol=5e-4 + 1e-12, rtol=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "2025-06-07"], "no forecast stored for 2025-06-07 in "),
        (["show", "2025-06-07"], "nearest stored dates: 2025-06-06 (before), 2025-06-09 (after)"),
        (["show", "2025-03-31"], "nearest stored dates: none before, 2025-04-01 (after)"),
        (["show", "2026-04-06"], "nearest stored dates: 2026-03-31 (before), none after"),
        (["show", "31/03/2026"], "DATE '31/03/2026' is not a date (YYYY-MM-DD)"),
        (["show", str(LAST), "--factors", "Market", "Sise"], "--factors: 'Sise' not stored"),
    ],
)
def test_show_refusals_are_one_line(sh, argv, message):
    code, out, err = sh(argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_show_and_sql_on_a_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "none.duckdb"))
    assert cli.main(["show", str(LAST)]) == 2
    assert "does not exist yet" in capsys.readouterr().err
    assert not (tmp_path / "none.duckdb").exists()


def test_types_arrow_would_garble_come_as_duckdb_shows_them(sh):
    sql = (
        "SELECT '101'::BIT AS b, 340282366920938463463374607431768211455::UHUGEINT AS h, "
        "INTERVAL 3 DAY AS i, [1.5, NULL] AS l, {'a': DATE '2025-01-01'} AS s"
    )
    code, out, _ = sh(["sql", sql], columns=200)
    assert code == 0
    assert re.split(r"\s{2,}", out.splitlines()[2].strip()) == [
        "101",
        "340282366920938463463374607431768211455",
        "3 days",
        "[1.5, NULL]",
        "{'a': 2025-01-01}",
    ]
    code, out, _ = sh(["sql", "--format", "json", sql])
    assert json.loads(out) == [
        {
            "b": "101",
            "h": 340282366920938463463374607431768211455,
            "i": "3 days",
            "l": [1.5, None],
            "s": {"a": "2025-01-01"},
        }
    ]


@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["show", str(LAST)]])
def test_a_file_that_is_not_a_duckdb_database_is_one_line(tmp_path, monkeypatch, capsys, command):
    path = tmp_path / "prices.csv"
    path.write_text("date,close\n2026-03-31,1.0\n")
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(path))
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err, err
    assert path.read_text() == "date,close\n2026-03-31,1.0\n"
