"""Issue 21, items 6 and 7: the edges a hostile tester found, each through a public interface.

A signal after the run's last step, a check step that fails or never runs, a refresh that turns
stored returns into gaps, user factor names that cannot be columns, settings scalars of YAML
1.1, a closed output pipe, a factor without volatility in the tie-out, a missing descriptor.
"""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.storage import Store

sys.path.insert(0, str(Path(__file__).parent))
from tablehash import table_hashes

REPO = Path(__file__).resolve().parents[1]
START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 5, 15))[:16]
END = SESSIONS[-1]


def synthetic_settings(tmp: Path, n_assets: int = 120) -> str:
    path = tmp / "settings.json"
    path.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": n_assets}}}))
    return str(path)


def factorcov(db: Path, *args: str, prelude: str = "", **kw) -> subprocess.CompletedProcess:
    """`factorcov ARGS` in a fresh process, after `prelude` (Python run before `main`)."""
    env = {**os.environ, "FACTORCOV_DUCKDB": str(db), "PYTHONPATH": str(REPO)}
    env.pop("FACTORCOV_PARTITIONS_START", None)
    code = f"import sys\n{prelude}\nfrom factorcov_pipeline.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kw,
    )


# ---- (a) a signal right after the last step ---------------------------------------------------

# Sends the signal to this process once the run's last step is done: after run_range returns
# (the command's summary), or inside run_range's tear-down (the consistency pass).
AFTER_THE_RUN = """
import os, signal, time
from factorcov_pipeline.orchestration import runner
SIGNO = signal.{name}
if "{where}" == "summary":
    real = runner.run_range
    def patched(*a, **k):
        result = real(*a, **k)
        os.kill(os.getpid(), SIGNO); time.sleep(0.2)
        return result
    runner.run_range = patched
else:
    real = runner.remove_unfinished
    def patched(*a, **k):
        os.kill(os.getpid(), SIGNO); time.sleep(0.2)
        return real(*a, **k)
    runner.remove_unfinished = patched
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic model of 16 sessions, stored (one in-process-free command run)."""
    tmp = tmp_path_factory.mktemp("built")
    db, settings = tmp / "fc.duckdb", synthetic_settings(tmp)
    done = factorcov(db, "materialize", "--settings", settings, "--end", str(END))
    assert done.returncode == 0, done.stdout + done.stderr
    return db, settings


@pytest.mark.parametrize(("name", "where"), [("SIGTERM", "summary"), ("SIGINT", "teardown")])
def test_a_signal_after_the_last_step_reports_the_completed_run(built, name, where):
    db, settings = built
    before = table_hashes(db)
    prelude = AFTER_THE_RUN.format(name=name, where=where)
    done = factorcov(db, "materialize", "--settings", settings, "--end", str(END), prelude=prelude)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"{name} arrived while the run was finishing; the run completed" in out, out
    assert "nothing was written" not in out and "interrupted" not in out
    assert "factorcov summary" in out and "Traceback" not in out
    assert table_hashes(db) == before  # the same data, re-written whole


# ---- (b) a full disk in a background checkpoint ------------------------------------------------

FILE_SIZE_LIMIT = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
"""


def test_a_full_disk_in_a_background_checkpoint_counts_every_check(built, tmp_path):
    """No file may grow past the DuckDB file's size (RLIMIT_FSIZE): the write-ahead log of the
    first step's commit fits, the checkpoint after it cannot grow the file ("File too large"),
    DuckDB invalidates the database and every later step fails. The summary counts the
    checks that never ran as not passed (it printed "0/0 checks passed")."""
    db = tmp_path / "fc.duckdb"
    shutil.copy(built[0], db)
    limit = db.stat().st_size
    done = factorcov(
        db,
        "materialize",
        "--settings",
        built[1],
        "--end",
        str(END),
        prelude=FILE_SIZE_LIMIT.format(limit=limit),
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "File too large" in out and "Traceback" not in out
    summary = re.search(
        r"run failed after [0-9.]+ s; checks passed: (\d+)/(\d+)( \((\d+) not run\))?", out
    )
    assert summary is not None, out
    passed, total, not_run = int(summary[1]), int(summary[2]), int(summary[4] or 0)
    assert total == 10  # every check of the model, whether it ran or not
    assert passed == out.count("  pass  check ") < total
    # the others failed (a FAIL line, or their step failed: "fail <asset>_<check>") or never ran
    failed_checks = out.count("  FAIL  check ") + len(
        re.findall(r"  fail  \w+_(?:valid|standardised|complete|zero_sum|cases|psd|tieout)\b", out)
    )
    assert passed + failed_checks + not_run == total, out
    assert "checks not run (an earlier step failed)" in out


# ---- (d) user factor names that cannot be columns ---------------------------------------------

BAD_NAMES = {
    "nul": (["a\x00b", "Size"], "control characters in 'a\\x00b'"),
    "newline": (["Value\nMomentum", "Size"], "control characters in 'Value\\nMomentum'"),
    "case": (["Mkt", "MKT", "Size"], "'MKT' = 'Mkt'"),
    "reserved": (["date", "Size"], "'date' (the report's own columns"),
    "reserved-case": (["Factor", "Size"], "'Factor' (the report's own columns"),
    "long": (["é" * 32, "Size"], "longer than 63 bytes"),
    "caret": (["^GSPC", "Size"], "'^GSPC'"),
}


def user_factor_file(tmp: Path, names: list[str], n: int = 25) -> tuple[str, str]:
    from factorcov_pipeline.examples.factor_etfs import factor_etf_returns

    frame = factor_etf_returns(START, n, names=names, seed=3)
    path = tmp / "factors.parquet"
    frame.write_parquet(path)
    settings = tmp / "settings.json"
    settings.write_text(
        json.dumps({"factor_model_settings": {"universe": {"factor_returns": str(path)}}})
    )
    return str(path), str(settings)


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_factor_names_that_cannot_be_columns_are_refused_when_read(
    case, tmp_path, monkeypatch, capsys
):
    from factorcov_pipeline import cli

    names, needle = BAD_NAMES[case]
    path, settings = user_factor_file(tmp_path, names)
    db = tmp_path / "fc.duckdb"
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(["materialize", "--settings", settings, "--end", str(SESSIONS[10])])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 2, out
    assert path in out and needle in out, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert not db.exists()  # refused before anything was written


def test_factor_names_are_refused_by_a_run_before_any_write(tmp_path):
    """The same file in a run launched without the command (the UI, the schedule): its first
    step refuses it, and no table is created."""
    from factorcov_pipeline.orchestration.resources import FactorcovStorage
    from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range

    _, settings = user_factor_file(tmp_path, ["Mkt", "MKT", "a\x00b"])
    db = tmp_path / "fc.duckdb"
    result = run_range(
        START, SESSIONS[10], FactorcovStorage(database=str(db)), settings, logger=quiet_logger()
    )
    assert not result.success
    assert "'MKT' = 'Mkt'" in " ".join(failure_messages(result))
    data = [t for t in Store(db).table_names() if not t.startswith("_") and t != "model_settings"]
    assert all(Store(db).read(f'SELECT count(*) AS n FROM "{t}"')["n"][0] == 0 for t in data)


# ---- (e) settings: YAML 1.2, huge integers, keys that are not names ----------------------------

SETTINGS_CASES = {
    "base60.yaml": ("factor_cov_settings:\n  halflife_vol: 1:20\n", "halflife_vol", "'1:20'"),
    "huge.yaml": (
        "factor_cov_settings:\n  halflife_vol: " + "9" * 5000 + "\n",
        "halflife_vol",
        "5,000 digits is out of range",
    ),
    "huge.json": (
        '{"factor_cov_settings": {"nw_lags_vol": ' + "9" * 5000 + "}}",
        "nw_lags_vol",
        "5,000 digits is out of range",
    ),
    "list-key.yaml": ("factor_cov_settings:\n  ? [a, b]\n  : 1\n", "factor_cov_settings", "a key"),
    "top-list-key.yaml": ("? [a, b]\n: 1\n", "<root>", "not a list or mapping"),
    "int-key.yaml": ("factor_cov_settings:\n  1: 2\n", "factor_cov_settings", "got 1"),
    "leading-zero.yaml": ("factor_cov_settings:\n  nw_lags_vol: 017\n", "nw_lags_vol", "leading"),
    "underscore.yaml": ("factor_cov_settings:\n  nw_lags_vol: 1_0\n", "nw_lags_vol", "'1_0'"),
    "binary.yaml": ("factor_cov_settings:\n  nw_lags_vol: 0b11\n", "nw_lags_vol", "'0b11'"),
    "on.yaml": (
        "factor_cov_settings:\n  combine_standardized: on\n",
        "combine_standardized",
        "'on'",
    ),
    "off.yaml": (
        "factor_cov_settings:\n  combine_standardized: Off\n",
        "combine_standardized",
        "'Off'",
    ),
    "inf.yaml": ("factor_cov_settings:\n  halflife_vol: .inf\n", "halflife_vol", "finite"),
    "timestamp.yaml": (
        "factor_model_settings:\n  universe:\n    seed: 2025-03-31\n",
        "universe.seed",
        "'2025-03-31'",
    ),
    "merge.yaml": ("factor_cov_settings:\n  <<: {halflife_vol: 30}\n", "<<", "unknown key"),
    "int-tag.yaml": ("factor_cov_settings:\n  halflife_vol: !!int 1:20\n", "halflife_vol", "1.2"),
    "ts-tag.yaml": (
        "factor_cov_settings:\n  halflife_vol: !!timestamp 2025-01-01\n",
        "line 2",
        "timestamp",
    ),
    "scalar.yaml": ("0\n", "expected a mapping", "int"),
}


@pytest.mark.parametrize("name", sorted(SETTINGS_CASES))
def test_settings_yaml_1_1_scalars_huge_integers_and_odd_keys(name, tmp_path, monkeypatch, capsys):
    from factorcov_pipeline import cli

    text, field, needle = SETTINGS_CASES[name]
    bad = tmp_path / name
    bad.write_text(text)
    db = tmp_path / "fc.duckdb"
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(["materialize", "--settings", str(bad)])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 2, out
    assert str(bad) in out and field in out and needle in out, out
    assert len(out.strip().splitlines()) == 1 and len(out) < 1000 and "Traceback" not in out
    assert not db.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nw_lags_vol: 0o17", {"nw_lags_vol": 15}),  # YAML 1.2 octal (a string in 1.1)
        ("nw_lags_vol: 0x1F", {"nw_lags_vol": 31}),
        ("halflife_vol: 6e1", {"halflife_vol": 60.0}),  # a float in 1.2 (a string in 1.1)
        ("halflife_vol: 1:20\n  nw_lags_vol: 0", None),
        ("combine_standardized: TRUE", {"combine_standardized": True}),
        ("shrink_cor_method: null", {"shrink_cor_method": None}),
        ("shrink_cor_method: ~", {"shrink_cor_method": None}),
    ],
)
def test_settings_yaml_1_2_core_scalars(text, expected, tmp_path):
    from factorcov_pipeline.core.settings import SettingsError, load_settings

    path = tmp_path / "s.yaml"
    path.write_text(f"factor_cov_settings:\n  {text}\n")
    if expected is None:
        with pytest.raises(SettingsError):
            load_settings(path)
        return
    got = load_settings(path).factor_cov_settings
    assert {k: getattr(got, k) for k in expected} == expected


# ---- (f) a closed output pipe ---------------------------------------------------------------


def test_a_closed_output_pipe_ends_the_command_quietly(tmp_path):
    """`factorcov settings | head -1`: the reader is gone before the command writes (its end of
    the pipe is closed first, so the write fails every time): no BrokenPipeError traceback,
    nothing on stderr, 141 as a shell reports a process stopped by SIGPIPE."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACTORCOV_DUCKDB": str(tmp_path / "x.duckdb")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "factorcov_pipeline.cli", "settings"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


# ---- (g) a factor without volatility in the tie-out; a date without a descriptor ---------------


def test_an_empty_sector_and_a_date_without_a_descriptor_are_said_once_in_words(
    tmp_path, monkeypatch, capsys
):
    """A sector of the model without assets (factor return 0, volatility 0: its correlations
    are 0/0) and a date on which no asset has a momentum descriptor (momentum before its
    look-back). Both pass their checks, and each is said once, in words, in the run's output
    and on the evaluations; numpy's "invalid value encountered in divide" is not printed (it
    was, three times)."""
    import warnings

    from test_userdata_pipeline import SECTORS, STYLES, user_frame

    from factorcov_pipeline import cli

    day = SESSIONS[10]
    frame = user_frame().with_columns(
        pl.when(pl.col("date") == day)
        .then(None)
        .otherwise(pl.col("descriptor_momentum"))
        .alias("descriptor_momentum")
    )
    data = tmp_path / "universe.parquet"
    frame.write_parquet(data)
    settings = tmp_path / "settings.json"
    groups = [
        {"hierarchy": "market"},
        {"hierarchy": "trbc", "factors": [*SECTORS, "Government Activity"]},  # no assets
        {"hierarchy": "style", "factors": STYLES},
    ]
    settings.write_text(
        json.dumps(
            {
                "factor_model_settings": {
                    "universe": {"dataset": str(data)},
                    "exposures": {"exposures": groups},
                }
            }
        )
    )
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "fc.duckdb"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(["materialize", "--settings", str(settings), "--end", str(END)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], caught
    lines = [line for line in out.splitlines() if "warning" in line]
    zero_vol = [line for line in lines if "with zero volatility" in line]
    assert len(zero_vol) == 1 and "Government Activity" in zero_vol[0], lines
    no_descriptor = [line for line in lines if "has no descriptor" in line]
    assert len(no_descriptor) == 1 and "Momentum" in no_descriptor[0] and str(day) in out
    assert "warnings" in out  # counted in the summary
    store = Store(tmp_path / "fc.duckdb")
    # the next session's momentum return is 0 (regressed on all-zero exposures), as said
    momentum = store.read(
        "SELECT factor_return FROM factor_returns WHERE factor = 'Momentum' AND date = ?",
        [SESSIONS[11]],
    )
    assert momentum["factor_return"].to_list() == [0.0]


def test_zero_volatility_factors_and_the_silent_normalisation():
    import warnings

    import numpy as np
    import pandas as pd

    from factorcov_pipeline.core import tieout

    days = pd.to_datetime(["2025-04-01", "2025-04-02"])
    names = ["A", "B", "C"]
    blocks = np.array([np.diag([1.0, 0.0, 4.0]), np.diag([1.0, 2.0, 0.0])])
    blocks[:, 0, 2] = blocks[:, 2, 0] = 0.5
    df = pd.DataFrame(
        blocks.reshape(6, 3),
        index=pd.MultiIndex.from_product([days, names], names=["date", "factor"]),
        columns=names,
    )
    assert tieout.zero_volatility_factors(df) == {days[0]: ["B"], days[1]: ["C"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cor = tieout.cor_from_vcov(df)
    verbatim = tieout.cor_from_vcov_verbatim(df)  # pandas: NaN where 0/0, no warning either
    pd.testing.assert_frame_equal(cor, verbatim, check_exact=True)
    assert np.isnan(cor.loc[(days[0], "B")]).all() and cor.loc[(days[0], "A"), "C"] == 0.25


# ---- (c) a refresh that turns stored returns into gaps ----------------------------------------


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """A user dataset materialised over SESSIONS through the command: (data file, settings,
    the frame)."""
    from test_userdata_pipeline import settings_file, user_frame

    from factorcov_pipeline import cli

    frame = user_frame()
    data = tmp_path / "universe.parquet"
    frame.write_parquet(data)
    settings = settings_file(tmp_path, str(data))
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "fc.duckdb"))
    assert cli.main(["materialize", "--settings", settings, "--end", str(END)]) == 0
    return data, settings, frame, tmp_path / "fc.duckdb"


def _materialize(settings: str, capsys, *args: str) -> tuple[int, str]:
    from factorcov_pipeline import cli

    code = cli.main(["materialize", "--settings", settings, *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_refresh_with_returns_on_one_session_warns_naming_the_lost_sessions(user_model, capsys):
    data, settings, frame, db = user_model
    capsys.readouterr()
    k = Store(db).read("SELECT count(DISTINCT factor) AS k FROM factor_returns")["k"][0]
    keep = SESSIONS[5]
    frame.with_columns(
        pl.when(pl.col("date") == keep).then(pl.col("total_return")).otherwise(None)
    ).write_parquet(data)
    code, out = _materialize(settings, capsys, "--end", str(END))
    assert code == 0, out  # the file is the truth: stored, but said
    lost = len(SESSIONS) - 2  # every session but the base date and the one kept
    warning = [line for line in out.splitlines() if "into gaps" in line]
    assert len(warning) == 1, out
    assert f"turned {lost} session(s) that had stored factor returns into gaps" in warning[0]
    assert f"removing {lost * k} stored factor return(s)" in warning[0]
    assert str(SESSIONS[1]) in warning[0] and "without any asset return" in warning[0]
    shown = [line for line in out.splitlines() if line.lstrip().startswith("warning ")]
    assert f"{len(shown)} (printed above)" in out  # this one and risk_backtest's missing returns
    gaps = Store(db).read("SELECT date, reason FROM factor_return_gaps ORDER BY date")
    assert gaps.height == lost + 1 and keep not in gaps["date"].to_list()


def test_a_refresh_whose_asset_ids_all_changed_names_the_cause(user_model, capsys):
    """The last 8 sessions again, every asset id renamed: the first of them regresses its
    returns on the previous session's exposures, stored under the old ids: no asset matches,
    a stored session becomes a gap, and the warning and factor_return_gaps say why."""
    data, settings, frame, db = user_model
    capsys.readouterr()
    first = SESSIONS[8]
    frame.with_columns(("new-" + pl.col("asset_id")).alias("asset_id")).write_parquet(data)
    code, out = _materialize(settings, capsys, "--start", str(first), "--end", str(END))
    assert code == 0, out
    warning = [line for line in out.splitlines() if "into gaps" in line]
    assert len(warning) == 1 and str(first) in warning[0], out
    assert "turned 1 session(s)" in warning[0] and "asset ids changed?" in warning[0]
    reason = Store(db).read("SELECT reason FROM factor_return_gaps WHERE date = ?", [first])
    assert reason["reason"].to_list() == [
        f"returns of {frame.filter(pl.col('date') == first).height} asset(s), none with "
        f"exposures on the previous session {SESSIONS[7]} (asset ids changed?)"
    ]


def test_a_plain_rerun_says_nothing_about_gaps(user_model, capsys):
    _, settings, _, _ = user_model
    capsys.readouterr()
    code, out = _materialize(settings, capsys, "--end", str(END))
    assert code == 0 and "into gaps" not in out and "warnings" not in out, out


def test_stored_returns_turned_into_gaps_on_postgres(tmp_path):
    """The same detection on PostgreSQL (its SQL is the store's portable form): the asset ids
    all change for the last 8 sessions; the first of them becomes a gap, with its reason, and
    the run's metadata counts the stored session and returns it removed."""
    from pg_server import postgres_server
    from test_userdata_pipeline import settings_file, user_frame

    from factorcov_pipeline.orchestration.resources import FactorcovPostgres
    from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
    from factorcov_pipeline.storage.postgres import PostgresStore

    frame = user_frame()
    data = tmp_path / "universe.parquet"
    frame.write_parquet(data)
    settings = settings_file(tmp_path, str(data))
    first = SESSIONS[8]
    with postgres_server() as server:
        url = server.create_database("gaps")
        storage = FactorcovPostgres(url=url)
        result = run_range(START, END, storage, settings, logger=quiet_logger())
        assert result.success, failure_messages(result)
        k = PostgresStore(url).read("SELECT count(DISTINCT factor) AS k FROM factor_returns")
        frame.with_columns(("new-" + pl.col("asset_id")).alias("asset_id")).write_parquet(data)
        result = run_range(first, END, storage, settings, logger=quiet_logger())
        assert result.success, failure_messages(result)
        reason = PostgresStore(url).read(
            "SELECT reason FROM factor_return_gaps WHERE date = ?", [first]
        )
    assert reason["reason"].to_list()[0].endswith(f"{SESSIONS[7]} (asset ids changed?)")
    meta = next(
        e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "factor_returns" and e.partition == str(END)
    )
    assert meta["stored_sessions_turned_into_gaps"].value == 1
    assert meta["stored_returns_removed"].value == k["k"][0]
