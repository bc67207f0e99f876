"""factorcov: an equity factor risk model and factor covariance forecasts on Dagster and DuckDB.

``from factorcov_pipeline import RiskModel`` is the Python API (`api/model.py`, docs/api.md). It
is imported on first use (PEP 562 module ``__getattr__``), so ``import factorcov_pipeline`` and
the ``factorcov`` command's start-up do not load polars or the database drivers for it.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from factorcov_pipeline.api.model import RiskModel

# One source of the version: pyproject.toml (the installed distribution's metadata).
__version__ = version("factorcov")

__all__ = ["RiskModel", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "RiskModel":
        from factorcov_pipeline.api.model import RiskModel

        return RiskModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
