"""The risk model of a date as Parquet files for an optimiser (`RiskModel.export`,
`factorcov export`): the asset covariance is V = X F X' + diag(s^2), and an optimiser wants the
three parts, not the N x N matrix (Grinold and Kahn 2000, chapter 3; a QP solver such as cvxpy
takes ``quad_form(X'w, F) + sum_squares(s * w)``).

Files (every one carries the ``date``; all numbers annualised, assets sorted by id and in the
same order in ``exposures.parquet`` and ``specific_variance.parquet``):

* ``exposures.parquet``: ``date, asset_id`` and one Float64 column per factor (X, N x K);
* ``factor_covariance.parquet``: ``date, factor`` and one Float64 column per factor (F, K x K;
  its rows and columns in the order of X's columns);
* ``specific_variance.parquet``: ``date, asset_id, specific_variance`` (s^2) and
  ``specific_risk`` (s).

Each file is written to a temporary name and renamed into place, so a failed export leaves no
half-written file; existing files are refused unless ``overwrite``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import polars as pl

from factorcov_pipeline.api.errors import ExportError
from factorcov_pipeline.core.portfolio import RiskSnapshot

FILES = ("exposures", "factor_covariance", "specific_variance")


def export_frames(model: RiskSnapshot, day: dt.date) -> dict[str, pl.DataFrame]:
    """The three frames of the module docstring."""
    n, k = model.exposures.shape
    x: dict[str, Any] = {"date": [day] * n, "asset_id": model.asset_ids.tolist()}
    x.update({f: model.exposures[:, j] for j, f in enumerate(model.factors)})
    f: dict[str, Any] = {"date": [day] * k, "factor": list(model.factors)}
    f.update({name: model.covariance[:, j] for j, name in enumerate(model.factors)})
    s = {
        "date": [day] * n,
        "asset_id": model.asset_ids.tolist(),
        "specific_variance": model.specific_risk**2,
        "specific_risk": model.specific_risk,
    }
    return {
        "exposures": pl.DataFrame(x),
        "factor_covariance": pl.DataFrame(f),
        "specific_variance": pl.DataFrame(s),
    }


def write_export(
    model: RiskSnapshot, day: dt.date, directory: Path, overwrite: bool = False
) -> dict[str, Path]:
    """Write the frames as ``<directory>/<name>.parquet``; the paths written."""
    paths = {name: directory / f"{name}.parquet" for name in FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ExportError(
            f"export: {', '.join(existing)} exist(s); use another directory, or overwrite (--force)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        frames = export_frames(model, day)
        for name, frame in frames.items():
            tmp = paths[name].with_name(f".{paths[name].name}.{os.getpid()}.tmp")
            try:
                frame.write_parquet(tmp)
                os.replace(tmp, paths[name])
            finally:
                tmp.unlink(missing_ok=True)
    except OSError as err:
        raise ExportError(f"export: cannot write to {directory}: {err.strerror or err}") from None
    return paths
