"""Issue 12: nothing lost, nothing silently wrong.

Each test drives a defect the attack found through a public interface (`factorcov materialize`
through `cli.main`, settings files, in-process Dagster runs through `runner.run_range`) and
asserts both the message and what is stored: a refused run leaves every table's hash unchanged
(`tablehash.table_hashes`); an accepted run leaves every table consistent with the others.
"""

import datetime as dt
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from factorcov_pipeline import cli
from factorcov_pipeline.orchestration import runner
from factorcov_pipeline.orchestration.assets import common
from factorcov_pipeline.orchestration.runner import failure_messages
from factorcov_pipeline.storage import Store

sys.path.insert(0, str(Path(__file__).parent))
from tablehash import assert_tables_unchanged, table_hashes
from test_userdata_pipeline import END, SESSIONS, START, run, settings_file, user_frame

REPO = Path(__file__).resolve().parents[1]
# the module (the package exports the asset of the same name)
factor_returns_asset = importlib.import_module(
    "factorcov_pipeline.orchestration.assets.factor_returns"
)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return user_frame()


@pytest.fixture
def copy(frame, tmp_path):
    """A DuckDB file materialised from a good user file over SESSIONS; the settings name the
    data file, which a test may then overwrite with bad data."""
    data = tmp_path / "universe.parquet"
    frame.write_parquet(data)
    db = tmp_path / "fc.duckdb"
    settings = settings_file(tmp_path, str(data))
    result = run(db, settings)
    assert result.success, failure_messages(result)
    return db, frame, settings, data


def _cli(db: Path, settings: str, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(["materialize", "--settings", settings, *args])
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- 1: data loss reported as success -------------------------------------------------------


def test_empty_return_column_is_refused_and_nothing_changes(copy, monkeypatch, capsys):
    db, frame, settings, data = copy
    frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("total_return")).write_parquet(data)
    before = table_hashes(db)
    code, out = _cli(db, settings, monkeypatch, capsys, "--start", str(START), "--end", str(END))
    assert code == 1
    assert "no usable return" in out and str(data) in out and "refusing" in out
    assert "run failed" in out and "10/10" not in out
    assert_tables_unchanged(before, db)
    assert_consistent(db)


def assert_consistent(db: Path) -> None:
    """Every table a step owns covers the same dates: states with forecasts, statistics with
    factor returns, regime rows with volatilities."""
    store = Store(db)
    for asset in ("factor_volatility", "factor_correlation", "specific_risk"):
        states = store.read(f"SELECT DISTINCT date FROM _forecast_state WHERE asset = '{asset}'")
        stored, forecasts = set(states["date"].to_list()), store.stored_dates(asset)
        # a state only where a forecast is (none orphaned); states are kept at block and range
        # ends, and a later run replays from the nearest one (assets/resume.py)
        assert stored <= set(forecasts), asset
    assert store.stored_dates("regression_stats") == store.stored_dates("factor_returns")
    assert store.stored_dates("volatility_regime") == store.stored_dates("factor_volatility")


# ---- 3: leftover rows on the empty path ----------------------------------------------------


def test_a_date_whose_returns_became_empty_keeps_no_stats_row(copy, monkeypatch):
    db, frame, settings, data = copy
    # One session per write chunk, so `day` goes through the regression's empty path alone.
    monkeypatch.setattr(common, "CHUNK_SESSIONS", 1)
    day, nxt = SESSIONS[12], SESSIONS[13]
    frame.with_columns(
        pl.when(pl.col("date") == day).then(None).otherwise(pl.col("total_return"))
        .alias("total_return")
    ).write_parquet(data)  # fmt: skip
    # The two-date range has returns on `nxt`, so it is accepted; `day` becomes a gap.
    result = run(db, settings, day, nxt)
    assert result.success, failure_messages(result)
    assert_consistent(db)
    store = Store(db)
    assert day in store.stored_dates("factor_return_gaps")
    for table in ("factor_returns", "specific_returns", "regression_stats"):
        assert day not in store.stored_dates(table), table
    assert nxt in store.stored_dates("regression_stats")


# ---- 4: caps that would fail a blocking check after writing ---------------------------------


@pytest.mark.parametrize(
    ("cap", "everywhere", "needle"),
    [
        (1e300, False, "outside the sane range [1e-06, 1e+15]"),
        (5e-324, True, "outside the sane range"),
        (1.7e308, True, "outside the sane range"),
        (1e13, False, "times the smallest"),  # mixed units: one cap in dollars, others millions
    ],
)
def test_insane_caps_are_refused_before_anything_is_written(copy, cap, everywhere, needle):
    db, frame, settings, data = copy
    day = SESSIONS[10]
    if everywhere:
        bad = frame.with_columns(pl.lit(cap).alias("market_cap"))
    else:
        caps = frame.with_columns(
            (pl.col("market_cap") / 1e6).alias("market_cap")  # millions: 1e2 .. 1e5
        )
        first = (pl.col("date") == day) & (pl.col("asset_id") == caps["asset_id"][0])
        bad = caps.with_columns(
            pl.when(first).then(pl.lit(cap)).otherwise(pl.col("market_cap")).alias("market_cap")
        )
    bad.write_parquet(data)
    before = table_hashes(db)
    result = run(db, settings, SESSIONS[9], END)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert message.startswith("universe") and "market_cap" in message and needle in message
    assert_tables_unchanged(before, db)


# ---- 2: one outlier descriptor; a degenerate style fails a blocking check --------------------


def test_an_outlier_descriptor_keeps_the_size_exposures_sane(copy):
    db, frame, settings, data = copy
    day = SESSIONS[10]
    first = (pl.col("date") == day) & (pl.col("asset_id") == frame["asset_id"][0])
    frame.with_columns(
        pl.when(first).then(pl.lit(1e155)).otherwise(pl.col("descriptor_size"))
        .alias("descriptor_size")
    ).write_parquet(data)  # fmt: skip
    result = run(db, settings, SESSIONS[9], END)
    assert result.success, failure_messages(result)
    style = [
        c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_check_key.name == "style_exposures_valid"
    ]
    assert style and all(style)  # one evaluation per session, every one passed
    size = Store(db).read('SELECT asset_id, "Size" FROM exposures_wide WHERE date = ?', [day])
    assert size["Size"].abs().max() <= 2 * 3.0  # the documented bound (it was 15.8)
    others = size.filter(pl.col("asset_id") != frame["asset_id"][0])["Size"]
    assert others.std(ddof=0) > 0.9  # was 0: every Size exposure 0 at 1e155
    assert_consistent(db)


def test_a_flat_style_fails_its_check_and_the_file_stays_consistent(copy, monkeypatch, capsys):
    """A descriptor equal for every asset on one date gives all-zero exposures: the blocking
    check fails after exposures wrote; the later steps' rows of the range are removed (issue
    12.4's guarantee: every table says the same thing) and the command says so."""
    db, frame, settings, data = copy
    day = SESSIONS[10]
    frame.with_columns(
        pl.when(pl.col("date") == day).then(pl.lit(20.0)).otherwise(pl.col("descriptor_size"))
        .alias("descriptor_size")
    ).write_parquet(data)  # fmt: skip
    before = Store(db).stored_dates("factor_covariance")
    assert day in before
    code, out = _cli(
        db, settings, monkeypatch, capsys, "--start", str(SESSIONS[9]), "--end", str(END)
    )
    assert code == 1
    assert f"check failed style_exposures_valid on 1 session(s), first {day}: Size all zero" in out
    assert "removed the rows" in out and "factor_covariance" in out
    store = Store(db)
    assert day in store.stored_dates("exposures_wide")
    for table in ("factor_returns", "factor_volatility", "factor_covariance", "forecast_bias"):
        kept = store.stored_dates(table) if table != "forecast_bias" else None
        if kept is not None:
            assert not [d for d in kept if SESSIONS[9] <= d <= END], table
    assert store.stored_dates("factor_covariance") == [d for d in before if d < SESSIONS[9]]
    assert_consistent(db)


# ---- 5: FACTORCOV_DUCKDB pointing at something that is not a DuckDB file --------------------


@pytest.mark.parametrize("kind", ["parquet", "empty", "directory", "text"])
def test_a_path_that_is_not_a_duckdb_file_is_refused_at_start(tmp_path, monkeypatch, capsys, kind):
    target = tmp_path / f"not-duckdb.{kind}"
    if kind == "parquet":
        pl.DataFrame({"a": [1, 2]}).write_parquet(target)
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "directory":
        target.mkdir()
    else:
        target.write_text("date,asset_id\n" * 10)
    before = target.read_bytes() if target.is_file() else None
    code, out = _cli(target, "", monkeypatch, capsys, "--end", str(SESSIONS[2]))
    assert code == 2
    assert str(target) in out and ("not a DuckDB database file" in out or "directory" in out)
    assert len(out.strip().splitlines()) == 1  # one line, no traceback
    if before is not None:
        assert target.read_bytes() == before


# ---- 6: model_settings deleted by hand ---------------------------------------------------------


def test_a_file_without_its_settings_row_is_refused_before_anything_is_written(
    copy, tmp_path, monkeypatch, capsys
):
    import duckdb

    db, _, settings, _ = copy
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE model_settings")
    con.close()
    other = tmp_path / "other.json"
    data = __import__("json").loads(Path(settings).read_text())
    data["factor_cov_settings"] = {"halflife_vol": 30}
    other.write_text(__import__("json").dumps(data))
    before = table_hashes(db)
    code, out = _cli(
        db, str(other), monkeypatch, capsys, "--start", str(SESSIONS[9]), "--end", str(END)
    )
    assert code == 2 and "no model_settings row" in out and "restore" in out
    assert_tables_unchanged(before, db)
    # The same through an in-process Dagster run: the first write refuses, nothing changes.
    result = run(db, str(other), SESSIONS[9], END)
    assert not result.success
    assert "no model_settings row" in " ".join(failure_messages(result))
    assert_tables_unchanged(before, db)


# ---- 10: a full disk at COMMIT ---------------------------------------------------------------

FULL_DISK = """
import resource, signal, sys
from factorcov_pipeline.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""


def _full_disk(db: Path, settings: str, *args: str) -> subprocess.CompletedProcess:
    """`factorcov materialize` in a process that cannot grow any file past the DuckDB file's
    64 KiB (RLIMIT_FSIZE; the file is larger already): DuckDB's write-ahead log, written at
    COMMIT, fails as on a full disk."""
    env = {**os.environ, "FACTORCOV_DUCKDB": str(db), "PYTHONPATH": str(REPO)}
    env.pop("FACTORCOV_PARTITIONS_START", None)
    limit = 65536
    cmd = [sys.executable, "-c", FULL_DISK, str(limit), "materialize", "--settings", settings]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_full_disk_at_commit_reports_the_real_error(copy):
    db, frame, settings, data = copy
    frame.with_columns(pl.col("total_return") * 0.5).write_parquet(data)  # new rows to write
    before = table_hashes(db)
    done = _full_disk(db, settings, "--start", str(SESSIONS[9]), "--end", str(END))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "File too large" in out and "no transaction is active" not in out
    assert "Traceback" not in out
    assert_tables_unchanged(before, db)


# ---- 7, 8: settings files refused up front, one line each, nothing written ------------------


@pytest.fixture(scope="module")
def shared(frame, tmp_path_factory):
    """One good file for the refusals that never reach a write."""
    tmp = tmp_path_factory.mktemp("shared")
    data = tmp / "universe.parquet"
    frame.write_parquet(data)
    db = tmp / "fc.duckdb"
    settings = settings_file(tmp, str(data))
    assert run(db, settings).success
    return db, settings


def _yaml_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


SETTINGS_CASES = {
    # 7: loading safety
    "latin1.yaml": (b"factor_cov_settings:\n  halflife_vol: 60 # \xe9t\xe9\n", "not UTF-8 text"),
    "deep.json": (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 20 levels"),
    "deep.yaml": (b"a:\n" + b"".join(b" " * i + b"b:\n" for i in range(1, 60)), "nested deeper"),
    "bomb.yaml": (_yaml_bomb(9).encode(), "YAML anchors are not allowed"),
    "huge.yaml": (b"factor_cov_settings:\n  shrink_cor_method: " + b"x" * 2_000_000, "larger than"),
    "bigvalue.json": (
        b'{"factor_model_settings": {"universe": {"dataset": "' + b"y" * 500_000 + b'"}}}',
        "at most 4096 characters",
    ),
    "dupe.yaml": (
        b"factor_cov_settings:\n  halflife_vol: 30\n  halflife_vol: 60\n",
        "duplicate key",
    ),
    "dupe.json": (
        b'{"factor_cov_settings": {"nw_lags_vol": 1, "nw_lags_vol": 2}}',
        "duplicate key",
    ),
    # 8: bounds and strict types, up front
    "inf.json": (b'{"factor_cov_settings": {"halflife_vol": Infinity}}', "finite number"),
    "huge-halflife.json": (b'{"factor_cov_settings": {"halflife_cor": 1e300}}', "halflife_cor"),
    "lags.json": (b'{"factor_cov_settings": {"nw_lags_vol": 1000000000}}', "nw_lags_vol"),
    "seed.yaml": (b"factor_model_settings:\n  universe: {seed: -1}\n", "universe.seed"),
    "yes.yaml": (b"factor_cov_settings:\n  combine_standardized: yes\n", "valid boolean"),
    "string-number.json": (b'{"factor_cov_settings": {"halflife_vol": "60"}}', "valid number"),
    "bool-int.json": (
        b'{"factor_model_settings": {"universe": {"n_assets": true}}}',
        "n_assets: Input should be a valid integer",
    ),
    "both.json": (
        b'{"factor_model_settings": {"universe": {"dataset": "a.parquet", "factor_returns": "f.csv"}}}',
        "not both",
    ),
    "tiny.json": (b'{"factor_model_settings": {"universe": {"n_assets": 1}}}', "too small"),
    "case.json": (
        b'{"factor_model_settings": {"exposures": {"exposures": [{"hierarchy": "market"}, '
        b'{"hierarchy": "trbc"}, {"hierarchy": "style", "factors": ["size"]}]}}}',
        "['size'] are not among its factors",
    ),
    "extra-styles.json": (
        b'{"factor_model_settings": {"universe": {"n_extra_styles": 99}}}',
        "extra style factors exist",
    ),
}


@pytest.mark.parametrize("name", sorted(SETTINGS_CASES))
def test_bad_settings_files_are_refused_in_one_line(shared, tmp_path, monkeypatch, capsys, name):
    db, _ = shared
    content, needle = SETTINGS_CASES[name]
    bad = tmp_path / name
    bad.write_bytes(content)
    before = table_hashes(db)
    code, out = _cli(
        db, str(bad), monkeypatch, capsys, "--start", str(SESSIONS[9]), "--end", str(END)
    )
    assert code == 2, out
    assert needle in out and str(bad) in out, out[:500]
    assert len(out.strip().splitlines()) == 1 and len(out) < 1000, out[:500]
    assert_tables_unchanged(before, db)


def test_unreadable_settings_file(shared, tmp_path, monkeypatch, capsys):
    db, _ = shared
    for path, needle in ((tmp_path, "is a directory"), (tmp_path / "nope.yaml", "not found")):
        code, out = _cli(db, str(path), monkeypatch, capsys)
        assert code == 2 and needle in out and len(out.strip().splitlines()) == 1
    # A file that exists but cannot be read (root reads any file whatever its mode, so a
    # chmod 0 file would not do here; reading /proc/self/mem at offset 0 fails with EIO).
    code, out = _cli(db, "/proc/self/mem", monkeypatch, capsys)
    assert code == 2 and "cannot be read" in out and len(out.strip().splitlines()) == 1


# ---- 11: SIGTERM / SIGINT ------------------------------------------------------------------


@pytest.mark.parametrize(("signo", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_run_says_so_and_exits_as_customary(copy, signo, code):
    db, _, settings, _ = copy
    before = table_hashes(db)
    env = {**os.environ, "FACTORCOV_DUCKDB": str(db), "PYTHONPATH": str(REPO)}
    env.pop("FACTORCOV_PARTITIONS_START", None)
    cmd = [sys.executable, "-m", "factorcov_pipeline.cli", "materialize", "--settings", settings]
    proc = subprocess.Popen(
        [*cmd, "--start", str(START), "--end", str(END)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # interrupt while factor_returns runs
        lines.append(line)
        if "check exposures_standardised" in line:
            proc.send_signal(signo)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == code, out
    assert "interrupted" in out and "nothing of the interrupted chunk was written" in out
    assert "run again to complete" in out and "Traceback" not in out
    # The same data was being written: every finished chunk equals what was there.
    assert_tables_unchanged(before, db)
    assert_consistent(db)


def test_a_signal_that_duckdb_turns_into_an_error_is_still_an_interruption(copy, monkeypatch):
    """SIGINT during a DuckDB query in the step: DuckDB drops Dagster's interrupt exception and
    raises RuntimeError('Query interrupted'). The run is still an interruption, so the range's
    rows are kept (the CI failure of 2026-11-25 removed them from 13 tables)."""
    db, _, settings, _ = copy
    before = table_hashes(db)
    original = factor_returns_asset.estimate_factor_returns

    def interrupted_query(*args, **kwargs):
        # in the step's thread (its inputs are read ahead on another one), on its connection
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:  # ~20 s uninterrupted: the signal lands inside DuckDB
            Store(db).read("SELECT count(*) FROM range(20000000000) t(i) WHERE i % 7 = 3")
        finally:
            timer.cancel()
        return original(*args, **kwargs)

    monkeypatch.setattr(factor_returns_asset, "estimate_factor_returns", interrupted_query)
    result = run(db, settings)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["factor_returns"]
    error = failures[0].step_failure_data.error
    assert error is not None and error.cause is not None  # DuckDB's error, not Dagster's
    assert (error.cause.cls_name, error.cause.message.strip()) == (
        "RuntimeError",
        "RuntimeError: Query interrupted",
    )
    assert runner.interrupt_signal(result) == signal.SIGINT
    assert runner.removed_tables(result) == []
    assert_tables_unchanged(before, db)


def test_a_signal_while_the_next_chunk_is_read_ahead_is_an_interruption(copy, monkeypatch):
    """SIGINT while the step waits for a chunk read on the reader thread
    (`storage.read_ahead`): the signal lands in the step's thread, the read under way ends,
    and the run is an interruption that keeps every stored row."""
    db, _, settings, _ = copy
    monkeypatch.setattr(common, "CHUNK_SESSIONS", 2)
    before = table_hashes(db)
    original = factor_returns_asset.regression_input
    reader_threads: set[str] = set()

    def slow_read(*args, **kwargs):
        reader_threads.add(threading.current_thread().name)
        if len(reader_threads) == 1 and not hasattr(slow_read, "fired"):
            slow_read.fired = True  # type: ignore[attr-defined]
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(factor_returns_asset, "regression_input", slow_read)
    result = run(db, settings)
    assert not result.success
    assert reader_threads and threading.current_thread().name not in reader_threads
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["factor_returns"]
    assert runner.interrupt_signal(result) == signal.SIGINT
    assert runner.removed_tables(result) == []
    assert_tables_unchanged(before, db)


def _lose_a_sigint() -> None:
    """Deliver SIGINT to this process while a handler that drops it is installed: what happens
    when Dagster's handler raises inside a weakref callback ("Exception ignored in ...")."""
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_lost_by_python_stops_the_run_at_the_next_step(copy, monkeypatch, capsys):
    """A SIGINT whose exception Python lost while factor_returns ran: the step finishes (its
    chunk is whole), and the run stops when the next step starts, before it touches anything:
    exit 130, the interruption message, and with the same data nothing changed."""
    db, _, settings, _ = copy
    before = table_hashes(db)
    original = factor_returns_asset.estimate_factor_returns

    def lost_during_the_step(*args, **kwargs):  # in the step's thread, where signals land
        _lose_a_sigint()
        return original(*args, **kwargs)

    monkeypatch.setattr(factor_returns_asset, "estimate_factor_returns", lost_during_the_step)
    code, out = _cli(db, settings, monkeypatch, capsys, "--start", str(START), "--end", str(END))
    assert code == 130, out
    assert "interrupted (SIGINT)" in out and "run again to complete" in out
    assert "done  factor_returns " in out and "done  factor_volatility" not in out
    assert_tables_unchanged(before, db)


def test_a_signal_lost_by_python_is_reported_with_the_completed_run(copy, monkeypatch, capsys):
    """A signal whose exception Python lost (raised in a weakref callback, printed as "Exception
    ignored"): the run goes on to the end, and the command says the signal arrived and the run
    completed rather than staying silent about it."""
    db, _, settings, _ = copy
    real = runner.run_range

    def signal_lost(*args, **kwargs):  # after the last step: nothing left to stop
        result = real(*args, **kwargs)
        _lose_a_sigint()
        return result

    monkeypatch.setattr(runner, "run_range", signal_lost)
    code, out = _cli(db, settings, monkeypatch, capsys, "--start", str(START), "--end", str(END))
    assert code == 0, out
    assert "SIGINT arrived while the run was finishing; the run completed" in out
    assert "factorcov summary" in out


def test_a_failure_without_a_signal_still_removes_what_no_longer_follows(copy, monkeypatch):
    """The other side: the same step failing with no signal delivered is a failure, and the
    range's rows of the unfinished steps go (issue 12.4)."""
    db, _, settings, _ = copy

    def broken(*args, **kwargs):
        raise RuntimeError("Query interrupted")  # the message alone does not make an interrupt

    monkeypatch.setattr(factor_returns_asset, "regression_input", broken)
    result = run(db, settings)
    assert not result.success
    assert runner.interrupt_signal(result) is None
    assert "factor_returns" in runner.removed_tables(result)
    assert_consistent(db)


# ---- 12: a lock held by a reader ------------------------------------------------------------

READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("READY", flush=True)
time.sleep(60)
"""


def test_a_lock_held_by_a_reader_is_named_as_such(shared, monkeypatch, capsys):
    db, settings = shared
    before = table_hashes(db)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "READY"
        monkeypatch.setenv("FACTORCOV_LOCK_TIMEOUT", "1")
        code, out = _cli(
            db, settings, monkeypatch, capsys, "--start", str(SESSIONS[9]), "--end", str(END)
        )
    finally:
        reader.kill()
        reader.wait()
    assert code == 1
    assert "another process holds the file" in out and "a run is writing" not in out
    assert_tables_unchanged(before, db)


# ---- 13: environment variables, CSV files, data paths, --end in the future -----------------


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("FACTORCOV_LOCK_TIMEOUT", "abc", "is not a number of seconds"),
        ("FACTORCOV_LOCK_TIMEOUT", "nan", "between 0 and 86400"),
        ("FACTORCOV_CHUNK_SESSIONS", "x", "is not a whole number"),
        ("FACTORCOV_CHUNK_SESSIONS", "0", "between 1 and 10000"),
        ("FACTORCOV_CHUNK_SESSIONS", "-1", "between 1 and 10000"),
        ("FACTORCOV_PARTITIONS_START", "2025-13-01", "is not a date"),
        ("FACTORCOV_PARTITIONS_START", "2025-04-19", "not a New York Stock Exchange session"),
        ("FACTORCOV_DUCKDB_MEMORY", "lots", "is not a memory size"),
        ("FACTORCOV_JIT", "maybe", "must be 0 (never), 1 (always)"),
    ],
)
def test_bad_environment_variables_are_refused_naming_them(
    shared, monkeypatch, capsys, name, value, needle
):
    db, settings = shared
    before = table_hashes(db)
    monkeypatch.setenv(name, value)
    code, out = _cli(
        db, settings, monkeypatch, capsys, "--start", str(SESSIONS[9]), "--end", str(END)
    )
    assert code == 2
    assert out.startswith(f"factorcov: error: {name}={value!r}") and needle in out
    assert len(out.strip().splitlines()) == 1
    assert_tables_unchanged(before, db)


@pytest.mark.parametrize("kind", ["semicolon", "tab", "utf16", "latin1", "directory", "loop"])
def test_unreadable_data_files_say_what_they_are(copy, tmp_path, kind):
    db, frame, _, _ = copy
    path = tmp_path / "data" / "universe.csv"
    path.parent.mkdir()
    text = frame.head(50).write_csv()
    needle = {
        "semicolon": "separated by semicolons, not commas",
        "tab": "separated by tabs, not commas",
        "utf16": "is UTF-16",
        "latin1": "is not UTF-8 text",
        "directory": "is a directory, not a data file",
        "loop": "is a symbolic link loop",
    }[kind]
    if kind == "semicolon":
        path.write_text(text.replace(",", ";"))
    elif kind == "tab":
        path.write_text(text.replace(",", "\t"))
    elif kind == "utf16":
        path.write_text(text, encoding="utf-16")
    elif kind == "latin1":
        path.write_bytes(text.replace("Energy", "\xc9nergie").encode("latin-1"))
    elif kind == "directory":
        path.mkdir()
    else:
        other = tmp_path / "data" / "other.csv"
        path.symlink_to(other)
        other.symlink_to(path)
    settings = settings_file(tmp_path, str(path))
    before = table_hashes(db)
    result = run(db, settings, SESSIONS[9], END)
    assert not result.success
    message = " ".join(failure_messages(result))
    assert message.startswith("universe") and str(path) in message and needle in message
    if kind not in ("directory", "loop"):
        assert "comma-separated" in message and "infer_schema" not in message
    assert_tables_unchanged(before, db)


def test_end_in_the_future_is_refused(tmp_path, monkeypatch, capsys):
    db = tmp_path / "new.duckdb"
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(db))
    code = cli.main(["materialize", "--start", "2025-03-31", "--end", "2099-12-31"])
    err = capsys.readouterr().err
    assert code == 2 and "--end 2099-12-31 is in the future" in err
    assert not db.exists()
    # A default end past today is capped at today's session instead (nothing refused).
    today = dt.date(2025, 4, 10)
    assert cli.resolve_range("2025-04-01", None, dt.date(2025, 3, 31), today=today)[1] == today
    with pytest.raises(cli.UsageError, match="in the future"):
        cli.resolve_range("2025-04-01", "2025-04-11", dt.date(2025, 3, 31), today=today)
