"""Resumable exponentially weighted moving average, equal to pandas' ``ewm(halflife=h).mean()``.

The tutorial (``factor-covariance-tutorial.txt``) forecasts variances and covariances with
``DataFrame.ewm(halflife=h).mean()`` with pandas' defaults: ``adjust=True``,
``ignore_na=False``, ``min_periods=0``. With decay ``d = 1 - alpha`` that estimator is

    S_t = d * S_{t-1} + 1{x_t observed} * x_t
    W_t = d * W_{t-1} + 1{x_t observed}
    mean_t = S_t / W_t                      (NaN while W_t == 0, i.e. before the first observation)

(pandas documentation, "Exponentially weighted window", adjust=True: weights (1 - alpha)^i of
the observation i steps back; with ``ignore_na=False`` a missing value still ages the older
weights but contributes no term). pandas evaluates the same ratio with the recursion
``m_t = (d W_{t-1} m_{t-1} + x_t) / (d W_{t-1} + 1)``; the two agree to a few ulps.

We keep the sums ``S`` and ``W`` (and optionally ``Q``, the sum of squared weights,
``Q_t = d^2 Q_{t-1} + 1{observed}``, which gives Kish's effective number of observations
``W^2 / Q``) element-wise for a state of any shape (K or K x K), so every element handles its
own missing values. A block of T dates is run with a loop over dates over the small state
(measured against ``scipy.signal.lfilter`` along time at 2,520 x 60 x 60: the loop was as fast or
faster, ~0.05-0.2 s against 0.15-0.4 s, and is trivially bit-identical when resumed).
Resuming from a state gives bit-identical results to one long run because the loop performs
exactly the same floating-point operations in the same order.

Compiled kernels: when no value is missing (the common-weights path) and a block has at least
`JIT_MIN_DATES` dates, the loop runs in a numba kernel (`factorcov_pipeline.core.kernels`) that
performs the same operations in the same order, so the numbers are bit-identical to the numpy
loop kept here as the reference (tests compare both). Small blocks (the daily run) stay on numpy
and never import numba: importing it and loading the kernels costs ~0.4 s in a fresh process
with the on-disk kernel cache filled (~1 s when they are compiled, the first time), more than the
numpy loops of a few hundred dates; at 2,520 dates x 60 factors the kernels save ~80 ms a call
(benchmarks/run.py, benchmark 1), so they pay off in a process that runs more than a few such
blocks, and cost a fraction of a second in one that runs a single one. The cut-off is a
speed choice only: both paths give the same bits. ``FACTORCOV_JIT=0`` disables the kernels,
``FACTORCOV_JIT=1`` uses them for every block size; without numba installed the numpy paths
run.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

# Blocks of at least this many dates use the compiled kernels (module docstring).
JIT_MIN_DATES = 500
# Whether to use them: "auto" (blocks of >= JIT_MIN_DATES dates), "0" never, "1" always. The
# core reads no environment: the Dagster layer sets this from FACTORCOV_JIT
# (`environment.jit_mode`, applied by `orchestration.resources.FactorcovSettings.load`).
JIT_MODE = "auto"


@functools.cache
def _load_kernels() -> ModuleType | None:
    try:
        from factorcov_pipeline.core import kernels
    except ImportError:  # numba not installed: the numpy reference paths run
        return None
    return kernels


def jit_kernels(n_dates: int) -> ModuleType | None:
    """`factorcov_pipeline.core.kernels` if a block of ``n_dates`` dates should use them, else
    None (numba missing, `JIT_MODE` "0", or a block below `JIT_MIN_DATES` in auto mode)."""
    mode = JIT_MODE
    if n_dates < 1 or mode == "0":
        return None
    if mode != "1" and n_dates < JIT_MIN_DATES:
        return None
    return _load_kernels()


def ewma_decay(halflife: float) -> float:
    """Decay factor ``1 - alpha`` computed exactly as pandas does for ``ewm(halflife=h)``.

    pandas converts the half-life into a centre of mass, ``com = 1 / (1 - exp(ln 0.5 / h)) - 1``
    (``pandas.core.window.ewm.get_center_of_mass``), and its kernel uses
    ``alpha = 1 / (1 + com)``, ``old_wt_factor = 1 - alpha``. Reproducing the same sequence of
    operations keeps our weights identical to pandas' to the last bit.
    """
    if not (halflife > 0 and math.isfinite(halflife)):
        raise ValueError(f"halflife must be a positive finite number, got {halflife!r}")
    decay = 1.0 - float(np.exp(np.log(0.5) / halflife))
    com = 1.0 / decay - 1.0
    alpha = 1.0 / (1.0 + com)
    return 1.0 - alpha


def arrays_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays (``np.savez``, no pickle); floats round-trip bit for bit."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def arrays_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Inverse of `arrays_to_bytes`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k].copy() for k in npz.files}


@dataclass
class EwmaState:
    """The sums an EWMA needs to continue: ``S`` (weighted sum), ``W`` (weight sum) and
    optionally ``Q`` (sum of squared weights), element-wise, after the last date processed."""

    halflife: float
    s: np.ndarray
    w: np.ndarray
    q: np.ndarray | None = None

    @classmethod
    def empty(cls, halflife: float, shape: tuple[int, ...], track_sq: bool = False) -> EwmaState:
        """The state before any date: all sums zero (the mean is NaN until a first observation)."""
        z = np.zeros(shape, dtype=np.float64)
        return cls(float(halflife), z.copy(), z.copy(), z.copy() if track_sq else None)

    @property
    def mean(self) -> np.ndarray:
        """The current EWMA mean ``S / W`` (NaN where nothing was observed yet)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.w > 0, self.s / np.where(self.w > 0, self.w, 1.0), np.nan)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {
            f"{prefix}halflife": np.asarray(self.halflife, dtype=np.float64),
            f"{prefix}s": self.s,
            f"{prefix}w": self.w,
        }
        if self.q is not None:
            out[f"{prefix}q"] = self.q
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> EwmaState:
        q = arrays.get(f"{prefix}q")
        return cls(
            float(arrays[f"{prefix}halflife"]),
            arrays[f"{prefix}s"].astype(np.float64, copy=True),
            arrays[f"{prefix}w"].astype(np.float64, copy=True),
            None if q is None else q.astype(np.float64, copy=True),
        )

    def to_bytes(self) -> bytes:
        return arrays_to_bytes(self.to_arrays())

    @classmethod
    def from_bytes(cls, data: bytes) -> EwmaState:
        return cls.from_arrays(arrays_from_bytes(data))


@dataclass
class EwmaBlock:
    """Per-date results of `ewma_run` over a block of T dates (leading axis = date)."""

    mean: np.ndarray
    weight_sum: np.ndarray
    weight_sq_sum: np.ndarray | None

    @property
    def effective_obs(self) -> np.ndarray:
        """Kish's effective number of observations ``W^2 / Q`` (needs ``track_sq``)."""
        if self.weight_sq_sum is None:
            raise ValueError("effective_obs needs the EWMA to be run with track_sq=True")
        return kish_effective_obs(self.weight_sum, self.weight_sq_sum)


def kish_effective_obs(weight_sum: np.ndarray, weight_sq_sum: np.ndarray) -> np.ndarray:
    """Kish's effective number of observations ``W^2 / Q`` (0 where ``Q == 0``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            weight_sq_sum > 0,
            weight_sum**2 / np.where(weight_sq_sum > 0, weight_sq_sum, 1.0),
            0.0,
        )


def ewma_run(
    x: np.ndarray,
    halflife: float,
    state: EwmaState | None = None,
    track_sq: bool = False,
) -> tuple[EwmaBlock, EwmaState]:
    """Run the pandas-equivalent EWMA over ``x`` of shape ``(T, *shape)``; NaN = missing.

    Returns the per-date means (and weight sums) and the state after the last date. ``state``
    continues an earlier run (its half-life and shape must match); ``None`` starts afresh.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1:
        raise ValueError("x must have a leading date axis")
    shape = x.shape[1:]
    if state is None:
        state = EwmaState.empty(halflife, shape, track_sq)
    else:
        if state.halflife != float(halflife):
            raise ValueError(f"state half-life {state.halflife} != requested {halflife}")
        if state.s.shape != shape:
            raise ValueError(f"state shape {state.s.shape} != data shape {shape}")
        if track_sq and state.q is None:
            raise ValueError("state has no squared-weight sums but track_sq=True")
    d = ewma_decay(halflife)
    d2 = d * d
    if _common_weights(x, state):
        return _run_common_weights(x, state, d, track_sq)
    obs = ~np.isnan(x)
    xz = np.where(obs, x, 0.0)
    ob = obs.astype(np.float64)

    n = x.shape[0]
    s_hist = np.empty_like(xz)
    w_hist = np.empty_like(xz)
    q_hist = np.empty_like(xz) if track_sq else None
    s = state.s.copy()
    w = state.w.copy()
    q = None if state.q is None else state.q.copy()
    for t in range(n):
        s *= d
        s += xz[t]
        w *= d
        w += ob[t]
        s_hist[t] = s
        w_hist[t] = w
        if q is not None:
            q *= d2
            q += ob[t]
            if q_hist is not None:
                q_hist[t] = q
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(w_hist > 0, s_hist / np.where(w_hist > 0, w_hist, 1.0), np.nan)
    new_state = EwmaState(float(halflife), s, w, q)
    return EwmaBlock(mean, w_hist, q_hist), new_state


def uniform_weights(state: EwmaState) -> bool:
    """True when every cell of the state has the same weight sums (and squared-weight sums)."""
    if state.w.size and np.ptp(state.w) != 0.0:
        return False
    return state.q is None or not state.q.size or np.ptp(state.q) == 0.0


def _common_weights(x: np.ndarray, state: EwmaState) -> bool:
    """True when every cell has the same weight sums before and during the block (no missing
    value anywhere): the weights are then one scalar series, not a (T, *shape) array."""
    return bool(np.isfinite(x).all()) and uniform_weights(state)


@dataclass
class WeightPaths:
    """The scalar weight recursions of a block whose cells share their weights (no missing
    value): ``w[t]`` = W_t, ``q[t]`` = Q_t, and their values after the block."""

    w: np.ndarray
    q: np.ndarray
    w_end: float
    q_end: float

    def state(self, halflife: float, s: np.ndarray, track_q: bool) -> EwmaState:
        """The state after the block with sums ``s`` (every cell gets the scalar weights)."""
        w_end = np.full(s.shape, self.w_end)
        return EwmaState(halflife, s, w_end, np.full(s.shape, self.q_end) if track_q else None)


def common_weight_paths(state: EwmaState, d: float, n: int) -> WeightPaths:
    """W_t = d W_{t-1} + 1 and Q_t = d^2 Q_{t-1} + 1 for the n dates of a block, on scalars
    (every cell observed, weights as in `ewma_run`), from the state's (uniform) weights."""
    w = float(state.w.flat[0]) if state.w.size else 0.0
    q = float(state.q.flat[0]) if state.q is not None and state.q.size else 0.0
    kernels = jit_kernels(n)
    if kernels is not None:
        w_path, q_path = kernels.weight_paths(w, q, d, n)
        return WeightPaths(w_path, q_path, float(w_path[-1]), float(q_path[-1]))
    w_path = np.empty(n)
    q_path = np.empty(n)
    for t in range(n):
        w = w * d + 1.0
        q = q * (d * d) + 1.0
        w_path[t], q_path[t] = w, q
    return WeightPaths(w_path, q_path, w, q)


def _run_common_weights(
    x: np.ndarray, state: EwmaState, d: float, track_sq: bool
) -> tuple[EwmaBlock, EwmaState]:
    """`ewma_run` when all cells share their weights: the same recursion S_t = d S_{t-1} + x_t
    cell by cell (bit-identical sums), with the weight recursion W_t = d W_{t-1} + 1 run once
    on scalars instead of on every cell. Large blocks run the loop in the compiled
    `kernels.ewma_common_mean` (same operations, same order: bit-identical)."""
    shape = x.shape[1:]
    n = x.shape[0]
    paths = common_weight_paths(state, d, n)
    bshape = (n,) + (1,) * len(shape)
    s = state.s.copy()
    kernels = jit_kernels(n)
    if kernels is not None:
        mean = np.empty(x.shape)
        s_flat = s.reshape(-1)
        kernels.ewma_common_mean(
            np.ascontiguousarray(x).reshape(n, -1), s_flat, d, paths.w, mean.reshape(n, -1)
        )
        s = s_flat.reshape(shape)
    else:
        s_hist = np.empty_like(x)
        for t in range(n):
            s *= d
            s += x[t]
            s_hist[t] = s
        mean = s_hist / paths.w.reshape(bshape)
    w_hist = np.broadcast_to(paths.w.reshape(bshape), x.shape)
    q_hist = np.broadcast_to(paths.q.reshape(bshape), x.shape) if track_sq else None
    return EwmaBlock(mean, w_hist, q_hist), paths.state(state.halflife, s, state.q is not None)


def ewma_mean(x: np.ndarray, halflife: float) -> np.ndarray:
    """``pd.DataFrame(x).ewm(halflife=halflife).mean()`` along axis 0, for any trailing shape."""
    return ewma_run(x, halflife)[0].mean
