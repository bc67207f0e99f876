"""`factorcov risk`: the table a portfolio manager reads (issue 23.2) and the weights it refuses
(issue 21.7), on a small materialised DuckDB file (tests/api_store.py).

The table's numbers are compared with the JSON report to the printed decimals; the refusals are
one line on stderr naming the file (exit 2, nothing on stdout, no traceback).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from api_store import LAST, build

from factorcov_pipeline import cli

DAY = LAST
LONG_NAME = "Institutions, Associations & Organizations"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("riskreport")
    db = build(tmp)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT s.asset_id, e.category FROM specific_risk s JOIN exposures_wide e "
            "USING (date, asset_id) WHERE date = ? ORDER BY 1",
            [DAY],
        ).fetchall()
    ids = [r[0] for r in rows]
    # 12 assets; one of the long-named sector when there is one (a name to fold or show whole)
    long_named = [a for a, c in rows if c == LONG_NAME][:1]
    port = pl.DataFrame(
        {"asset_id": ids[:11] + long_named, "weight": np.linspace(0.02, 0.15, 11 + len(long_named))}
    )
    port.write_csv(tmp / "p.csv")
    pl.DataFrame({"asset_id": ids, "weight": [1 / len(ids)] * len(ids)}).write_parquet(
        tmp / "b.parquet"
    )
    return tmp, db, ids


@pytest.fixture
def run(store, monkeypatch, capsys):
    _, db, _ = store
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    monkeypatch.delenv("FACTORCOV_DATABASE_URL", raising=False)

    def call(argv: list[str], columns: int = 100) -> tuple[int, str, str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        code = cli.main(argv)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def _args(tmp: Path, *extra: str) -> list[str]:
    return ["risk", "--portfolio", str(tmp / "p.csv"), "--date", str(DAY), *extra]


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> float:
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def _block(out: str, title: str) -> list[list[str]]:
    """The rows of the factor table that starts with ``title`` (printed at a width where
    nothing folds), split on runs of 2+ spaces."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(title))
    dashes = next(i for i in range(start, len(lines)) if lines[i].startswith("---"))
    rows = []
    for ln in lines[dashes + 1 :]:
        if not ln.strip():
            break
        rows.append(re.split(r"\s{2,}", ln.strip()))
    return rows


def _pct(value: float) -> float:
    return round(100 * value, 2)


@pytest.mark.parametrize("columns", [72, 100, 160])
def test_table_fits_the_terminal_and_has_no_negative_zero_or_null(store, run, columns):
    tmp, _, _ = store
    code, out, err = run(_args(tmp, "--benchmark", str(tmp / "b.parquet")), columns)
    assert code == 0, err
    assert max(len(ln) for ln in out.splitlines()) <= columns
    assert "null" not in out and "NaN" not in out and "shape:" not in out
    for token in re.findall(r"-?\d+\.\d+", out):
        assert not (token.startswith("-") and float(token) == 0.0), token
    # names are never shortened: folded at most, never cut with an ellipsis
    assert "…" not in out and "..." not in out
    if columns == 160:
        assert LONG_NAME in out


def test_table_numbers_equal_the_json_sorted_by_absolute_contribution(store, run):
    tmp, _, _ = store
    code, out, _ = run(_args(tmp, "--benchmark", str(tmp / "b.parquet")), 160)
    assert code == 0
    code, js, _ = run(_args(tmp, "--benchmark", str(tmp / "b.parquet"), "--format", "json"))
    report = _strict_json(js)
    for section, title in (
        (report, "Factors by contribution to total risk"),
        (report["active"], "Active factors by contribution to active risk"),
    ):
        rows = _block(out, title)
        by_name = {f["factor"]: f for f in section["factors"]}
        shown = [f for f in section["factors"] if f["exposure"] != 0.0]
        assert [r[0] for r in rows] == [
            f["factor"] for f in sorted(shown, key=lambda f: (-abs(f["contribution"]), f["factor"]))
        ]
        for name, group, expo, vol, mctr, contrib, share in rows:
            f = by_name[name]
            assert group == f["factor_group"]
            assert float(expo) == pytest.approx(round(f["exposure"], 4), abs=1e-12)
            assert float(vol) == pytest.approx(_pct(f["volatility"]), abs=1e-9)
            assert float(mctr) == pytest.approx(_pct(f["marginal_contribution"]), abs=1e-9)
            assert float(contrib) == pytest.approx(_pct(f["contribution"]), abs=1e-9)
            assert float(share) == pytest.approx(round(100 * f["share"], 1), abs=1e-9)
    total = re.search(r"^total risk\s+(\S+)\s+(\S+)\s+(\S+)$", out, flags=re.MULTILINE)
    assert total and float(total.group(1)) == pytest.approx(_pct(report["total_risk"]))
    assert total.group(3) == "100.0"
    spec = re.search(r"^specific risk\s+(\S+)\s+(\S+)\s+(\S+)$", out, flags=re.MULTILINE)
    assert float(spec.group(1)) == pytest.approx(_pct(report["specific_risk"]))
    assert float(spec.group(2)) == pytest.approx(_pct(report["specific_contribution"]))
    for g in report["groups"]:
        line = re.search(rf"^  {g['factor_group']}\s+(\S+)\s+(\S+)$", out, flags=re.MULTILINE)
        assert float(line.group(1)) == pytest.approx(_pct(g["contribution"]))
    beta = re.search(r"beta of the portfolio to the benchmark: (\S+)", out)
    assert float(beta.group(1)) == pytest.approx(round(report["beta"], 4))
    assert "Active risk against" in out


def test_zero_exposure_rows_are_hidden_unless_asked(store, run):
    tmp, _, _ = store
    _, out, _ = run(_args(tmp), 160)
    _, js, _ = run(_args(tmp, "--format", "json"))
    zero = [f["factor"] for f in _strict_json(js)["factors"] if f["exposure"] == 0.0]
    assert zero  # twelve assets cannot cover every sector
    rows = _block(out, "Factors by contribution to total risk")
    assert len(rows) == 21 - len(zero) and not set(zero) & {r[0] for r in rows}
    assert f"({len(zero)} factor(s) with zero exposure not shown; --all-factors" in out
    _, out, _ = run(_args(tmp, "--all-factors"), 160)
    assert len(_block(out, "Factors by contribution to total risk")) == 21
    assert "not shown" not in out


def test_csv_and_json_carry_full_precision(store, run):
    tmp, _, _ = store
    _, js, _ = run(_args(tmp, "--format", "json"))
    report = _strict_json(js)
    assert set(report["factors"][0]) == {
        "factor", "factor_group", "exposure", "volatility", "marginal_contribution",
        "contribution", "share",
    }  # fmt: skip
    assert set(report["groups"][0]) == {"factor_group", "contribution", "share"}
    _, csv_out, _ = run(_args(tmp, "--format", "csv"))
    lines = csv_out.splitlines()
    assert lines[0] == "portfolio,item,name,factor_group,exposure,value"
    total = next(ln for ln in lines if ln.startswith("portfolio,summary,total_risk"))
    assert float(total.split(",")[-1]) == report["total_risk"]


# ---- weights that are not finite numbers (issue 21.7) ---------------------------------------


def _refused(run, argv: list[str]) -> str:
    code, out, err = run(argv)
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("factorcov: error: "), err
    return lines[0]


def test_weights_must_be_finite_numbers_of_a_numeric_type(store, run):
    tmp, _, ids = store
    n = 3
    columns = {
        "dates": (pl.Series([dt.date(2025, 1, 1)] * n), "not numeric (type Date)"),
        "datetimes": (pl.Series([dt.datetime(2025, 1, 1, 9)] * n), "not numeric (type Datetime"),
        "booleans": (pl.Series([True, False, True]), "not numeric (type Boolean)"),
        "text": (pl.Series(["0.5", "0.25", "0.25"]), "not numeric (type String)"),
        "struct": (
            pl.Series([{"a": 1.0}, {"a": 2.0}, {"a": 3.0}]),
            "not numeric (type Struct",
        ),
        "uint64": (
            pl.Series([2**64 - 1, 1, 1], dtype=pl.UInt64),
            "weight 18446744073709551615 of asset",
        ),
        "huge": (pl.Series([1e308, 1e308, 1e308]), "is not a finite number"),
    }
    for name, (weights, message) in columns.items():
        path = tmp / f"{name}.parquet"
        pl.DataFrame({"asset_id": ids[:n], "weight": weights}).write_parquet(path)
        line = _refused(run, ["risk", "--portfolio", str(path), "--date", str(DAY)])
        assert message in line and str(path) in line, (name, line)
        line = _refused(
            run, ["risk", "--portfolio", str(tmp / "p.csv"), "--date", str(DAY),
                  "--benchmark", str(path), "--format", "json"],
        )  # fmt: skip
        assert message in line and str(path) in line, (name, line)


def test_a_benchmark_of_zero_risk_is_refused_not_nan(store, run):
    tmp, _, ids = store
    path = tmp / "zero.csv"
    pl.DataFrame({"asset_id": ids[:5], "weight": [0.0] * 5}).write_csv(path)
    line = _refused(
        run, ["risk", "--portfolio", str(tmp / "p.csv"), "--date", str(DAY),
              "--benchmark", str(path), "--format", "json"],
    )  # fmt: skip
    assert str(path) in line and "beta to it is undefined" in line
    # a portfolio of zero weights has zero risk: finite, reported
    code, out, _ = run(["risk", "--portfolio", str(path), "--date", str(DAY), "--format", "json"])
    report = _strict_json(out)
    assert code == 0 and report["total_risk"] == 0.0
    assert all(math.isfinite(f["share"]) for f in report["factors"])


def test_unknown_ids_with_terminal_escapes_are_shown_escaped(store, run):
    tmp, _, ids = store
    path = tmp / "evil.csv"
    evil = "\x1b[31mRED\x1b[0m"
    pl.DataFrame({"asset_id": [ids[0], evil], "weight": [0.5, 0.5]}).write_csv(path)
    line = _refused(run, ["risk", "--portfolio", str(path), "--date", str(DAY)])
    assert "\x1b" not in line and "\\x1b[31mRED\\x1b[0m" in line
    code, out, err = run(
        ["risk", "--portfolio", str(path), "--date", str(DAY), "--drop-unknown", "--format",
         "json"]
    )  # fmt: skip
    assert code == 0 and "\x1b" not in err and "dropped 1 asset id(s)" in err
    assert _strict_json(out)["warnings"] == [
        err.splitlines()[0].removeprefix("factorcov: warning: ")
    ]


def test_overflowing_weights_are_one_line_in_a_real_process(store, tmp_path):
    """numpy's overflow warnings would print on stderr of the installed command (pytest
    captures them in-process): the refusal is the only line."""
    import os
    import subprocess

    _, db, ids = store
    path = tmp_path / "huge.parquet"
    pl.DataFrame({"asset_id": ids[:3], "weight": [1e308] * 3}).write_parquet(path)
    proc = subprocess.run(
        [sys.executable, "-m", "factorcov_pipeline.cli", "risk", "--portfolio", str(path),
         "--date", str(DAY), "--format", "json"],
        capture_output=True, text=True, env={**os.environ, "FACTORCOV_DUCKDB": str(db)},
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "is not a finite number" in proc.stderr, proc.stderr
