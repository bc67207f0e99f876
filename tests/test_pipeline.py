"""The Dagster pipeline, materialised in-process: checks, idempotence, incremental = full,
out-of-order errors, the schedule, and the SQL contract."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest

from factorcov_pipeline.core import calendar, tieout
from factorcov_pipeline.core.factors import DEFAULT_FACTORS
from factorcov_pipeline.definitions import defs
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import Store

START = dt.date(2025, 3, 31)
SESSIONS = calendar.sessions(START, dt.date(2025, 5, 15))[:20]
END = SESSIONS[-1]
FORECAST_TABLES = [
    "factor_volatility",
    "factor_correlation",
    "factor_covariance",
    "covariance_report",
]


def _settings_file(tmp: Path, n_assets: int = 300, **cov: object) -> str:
    path = tmp / "settings.json"
    data: dict = {"factor_model_settings": {"universe": {"n_assets": n_assets}}}
    if cov:
        data["factor_cov_settings"] = cov
    path.write_text(json.dumps(data))
    return str(path)


def _run(db: Path, settings: str, start: dt.date, end: dt.date, selection=None):
    return run_range(
        start,
        end,
        FactorcovStorage(database=str(db)),
        settings,
        logger=quiet_logger(),
        selection=selection,
    )


def _table(db: Path, table: str, order: str) -> pl.DataFrame:
    return Store(db).read(f"SELECT * FROM {table} ORDER BY {order}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """20 sessions x 300 assets, materialised in ONE run (a single-run backfill)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    db = tmp / "fc.duckdb"
    settings = _settings_file(tmp)
    result = _run(db, settings, START, END)
    return db, settings, result


def test_range_run_succeeds_with_every_check_passing(built):
    _, _, result = built
    assert result.success, failure_messages(result)
    evaluations = result.get_asset_check_evaluations()
    names = {e.asset_check_key.name for e in evaluations}
    assert {"volatility_tieout", "correlation_tieout", "factor_returns_zero_sum"} <= names
    # one evaluation per check and session, each recorded with its session (the UI's
    # per-partition check status), every one passed
    assert len(evaluations) == 10 * len(SESSIONS)
    per_check = {}
    for e in evaluations:
        per_check.setdefault(e.asset_check_key.name, []).append(e.partition)
    assert all(sorted(keys) == [str(d) for d in SESSIONS] for keys in per_check.values())
    assert all(e.passed for e in evaluations)
    # one run for the whole range: every asset materialised for all 20 partitions
    mats = result.get_asset_materialization_events()
    per_asset = {}
    for ev in mats:
        per_asset.setdefault(ev.asset_key.path[-1], set()).add(ev.partition)
    assert per_asset["covariance_report"] == {str(d) for d in SESSIONS}


def test_sql_contract_tables_and_row_counts(built):
    db, _, _ = built
    store = Store(db)
    k = DEFAULT_FACTORS.k
    forecast_dates = SESSIONS[1:]  # the base date has prices but no returns
    fr = _table(db, "factor_returns", "date, factor")
    assert fr.columns == ["date", "factor", "factor_group", "factor_return"]
    assert fr["date"].n_unique() == len(forecast_dates)
    assert set(fr["factor_group"].unique()) == {"market", "trbc", "style"}
    assert set(fr["factor"].unique()) == set(DEFAULT_FACTORS.names)
    cov = _table(db, "factor_covariance", "date, factor_1, factor_2")
    assert cov.columns == ["date", "factor_1", "factor_2", "covariance", "warm", "model"]
    assert set(cov["model"]) == {"default"}  # no `models`: the one model of the file
    assert cov.height == len(forecast_dates) * k * k
    rep = _table(db, "covariance_report", "date, factor")
    assert rep.height == len(forecast_dates) * k
    assert rep.columns[:2] == ["date", "factor"]
    assert rep.columns[2:-1] == sorted(DEFAULT_FACTORS.names)
    assert rep.columns[-1] == "model" and set(rep["model"]) == {"default"}
    assert rep["factor"].to_list()[:k] == sorted(DEFAULT_FACTORS.names)
    for table, cols in {
        "universe": ["date", "asset_id", "sector", "market_cap", "asset_return"],
        "exposures": ["date", "asset_id", "factor", "exposure"],
        "specific_returns": ["date", "asset_id", "specific_return"],
        "factor_volatility": ["date", "factor", "volatility"],
        "factor_correlation": ["date", "factor_1", "factor_2", "correlation"],
    }.items():
        got = store.read(f"SELECT * FROM {table} LIMIT 1").columns
        assert got[: len(cols)] == cols, table
    assert store.stored_dates("universe") == SESSIONS


def test_covariance_ties_out_with_tutorial_pandas_code_in_float64(built):
    """The stored report against the tutorial's pandas code without its float32 cast: 1e-12."""
    db, _, _ = built
    fr = _table(db, "factor_returns", "date").to_pandas()
    df_fr = fr.pivot(index="date", columns="factor", values="factor_return")[
        list(DEFAULT_FACTORS.names)
    ]
    df_fr.index = pd.DatetimeIndex(pd.to_datetime(df_fr.index), name="date")
    report = _table(db, "covariance_report", "date, factor").drop("model").to_pandas()
    report["date"] = pd.to_datetime(report["date"])
    df_vcov = report.set_index(["date", "factor"])
    df_vol = tieout.vol_from_vcov(df_vcov)
    expected_vol = tieout.tutorial_vol_tieout_f64(df_fr, 60.0).reindex(columns=df_vol.columns)
    np.testing.assert_allclose(df_vol.to_numpy(), expected_vol.to_numpy(), rtol=1e-12, atol=0)
    df_cor = tieout.cor_from_vcov(df_vcov)
    expected_cor = tieout.tutorial_cor_tieout_f64(df_fr, 120.0)
    expected_cor = expected_cor.reindex(index=df_cor.index, columns=df_cor.columns)
    np.testing.assert_allclose(df_cor.to_numpy(), expected_cor.to_numpy(), rtol=0, atol=1e-12)


def test_market_factor_recovers_planted_truth(built):
    db, _, _ = built
    est = _table(db, "factor_returns", "date").filter(pl.col("factor") == "Market")
    planted = _table(db, "planted_factor_returns", "date").filter(pl.col("factor") == "Market")
    joined = est.join(planted, on="date", suffix="_true")
    assert joined.height == len(SESSIONS) - 1
    corr = np.corrcoef(joined["factor_return"], joined["factor_return_true"])[0, 1]
    assert corr > 0.9


def test_rerunning_a_partition_changes_nothing(built, tmp_path):
    db, settings, _ = built
    before = {t: _table(db, t, "ALL") for t in [*FORECAST_TABLES, "universe", "exposures"]}
    day = SESSIONS[10]
    result = _run(db, settings, day, day)
    assert result.success, failure_messages(result)
    meta = {
        ev.asset_key.path[-1]: ev.materialization.metadata
        for ev in result.get_asset_materialization_events()
    }
    # the dates after the re-run one are reported as computed from the replaced history
    assert meta["factor_volatility"]["later_dates_now_stale"].value == len(SESSIONS) - 11
    for table, frame in before.items():
        after = _table(db, table, "ALL")
        assert after.height == frame.height, table  # no duplicates
        assert after.equals(frame), table


def test_daily_runs_equal_one_range_run(built, tmp_path):
    """The daily path (state of t-1 + returns of t) gives exactly the range run's numbers."""
    db_range, settings, _ = built
    db = tmp_path / "daily.duckdb"
    split = SESSIONS[12]
    assert _run(db, settings, START, split).success
    for day in SESSIONS[13:]:
        result = _run(db, settings, day, day)
        assert result.success, failure_messages(result)
        meta = {
            ev.asset_key.path[-1]: ev.materialization.metadata
            for ev in result.get_asset_materialization_events()
        }
        assert meta["factor_volatility"]["continued_from_state"].value is True
    # Bit for bit: exposures are deterministic and the EWMA continuation is exact.
    for table in ["factor_returns", *FORECAST_TABLES]:
        assert _table(db, table, "ALL").equals(_table(db_range, table, "ALL")), table


def test_missing_predecessor_is_a_clear_error(built, tmp_path):
    _, settings, _ = built
    db = tmp_path / "gap.duckdb"
    assert _run(db, settings, START, SESSIONS[5]).success
    # skip SESSIONS[6]: materialise the upstream of SESSIONS[7] only, then the EWMA asset
    upstream = ["universe", "exposures", "factor_returns"]
    assert _run(db, settings, SESSIONS[6], SESSIONS[7], selection=upstream).success
    before = _table(db, "factor_volatility", "ALL")
    result = _run(db, settings, SESSIONS[7], SESSIONS[7], selection=["factor_volatility"])
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "factor_volatility" in message
    # the message names the whole gap (here one session) and the one command that fills it
    assert f"{SESSIONS[6]} .. {SESSIONS[6]} are not materialised" in message
    assert f"factorcov materialize --start {SESSIONS[6]} --end {SESSIONS[7]}" in message
    assert _table(db, "factor_volatility", "ALL").equals(before)


def test_settings_identity_is_enforced(built, tmp_path):
    db, _, _ = built
    before = _table(db, "factor_covariance", "ALL")
    other = tmp_path / "other"
    other.mkdir()
    result = _run(db, _settings_file(other, halflife_vol=30.0), SESSIONS[3], SESSIONS[3])
    assert not result.success
    message = " ".join(failure_messages(result))
    assert "factor_cov_settings.halflife_vol" in message
    assert "start afresh" in message
    assert _table(db, "factor_covariance", "ALL").equals(before)


def test_good_friday_is_not_a_partition():
    # Good Friday 2025-04-18 is not a session: no partition, the Thursday tick is Thursday's
    keys = defs.resolve_job_def("factorcov_daily").partitions_def.get_partition_keys(
        current_time=dt.datetime(2025, 4, 25)
    )
    assert "2025-04-18" not in keys and "2025-04-17" in keys


def test_partitions_are_exchange_sessions():
    partitions = defs.resolve_job_def("factorcov_daily").partitions_def
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2025-03-31", "2026-03-31"))
    assert len(keys) == 252
    assert keys == [str(d) for d in calendar.sessions(START, dt.date(2026, 3, 31))]


def test_definitions_load():
    defs.validate_loadable(defs)
    job = defs.resolve_job_def("factorcov_daily")
    assert job is not None


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "reads-in-step"])
def test_small_write_chunks_give_the_same_tables(built, tmp_path, monkeypatch, read_ahead):
    """Long ranges are read and written a chunk of sessions at a time (bounded memory): chunk
    edges must not change a number, whether the next chunk is read on a background thread
    while the step computes this one (`storage.read_ahead`, the default) or in the step."""
    from factorcov_pipeline.orchestration.assets import common

    db_range, settings, _ = built
    monkeypatch.setattr(common, "CHUNK_SESSIONS", 4)
    monkeypatch.setattr(Store, "reads_in_background", read_ahead)
    db = tmp_path / "chunked.duckdb"
    result = _run(db, settings, START, END)
    assert result.success, failure_messages(result)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    tables = ["exposures", "factor_returns", "specific_returns", "regression_stats"]
    tables += [*FORECAST_TABLES, "forecast_bias", "specific_risk"]
    tables += ["risk_backtest", "specific_risk_bias"]
    for table in tables:
        stored = _table(db, table, "ALL")
        assert stored.height > 0 or table == "forecast_bias", table  # 21-session windows
        assert stored.equals(_table(db_range, table, "ALL")), table


def test_matrix_checks_fail_on_a_bad_date_in_a_later_chunk(built, tmp_path, monkeypatch):
    """The correlation and covariance checks read the stored K x K tables a chunk of sessions
    at a time (bounded memory at scale); a bad matrix on the LAST date, in the last chunk, must
    still fail them."""
    import shutil

    from factorcov_pipeline.orchestration.assets import ALL_ASSETS, common
    from factorcov_pipeline.orchestration.checks import ALL_CHECKS
    from factorcov_pipeline.orchestration.resources import FactorcovSettings

    db_built, settings, _ = built
    db = tmp_path / "corrupt.duckdb"
    shutil.copy(db_built, db)
    monkeypatch.setattr(common, "CHUNK_SESSIONS", 4)
    store = Store(db)
    with store.connect() as con:
        a, b = DEFAULT_FACTORS.names[1], DEFAULT_FACTORS.names[2]
        con.execute(
            "UPDATE factor_correlation SET correlation = 1.5 WHERE date = ? AND "
            "((factor_1 = ? AND factor_2 = ?) OR (factor_1 = ? AND factor_2 = ?))",
            [END, a, b, b, a],
        ).fetchall()
        # a covariance with an off-diagonal far beyond sqrt(var_a var_b): not PSD
        con.execute(
            "UPDATE factor_covariance SET covariance = 100 * covariance + 1.0 WHERE date = ? AND "
            "((factor_1 = ? AND factor_2 = ?) OR (factor_1 = ? AND factor_2 = ?))",
            [END, a, b, b, a],
        ).fetchall()
    job = dg.define_asset_job(
        "checks_only",
        selection=dg.AssetSelection.checks_for_assets("factor_correlation", "factor_covariance"),
    )

    def run_checks(path: Path) -> dict[str, dict[str, dg.AssetCheckEvaluation]]:
        definitions = dg.Definitions(
            assets=ALL_ASSETS,
            asset_checks=ALL_CHECKS,
            jobs=[job],
            resources={
                "storage": FactorcovStorage(database=str(path)),
                "model": FactorcovSettings(settings_file=settings),
            },
        )
        result = definitions.resolve_job_def(job.name).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": str(START),
                "dagster/asset_partition_range_end": str(END),
            },
            raise_on_error=False,
        )
        out: dict[str, dict[str, dg.AssetCheckEvaluation]] = {}
        for e in result.get_asset_check_evaluations():
            out.setdefault(e.asset_check_key.name, {})[e.partition] = e
        return out

    evaluations = run_checks(db)
    assert set(evaluations) == {"factor_correlation_valid", "factor_covariance_symmetric_psd"}
    for name in evaluations:
        # failed on the corrupted session only, passed on every other session of the range
        assert len(evaluations[name]) == len(SESSIONS)
        failed = [k for k, e in evaluations[name].items() if not e.passed]
        assert failed == [str(END)], (name, failed)
    # the untouched file passes the same checks
    assert all(e.passed for evs in run_checks(db_built).values() for e in evs.values())


def test_a_file_of_the_previous_release_is_upgraded_by_the_next_run(built, tmp_path):
    """A file whose `exposures` is the long table of the previous release: the next run
    migrates it (`exposures_wide` + the `exposures` view), passes every check, and the file
    ends up with the same rows as one built by this release from the start."""
    db_built, settings, _ = built
    db = tmp_path / "old.duckdb"
    first = _run(db, settings, START, SESSIONS[9])
    assert first.success, failure_messages(first)
    with Store(db).connect() as con:  # rewrite it in the previous release's layout
        for sql in (
            "CREATE TABLE exposures_long AS SELECT * FROM exposures ORDER BY date, asset_id",
            "DROP VIEW exposures",
            "DROP TABLE exposures_wide",
            "ALTER TABLE exposures_long RENAME TO exposures",
        ):
            con.execute(sql).fetchall()
    assert Store(db).read("SELECT count(*) AS n FROM exposures")["n"][0] > 0
    second = _run(db, settings, SESSIONS[10], END)
    assert second.success, failure_messages(second)
    assert all(e.passed for e in second.get_asset_check_evaluations())
    kinds = dict(
        Store(db)
        .read(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_name IN ('exposures', 'exposures_wide')"
        )
        .rows()
    )
    assert kinds == {"exposures": "VIEW", "exposures_wide": "BASE TABLE"}
    for table, order in {
        "exposures": "date, asset_id, factor",
        "exposures_wide": "date, asset_id",
        "factor_returns": "date, factor",
        "factor_covariance": "date, factor_1, factor_2",
    }.items():
        assert _table(db, table, order).equals(_table(db_built, table, order)), table
