"""The risk report of a portfolio at a date (`RiskModel.risk`, `factorcov risk`).

For holdings h on the model's assets (exposures X, factor covariance F, specific volatilities
s, all annualised; `core/portfolio.py` has the formulas and their sources):

* ``total_risk`` sigma = sqrt(x'Fx + sum h^2 s^2) with x = X'h, ``factor_risk`` sqrt(x'Fx),
  ``specific_risk`` sqrt(sum h^2 s^2);
* per factor k: ``exposure`` x_k, ``volatility`` sigma_k = sqrt(F_kk), ``marginal_contribution``
  (Fx)_k / sigma = d sigma / d x_k (the marginal contribution to risk, MCTR: Grinold and Kahn
  2000, chapter 3), ``contribution`` c_k = x_k (Fx)_k / sigma (Euler, x-sigma-rho: Menchero
  and Davis 2011) and ``share`` c_k / sigma (the fraction of total risk);
* per factor group: the contributions summed, and their share; ``specific_contribution``
  sum h^2 s^2 / sigma. Factor contributions plus the specific contribution add up to sigma.

With a benchmark b, ``active`` is the same report of h - b, and ``beta`` the predicted beta of
h to b. A portfolio of zero risk has zero contributions, marginal contributions and shares.

Every number is finite: weights that overflow (1e308) are refused naming the holdings, and so is
a benchmark of zero predicted risk (its beta is undefined). `RiskReport.to_dict()` is exactly
`factorcov risk --format json`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.core.holdings import HoldingsError
from factorcov_pipeline.core.portfolio import RiskSnapshot, beta, decompose

FACTOR_COLUMNS = {
    "factor": pl.String,
    "factor_group": pl.String,
    "exposure": pl.Float64,
    "volatility": pl.Float64,
    "marginal_contribution": pl.Float64,
    "contribution": pl.Float64,
    "share": pl.Float64,
}
GROUP_COLUMNS = {"factor_group": pl.String, "contribution": pl.Float64, "share": pl.Float64}


@dataclass(frozen=True)
class RiskSection:
    """The risk of one set of weights (a portfolio, or portfolio minus benchmark).

    Attributes
    ----------
    total_risk, factor_risk, specific_risk : float
        Annualised volatilities (0.12 is 12% a year).
    specific_contribution : float
        The specific part of ``total_risk`` (Euler contribution).
    factors : polars.DataFrame
        One row per factor in the model's order: ``factor, factor_group, exposure, volatility,
        marginal_contribution, contribution, share`` (module docstring).
    groups : polars.DataFrame
        ``factor_group, contribution, share``, groups in the order of their first factor.
    """

    total_risk: float
    factor_risk: float
    specific_risk: float
    specific_contribution: float
    factors: pl.DataFrame
    groups: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the keys of `factorcov risk --format json`."""
        return {
            "total_risk": self.total_risk,
            "factor_risk": self.factor_risk,
            "specific_risk": self.specific_risk,
            "factors": self.factors.to_dicts(),
            "groups": self.groups.to_dicts(),
            "specific_contribution": self.specific_contribution,
        }


@dataclass(frozen=True, kw_only=True)
class RiskReport(RiskSection):
    """The risk report of a portfolio at a date (`RiskModel.risk`).

    Attributes
    ----------
    date : datetime.date
        The forecast date: exposures of that date, covariance and specific risk forecast at it.
    total_risk, factor_risk, specific_risk, specific_contribution, factors, groups
        The portfolio's risk (`RiskSection`).
    active : RiskSection or None
        With a benchmark: the risk of portfolio minus benchmark weights.
    beta : float or None
        With a benchmark: the portfolio's predicted beta to it.
    warnings : list of str
        What the numbers should be read with (assets whose specific risk was not estimated
        from their own returns, a near-zero specific risk or an exactly fitted regression, a
        date within the forecasts' warm-up, asset ids dropped); empty when there is nothing.
    """

    date: dt.date
    active: RiskSection | None = None
    beta: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Exactly `factorcov risk --format json`: ``date, total_risk, factor_risk,
        specific_risk, factors, groups, specific_contribution``, with a benchmark ``active``
        and ``beta``, and ``warnings``."""
        out: dict[str, Any] = {"date": self.date.isoformat(), **super().to_dict()}
        if self.active is not None:
            out["active"] = self.active.to_dict()
            out["beta"] = self.beta
        out["warnings"] = list(self.warnings)
        return out


def _times(values: np.ndarray, factor: float) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return values * factor


def section(model: RiskSnapshot, weights: np.ndarray, source: str, day: dt.date) -> RiskSection:
    """The risk of ``weights`` (N,) on ``model``'s assets; refuses (`HoldingsError` naming
    ``source``) weights whose risk is not a finite number."""
    # overflowing weights give inf/NaN, refused below in one line, not as numpy warnings
    with np.errstate(over="ignore", invalid="ignore"):
        d = decompose(model, weights)
        total = float(d.total[0])
        x = d.exposures[0]
        fx = x @ model.covariance  # as decompose forms it: contribution = x * marginal exactly
        inv = 1.0 / total if total > 0 else 0.0
        names, group_contrib = d.group_contributions(model.factor_groups)
    factors = pl.DataFrame(
        {
            "factor": model.factors,
            "factor_group": model.factor_groups,
            "exposure": x,
            "volatility": np.sqrt(np.diagonal(model.covariance)),
            "marginal_contribution": _times(fx, inv),
            "contribution": d.contributions[0],
            "share": _times(d.contributions[0], inv),
        },
        schema=FACTOR_COLUMNS,
    )
    groups = pl.DataFrame(
        {
            "factor_group": names,
            "contribution": group_contrib[0],
            "share": _times(group_contrib[0], inv),
        },
        schema=GROUP_COLUMNS,
    )
    out = RiskSection(
        total_risk=total,
        factor_risk=float(d.factor[0]),
        specific_risk=float(d.specific[0]),
        specific_contribution=float(d.specific_contribution[0]),
        factors=factors,
        groups=groups,
    )
    numbers = np.concatenate(
        [
            [out.total_risk, out.factor_risk, out.specific_risk, out.specific_contribution],
            factors.select(pl.exclude("factor", "factor_group")).to_numpy().ravel(),
            groups["contribution"].to_numpy(),
        ]
    )
    if not np.isfinite(numbers).all():
        largest = float(np.max(np.abs(weights), initial=0.0))
        raise HoldingsError(
            f"holdings {source}: the risk of these weights on {day} is not a finite number "
            f"(the largest weight is {largest:.3g}: weights are fractions of the portfolio's "
            "value)"
        )
    return out


def report(
    model: RiskSnapshot,
    day: dt.date,
    weights: np.ndarray,
    source: str,
    bench: np.ndarray | None = None,
    bench_source: str = "",
    warnings: list[str] | None = None,
) -> RiskReport:
    """The `RiskReport` of ``weights`` (and the active report against ``bench``)."""
    port = section(model, weights, source, day)
    active: RiskSection | None = None
    beta_value: float | None = None
    if bench is not None:
        section(model, bench, bench_source, day)  # the benchmark's own risk must be finite
        active = section(model, weights - bench, f"{source} minus {bench_source}", day)
        beta_value = float(beta(model, weights, bench)[0])
        if not math.isfinite(beta_value):
            raise HoldingsError(
                f"holdings {bench_source}: the benchmark's predicted risk on {day} is 0 (its "
                "weights are all 0), so the portfolio's beta to it is undefined"
            )
    return RiskReport(
        total_risk=port.total_risk,
        factor_risk=port.factor_risk,
        specific_risk=port.specific_risk,
        specific_contribution=port.specific_contribution,
        factors=port.factors,
        groups=port.groups,
        date=day,
        active=active,
        beta=beta_value,
        warnings=list(warnings or []),
    )
