"""What the Dagster UI reads, without a browser: `factorcov materialize` with DAGSTER_HOME
(the shipped dagster.yaml, one-line errors for an unusable home), per-session check statuses in
the instance, per-session numeric metadata and last-session figures/tables, and a failing
check on one session failing on that session only."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from factorcov_pipeline.cli import main
from factorcov_pipeline.core import calendar
from factorcov_pipeline.core.factors import DEFAULT_FACTORS
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

REPO = Path(__file__).resolve().parents[1]
START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 6, 30))[:25]


def _settings(tmp: Path, holdings: bool = False) -> str:
    """200 synthetic assets; with `holdings`, two standing portfolios (portfolio_risk's plot)."""
    settings: dict = {"factor_model_settings": {"universe": {"n_assets": 200}}}
    if holdings:
        ids = [f"A{i + 1:06d}" for i in range(40)]
        held = pl.DataFrame(
            {
                "portfolio": ["first"] * 20 + ["second"] * 20,
                "asset_id": ids,
                "weight": [0.05] * 40,
            }
        )
        held.write_csv(tmp / "holdings.csv")
        settings["portfolio_risk_settings"] = {
            "holdings": str(tmp / "holdings.csv"),
            "drop_unknown": True,
        }
    path = tmp / "settings.json"
    path.write_text(json.dumps(settings))
    return str(path)


def _home(tmp: Path) -> Path:
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "is not a directory"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "has no dagster.yaml"),
        (lambda tmp: Path("relative/home"), "must be an absolute path"),
        # A directory nobody may create files in, root included (procfs).
        (lambda tmp: Path("/proc/self"), "is not writable"),
    ],
)
def test_unusable_dagster_home_is_one_line(tmp_path, monkeypatch, capsys, make, message):
    monkeypatch.setenv("DAGSTER_HOME", str(make(tmp_path)))
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "fc.duckdb"))
    code = main(["materialize", "--start", "2025-03-31", "--end", "2025-04-01"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "DAGSTER_HOME=" in err and message in err, err
    assert not (tmp_path / "fc.duckdb").exists()  # nothing written


SHIPPED_STORAGE = "module: factorcov_pipeline.orchestration.event_log"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("storage: [unclosed\n", "not valid YAML: expected ',' or ']'"),
        ("\tstorage: {}\n", "not valid YAML: found character '\\t'"),
        ("- a list\n", "to parse to dictionary"),
        ("bogus_key: 1\n", 'unexpected config entry "bogus_key" at the root.'),
        ("telemetry:\n  enabled: maybe\n", 'root:telemetry:enabled. Value "maybe"'),
        (
            "storage:\n  custom:\n    module: no_such_module\n    class: Storage\n",
            "Couldn't import module no_such_module",
        ),
        (
            "run_launcher:\n  module: no_such_launcher\n  class: Launcher\n",
            "Couldn't import module no_such_launcher",
        ),
        (
            "run_launcher:\n  module: dagster\n  class: NoSuchLauncher\n",
            "Couldn't find class NoSuchLauncher",
        ),
        ("storage:\n  custom:\n    module: json\n    class: JSONDecoder\n", "not a Configurable"),
        (
            "run_coordinator:\n  module: dagster.core.run_coordinator\n"
            "  class: QueuedRunCoordinator\n  config:\n    max_concurrent_runs: one\n",
            'root:max_concurrent_runs. Value "one"',
        ),
        (
            f"storage:\n  custom:\n    {SHIPPED_STORAGE}\n    class: FactorcovSqliteStorage\n"
            "    config:\n      base_dir:\n        env: FACTORCOV_TEST_UNSET_VARIABLE\n",
            '"FACTORCOV_TEST_UNSET_VARIABLE" which is not set',
        ),
    ],
)
def test_invalid_dagster_yaml_is_one_line_naming_the_file(
    tmp_path, monkeypatch, capsys, config, message
):
    """A dagster.yaml Dagster cannot build an instance from (issue 21.7): one line on stderr
    naming the file and the problem, exit 2, nothing written (Dagster raised a multi-line
    traceback, its expected schema hundreds of characters long)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(config)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("FACTORCOV_TEST_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "fc.duckdb"))
    code = main(["materialize", "--start", "2025-03-31", "--end", "2025-04-01"])
    captured = capsys.readouterr()
    assert code == 2, captured
    err = captured.err
    assert err.count("\n") == 1 and len(err) < 600, err
    assert f"{home / 'dagster.yaml'} (DAGSTER_HOME)" in err and message in err, err
    assert "Expected:" not in err and "Traceback" not in err and captured.out == ""
    assert not (tmp_path / "fc.duckdb").exists()  # nothing written


def test_cli_run_with_the_shipped_home_is_recorded_per_session(tmp_path, monkeypatch, capsys):
    """`factorcov materialize` with DAGSTER_HOME = a directory holding the shipped dagster.yaml:
    no warning, and the instance (what `dagster dev` shows) has every check of every session
    SUCCEEDED, never SKIPPED."""
    from dagster._core.storage.asset_check_state import (
        AssetCheckState,
        bulk_update_asset_check_state,
    )

    from factorcov_pipeline.orchestration.checks import ALL_CHECKS
    from factorcov_pipeline.orchestration.partitions import trading_sessions

    home = _home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "fc.duckdb"))
    end = SESSIONS[5]
    code = main(
        ["materialize", "--start", str(START), "--end", str(end), "--settings", _settings(tmp_path)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert "dagster.yaml" not in captured.out + captured.err  # no "no dagster.yaml found"
    assert "Telemetry" not in captured.out + captured.err
    instance = dg.DagsterInstance.get()
    keys = [key for check in ALL_CHECKS for key in check.check_keys]
    states = bulk_update_asset_check_state(
        instance,
        [(k, trading_sessions) for k in keys],
        {k: AssetCheckState.empty() for k in keys},
    )
    for key in keys:
        sizes = {s.value: v.size for s, v in states[key].subsets.items() if v.size}
        assert sizes == {"SUCCEEDED": 6}, (key.name, sizes)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    db = tmp / "fc.duckdb"
    settings = _settings(tmp, holdings=True)
    result = run_range(
        START, SESSIONS[-1], FactorcovStorage(database=str(db)), settings, logger=quiet_logger()
    )
    assert result.success, failure_messages(result)
    return db, settings, result


def _events(result) -> dict[str, dict[str, dg.AssetMaterialization]]:
    out: dict[str, dict[str, dg.AssetMaterialization]] = {}
    for ev in result.get_asset_materialization_events():
        out.setdefault(ev.asset_key.path[-1], {})[ev.partition] = ev.materialization
    return out


def test_numeric_metadata_is_each_sessions_own_value(built):
    db, _, result = built
    events = _events(result)
    store = Store(db)
    # factor_returns: each session's R-squared and assets, equal to regression_stats
    stats = store.read("SELECT date, r_squared, n_assets FROM regression_stats ORDER BY date")
    for day, r2, n in stats.iter_rows():
        meta = events["factor_returns"][str(day)].metadata
        assert meta["r_squared"].value == r2 and meta["n_assets"].value == n
    # factor_volatility: the market's volatility of each session, from the stored table
    vol = store.read(
        "SELECT date, volatility FROM factor_volatility WHERE factor = 'Market' ORDER BY date"
    )
    values = []
    for day, v in vol.iter_rows():
        meta = events["factor_volatility"][str(day)].metadata
        assert meta["market_volatility"].value == v
        values.append(v)
    assert len(set(values)) == len(values) > 20  # a time series, not a flat line
    # specific_risk: each session's median forecast, from the stored table
    med = store.read(
        "SELECT date, median(specific_risk) AS m FROM specific_risk GROUP BY date ORDER BY date"
    )
    assert med.height > 20
    for day, m in med.iter_rows():
        meta = events["specific_risk"][str(day)].metadata
        assert meta["median_specific_risk"].value == pytest.approx(m, rel=1e-15)
    # factor_covariance: the trace of each session's matrix, recomputed with numpy
    cov = store.read("SELECT * FROM factor_covariance WHERE date = ?", [SESSIONS[10]])
    k = DEFAULT_FACTORS.k
    diag = cov.filter(pl.col("factor_1") == pl.col("factor_2"))["covariance"].sum()
    assert cov.height == k * k
    got = events["factor_covariance"][str(SESSIONS[10])].metadata["total_variance"].value
    assert got == pytest.approx(diag, rel=1e-12)
    # factor_correlation: the mean absolute off-diagonal correlation, recomputed with numpy
    corr = store.read("SELECT * FROM factor_correlation WHERE date = ?", [SESSIONS[10]])
    m = corr.filter(pl.col("factor_1") != pl.col("factor_2"))["correlation"].abs().to_numpy()
    meta = events["factor_correlation"][str(SESSIONS[10])].metadata
    assert meta["mean_abs_correlation"].value == pytest.approx(m.sum() / (k * (k - 1)), rel=1e-12)


def test_figures_and_tables_on_the_last_session_only(built):
    _, _, result = built
    events = _events(result)
    last = str(SESSIONS[-1])
    figures = {
        "factor_volatility": ["volatility_forecasts"],
        "factor_correlation": ["correlation_heatmap"],
        "factor_returns": ["r_squared_over_time", "assets_over_time"],
        "forecast_bias": ["bias_over_time"],
        "risk_backtest": ["portfolio_bias_plot"],
        "specific_risk": ["specific_risk_by_size_decile"],
        "portfolio_risk": ["predicted_risk_plot"],
    }
    for asset, names in figures.items():
        for name in names:
            md = events[asset][last].metadata[name]
            assert isinstance(md, dg.MarkdownMetadataValue)
            assert md.value.startswith("![") and "data:image/png;base64,iVBOR" in md.value
    # every asset: no figure, table or text on the other sessions, whose metadata stays small
    # (a range of 2,520 sessions must not store 2,520 copies of a plot)
    assert len(events) == 12, sorted(events)
    for asset in events:
        for key in events[asset]:
            if key != last:
                kept = events[asset][key].metadata.values()
                assert not any(
                    isinstance(
                        v, dg.MarkdownMetadataValue | dg.TableMetadataValue | dg.JsonMetadataValue
                    )
                    for v in kept
                ), (asset, key)
                assert len(kept) <= 6, (asset, key, sorted(events[asset][key].metadata))
    # the forecast bias summary is a real table, one record per portfolio
    summary = events["forecast_bias"][last].metadata["bias_summary_all_dates"]
    assert isinstance(summary, dg.TableMetadataValue)
    names = [c.name for c in summary.schema.columns]
    assert {"portfolio", "full_sample_bias", "band_low"} <= set(names)
    assert len(summary.records) == DEFAULT_FACTORS.k + 20
    cov_table = events["factor_covariance"][last].metadata[f"covariance_{last}"]
    assert isinstance(cov_table, dg.TableMetadataValue) and len(cov_table.records) == 21
    # issue 23.5: the report shows the latest covariance, specific risk its size deciles, and
    # portfolio_risk without holdings says how to set them
    report = events["covariance_report"][last].metadata["latest_covariance"]
    assert isinstance(report, dg.TableMetadataValue) and len(report.records) == 21
    assert [c.name for c in report.schema.columns][:2] == ["factor", "volatility"]
    deciles = events["specific_risk"][last].metadata["specific_risk_deciles"]
    assert [r.data["size_decile"] for r in deciles.records] == list(range(1, 11))
    assert {r.data["date"] for r in deciles.records} == {str(last)}
    assert "holdings" not in events["portfolio_risk"][last].metadata  # it has holdings


def test_portfolio_risk_without_holdings_says_how_to_set_them(tmp_path):
    """Issue 23.5: with no standing portfolios, `portfolio_risk` stores nothing and says, in
    its metadata and the run's log, which setting gives it something to do."""
    import logging

    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    lines = Lines()

    @dg.logger
    def capture(_init_context: object) -> logging.Logger:
        log = logging.getLogger("test.no_holdings")
        log.setLevel(logging.INFO)
        log.propagate = False
        log.handlers = [lines]
        return log

    result = run_range(
        START,
        SESSIONS[2],
        FactorcovStorage(database=str(tmp_path / "fc.duckdb")),
        _settings(tmp_path, holdings=False),
        logger=capture,
    )
    assert result.success, failure_messages(result)
    hint = _events(result)["portfolio_risk"][str(SESSIONS[2])].metadata["holdings"].value
    assert "portfolio_risk_settings.holdings" in hint
    assert any("portfolio_risk" in line and "portfolio_risk_settings.holdings" in line
               for line in lines.lines)  # fmt: skip


def _is_figure(value: object) -> bool:
    return isinstance(value, dg.MarkdownMetadataValue) and "data:image/png" in (value.value or "")


def test_a_run_nobody_sees_draws_no_figure_and_stores_the_same(built, tmp_path):
    """`run_range(figures=False)` (what `factorcov materialize` does without DAGSTER_HOME,
    whose throw-away instance vanishes with the process): the same tables bit for bit and the
    same metadata, numbers and tables, as a run with figures; only the figures are left out."""
    from tablehash import table_hashes

    db_built, settings, _ = built
    runs = {}
    for figures in (True, False):
        db = tmp_path / f"figures_{figures}.duckdb"
        shutil.copy(db_built, db)
        result = run_range(
            SESSIONS[-3],
            SESSIONS[-1],
            FactorcovStorage(database=str(db)),
            settings,
            logger=quiet_logger(),
            figures=figures,
        )
        assert result.success, failure_messages(result)
        runs[figures] = (table_hashes(db), _events(result))
    (hashes, drawn), (hashes_none, undrawn) = runs[True], runs[False]
    assert hashes_none == hashes
    assert sorted(undrawn) == sorted(drawn) and len(drawn) == 12
    figures = 0
    for asset, by_session in drawn.items():
        assert sorted(undrawn[asset]) == sorted(by_session) == [str(d) for d in SESSIONS[-3:]]
        for key, mat in by_session.items():
            kept = {k: v for k, v in mat.metadata.items() if not _is_figure(v)}
            figures += len(mat.metadata) - len(kept)
            assert dict(undrawn[asset][key].metadata) == kept, (asset, key)
    # volatility, correlation, R-squared, assets, bias, specific risk deciles, backtest, risk
    # (the leaderboard draws none: 25 sessions are all within the warm-up, nothing is scored)
    assert figures == 8


def test_the_command_draws_figures_only_for_a_recorded_run(tmp_path, monkeypatch, capsys):
    """`factorcov materialize` asks for figures exactly when DAGSTER_HOME records the run."""
    from factorcov_pipeline.orchestration import runner

    asked = []
    real = runner.run_range

    def spy(*args, **kwargs):
        asked.append(kwargs["figures"])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_range", spy)
    argv = ["materialize", "--end", str(SESSIONS[1]), "--settings", _settings(tmp_path)]
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "unrecorded.duckdb"))
    assert main(argv) == 0, capsys.readouterr()
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path)))
    monkeypatch.setenv("FACTORCOV_DUCKDB", str(tmp_path / "recorded.duckdb"))
    assert main(argv) == 0, capsys.readouterr()
    assert asked == [False, True]
    event = dg.DagsterInstance.get().get_latest_materialization_event(
        dg.AssetKey("factor_volatility")
    )
    assert event is not None and event.asset_materialization is not None
    assert _is_figure(event.asset_materialization.metadata["volatility_forecasts"])


def test_a_check_failing_on_one_session_fails_there_only(built, tmp_path):
    db_built, settings, _ = built
    db = tmp_path / "bad.duckdb"
    shutil.copy(db_built, db)
    bad = SESSIONS[12]
    with Store(db).connect() as con:
        con.execute(
            "UPDATE factor_volatility SET volatility = -1 WHERE date = ? AND factor = 'Market'",
            [bad],
        ).fetchall()
    result = run_range(
        SESSIONS[8],
        SESSIONS[16],
        FactorcovStorage(database=str(db)),
        settings,
        logger=quiet_logger(),
        selection=["factor_volatility"],
    )
    # re-materialising factor_volatility rewrites the bad row: check a checks-only run instead
    assert result.success
    with Store(db).connect() as con:
        con.execute(
            "UPDATE factor_volatility SET volatility = -1 WHERE date = ? AND factor = 'Market'",
            [bad],
        ).fetchall()
    from factorcov_pipeline.orchestration.assets import ALL_ASSETS
    from factorcov_pipeline.orchestration.checks import ALL_CHECKS
    from factorcov_pipeline.orchestration.resources import FactorcovSettings

    job = dg.define_asset_job(
        "vol_checks", selection=dg.AssetSelection.checks_for_assets("factor_volatility")
    )
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[job],
        resources={
            "storage": FactorcovStorage(database=str(db)),
            "model": FactorcovSettings(settings_file=settings),
        },
    )
    checks = defs.resolve_job_def("vol_checks").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(SESSIONS[8]),
            "dagster/asset_partition_range_end": str(SESSIONS[16]),
        },
        raise_on_error=False,
    )
    assert not checks.success  # blocking: the step fails
    evaluations = {e.partition: e for e in checks.get_asset_check_evaluations()}
    assert sorted(evaluations) == [str(d) for d in SESSIONS[8:17]]
    assert [k for k, e in evaluations.items() if not e.passed] == [str(bad)]
    assert evaluations[str(bad)].metadata["invalid"].value == 1


def test_a_gap_fails_with_its_message_first(tmp_path):
    """A session whose predecessor is missing ("Latest" after a gap) fails with the message
    that names the gap as the step's own error: the UI's run log shows the error's message
    first, then the failure's metadata, then the stack (LogsRowStructuredContent's
    FailureContent). Before, the step's error was Dagster's "Error occurred while executing op"
    and the message sat in its cause, below the framework's stack ("View full message")."""
    storage = FactorcovStorage(database=str(tmp_path / "gap.duckdb"))
    settings = _settings(tmp_path)
    assert run_range(START, SESSIONS[2], storage, settings, logger=quiet_logger()).success
    result = run_range(SESSIONS[6], SESSIONS[6], storage, settings, logger=quiet_logger())
    assert not result.success
    failures = result.get_step_failure_events()
    assert failures
    for event in failures:
        data = event.step_failure_data
        fill = f"factorcov materialize --start {SESSIONS[3]} --end {SESSIONS[6]}"
        # what the run log shows first: the message, not Dagster's wrapper
        assert data.error.cls_name == "MissingUpstreamError", data.error
        first_line = data.error.message.split("\n")[0]
        assert first_line.endswith(f"MissingUpstreamError: {data.user_failure_data.description}")
        assert "are not materialised" in first_line and fill in first_line
        assert data.error.cause is None  # nothing below the framework's stack
        # then the failure's metadata (dagster.Failure): the command that fills the gap
        assert data.user_failure_data.metadata["fill the gap"].value == fill
    # the command line still prints the same one line per failed step
    assert all("MissingUpstreamError" in m for m in failure_messages(result))
