"""Eigenfactor risk adjustment (Menchero, Wang and Orr 2011; Barra USE4 methodology notes).

A sample covariance matrix under-forecasts the risk of the portfolios it is most confident
about: the eigenvectors with the smallest estimated eigenvalues are, out of sample, riskier
than their eigenvalues say (the sample fits the noise), so optimised portfolios (minimum
variance) look safer than they are. Menchero, Wang and Orr ("Eigen-adjusted covariance
matrices", Journal of Investment Management 9(3), 2011; USE4 notes section 4.3) measure that
bias by simulation and scale each eigenvalue by it.

For the covariance forecast ``F0 = U0 D0 U0'`` of one date (eigendecomposition, eigenvalues
ascending):

1. For m = 1..M simulate a history of T daily factor returns with covariance ``D0`` in the
   eigenbasis, ``b_mt ~ N(0, D0)`` (``r_mt = U0 b_mt``), estimate their covariance ``F_m``
   with the model's own estimator and decompose ``F_m = U_m D_m U_m'``.
2. The simulated eigenfactors' true variances are the diagonal of ``U_m' F0 U_m``, their
   estimated variances ``D_m``. The simulated volatility bias of eigenfactor k is

       v(k) = sqrt( (1/M) sum_m [U_m' F0 U_m]_kk / D_m(k) )         (MWO 2011, eq. 6-7)

3. With the scale a (``eigen_adjustment_scale``; USE4 uses 1.2 to 1.5, an empirical
   correction for the simulation's understatement: real returns are fat-tailed and their
   covariance moves),

       gamma(k) = a (v(k) - 1) + 1,      F = U0 diag(gamma^2 D0) U0'            (eq. 8-9)

   The eigenvectors are unchanged; the small eigenvalues, whose v(k) > 1, are raised, the
   largest (v(k) slightly below 1) lowered a little; ``F`` is symmetric PSD like ``F0``.

"The model's own estimator" (what `EigenAdjustment` simulates, and why):

* Weighting: the published covariance is ``vol_i vol_j corr_ij`` with the variances an EWMA
  of squared returns with ``halflife_vol`` and the correlation an EWMA of outer products with
  ``halflife_cor`` (pandas' adjusted weights, no demeaning). The simulation estimates exactly
  that: ``C_v = sum_j w^v_j r_j r_j' / sum_j w^v_j`` and ``C_c`` likewise with ``w^c``,
  ``F_m = diag(s) C_c diag(s)`` with ``s_i = sqrt(C_v,ii / C_c,ii)``. With one weighting only,
  the two half-lives' very different effective sample sizes (about 173 and 346 sessions at 60
  and 120) would give a different bias.
* The number of observations: the EWMA dated t has seen ``n_t`` sessions with returns (the
  weights of ages 0 .. n_t - 1), so the simulated history has ``min(n_t, H)`` sessions, with
  ``H = min(ceil(HORIZON_HALFLIVES x the longer half-life), MAX_HORIZON)`` (beyond 10
  half-lives the weights left out sum to less than 2^-10 of the total; 2,520 sessions caps an
  equal-weighted EWMA). Early in a history the estimate rests on few observations and its
  small eigenvalues are the most under-estimated: the bias is simulated at that sample size,
  not at the stationary one.
* Not before ``n_t >= MIN_OBS_PER_FACTOR x K`` (twice the number of factors): with fewer
  observations than about the dimension, the smallest simulated eigenvalue has an infinite or
  huge-variance inverse mean (for a Wishart matrix of n degrees of freedom and dimension p,
  E[1/lambda_min] is infinite for n <= p + 1), so v(k) would be Monte Carlo noise (measured:
  v = 1,925 at n = K = 21, 10 at n = 24, 2.4 with a Monte Carlo error of 1% at n = 2K).
  Those dates are published unadjusted (their matrix is returned as given, bit for bit).
* Newey-West, the regime adjustment, shrinkage and ``combine_standardized`` are not
  re-estimated in the simulation: the simulated returns are serially independent with a
  constant covariance, so Newey-West's lag terms only add zero-mean noise, the regime
  multiplier is a scalar (see "Order" below), and the adjustment measures the sampling error of
  the EWMA estimate, which is what USE4 simulates. ``F0`` itself is the forecast with all of
  them applied.
* Missing observations (a data gap ages the EWMA without a term) are not simulated: the n_t
  observations are consecutive.

Order (USE4: Newey-West, then the eigenfactor adjustment, then the volatility regime
adjustment). The regime adjustment multiplies the whole matrix by one scalar ``lambda^2``.
The adjustment is scale-equivariant, ``E(c F0) = c E(F0)`` for c > 0: with ``F0 -> c F0``,
``U0`` is unchanged and ``D0 -> c D0``; with the same draws ``z``, ``b = sqrt(D0) z`` scales by
sqrt(c), so ``C_v`` and ``C_c`` scale by c, ``s`` is unchanged and ``F_m -> c F_m``: ``U_m``
is unchanged and ``D_m -> c D_m``, so every ratio ``[U_m' c F0 U_m]_kk / (c D_m(k))`` and v(k),
gamma(k) are unchanged and ``E(c F0) = U0 diag(gamma^2 c D0) U0' = c E(F0)`` (the rank
tolerance below is relative, and ``n_t`` does not depend on the scale). Hence adjusting the
published ``lambda^2 F_NW`` equals ``lambda^2 E(F_NW)``: applying the adjustment to the
covariance after the regime adjustment is USE4's order (tests/test_eigen.py checks it to
1e-12). The `factor_covariance` asset does that.

Determinism and resumption. Every date's adjustment is a function of its matrix ``F0``, its
``n_t`` and the settings only, computed in the same floating-point operations whatever the
other dates of the call: a daily run (one date per call) gives the bits of one block over the
history. The simulations use common random numbers: the same standard normal draws ``z``
at every date, in the order of the EWMA's ages (age 0 is the date itself), so the adjustment
varies smoothly from date to date instead of jittering with fresh draws. Simulation
``m = SIM_BATCH * beta + i`` at ages ``AGE_BLOCK * g .. AGE_BLOCK * (g + 1) - 1`` is row i of
``np.random.default_rng([seed, beta, g]).standard_normal((SIM_BATCH, AGE_BLOCK, K))`` (so
simulation m is the same for every M > m; a partial batch of ``size`` simulations draws only
its ``size`` rows, the same numbers since numpy fills the array in order). The weighted sums
over ages are accumulated per block of AGE_BLOCK ages (batched matrix products, in block
order, then the partial block), so the sum for n_t observations does not depend on which n
was computed before. Products run on one BLAS thread (`core/blas.py`), so the bits do not
depend on the number of cores.

Kept in the process. The simulated sums ``W_v(n), W_c(n)`` depend on (seed, batch, K, the
half-lives) and n only, not on the date's matrix, so `_Sums` keeps them across dates and
calls (a bounded least-recently-used cache, CACHE_BYTES): per batch the running sums over the
full age blocks and ``W(H)``, the sums of every date with a full history. A daily run then
draws its simulations once per process (the asset and its tie-out check share them), a
history in chunks continues the running sums from chunk to chunk, and a date with
``n_t >= H`` costs only its own ``O(M K^3)``. The kept sums are the very arrays a cold
start computes (the same operations in the same order), so the cache changes no bit; a call
that fails keeps nothing, and one whose batches would not all fit keeps none of them.

Cost per date: M eigendecompositions of K x K (``np.linalg.eigh`` over (batch, K, K), about
three quarters of the time; LAPACK's dsyevd, faster here than dsyevr or dsyev at K = 72, and
several BLAS threads are slower than one at these sizes) and four batched K x K products per
simulation, ``O(M K^3)``, vectorised over the simulations in batches of SIM_BATCH (bounded
memory, in-place products); the dates are a loop. A date with ``n_t < H`` adds the products
over its partial age block, ``O(M AGE_BLOCK K^2)``. The draws and the weighted sums over the
H ages, ``O(M H K^2)``, are paid once per process (benchmarks/eigen.py).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factorcov_pipeline.core.blas import one_blas_thread
from factorcov_pipeline.core.ewma import ewma_decay

# Simulated history: at most this many half-lives of the longer EWMA (the weights beyond it
# sum to less than 2^-10 of the total), and at most MAX_HORIZON sessions (ten years).
HORIZON_HALFLIVES = 10
MAX_HORIZON = 2520
# The adjustment starts once a date has this many observations per factor (module docstring).
MIN_OBS_PER_FACTOR = 2
# Simulations processed together (the memory bound: a few (SIM_BATCH, K, K) arrays), and the
# ages drawn together. Both fix the random stream: changing them changes the numbers.
SIM_BATCH = 128
AGE_BLOCK = 64
# Eigenvalues of F0 at or below this multiple of the largest are zero up to rounding (a
# rank-deficient forecast): they are not simulated and keep gamma = 1.
RANK_RTOL = 1e-10
# The simulated sums kept in the process across dates and calls (`_Sums`), at most this many
# bytes (about 21 MB per model at K = 72 and M = 128, 1.8 MB at K = 21).
CACHE_BYTES = 256 * 2**20
# Bounds of the settings (also validated in `FactorCovarianceSettings`).
MAX_SCALE = 3.0
MIN_SIMULATIONS, MAX_SIMULATIONS = 10, 100_000
MAX_SEED = 2**63 - 1
# Defaults of `eigen_adjustment_simulations` and `eigen_adjustment_seed` (docs/eigen-adjustment.md:
# the Monte Carlo error of v(k) against M and the time per date).
DEFAULT_SIMULATIONS = 128
DEFAULT_SEED = 0


def horizon(halflife_vol: float, halflife_cor: float) -> int:
    """Sessions of the longest simulated history: 10 half-lives of the longer EWMA, at most
    MAX_HORIZON."""
    longest = max(halflife_vol, halflife_cor)
    return int(min(MAX_HORIZON, math.ceil(HORIZON_HALFLIVES * longest)))


# ---- the simulated sums: a function of (seed, batch, size, K, half-lives) only -----------------


@functools.lru_cache(maxsize=16)
def _weights(halflife_vol: float, halflife_cor: float) -> tuple[np.ndarray, ...]:
    """EWMA weights of ages 0 .. H - 1 (``decay^j``, pandas' decay) and their running sums,
    read-only (shared by every caller)."""
    ages = np.arange(horizon(halflife_vol, halflife_cor), dtype=np.float64)
    w_v = ewma_decay(halflife_vol) ** ages
    w_c = ewma_decay(halflife_cor) ** ages
    out = (w_v, w_c, np.cumsum(w_v), np.cumsum(w_c))
    for a in out:
        a.setflags(write=False)
    return out


class _Sums:
    """The simulated weighted means of one batch of simulations for any number of observations
    n <= H: ``W(n) = sum_{j < n} w_j z_j z_j' / sum_{j < n} w_j`` (size, K, K), both weightings.

    Built block by block: ``acc`` holds the sum over the first ``blocks`` full age blocks (each
    a batched product over AGE_BLOCK ages, added in block order), W(n) adds the product over the
    partial block's first ``n mod AGE_BLOCK`` ages. So W(n) is the same bits whichever n were
    asked before, and the whole state depends on (seed, batch, size, K, half-lives) only: it is
    kept across dates and calls in the process (`_checkout`), with W(H), the steady state of a
    daily run, so that a date with a full history costs no draw after the first.
    """

    def __init__(self, key: tuple[int, int, int, int, float, float]) -> None:
        self.key = key
        seed, batch, size, k, halflife_vol, halflife_cor = key
        self.seed, self.batch, self.size, self.k = seed, batch, size, k
        self.w_v, self.w_c, self.sum_v, self.sum_c = _weights(halflife_vol, halflife_cor)
        self.horizon = len(self.w_v)
        self.blocks = 0
        self.acc_v = np.zeros((size, k, k))
        self.acc_c = np.zeros((size, k, k))
        # the draws of one age block and their products with the weights (the partial block
        # of consecutive dates), and the means of the last n and of n = H
        self.block: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.means: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def weighted_draws(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The draws ``z`` (size, AGE_BLOCK, K) of age block g and ``z' w`` (size, K, ages)
        for both weightings, the ages cut at H."""
        if self.block is None or self.block[0] != g:
            rng = np.random.default_rng([self.seed, self.batch, g])
            # the first `size` rows of the (SIM_BATCH, AGE_BLOCK, K) stream: numpy fills it in
            # order, so drawing fewer rows gives the same numbers without the unused ones
            z = rng.standard_normal((self.size, AGE_BLOCK, self.k))
            ages = slice(g * AGE_BLOCK, (g + 1) * AGE_BLOCK)
            zt = z[:, : len(self.w_v[ages])].transpose(0, 2, 1)
            self.block = (g, z, zt * self.w_v[ages], zt * self.w_c[ages])
        return self.block[1:]

    def mean(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``W_v(n), W_c(n)`` (size, K, K), the weighted means over ages 0 .. n - 1 (n <= H)."""
        done = self.means.get(n)
        if done is not None:
            return done
        full, rest = divmod(n, AGE_BLOCK)
        if full < self.blocks:  # dates out of order: start the running sum afresh
            self.blocks = 0
            self.acc_v = np.zeros_like(self.acc_v)
            self.acc_c = np.zeros_like(self.acc_c)
        while self.blocks < full:
            z, zw_v, zw_c = self.weighted_draws(self.blocks)
            self.acc_v += zw_v @ z
            self.acc_c += zw_c @ z
            self.blocks += 1
        if rest:
            z, zw_v, zw_c = self.weighted_draws(full)
            mean_v = np.matmul(zw_v[:, :, :rest], z[:, :rest])
            mean_c = np.matmul(zw_c[:, :, :rest], z[:, :rest])
            mean_v += self.acc_v  # acc + partial, the same bits as partial + acc
            mean_c += self.acc_c
            mean_v /= self.sum_v[n - 1]
            mean_c /= self.sum_c[n - 1]
        else:
            mean_v, mean_c = self.acc_v / self.sum_v[n - 1], self.acc_c / self.sum_c[n - 1]
        self.means = {m: w for m, w in self.means.items() if m == self.horizon}
        self.means[n] = (mean_v, mean_c)
        return mean_v, mean_c

    def trim(self) -> None:
        """Drop what only consecutive dates of one call reuse (the draws, the last n's means)."""
        self.block = None
        self.means = {m: w for m, w in self.means.items() if m == self.horizon}

    @property
    def nbytes(self) -> int:
        arrays = [self.acc_v, self.acc_c, *(a for w in self.means.values() for a in w)]
        if self.block is not None:
            arrays += self.block[1:]
        return sum(a.nbytes for a in arrays)


# The states of the simulations kept in the process, least recently used first, and their bound.
_CACHE: OrderedDict[tuple[int, int, int, int, float, float], _Sums] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _checkout(key: tuple[int, int, int, int, float, float]) -> _Sums:
    """The kept state of ``key`` (taken out of the cache while one caller uses it), or a new one."""
    with _CACHE_LOCK:
        sums = _CACHE.pop(key, None)
    return sums if sums is not None else _Sums(key)


def _checkin(sums: _Sums, keep: bool = True) -> None:
    """Keep ``sums`` for the next call, evicting the least recently used beyond CACHE_BYTES
    (``keep`` False: a call whose batches would not all fit, which would only evict them)."""
    sums.trim()
    if not keep or sums.nbytes > CACHE_BYTES:
        return
    with _CACHE_LOCK:
        _CACHE[sums.key] = sums
        total = sum(s.nbytes for s in _CACHE.values())
        while total > CACHE_BYTES:
            _, old = _CACHE.popitem(last=False)
            total -= old.nbytes


def clear_simulation_cache() -> None:
    """Forget the simulated sums kept in the process (memory; tests of a cold start)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@dataclass(frozen=True)
class EigenAdjustment:
    """The eigenfactor risk adjustment of one covariance model (module docstring).

    Parameters
    ----------
    scale : float
        a in ``gamma(k) = a (v(k) - 1) + 1``; 0 gives gamma = 1 (F0 back). 0 <= a <= 3.
    n_simulations : int
        M, the simulated histories per date (10 .. 100,000).
    seed : int
        Seed of the common random numbers (0 .. 2^63 - 1).
    halflife_vol, halflife_cor : float
        The model's EWMA half-lives of the variances and of the correlations (sessions).

    Raises
    ------
    ValueError
        When a parameter is outside its bounds (named in the message).
    """

    scale: float
    n_simulations: int
    seed: int
    halflife_vol: float
    halflife_cor: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 0.0 <= self.scale <= MAX_SCALE):
            raise ValueError(
                f"eigen_adjustment_scale must be between 0 and {MAX_SCALE:g}, got {self.scale!r}"
            )
        if not MIN_SIMULATIONS <= self.n_simulations <= MAX_SIMULATIONS:
            raise ValueError(
                f"eigen_adjustment_simulations must be between {MIN_SIMULATIONS} and "
                f"{MAX_SIMULATIONS:,}, got {self.n_simulations!r}"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"eigen_adjustment_seed must be in 0 .. 2^63 - 1, got {self.seed!r}")
        for name in ("halflife_vol", "halflife_cor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    @classmethod
    def from_settings(cls, settings: object) -> EigenAdjustment | None:
        """The adjustment a `FactorCovarianceSettings` asks for; None when it is off
        (``eigen_adjustment_scale`` null)."""
        scale = settings.eigen_adjustment_scale  # type: ignore[attr-defined]
        if scale is None:
            return None
        return cls(
            scale=float(scale),
            n_simulations=int(settings.eigen_adjustment_simulations),  # type: ignore[attr-defined]
            seed=int(settings.eigen_adjustment_seed),  # type: ignore[attr-defined]
            halflife_vol=float(settings.halflife_vol),  # type: ignore[attr-defined]
            halflife_cor=float(settings.halflife_cor),  # type: ignore[attr-defined]
        )

    @property
    def horizon(self) -> int:
        return horizon(self.halflife_vol, self.halflife_cor)

    def applies(self, n_obs: np.ndarray | Sequence[int], k: int) -> np.ndarray:
        """Whether a date with ``n_obs`` observations is adjusted (``n_obs >= 2 K``)."""
        return np.asarray(n_obs, dtype=np.int64) >= MIN_OBS_PER_FACTOR * k

    # ---- the simulation --------------------------------------------------------------------

    def _ratio_sums(
        self,
        d0: np.ndarray,
        u0: np.ndarray,
        positive: np.ndarray,
        w_v: np.ndarray,
        w_c: np.ndarray,
        work: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """``sum_m [U_m' F0 U_m]_kk / D_m(k)`` over one batch of simulations, (K,). ``work``: two
        (size, K, K) buffers (in-place products: the same operations as new arrays, fewer
        allocations)."""
        one, two = work
        root = np.sqrt(np.where(positive, d0, 0.0))
        scale = root[:, None] * root[None, :]
        # the simulated sums in the eigenbasis, sqrt(D0) W sqrt(D0); the diagonal with
        # halflife_vol of U0 (.) U0' ...
        s_v = np.multiply(w_v, scale, out=one)
        prod = np.matmul(u0, s_v, out=two)
        prod *= u0
        var_v = prod.sum(axis=-1)
        # ... and the whole EWMA of r r' with halflife_cor, r = U0 b
        s_c = np.multiply(w_c, scale, out=one)
        c_c = np.matmul(np.matmul(u0, s_c, out=two), u0.T, out=one)
        c_diag = np.diagonal(c_c, axis1=-2, axis2=-1)
        with np.errstate(invalid="ignore", divide="ignore"):  # a factor without variance: 0
            s = np.where(c_diag > 0, np.sqrt(var_v / np.where(c_diag > 0, c_diag, 1.0)), 0.0)
        f_m = c_c  # vol_i vol_j corr_ij, the model's estimate: s_i c_ij s_j
        f_m *= s[:, :, None]
        f_m *= s[:, None, :]
        d_m, u_m = np.linalg.eigh(f_m)
        a = np.matmul(u0.T, u_m, out=two)
        a *= a
        true_var = np.einsum("j,mjk->mk", np.where(positive, d0, 0.0), a)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(positive, true_var / d_m, 0.0)
        return ratio.sum(axis=0)

    def simulated_bias(self, cov: np.ndarray, n_obs: np.ndarray | Sequence[int]) -> np.ndarray:
        """v(k) of every date, (T, K), eigenvalues ascending as ``np.linalg.eigh`` orders them.

        ``cov`` (T, K, K) covariance forecasts (any scale: daily or annualised), ``n_obs`` (T,)
        the sessions with returns up to and including each date. NaN on dates that are not
        adjusted (too few observations, a non-finite matrix); 1 for the eigenvalues that are
        zero up to rounding.
        """
        v, _, _ = self._simulate(cov, n_obs)
        return v

    def _simulate(
        self, cov: np.ndarray, n_obs: np.ndarray | Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cov = np.asarray(cov, dtype=np.float64)
        n_obs = np.asarray(n_obs, dtype=np.int64)
        if cov.ndim != 3 or cov.shape[1] != cov.shape[2]:
            raise ValueError(f"cov must be (T, K, K), got shape {cov.shape}")
        t, k, _ = cov.shape
        if n_obs.shape != (t,):
            raise ValueError(f"n_obs must be (T,) = ({t},), got shape {n_obs.shape}")
        active = self.applies(n_obs, k) & np.isfinite(cov).all(axis=(1, 2))
        d0 = np.full((t, k), np.nan)
        u0 = np.full((t, k, k), np.nan)
        v = np.full((t, k), np.nan)
        if not active.any():
            return v, d0, u0
        with one_blas_thread():
            d0[active], u0[active] = np.linalg.eigh(cov[active])
            top = d0.max(axis=1, initial=0.0, where=np.isfinite(d0))
            positive = d0 > RANK_RTOL * top[:, None]
            n_sim = np.minimum(n_obs, self.horizon)
            sums = np.zeros((t, k))
            days = np.flatnonzero(active)
            # what stays cached per simulation: two running sums and W(H), both weightings
            keep = 4 * self.n_simulations * k * k * 8 <= CACHE_BYTES
            for batch in range(math.ceil(self.n_simulations / SIM_BATCH)):
                size = min(SIM_BATCH, self.n_simulations - batch * SIM_BATCH)
                key = (self.seed, batch, size, k, self.halflife_vol, self.halflife_cor)
                simulated = _checkout(key)  # kept back only when complete (not on an error)
                work = (np.empty((size, k, k)), np.empty((size, k, k)))
                for i in days:  # the recursion over dates: the running sums over ages
                    w_v, w_c = simulated.mean(int(n_sim[i]))
                    sums[i] = sums[i] + self._ratio_sums(d0[i], u0[i], positive[i], w_v, w_c, work)
                _checkin(simulated, keep)
        with np.errstate(invalid="ignore"):
            v[active] = np.where(positive[active], np.sqrt(sums[active] / self.n_simulations), 1.0)
        return v, d0, u0

    def gamma(self, v: np.ndarray) -> np.ndarray:
        """``gamma(k) = a (v(k) - 1) + 1`` (MWO 2011 eq. 8)."""
        return self.scale * (v - 1.0) + 1.0

    def adjust(
        self,
        cov: np.ndarray,
        n_obs: np.ndarray | Sequence[int],
        labels: Sequence[object] | None = None,
    ) -> np.ndarray:
        """The adjusted covariances ``U0 diag(gamma^2 D0) U0'``, (T, K, K), symmetric.

        Dates that are not adjusted (fewer than 2K observations, a non-finite matrix) are
        returned unchanged. ``labels`` (one per date, e.g. the dates) name the date in the
        error raised when a scale above 1 makes some gamma(k) non-positive (v(k) < 1 - 1/a).
        """
        cov = np.asarray(cov, dtype=np.float64)
        v, d0, u0 = self._simulate(cov, n_obs)
        out = cov.copy()
        active = np.isfinite(v).all(axis=1)
        if not active.any():
            return out
        gamma = self.gamma(v[active])
        bad = np.argwhere(gamma <= 0.0)
        if bad.size:
            row, col = bad[0]
            day = np.flatnonzero(active)[row]
            where = labels[day] if labels is not None else f"date {day}"
            raise ValueError(
                f"eigen_adjustment_scale={self.scale:g} makes the scale of eigenfactor {col} "
                f"non-positive on {where} (simulated bias v = {v[day, col]:.4g}, gamma = "
                f"{gamma[row, col]:.4g}): choose a smaller eigen_adjustment_scale"
            )
        u = u0[active]
        with one_blas_thread():
            adjusted = (u * (gamma * gamma * d0[active])[:, None, :]) @ u.transpose(0, 2, 1)
        out[active] = (adjusted + adjusted.transpose(0, 2, 1)) / 2.0
        return out
