"""The `factorcov` command: argument errors are clear, a short materialisation works."""

import datetime as dt
import json

import pytest

from factorcov_pipeline.cli import UsageError, main, resolve_range
from factorcov_pipeline.storage import Store

FIRST = dt.date(2025, 3, 31)


def test_default_range_is_the_tutorial_year():
    assert resolve_range(None, None, FIRST) == (FIRST, dt.date(2026, 3, 31))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-03-28", None, "before the first partition 2025-03-31"),
        (
            "2025-04-19",
            "2025-05-01",
            "2025-04-19 (Saturday) is not a New York Stock Exchange session",
        ),
        (
            "2025-04-01",
            "2025-04-18",
            "--end 2025-04-18 (Friday) is not a New York Stock Exchange session",
        ),
        ("2025-05-01", "2025-04-01", "before --start"),
        ("01/04/2025", None, "not a date"),
    ],
)
def test_bad_ranges_are_refused_clearly(start, end, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_range(start, end, FIRST)


def test_materialize_short_range_and_sql(tmp_path, monkeypatch, capsys):
    db = tmp_path / "cli.duckdb"
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 150}}}))
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = main(
        ["materialize", "--start", "2025-03-31", "--end", "2025-04-08", "--settings", str(settings)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "checks passed" in out and "10/10" in out
    assert Store(db).stored_dates("covariance_report")[0] == dt.date(2025, 4, 1)
    assert main(["sql", "SELECT count(DISTINCT date) AS n FROM factor_covariance"]) == 0
    assert "6" in capsys.readouterr().out


def test_cli_errors_exit_2_with_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "x.duckdb"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"factor_cov_settings": {"nw_lags_vol": -1}}))
    assert main(["materialize", "--settings", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "nw_lags_vol" in err and "bad.json" in err
    assert main(["materialize", "--start", "2025-01-02"]) == 2
    assert "before the first partition" in capsys.readouterr().err
    assert main(["sql", "SELECT 1"]) == 2
    assert "does not exist yet" in capsys.readouterr().err


def test_the_command_process_freezes_its_imports_and_a_caller_keeps_its_collector(tmp_path):
    """`main()` run as the process's command (its own command line) pauses the collector while
    `materialize` imports Dagster and the pipeline and freezes what the imports built
    (cli/process.py), and freezes again at exit; `main([...])` called by a program (this test
    process) leaves the caller's collector as it was, enabled and nothing frozen."""
    import gc
    import os
    import subprocess
    import sys

    script = (
        "import atexit, gc, sys\n"
        "from factorcov_pipeline.cli import main, process\n"
        "def collectable(obj):\n"
        "    return any(o is obj for g in (0, 1, 2) for o in gc.get_objects(generation=g))\n"
        # registered first, so run last: after the command's own exit handler
        "atexit.register(lambda: print(collectable(alive)))\n"
        "sys.argv = ['factorcov', 'materialize', '--start', '2025-01-02']\n"
        "rc = main()\n"
        "print(rc, gc.isenabled(), gc.get_freeze_count() > 100_000, process._OWNED)\n"
        "alive = [[] for _ in range(10)]\n"
        "print(collectable(alive))\n"
    )
    env = {**os.environ, "FACTORCOV_DUCKDB": str(tmp_path / "x.duckdb")}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    # exit code 2 (a refused --start, after the imports), the collector on, the imports frozen;
    # a list made after `main` is collectable, and frozen at exit
    assert out.stdout.split() == ["2", "True", "True", "True", "True", "False"], out.stderr
    frozen = gc.get_freeze_count()
    assert main(["materialize", "--start", "2025-01-02"]) == 2
    assert gc.isenabled() and gc.get_freeze_count() == frozen == 0
