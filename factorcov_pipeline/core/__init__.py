"""The pure computation core: numpy/polars only, no Dagster import.

Everything the model computes lives here (data generation, exposures, the constrained
regression, the EWMA recursions and covariance adjustments), so it can be tested and
benchmarked without an orchestrator.
"""
