"""Factor correlation forecasts: EWMA of outer products, Newey-West, standardised returns, shrinkage.

Default (the tutorial's ``df_cor_tieout``): ``C_0(t)`` is the pandas EWMA
(``ewm(halflife=halflife_cor).mean()``, adjusted, no demeaning) of the outer products
``x_s x_s'`` up to and including t, each cell with its own missing values; the correlation is
``C_ij / sqrt(C_ii C_jj)``.

``nw_lags_cor = L > 0``: Newey-West (1987, eq. 2) on the full matrix before normalising, in the
EWMA form of Barra USE4 (Menchero, Orr and Wang 2011, section 4.2):
``C(t) = C_0(t) + sum_{l=1..L} (1 - l/(L+1)) (C_l(t) + C_l(t)')`` with
``C_l(t) = EWMA_s(x_s x_{s-l}')`` (same half-life; lags before the first date are missing, a lag
without any observation yet contributes 0). If the adjusted matrix has a diagonal entry not above
``NW_MIN_RATIO`` (1e-8) times C_0's on a date (possible in finite samples), that date falls back
to ``C_0`` (as in `factorcov_pipeline.core.volatility`).

``combine_standardized=True``: the correlation is estimated on returns standardised by their
prior-day volatility forecast, ``z_t = f_t / prior_daily_vol_t`` (``prior_daily_vol[t]`` = the
published daily volatility forecast dated t-1, `VolatilityForecast.prior_daily_vol`; NaN or zero
means missing), with the same EWMA half-life and the same NW lags, i.e. ``x = z`` above. The
combined covariance is then ``vol_i vol_j corr_z_ij``: the volatility forecast combined with a
correlation of standardised returns. Why this and not an average of raw and standardised
correlations: under ``f_t = D_t z_t`` with time-varying volatilities D_t and a slowly varying
correlation R of z, the EWMA of ``f f'`` over-weights the high-volatility dates (its correlation
is a volatility-weighted average), while the EWMA correlation of z estimates R directly. This is
the second step of Engle's DCC (Engle 2002, "Dynamic Conditional Correlation", JBES 20(3),
eq. 13-15, with RiskMetrics-style integrated EWMA Q_t) and Barra's practice of estimating factor
correlations from volatility-adjusted returns (USE4 notes, section 4; Menchero and Morozov's
"volatility-adjusted" correlations). An average of the two would re-introduce half of the bias
with no principled weight.

Shrinkage (``shrink_cor_method``): each date's correlation goes through
`factorcov_pipeline.core.shrinkage.shrink_correlation` with ``n_obs = shrink_cor_length`` or,
when null, Kish's effective number of observations ``(sum w)^2 / sum w^2`` of the EWMA at that
date (the smallest over the observed cells, so pairs with less data count), kept exactly by
tracking the sum of squared weights in the state.

Validity: pairs without a joint observation get correlation 0 (and factors never observed a
unit diagonal; their volatility is NaN, so their covariance is NaN anyway). A date whose matrix
has an eigenvalue below ``-PSD_TOL`` (NW, missing-data pairwise estimates) is repaired by the
spectral method of Rebonato and Jäckel (1999, "The most general methodology to create a valid
correlation matrix", section 3): eigenvalues clipped at 0, the matrix rescaled to a unit diagonal.

Speed: in the common case (no Newey-West lags, no missing value in the block or the state) a
block of at least `factorcov_pipeline.core.ewma.JIT_MIN_DATES` dates runs the outer products,
the EWMA and the normalisation in one compiled pass per date (`kernels.outer_ewma_correlation`),
never materialising the (T, K, K) products, sums and means; it performs the same floating-point
operations in the same order as `outer_products` + `ewma_run` + `normalise`, which remain the
reference (and the path for every other case), so both give bit-identical numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factorcov_pipeline.core.ewma import (
    EwmaState,
    arrays_from_bytes,
    arrays_to_bytes,
    common_weight_paths,
    ewma_decay,
    ewma_run,
    jit_kernels,
    kish_effective_obs,
    uniform_weights,
)
from factorcov_pipeline.core.forecaster import (
    NW_MIN_RATIO,
    Forecaster,
    as_block,
    bartlett_weights,
    next_buffer,
)
from factorcov_pipeline.core.settings import FactorCovarianceSettings

PSD_TOL = 1e-10


def outer_products(x: np.ndarray) -> np.ndarray:
    """``x_t x_t'`` for every row of ``x`` (T, K) -> (T, K, K) (NaN propagates per cell)."""
    return x[:, :, None] * x[:, None, :]


def lagged_outer_products(buffer: np.ndarray, x: np.ndarray, lag: int) -> np.ndarray:
    """``x_t x_{t-lag}'`` (T, K, K), with ``buffer`` (L, K) the rows before ``x`` (NaN if none)."""
    n_buf = buffer.shape[0]
    g = np.concatenate([buffer, x], axis=0)
    n = x.shape[0]
    lagged = g[n_buf - lag : n_buf - lag + n]
    return x[:, :, None] * lagged[:, None, :]


def normalise(cov: np.ndarray) -> np.ndarray:
    """``C_ij / sqrt(C_ii C_jj)`` (the tutorial's ``df / np.outer(sd, sd)``), unit diagonal,
    0 where a cell has no observation, symmetric by construction of the inputs.

    Evaluated as ``C_ij * (r_i * r_j)`` with ``r = 1 / sd``: K divisions per matrix instead of
    K^2 (division is the costly operation of this pass); the result differs from the
    tutorial's division by a few ulps at most. `kernels.outer_ewma_correlation` performs the
    same operations.
    """
    k = cov.shape[-1]
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = 1.0 / sd
        corr = cov * (r[..., :, None] * r[..., None, :])
    corr = np.where(np.isfinite(corr), corr, 0.0)
    idx = np.arange(k)
    corr[..., idx, idx] = 1.0
    return corr


def repair_psd(corr: np.ndarray, tol: float = PSD_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Clip negative eigenvalues of the dates that need it (Rebonato and Jäckel 1999, sec. 3).

    Returns the (possibly) repaired matrices and a (T,) mask of the repaired dates. Only dates
    with an eigenvalue below ``-tol`` are touched, so valid matrices pass through bit-identical.
    """
    out = corr.copy()
    if corr.shape[0] == 0:
        return out, np.zeros(0, dtype=bool)
    sym = 0.5 * (corr + np.swapaxes(corr, -1, -2))
    min_eig = np.linalg.eigvalsh(sym)[:, 0]
    bad = min_eig < -tol
    if np.any(bad):
        lam, u = np.linalg.eigh(sym[bad])
        lam = np.maximum(lam, 0.0)
        s = (u * lam[:, None, :]) @ np.swapaxes(u, -1, -2)
        out[bad] = normalise(0.5 * (s + np.swapaxes(s, -1, -2)))
    return out, bad


@dataclass
class CorrelationState:
    """Everything the correlation recursion needs to continue after its last date.

    ``config`` = (halflife_cor, nw_lags_cor, combine_standardized, tracks squared weights)
    guards against resuming with different settings; ``nw_s``/``nw_w`` (L, K, K) are the EWMA
    sums of the lagged products; ``lag_buffer`` (L, K) the last L inputs (returns or
    standardised returns).
    """

    config: np.ndarray
    cov_ewma: EwmaState
    nw_s: np.ndarray
    nw_w: np.ndarray
    lag_buffer: np.ndarray

    def to_bytes(self) -> bytes:
        return arrays_to_bytes(
            {
                "config": self.config,
                "nw_s": self.nw_s,
                "nw_w": self.nw_w,
                "lag_buffer": self.lag_buffer,
                **self.cov_ewma.to_arrays("cov_"),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CorrelationState:
        a = arrays_from_bytes(data)
        return cls(
            config=a["config"],
            cov_ewma=EwmaState.from_arrays(a, "cov_"),
            nw_s=a["nw_s"],
            nw_w=a["nw_w"],
            lag_buffer=a["lag_buffer"],
        )


@dataclass
class CorrelationForecast:
    """``corr`` (T, K, K): the published correlation; ``n_obs`` (T,): the sample length given
    to the shrinkage (NaN when shrinkage is off); ``repaired`` (T,): dates whose NW matrix fell
    back to C_0 or that needed the PSD repair."""

    corr: np.ndarray
    n_obs: np.ndarray
    repaired: np.ndarray


class CorrelationForecaster(Forecaster[CorrelationState]):
    """Runs the correlation recursion over blocks of dates (see the module docstring)."""

    name = "correlation"
    config_labels = "halflife_cor, nw_lags_cor, combine_standardized, tracks n_eff"

    def __init__(self, settings: FactorCovarianceSettings) -> None:
        self.settings = settings
        self.halflife = float(settings.halflife_cor)
        self.n_lags = int(settings.nw_lags_cor)
        self.combine = bool(settings.combine_standardized)
        self.shrink_method = settings.shrink_cor_method
        self.shrink_length = (
            None if settings.shrink_cor_length is None else float(settings.shrink_cor_length)
        )
        self.track_sq = self.shrink_method is not None and self.shrink_length is None
        self.config = np.array(
            [self.halflife, float(self.n_lags), float(self.combine), float(self.track_sq)]
        )

    def initial_state(self, k: int) -> CorrelationState:
        """The state before the first date ever."""
        return CorrelationState(
            config=self.config.copy(),
            cov_ewma=EwmaState.empty(self.halflife, (k, k), self.track_sq),
            nw_s=np.zeros((self.n_lags, k, k)),
            nw_w=np.zeros((self.n_lags, k, k)),
            lag_buffer=np.full((self.n_lags, k), np.nan),
        )

    def state_width(self, state: CorrelationState) -> tuple[int, ...]:
        return state.cov_ewma.s.shape

    def expected_width(self, k: int) -> tuple[int, ...]:
        return (k, k)

    def _may_lose_psd(self, state: CorrelationState, x: np.ndarray) -> bool:
        """Whether the normalised EWMA can fail to be positive semi-definite.

        Without Newey-West terms and with every cell observed on the same dates, the EWMA is
        sum_t w_t x_t x_t' / sum_t w_t: a positive combination of rank-one PSD matrices, PSD by
        construction, and its normalisation D^-1/2 C D^-1/2 stays PSD. Lagged terms, or cells
        averaged over different dates (missing values), can break that: then every date's
        smallest eigenvalue is checked (`repair_psd`).
        """
        if self.n_lags > 0 or not np.isfinite(x).all():
            return True
        w = state.cov_ewma.w
        return bool(w.size and np.ptp(w) != 0.0)

    def standardise(self, F: np.ndarray, prior_daily_vol: np.ndarray | None) -> np.ndarray:
        """``z = F / prior_daily_vol`` (NaN where the prior forecast is missing or zero)."""
        if prior_daily_vol is None:
            raise ValueError("combine_standardized=True needs prior_daily_vol (T, K)")
        p = np.asarray(prior_daily_vol, dtype=np.float64)
        if p.shape != F.shape:
            raise ValueError(f"prior_daily_vol shape {p.shape} != F shape {F.shape}")
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(p > 0, F / np.where(p > 0, p, 1.0), np.nan)

    def run(
        self,
        state: CorrelationState | None,
        F: np.ndarray,
        prior_daily_vol: np.ndarray | None = None,
    ) -> tuple[CorrelationForecast, CorrelationState]:
        """Correlations for the T dates of ``F`` (T, K) and the state after them."""
        F = as_block(F)
        n, k = F.shape
        state = self._start(state, k)
        x = self.standardise(F, prior_daily_vol) if self.combine else F

        repaired = np.zeros(n, dtype=bool)
        nw_s, nw_w = state.nw_s.copy(), state.nw_w.copy()
        fused = self._fused_correlation(state, x)
        if fused is not None:
            corr, cov_state, weight_sum, weight_sq_sum = fused
        else:
            corr, cov_state, weight_sum, weight_sq_sum = self._reference_correlation(
                state, x, nw_s, nw_w, repaired
            )
        lag_buffer = (
            next_buffer(state.lag_buffer, x, self.n_lags) if self.n_lags > 0 else state.lag_buffer
        )

        if self._may_lose_psd(state, x):
            corr, bad = repair_psd(corr)
            repaired |= bad
        n_obs = np.full(n, np.nan)
        if self.shrink_method is not None:
            from factorcov_pipeline.core.shrinkage import shrink_correlation

            if self.shrink_length is not None:
                n_obs[:] = self.shrink_length
            else:
                assert weight_sq_sum is not None  # tracked whenever shrink_length is None
                n_eff = kish_effective_obs(weight_sum, weight_sq_sum)
                observed = weight_sum > 0
                n_obs = np.where(
                    observed.any(axis=(1, 2)),
                    np.where(observed, n_eff, np.inf).min(axis=(1, 2)),
                    np.nan,
                )
            ok = np.isfinite(n_obs) & (n_obs > 0)
            if np.any(ok):
                shrunk = shrink_correlation(corr[ok], n_obs[ok], self.shrink_method)
                shrunk = 0.5 * (shrunk + np.swapaxes(shrunk, -1, -2))
                corr[ok] = normalise(shrunk)
            corr, bad = repair_psd(corr)
            repaired |= bad

        new_state = CorrelationState(
            config=self.config.copy(),
            cov_ewma=cov_state,
            nw_s=nw_s,
            nw_w=nw_w,
            lag_buffer=lag_buffer,
        )
        return CorrelationForecast(corr=corr, n_obs=n_obs, repaired=repaired), new_state

    def _fused_correlation(
        self, state: CorrelationState, x: np.ndarray
    ) -> tuple[np.ndarray, EwmaState, np.ndarray, np.ndarray | None] | None:
        """The compiled one-pass path (module docstring), or None when it does not apply.

        Returns the normalised correlations, the EWMA state after the block, and the weight
        sums and squared-weight sums (T, 1, 1) shared by every cell (the latter None unless
        tracked).
        """
        n, k = x.shape
        if self.n_lags > 0 or not uniform_weights(state.cov_ewma):
            return None
        kernels = jit_kernels(n)
        if kernels is None or not np.isfinite(x).all():
            return None
        d = ewma_decay(self.halflife)
        paths = common_weight_paths(state.cov_ewma, d, n)
        s = state.cov_ewma.s.copy()
        corr = np.empty((n, k, k))
        kernels.outer_ewma_correlation(np.ascontiguousarray(x), s, d, paths.w, corr)
        cov_state = paths.state(self.halflife, s, state.cov_ewma.q is not None)
        q = paths.q[:, None, None] if self.track_sq else None
        return corr, cov_state, paths.w[:, None, None], q

    def _reference_correlation(
        self,
        state: CorrelationState,
        x: np.ndarray,
        nw_s: np.ndarray,
        nw_w: np.ndarray,
        repaired: np.ndarray,
    ) -> tuple[np.ndarray, EwmaState, np.ndarray, np.ndarray | None]:
        """The numpy path for every case: EWMA of the outer products (`ewma_run`), Newey-West
        terms (updating ``nw_s``, ``nw_w`` and ``repaired`` in place), `normalise`. Returns the
        correlations, the EWMA state, and the weight and squared-weight sums per cell (the
        latter None unless tracked)."""
        block0, cov_state = ewma_run(
            outer_products(x), self.halflife, state.cov_ewma, self.track_sq
        )
        cov = block0.mean
        if self.n_lags > 0:
            adj = cov.copy()
            for i, b in enumerate(bartlett_weights(self.n_lags)):
                prod = lagged_outer_products(state.lag_buffer, x, i + 1)
                block_l, lag_state = ewma_run(
                    prod, self.halflife, EwmaState(self.halflife, nw_s[i], nw_w[i])
                )
                nw_s[i], nw_w[i] = lag_state.s, lag_state.w
                c_l = np.nan_to_num(block_l.mean, nan=0.0)
                adj += b * (c_l + np.swapaxes(c_l, -1, -2))
            diag_adj = np.diagonal(adj, axis1=-2, axis2=-1)
            diag_0 = np.diagonal(cov, axis1=-2, axis2=-1)
            fallback = np.any((diag_adj <= NW_MIN_RATIO * diag_0) & (diag_0 > 0.0), axis=1)
            repaired |= fallback
            cov = np.where(fallback[:, None, None], cov, adj)
        return normalise(cov), cov_state, block0.weight_sum, block0.weight_sq_sum
