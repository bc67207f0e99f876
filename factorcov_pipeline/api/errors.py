"""The read layer's refusals: one-line messages naming the store, the date, the factor or the
asset. Every one is a `ValueError`, so ``except ValueError`` catches them all; the `factorcov`
command prints them as ``factorcov: error: ...`` (exit code 2). Bad holdings raise
`core.holdings.HoldingsError` (also a `ValueError`), re-exported here."""

from __future__ import annotations

from factorcov_pipeline.core.holdings import HoldingsError


class RiskModelError(ValueError):
    """A request the stored risk model cannot answer; the message says why."""


class NoForecastError(RiskModelError):
    """No forecast stored at the requested date; the message names the nearest stored dates."""


class UnknownModelError(RiskModelError):
    """The covariance model asked for is not stored; the message lists the stored ones."""


class UnknownFactorError(RiskModelError):
    """A factor name is not stored; the message lists the stored ones."""


class UnknownAssetError(RiskModelError):
    """Asset ids that are not in the model on the date; the message names them."""


class ModelDataError(RiskModelError):
    """The stored tables of a date are incomplete (a covariance pair or a specific risk
    missing); the message names the table and the date."""


class ClosedError(RiskModelError):
    """The `RiskModel` was closed."""


class ExportError(RiskModelError):
    """An export cannot be written (its files exist, or the directory is not writable)."""


__all__ = [
    "ClosedError",
    "ExportError",
    "HoldingsError",
    "ModelDataError",
    "NoForecastError",
    "RiskModelError",
    "UnknownAssetError",
    "UnknownFactorError",
    "UnknownModelError",
]
