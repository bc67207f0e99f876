"""The storage resource can be pointed at another backend without touching the assets.

"Beyond one machine" (docs/scaling.md) swaps DuckDB for a shared warehouse behind the same
`FactorcovStorage` resource. The stand-in here is a second DuckDB file: the same assets and
checks, unchanged, materialise a short range into file A and then into file B, configured only
through the resource. The test shows that (1) B receives every table, (2) A is left exactly as it
was (byte-identical contents) and the default file of `FACTORCOV_DUCKDB` is never created, so the
assets wrote nowhere but where the resource pointed, and (3) B's numbers are identical to A's, bit for bit.
"""

import datetime as dt
import io
import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.orchestration.partitions import SESSIONS_START
from factorcov_pipeline.orchestration.resources import FactorcovStorage
from factorcov_pipeline.orchestration.runner import failure_messages, quiet_logger, run_range
from factorcov_pipeline.storage import ENV_DATABASE, STATE_TABLE

SESSIONS = calendar.sessions(SESSIONS_START, SESSIONS_START + dt.timedelta(days=14))[:5]


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    """Every table of a DuckDB file, rows sorted by every column (order-free comparison).

    `model_settings.created_at` is the wall-clock time of the first write, so only its
    `settings_json` column is compared.
    """
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for name in names:
            cols = {"model_settings": "settings_json", "covariance_models": "model, settings_json"}
            cols = cols.get(name, "*")
            out[name] = pl.from_arrow(
                con.execute(f'SELECT {cols} FROM "{name}" ORDER BY ALL').to_arrow_table()
            )
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_backends(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict]:
    tmp = tmp_path_factory.mktemp("backends")
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"factor_model_settings": {"universe": {"n_assets": 200}}}))
    default_db = tmp / "default_from_env.duckdb"
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_DATABASE, str(default_db))
    try:
        first, second = tmp / "first.duckdb", tmp / "second.duckdb"
        res_a = run_range(
            SESSIONS[0],
            SESSIONS[-1],
            FactorcovStorage(database=str(first)),
            str(settings),
            logger=quiet_logger(),
        )
        assert res_a.success, failure_messages(res_a)
        before = _tables(first)
        bytes_before = first.read_bytes()
        res_b = run_range(
            SESSIONS[0],
            SESSIONS[-1],
            FactorcovStorage(database=str(second)),
            str(settings),
            logger=quiet_logger(),
        )
        assert res_b.success, failure_messages(res_b)
        return first, second, default_db, {"before": before, "bytes_before": bytes_before}
    finally:
        mp.undo()


def test_second_backend_gets_every_table_and_first_is_untouched(two_backends) -> None:
    first, second, default_db, snap = two_backends
    # The environment's default file was never created: the resource alone chose the target.
    assert not default_db.exists()
    # The first file is bit-for-bit what it was before the run into the second file.
    assert first.read_bytes() == snap["bytes_before"]
    b = _tables(second)
    expected = {
        "universe",
        "exposures",
        "factor_returns",
        "specific_returns",
        "regression_stats",
        "factor_volatility",
        "volatility_regime",
        "factor_correlation",
        "factor_covariance",
        "covariance_report",
        "forecast_bias",
        STATE_TABLE,
        "model_settings",
    }
    assert expected <= set(b), sorted(expected - set(b))
    # Real data arrived: 5 sessions x ~200 assets in the universe, 4 forecast dates.
    assert b["universe"]["date"].n_unique() == len(SESSIONS)
    assert b["universe"].height > 4 * 150
    assert b["factor_volatility"]["date"].n_unique() == len(SESSIONS) - 1


def test_second_backend_holds_identical_numbers(two_backends) -> None:
    _, second, _, snap = two_backends
    a, b = snap["before"], _tables(second)
    assert set(a) == set(b)
    for name in a:
        if name != STATE_TABLE:
            _assert_same(a[name], b[name], name)


def _assert_same(x: pl.DataFrame, y: pl.DataFrame, name: str) -> None:
    """Same schema and the same rows, bit for bit (NaN/null where NaN/null).

    The pipeline is deterministic run to run (per-date statistics by ordered numpy sums, see
    `core.exposures`), so a second backend must hold exactly the first one's numbers.
    """
    assert x.schema == y.schema, name
    assert x.height == y.height, name
    assert x.equals(y, null_equal=True), name


def _npz_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_second_backend_holds_identical_recursion_state(two_backends) -> None:
    """The stored EWMA states are .npz archives (zip headers carry a write time), so they are
    compared array by array: same shapes and dtypes, equal bit for bit."""
    _, second, _, snap = two_backends
    a, b = snap["before"][STATE_TABLE], _tables(second)[STATE_TABLE]
    assert a.height == b.height
    # the factor recursions keep one state, at the range's last session (assets/resume.py);
    # specific_risk keeps one per date
    factor = a.filter(pl.col("asset").is_in(["factor_volatility", "factor_correlation"]))
    assert factor.height == 2
    assert a.select("asset", "date").equals(b.select("asset", "date"))
    for blob_a, blob_b in zip(a["state"], b["state"], strict=True):
        arr_a, arr_b = _npz_arrays(blob_a), _npz_arrays(blob_b)
        assert arr_a.keys() == arr_b.keys() and arr_a
        for key in arr_a:
            np.testing.assert_array_equal(arr_a[key], arr_b[key], strict=True, err_msg=key)
