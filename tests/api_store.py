"""A small materialised store for the API and `factorcov risk` tests: the default pipeline over
the first 8 sessions (2025-03-31 .. 2025-04-09) of 100 synthetic assets, in-process."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range

SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=20))[:8]
LAST = SESSIONS[-1]
N_ASSETS = 100


def settings_file(directory: Path) -> Path:
    path = directory / "settings.json"
    # short half-lives and histories: the last sessions are past every warm-up and their
    # specific risks estimated from the assets' own returns (no warnings there)
    path.write_text(
        json.dumps(
            {
                "factor_model_settings": {
                    "universe": {"n_assets": N_ASSETS},
                    # a ridge on thin sectors: a one-asset sector's specific return is not 0
                    # by construction, so its specific risk is its own (no `reason`)
                    "modelconstruction": {"thin_category_shrinkage": 0.1},
                },
                "factor_cov_settings": {"halflife_vol": 2, "halflife_cor": 3},
                "specific_risk_settings": {
                    "halflife": 2,
                    "halflife_vra": None,
                    "min_history": 1,
                    "full_history": 2,
                },
            }
        )
    )
    return path


def build(directory: Path, resource: object | None = None) -> Path:
    """Materialise the sessions into ``directory/fc.duckdb`` (or ``resource``)."""
    db = directory / "fc.duckdb"
    result = run_range(
        SESSIONS[0],
        LAST,
        resource or FactorcovStorage(database=str(db)),
        str(settings_file(directory)),
        logger=quiet_logger(),
    )
    assert result.success, failure_messages(result)
    return db
