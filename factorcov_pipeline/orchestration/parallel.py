"""A backfill as several runs of fixed-size chunks of sessions executed concurrently.

The cross-sectional assets are functions of a date (and of t-1's exposures), so their chunks
run at the same time, each chunk one Dagster run in its own worker process; the EWMA recursions
then run ONCE over the whole range in date order (docs/scaling.md). The stages, each complete
before the next starts:

| stage | assets | runs |
| --- | --- | --- |
| 1 | `universe`, `exposures` | one per chunk, concurrent |
| 2 | `factor_returns` (reads exposures of t-1: the previous chunk's last session) | one per chunk, concurrent |
| 3 | `factor_volatility`, `factor_correlation`, `specific_risk` (recursions) | one, the whole range |
| 4 | `factor_covariance`, `covariance_report` | one per chunk, concurrent |
| 5 | `forecast_bias` (its windows read the previous chunk's covariances), `portfolio_risk` | one per chunk, concurrent |
| 6 | `risk_backtest`, `model_leaderboard` | one, the whole range |

Every run executes its assets' checks. The result equals one sequential run bit for bit
(tests/test_parallel.py): every asset computes a date from the same stored inputs either way.
Parallel writers need a store shared between processes: PostgreSQL (`FACTORCOV_DATABASE_URL`);
a DuckDB file allows one writing process, so `--parallel` refuses it. Runs are recorded in the
Dagster instance of `DAGSTER_HOME` when it is set (`deploy/dagster-postgres.yaml` puts it on
PostgreSQL, which takes concurrent runs' events).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from factorcov_pipeline import environment
from factorcov_pipeline.core import calendar
from factorcov_pipeline.storage import StoreBusyError

STAGES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("universe", "exposures"), True),
    (("factor_returns",), True),
    (("factor_volatility", "factor_correlation", "specific_risk"), False),
    (("factor_covariance", "covariance_report"), True),
    (("forecast_bias", "portfolio_risk"), True),
    (("risk_backtest", "model_leaderboard"), False),
)
# Assets that `run_parallel` runs per chunk (stages of concurrent runs; a stage starts when the
# previous one has ended, so factor_returns and forecast_bias may read the previous chunk's rows).
CROSS_SECTIONAL = frozenset(a for assets, per_chunk in STAGES if per_chunk for a in assets)
ENV_BACKFILL_RUN_SESSIONS = "FACTORCOV_BACKFILL_RUN_SESSIONS"

# A backfill launched from the UI is run by Dagster's backfill daemon, not by stages: it
# requests an asset's partitions once their parents' partitions (by the declared partition
# mappings) have materialised, and groups assets of one policy into runs. Every asset's deps are
# same-session, so chunked runs of an asset that reads EARLIER sessions (of its own or of other
# assets) could start before the chunk they read from has been written:
#
# - `PER_DATE`: a session depends on the same session of its parents only: runs of
#   FACTORCOV_BACKFILL_RUN_SESSIONS sessions (`BackfillPolicy.multi_run`), concurrent.
# - `IN_DATE_ORDER`: reads earlier sessions (factor_returns: caps and exposures of t-1; the
#   EWMA recursions: their own state of t-1; forecast_bias: 21 sessions of returns and
#   covariances; risk_backtest: the forecasts of t-1). In chunked backfills each declares a
#   dependency on its own previous session: the daemon then requests a session only when the
#   previous one has materialised (or is in the same run), so every earlier session's inputs
#   are stored before it runs. They keep `single_run`: each run covers the sessions ready at
#   the time, in date order. A self-dependency, unlike an offset mapping onto another asset,
#   does not extend the backfill past the range (Dagster's target is the range's descendants;
#   `AssetGraph.bfs_filter_subsets` does not follow an asset's edge to itself).
PER_DATE = frozenset(
    {"universe", "exposures", "factor_covariance", "covariance_report", "portfolio_risk"}
)
IN_DATE_ORDER = frozenset(
    {
        "factor_returns",
        "factor_volatility",
        "factor_correlation",
        "specific_risk",
        "forecast_bias",
        "risk_backtest",
        "model_leaderboard",
    }
)


def _after_previous_session(spec: Any) -> Any:
    """The asset's spec with a dependency on its own previous session (allowed not to exist,
    before the first partition). `allow_nonexistent_upstream_partitions` is labelled beta in
    dagster 1.13; its notice is silenced, as the package's others (orchestration/__init__.py)."""
    import dagster as dg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        previous = dg.TimeWindowPartitionMapping(
            start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
        )
    return spec.replace_attributes(
        deps=[*spec.deps, dg.AssetDep(spec.key, partition_mapping=previous)]
    )


def chunked_backfills(assets: Sequence[Any], run_sessions: int | None = None) -> list[Any]:
    """The assets as Dagster's backfill daemon should run a UI backfill in chunks, when
    `FACTORCOV_BACKFILL_RUN_SESSIONS` (or `run_sessions`) is set; unchanged otherwise (every
    asset `single_run`: a UI backfill is one run, the default).

    Chunked: the `PER_DATE` assets run as concurrent runs of at most `run_sessions` sessions
    (`BackfillPolicy.multi_run`; the instance's run queue starts at most
    `concurrency.runs.max_concurrent_runs` at once, deploy/dagster-postgres.yaml), and the
    `IN_DATE_ORDER` assets as runs in date order, each over the sessions whose inputs are
    stored (see `IN_DATE_ORDER`). For a range of 20 sessions in runs of 10 (tested end to end
    in tests/test_ui_backfill.py): `universe` + `exposures` in 2 concurrent runs; then
    `factor_returns`, the recursions, `forecast_bias` and `risk_backtest` as their inputs
    arrive, and `factor_covariance` + `covariance_report` + `portfolio_risk` per chunk. The
    result equals one sequential run. Needs a shared store (PostgreSQL): runs write at the
    same time.
    """
    import dagster as dg

    raw = run_sessions or os.environ.get(ENV_BACKFILL_RUN_SESSIONS) or ""
    if not raw:
        return list(assets)
    try:
        size = int(raw)
        if size < 1:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{ENV_BACKFILL_RUN_SESSIONS}={raw!r} is not a positive number of sessions"
        ) from None
    policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=size)
    out = []
    for a in assets:
        names = {k.to_user_string() for k in a.keys}
        if names <= PER_DATE:
            a = a.with_attributes(backfill_policy=policy)
        elif names <= IN_DATE_ORDER:
            a = a.map_asset_specs(_after_previous_session)
        out.append(a)
    return out


class ParallelStoreError(StoreBusyError):
    """Parallel runs were asked of a store that allows one writing process (DuckDB)."""


@dataclass(frozen=True)
class RunOutcome:
    """What one chunk's run reports back to the parent process."""

    assets: tuple[str, ...]
    start: dt.date
    end: dt.date
    success: bool
    seconds: float
    check_evaluations: list[Any]
    failure_events: list[Any]
    removed: list[str] = field(default_factory=list)


@dataclass
class ParallelResult:
    """The runs of a parallel backfill, with the parts of Dagster's run result the command
    reads (`success`, check evaluations, step failures, `run_id` for `runner.removed_tables`)."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    stage_seconds: list[float] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: f"parallel-{uuid.uuid4()}")

    @property
    def all_events(self) -> list[Any]:
        """The failure events of every run (what `runner.was_interrupted` inspects)."""
        return self.get_step_failure_events()

    @property
    def success(self) -> bool:
        return bool(self.outcomes) and all(o.success for o in self.outcomes)

    def get_asset_check_evaluations(self) -> list[Any]:
        return [e for o in self.outcomes for e in o.check_evaluations]

    def get_step_failure_events(self) -> list[Any]:
        return [e for o in self.outcomes for e in o.failure_events]


def chunks(start: dt.date, end: dt.date, size: int) -> list[tuple[dt.date, dt.date]]:
    """The sessions of [start, end] as consecutive (first, last) spans of `size` sessions."""
    days = calendar.sessions(start, end)
    return [(days[i], days[min(i + size, len(days)) - 1]) for i in range(0, len(days), size)]


def _run_chunk(
    assets: tuple[str, ...],
    start: dt.date,
    end: dt.date,
    database_url: str,
    settings_file: str,
) -> RunOutcome:
    """One run in a worker process (module-level so that it pickles)."""
    import dagster as dg

    from factorcov_pipeline.orchestration.resources import FactorcovPostgres
    from factorcov_pipeline.orchestration.runner import quiet_logger, removed_tables, run_range

    instance = (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )
    t0 = time.perf_counter()
    result = run_range(
        start,
        end,
        FactorcovPostgres(url=database_url),
        settings_file,
        instance,
        quiet_logger(),
        selection=list(assets),
    )
    return RunOutcome(
        assets,
        start,
        end,
        result.success,
        time.perf_counter() - t0,
        list(result.get_asset_check_evaluations()),
        list(result.get_step_failure_events()),
        removed_tables(result),
    )


def run_parallel(
    start: dt.date,
    end: dt.date,
    storage: Any,
    settings_file: str = "",
    workers: int = 2,
    chunk_sessions: int | None = None,
    progress: Callable[[str], None] | None = print,
    stages: Sequence[tuple[tuple[str, ...], bool]] = STAGES,
) -> ParallelResult:
    """Materialise every asset for [start, end] as chunked runs on `workers` processes.

    `storage` is the store resource; it must be `FactorcovPostgres` (a shared database).
    `chunk_sessions`: sessions per run (default `FACTORCOV_CHUNK_SESSIONS`, else 84).
    Stops after the first stage with a failed run (later stages would read missing inputs).
    """
    from factorcov_pipeline.orchestration.resources import FactorcovPostgres

    if not isinstance(storage, FactorcovPostgres):
        raise ParallelStoreError(
            "--parallel needs a store shared by several processes: set FACTORCOV_DATABASE_URL "
            "to a PostgreSQL database (a DuckDB file allows one writing process)"
        )
    url = storage.store().url  # type: ignore[attr-defined]
    size = chunk_sessions or environment.chunk_sessions()
    spans = chunks(start, end, size)
    out = ParallelResult()
    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        # The instance's storage creates its tables on first use: once here, not by every
        # worker at the same time (they would race on CREATE TABLE).
        dg.DagsterInstance.get().dispose()
    # spawn: each worker imports Dagster afresh (no fork of a process holding connections)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
        for assets, per_chunk in stages:
            t0 = time.perf_counter()
            todo = spans if per_chunk else [(start, end)]
            futures = [pool.submit(_run_chunk, assets, a, b, url, settings_file) for a, b in todo]
            results = [f.result() for f in futures]
            out.outcomes += results
            out.stage_seconds.append(time.perf_counter() - t0)
            ok = sum(r.success for r in results)
            if progress is not None:
                progress(
                    f"factorcov: {', '.join(assets)}: {ok}/{len(results)} run(s) succeeded "
                    f"in {out.stage_seconds[-1]:.1f} s"
                )
            if ok != len(results):
                break
    from factorcov_pipeline.orchestration.runner import REMOVED

    REMOVED[out.run_id] = sorted({t for o in out.outcomes for t in o.removed})
    return out
