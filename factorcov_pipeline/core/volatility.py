"""Factor volatility forecasts: EWMA of squared returns, Newey-West, volatility regime adjustment.

Default (the tutorial's ``df_vol_tieout``): the daily variance forecast dated t is the pandas
EWMA (``ewm(halflife=halflife_vol).mean()``, adjusted, no demeaning) of the squared factor
returns up to and including t; the published volatility is ``sqrt(var) * sqrt(252)``.

``nw_lags_vol = L > 0``: Newey-West (1987, Econometrica 55(3), eq. 2: Bartlett weights
``1 - l/(L+1)``) in the EWMA-weighted form of Barra USE4 (Menchero, Orr and Wang 2011, "The
Barra US Equity Model (USE4) Methodology Notes", section 4.2):

    C_l(t) = sum_s w_s f_s f_{s-l} / sum_s w_s         (EWMA over s <= t, element-wise)
    var(t) = C_0(t) + sum_{l=1..L} (1 - l/(L+1)) * 2 * C_l(t)

``C_0`` uses ``halflife_vol``; the lagged ``C_l`` use ``nw_lags_vol_halflife_override`` when
set, else ``halflife_vol``. Each ``C_l`` is normalised by its own weight sum, over the dates at
which the lag is available: on the first l dates (and after any missing return) ``f_{s-l}`` is
missing, the product is a missing observation, so those terms are not accumulated (the EWMA
still ages); until a lag has a first observation its term is 0. Because the ``C_l`` are finite-
sample estimates, the adjusted variance can be <= 0 (strong negative autocorrelation); when it is
not above ``NW_MIN_RATIO * C_0`` (1e-8: zero up to rounding, e.g. 1e-4 - 2 * 0.5 * 1e-4 gives
1e-20) it falls back to the unadjusted ``C_0`` for that factor and date (we never publish zero or
negative risk, and dropping the correction is the conservative, documented choice).

``halflife_vra`` set: volatility regime adjustment (USE4 notes, eq. 4.3-4.5):

    B_t = sqrt( mean_k (f_kt / sigma_k,t-1)^2 )       (cross-sectional bias statistic)
    lambda_t^2 = EWMA of B_t^2 with halflife_vra       (same pandas-style EWMA)
    var_adj(t) = lambda_t^2 * var(t)

with ``sigma_k,t-1`` the daily volatility forecast (NW included, VRA not) dated t-1, so no
return of t or later enters a forecast dated before t. Factors whose return or prior forecast is
missing (or zero) are left out of the mean; the first date ever has no prior forecast, so no B
term; until the first B term the multiplier is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factorcov_pipeline.core.ewma import EwmaState, arrays_from_bytes, arrays_to_bytes, ewma_run
from factorcov_pipeline.core.forecaster import (
    ANNUALISATION_DAYS,
    NW_MIN_RATIO,
    Forecaster,
    as_block,
    bartlett_weights,
    lagged_products,
    newey_west_variance,
    next_buffer,
)
from factorcov_pipeline.core.settings import FactorCovarianceSettings

# Re-exported: these helpers lived here before `core/forecaster.py`.
__all__ = [
    "ANNUALISATION_DAYS",
    "NW_MIN_RATIO",
    "VolatilityForecast",
    "VolatilityForecaster",
    "VolatilityState",
    "bartlett_weights",
    "lagged_products",
    "next_buffer",
]


@dataclass
class VolatilityState:
    """Everything the volatility recursion needs to continue after its last date.

    ``config`` = (halflife_vol, nw_lags_vol, NW half-life, halflife_vra or NaN) guards against
    resuming with different settings. ``last_raw_var``: the daily variance forecast before the
    regime adjustment of the last date (for B of the next date); ``last_daily_var``: the
    published daily variance of the last date (the next date's prior forecast).
    """

    config: np.ndarray
    var_ewma: EwmaState
    nw_s: np.ndarray
    nw_w: np.ndarray
    lag_buffer: np.ndarray
    vra_ewma: EwmaState | None
    last_raw_var: np.ndarray
    last_daily_var: np.ndarray

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "config": self.config,
            "nw_s": self.nw_s,
            "nw_w": self.nw_w,
            "lag_buffer": self.lag_buffer,
            "last_raw_var": self.last_raw_var,
            "last_daily_var": self.last_daily_var,
            **self.var_ewma.to_arrays("var_"),
        }
        if self.vra_ewma is not None:
            arrays.update(self.vra_ewma.to_arrays("vra_"))
        return arrays_to_bytes(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> VolatilityState:
        a = arrays_from_bytes(data)
        return cls(
            config=a["config"],
            var_ewma=EwmaState.from_arrays(a, "var_"),
            nw_s=a["nw_s"],
            nw_w=a["nw_w"],
            lag_buffer=a["lag_buffer"],
            vra_ewma=EwmaState.from_arrays(a, "vra_") if "vra_s" in a else None,
            last_raw_var=a["last_raw_var"],
            last_daily_var=a["last_daily_var"],
        )


@dataclass
class VolatilityForecast:
    """Forecasts dated at each of the T dates of a block (factor order of the input).

    ``vol``: annualised volatility ``sqrt(daily_var) * sqrt(252)``; ``daily_var``: published
    daily variance (NW and VRA applied); ``raw_daily_var``: before the regime adjustment;
    ``vra_multiplier``: lambda_t (1.0 when VRA is off); ``bias_stat``: B_t (NaN when VRA is off or
    undefined); ``prior_daily_vol``: the published daily volatility dated t-1 (row 0 from the
    state; NaN on the first date ever), the input of `CorrelationForecaster` with
    ``combine_standardized``.
    """

    vol: np.ndarray
    daily_var: np.ndarray
    raw_daily_var: np.ndarray
    vra_multiplier: np.ndarray
    bias_stat: np.ndarray
    prior_daily_vol: np.ndarray


class VolatilityForecaster(Forecaster[VolatilityState]):
    """Runs the volatility recursion over blocks of dates (see the module docstring)."""

    name = "volatility"
    config_labels = "halflife_vol, nw_lags_vol, NW half-life, halflife_vra"

    def __init__(self, settings: FactorCovarianceSettings) -> None:
        self.settings = settings
        self.n_lags = int(settings.nw_lags_vol)
        self.halflife = float(settings.halflife_vol)
        self.nw_halflife = float(
            settings.nw_lags_vol_halflife_override
            if settings.nw_lags_vol_halflife_override is not None
            else settings.halflife_vol
        )
        self.halflife_vra = None if settings.halflife_vra is None else float(settings.halflife_vra)
        self.config = np.array(
            [
                self.halflife,
                float(self.n_lags),
                self.nw_halflife,
                np.nan if self.halflife_vra is None else self.halflife_vra,
            ]
        )

    def initial_state(self, k: int) -> VolatilityState:
        """The state before the first date ever (no observation, no lag, no prior forecast)."""
        nan_k = np.full(k, np.nan)
        return VolatilityState(
            config=self.config.copy(),
            var_ewma=EwmaState.empty(self.halflife, (k,)),
            nw_s=np.zeros((self.n_lags, k)),
            nw_w=np.zeros((self.n_lags, k)),
            lag_buffer=np.full((self.n_lags, k), np.nan),
            vra_ewma=None if self.halflife_vra is None else EwmaState.empty(self.halflife_vra, ()),
            last_raw_var=nan_k.copy(),
            last_daily_var=nan_k.copy(),
        )

    def state_width(self, state: VolatilityState) -> tuple[int, ...]:
        return state.var_ewma.s.shape

    def run(
        self, state: VolatilityState | None, F: np.ndarray
    ) -> tuple[VolatilityForecast, VolatilityState]:
        """Forecasts for the T dates of ``F`` (T, K) (NaN = missing) and the state after them."""
        F = as_block(F)
        state = self._start(state, F.shape[1])

        block0, var_state = ewma_run(F * F, self.halflife, state.var_ewma)
        c0 = block0.mean
        raw = c0
        nw_s, nw_w = state.nw_s.copy(), state.nw_w.copy()
        if self.n_lags > 0:
            # Non-positive NW variance: fall back to the unadjusted C_0 (module docstring).
            raw = newey_west_variance(
                c0, F, state.lag_buffer, nw_s, nw_w, self.n_lags, self.nw_halflife
            )
        lag_buffer = (
            next_buffer(state.lag_buffer, F, self.n_lags) if self.n_lags > 0 else state.lag_buffer
        )

        n = F.shape[0]
        multiplier = np.ones(n)
        bias = np.full(n, np.nan)
        vra_state = state.vra_ewma
        daily_var = raw
        if self.halflife_vra is not None:
            prior_raw = np.concatenate([state.last_raw_var[None, :], raw], axis=0)[:n]
            with np.errstate(invalid="ignore", divide="ignore"):
                z2 = np.where(
                    prior_raw > 0, F * F / np.where(prior_raw > 0, prior_raw, 1.0), np.nan
                )
            ok = ~np.isnan(z2)
            count = ok.sum(axis=1)
            b2 = np.where(
                count > 0, np.where(ok, z2, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan
            )
            bias = np.sqrt(b2)
            vra_block, vra_state = ewma_run(b2, self.halflife_vra, vra_state)
            lam2 = np.where(np.isnan(vra_block.mean), 1.0, vra_block.mean)
            multiplier = np.sqrt(lam2)
            daily_var = raw * lam2[:, None]

        prior_var = np.concatenate([state.last_daily_var[None, :], daily_var], axis=0)[:n]
        forecast = VolatilityForecast(
            vol=np.sqrt(daily_var) * np.sqrt(float(ANNUALISATION_DAYS)),
            daily_var=daily_var,
            raw_daily_var=raw,
            vra_multiplier=multiplier,
            bias_stat=bias,
            prior_daily_vol=np.sqrt(prior_var),
        )
        new_state = VolatilityState(
            config=self.config.copy(),
            var_ewma=var_state,
            nw_s=nw_s,
            nw_w=nw_w,
            lag_buffer=lag_buffer,
            vra_ewma=vra_state,
            last_raw_var=raw[-1].copy() if n > 0 else state.last_raw_var.copy(),
            last_daily_var=daily_var[-1].copy() if n > 0 else state.last_daily_var.copy(),
        )
        return forecast, new_state
