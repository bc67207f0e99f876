"""Compiled (numba) kernels for the EWMA recursions of the volatility and correlation forecasts.

Why: the recursions ``S_t = d S_{t-1} + x_t`` are sequential in t, so numpy runs them as a
Python loop over dates with a few whole-array operations per date, and the correlation path
also materialises the (T, K, K) outer products, the (T, K, K) sums and the (T, K, K) means
before normalising (several passes over ~72 MB at 2,520 dates x 60 factors). A compiled loop
does each date's K x K update and normalisation in one pass while the state is in cache, and
writes only the output. Outputs are allocated by the caller with numpy: numpy asks the kernel
for transparent huge pages on large arrays, numba's allocator does not, and the 4 KiB page faults
of a fresh 72 MB array cost ~30 ms (measured: 39 ms vs 10 ms for the same kernel).

Every kernel performs exactly the floating-point operations of its numpy reference, in the
same order, element by element (IEEE multiply, add, divide, sqrt; no ``fastmath``, so LLVM may
neither reassociate nor contract ``a * b + c`` into a fused multiply-add; ``error_model="numpy"``
so that a division by zero gives inf/NaN as in numpy instead of raising, which also lets LLVM
vectorise the divisions). The results are
therefore bit-identical to the numpy paths, which stay in the modules as the reference
implementations (tests/test_ewma.py, test_correlation.py and test_covariance.py compare them
bit for bit), and resuming a recursion from a stored state is bit-identical whichever path ran
either part. References:

* `weight_paths`, `ewma_common_mean`: `factorcov_pipeline.core.ewma.common_weight_paths` and
  `_run_common_weights` (numpy loop);
* `outer_ewma_correlation`: `factorcov_pipeline.core.correlation.outer_products` +
  `ewma_run` + `normalise` on the common-weights path;
* `outer_scale`: `factorcov_pipeline.core.covariance.covariance_from`.

This module imports numba; callers load it lazily through `factorcov_pipeline.core.ewma.jit`
(import and first compilation cost, measured in benchmarks/run.py, are paid only by large
blocks). Compiled code is cached on disk (``cache=True``) next to this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def weight_paths(w: float, q: float, d: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``W_t = W_{t-1} * d + 1`` and ``Q_t = Q_{t-1} * (d * d) + 1`` for n dates from (w, q)."""
    w_path = np.empty(n)
    q_path = np.empty(n)
    d2 = d * d
    for t in range(n):
        w = w * d + 1.0
        q = q * d2 + 1.0
        w_path[t] = w
        q_path[t] = q
    return w_path, q_path


@njit(cache=True, error_model="numpy")
def ewma_common_mean(
    x: np.ndarray, s: np.ndarray, d: float, w_path: np.ndarray, out: np.ndarray
) -> None:
    """EWMA means of ``x`` (T, M) when every cell has the weight sum ``w_path[t]`` on date t.

    ``s`` (M,) holds the sums before the block and is updated in place to the sums after it:
    ``s = s * d + x_t`` then ``out[t] = s / w_path[t]``, cell by cell.
    """
    n, m = x.shape
    for t in range(n):
        w = w_path[t]
        for j in range(m):
            v = s[j] * d + x[t, j]
            s[j] = v
            out[t, j] = v / w


@njit(cache=True, error_model="numpy")
def outer_ewma_correlation(
    x: np.ndarray, s: np.ndarray, d: float, w_path: np.ndarray, out: np.ndarray
) -> None:
    """Correlations of the EWMA of outer products, all cells sharing the weight ``w_path[t]``.

    ``x`` (T, K) finite, ``s`` (K, K) C-contiguous, the sums before the block, updated in
    place. For every date: ``s_ij = s_ij * d + x_i * x_j``, ``m_ij = s_ij / w``,
    ``r_i = 1 / sqrt(m_ii)``, ``corr_ij = m_ij * (r_i * r_j)`` (0 if not finite, e.g. a factor
    with only zero returns), unit diagonal, written to ``out`` (T, K, K) C-contiguous, which
    holds ``m`` in between: each date's matrix is normalised while it is still in cache. The
    element-wise passes run over the flattened K*K matrix so that they vectorise without a
    scalar remainder per row.
    """
    n, k = x.shape
    kk = k * k
    r = np.empty(k)
    scale = np.empty(kk)
    sf = s.reshape(kk)
    of = out.reshape(n, kk)
    inf = np.inf
    for t in range(n):
        w = w_path[t]
        xt = x[t]
        ot = of[t]
        for i in range(k):
            xi = xt[i]
            base = i * k
            for j in range(k):
                sf[base + j] = sf[base + j] * d + xi * xt[j]
        for c in range(kk):
            ot[c] = sf[c] / w
        for i in range(k):
            r[i] = 1.0 / np.sqrt(ot[i * k + i])
        for i in range(k):
            ri = r[i]
            base = i * k
            for j in range(k):
                scale[base + j] = ri * r[j]
        for c in range(kk):
            v = ot[c] * scale[c]
            ot[c] = v if abs(v) < inf else 0.0  # not finite (NaN or +-inf) -> 0
        for i in range(k):
            ot[i * k + i] = 1.0


@njit(cache=True)
def outer_scale(vol: np.ndarray, corr: np.ndarray, out: np.ndarray) -> None:
    """``out_tij = (vol_ti * vol_tj) * corr_tij`` for vol (T, K) and corr (T, K, K)."""
    n, k = vol.shape
    for t in range(n):
        for i in range(k):
            vi = vol[t, i]
            for j in range(k):
                out[t, i, j] = (vi * vol[t, j]) * corr[t, i, j]
