"""factorcov: an equity factor risk model and factor covariance forecasts on Dagster and DuckDB."""

__version__ = "0.1.0"
