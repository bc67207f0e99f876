"""factorcov: an equity factor risk model and factor covariance forecasts on Dagster and DuckDB."""

from importlib.metadata import version

# One source of the version: pyproject.toml (the installed distribution's metadata).
__version__ = version("factorcov")
