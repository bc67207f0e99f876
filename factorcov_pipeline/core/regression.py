"""The daily constrained cross-sectional regression of asset returns on factor exposures.

On each date t the factor returns f_t (K) solve the weighted least-squares problem

    min_f  sum_n w_tn (y_tn - x_tn' f)^2  +  sum_k r_tk f_k^2      subject to  c_t' f = 0,

with regression weights w = sqrt(market cap at t-1) (Menchero, Orr and Wang 2011, "The Barra
US Equity Model (USE4)", section 2, eq. 2.2: square-root-of-cap weights, because specific
variance is roughly inversely proportional to the square root of size), and the zero-sum
constraint c' f = 0 on the category (sector) factor returns, c_s = total cap of sector s (USE4
eq. 2.3, "mcap_weighted") or c_s = 1 ("equal_weighted"). With Market in the model the sector
dummies sum to the Market column, so without the constraint the normal matrix is singular; the
constraint picks the solution whose cap-weighted sector returns sum to zero, which makes Market
the return of the cap-weighted market (up to styles).

The constraint is imposed exactly by reparameterisation (Ruud 2000, "An Introduction to
Classical Econometric Theory", section 4.3, restricted least squares by substitution): the
sector j with the largest |c_j| on the date is eliminated, f_j = -sum_{k != j} c_k f_k / c_j,
i.e. f = B g with B the K x K identity whose row j is replaced by -c / c_j (column j of B is
zero, so g_j is pinned to 0). Choosing the largest |c_j| keeps the entries of B bounded by 1
in absolute value, the best-conditioned choice of the K sectors. The reduced normal equations
B'(X'WX + R)B g = B'X'W y are solved by a batched `np.linalg.solve` (LU) after Jacobi
(diagonal) scaling.

Degenerate dates never raise:

* a factor with no information on the date (sum_n w_n x_nk^2 == 0, e.g. a sector without
  assets) gets factor return 0 and is left out of the constraint;
* a rank-deficient reduced problem (fewer assets than free factors, collinear exposures) falls
  back, for that date only, to the minimum-norm solution within the constraint:
  f = pinv(P (X'WX + R) P) P X'W y with P the orthogonal projector onto {f : c'f = 0, f_k = 0
  for the factors without information} (the Moore-Penrose solution of the constrained normal
  equations, Golub and Van Loan 2013, "Matrix Computations", 4th ed., section 5.5.4), and the
  date is flagged.

Return clipping, before the regression: `return_clip_mad = c` pulls each date's returns to
median +/- c x 1.4826 x MAD of that date's returns (`relative_clip_bounds`: the median absolute
deviation, scaled to the standard deviation for normal data, Rousseeuw and Croux 1993, JASA
88; the robust clip the style descriptors get, core/exposures.py), then `return_clip_bounds =
(lo, hi)` clips to fixed bounds. A fixed bound treats a crisis day like any other: on
2020-03-16 half of 20 large S&P 500 stocks fell more than 10%, and with +/- 10% (the vendor's
default, ours up to 0.8.0) the Market factor read -8.28% against their mean of -10.77%. The
relative clip follows the day's median and spread; docs/return-clipping.md measures both on
real data, and why the default is c = 15 without fixed bounds.

Ridge (`thin_category_shrinkage = lam`): r_tk = lam * sum_n w_tn for every category factor k
(0 for Market and styles). The penalty is relative to the total regression weight, so lam is
scale free: a sector whose assets carry a fraction p of the total weight has its factor return
shrunk by roughly lam / (p + lam) towards 0 (a thin sector, p small, is damped strongly; a
broad sector barely). This is a Tikhonov penalty (Hoerl and Kennard 1970), not part of USE4.

`estimate_factor_returns` never builds the (N, K) design: with rows sorted by date, the normal
equations of a date are X'WX = [[Z'WZ, Z'WS], [S'WZ, diag(S'W1)]] for Z = the dense columns
(Market, styles) and S the one-hot categories, so the dense block is one small (n_t x q) Gram
product per date and the category blocks are per-(date, category) weighted sums, one sparse
scatter pass over the rows (see `_normal_equations`). The solves are batched over dates
(`chunk_dates` at a time). `constrained_wls` (arrays in, padded (T, Nmax, K) design) is the
straightforward batched implementation of the same estimator; the tests tie both out to an
independent KKT solve and to statsmodels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from factorcov_pipeline.core.exposures import MAD_SCALE
from factorcov_pipeline.core.factors import GROUP_MARKET, GROUP_STYLE, GROUP_TRBC, FactorSet
from factorcov_pipeline.core.settings import ModelConstructionSettings

# A date is treated as rank deficient when the smallest eigenvalue of its Jacobi-scaled reduced
# normal matrix (unit diagonal, eigenvalues in [0, K]) is below this: a scaled condition number
# above ~1e10, beyond which the normal-equation solution would lose more than ~6 digits.
RANK_TOL = 1e-10
# Relative eigenvalue cut-off of the minimum-norm fallback (eigenvalues below rtol * largest are
# treated as exactly zero: numerically they are rounding noise of order K * eps * largest).
PINV_RTOL = 1e-10
# A category with at least one but fewer than this many assets on a date is counted as thin.
THIN_CATEGORY_MIN_ASSETS = 5

ZERO_SUM_KEY = "trbc"
# BLAS threads for the batched normal-equation products (see `_wls_core`).
BLAS_THREADS = 1


@dataclass(frozen=True)
class RegressionResult:
    """The regression's outputs as long polars frames.

    - `factor_returns`: `date, factor, factor_group, factor_return`, factors in FactorSet order.
    - `specific_returns`: `date, asset_id, specific_return` (clipped return minus fitted).
    - `stats`: `date, n_assets, r_squared, n_clipped, thin_categories, degenerate,
      exactly_fitted, empty_categories, single_asset_categories`.
    """

    factor_returns: pl.DataFrame
    specific_returns: pl.DataFrame
    stats: pl.DataFrame


def _solve_normal(
    a: np.ndarray,
    b: np.ndarray,
    constraint: np.ndarray,
    ridge: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Constrained factor returns from the normal equations of each date.

    a: (T, K, K) X'WX, b: (T, K) X'Wy, constraint: (T, K), ridge: (T, K) or None. Returns f
    (T, K) and degenerate (T,) bool. See the module docstring for the reparameterisation and the
    fallback. Rank deficiency is detected on the Jacobi-scaled reduced matrix (unit diagonal), not
    by counting assets, because a ridge can make a date with fewer assets than factors regular.
    """
    t, k = b.shape
    a_r = a.copy()
    if ridge is not None:
        diag = np.arange(k)
        a_r[:, diag, diag] += ridge

    # Factors without information (zero column of X'WX and no ridge to pin them): f_k = 0 and
    # out of the constraint. With a ridge the solution is 0 as well, so treat them the same way.
    empty = np.diagonal(a, axis1=1, axis2=2) == 0.0
    c = np.where(empty, 0.0, constraint)
    has_c = np.any(c != 0.0, axis=1)
    pivot = np.argmax(np.abs(c), axis=1)
    rows = np.arange(t)

    # B: identity with row `pivot` replaced by -c / c_pivot (and B[pivot, pivot] = 0).
    bmat = np.broadcast_to(np.eye(k), (t, k, k)).copy()
    c_piv = c[rows, pivot]
    safe_piv = np.where(has_c, c_piv, 1.0)
    new_row = -c / safe_piv[:, None]
    new_row[rows, pivot] = 0.0
    bmat[rows[has_c], pivot[has_c], :] = new_row[has_c]

    bt = np.swapaxes(bmat, 1, 2)
    m = bt @ a_r @ bmat
    rhs = np.einsum("tkj,tk->tj", bmat, b)

    # Pin g_k = 0 for the eliminated pivot and for factors without information.
    fixed = empty.copy()
    fixed[rows[has_c], pivot[has_c]] = True
    keep = ~fixed
    m *= keep[:, :, None] & keep[:, None, :]
    m[:, np.arange(k), np.arange(k)] += fixed
    rhs = np.where(fixed, 0.0, rhs)

    d2 = np.diagonal(m, axis1=1, axis2=2)
    degenerate = np.any(d2 <= 0.0, axis=1)
    d = np.sqrt(np.where(d2 > 0.0, d2, 1.0))
    ms = m / d[:, :, None] / d[:, None, :]
    ok = ~degenerate
    if np.any(ok):
        min_eig = np.linalg.eigvalsh(ms[ok])[:, 0]
        bad = min_eig < RANK_TOL
        idx_ok = np.flatnonzero(ok)
        degenerate[idx_ok[bad]] = True
        ok = ~degenerate

    f = np.zeros((t, k))
    if np.any(ok):
        rhs_s = rhs[ok] / d[ok]
        g = np.linalg.solve(ms[ok], rhs_s[:, :, None])[:, :, 0] / d[ok]
        f[ok] = np.einsum("tkj,tj->tk", bmat[ok], g)
    if np.any(degenerate):
        f[degenerate] = _min_norm(a_r[degenerate], b[degenerate], c[degenerate], empty[degenerate])
    return f, degenerate


def _min_norm(a: np.ndarray, b: np.ndarray, c: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Minimum-norm solution of the constrained normal equations (the degenerate-date fallback).

    P = diag(not empty) - u u' with u = c / ||c|| is the orthogonal projector onto the feasible
    subspace {f : c'f = 0, f_empty = 0} (c is already zero on the empty factors). The minimum-norm
    minimiser over that subspace is pinv(P A P) P b (Golub and Van Loan 2013, section 5.5.4),
    computed with a symmetric eigendecomposition and a relative cut-off PINV_RTOL.
    """
    cn = np.linalg.norm(c, axis=1, keepdims=True)
    u = np.divide(c, cn, out=np.zeros_like(c), where=cn > 0.0)
    p = np.einsum("tk,kj->tkj", (~empty).astype(float), np.eye(c.shape[1]))
    p -= u[:, :, None] * u[:, None, :]
    mp = p @ a @ p
    mp = 0.5 * (mp + np.swapaxes(mp, 1, 2))
    pb = np.einsum("tkj,tj->tk", p, b)
    lam, vec = np.linalg.eigh(mp)
    cut = PINV_RTOL * np.max(np.abs(lam), axis=1, keepdims=True)
    inv = np.divide(1.0, lam, out=np.zeros_like(lam), where=(lam > cut) & (lam > 0.0))
    coef = np.einsum("tkj,tk->tj", vec, pb) * inv
    f = np.einsum("tkj,tj->tk", vec, coef)
    # Project once more so that c'f = 0 and f_empty = 0 hold to rounding.
    return np.einsum("tkj,tj->tk", p, f)


def _wls_core(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    constraint: np.ndarray,
    ridge: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched solve on clean arrays (finite everywhere, w >= 0): f, residuals, degenerate.

    BLAS runs single-threaded here (`BLAS_THREADS`): the batched (K x N)(N x K) products are
    many small GEMMs, and OpenBLAS's thread pool on them was 5-15x SLOWER than one thread when
    the machine's cores are busy (measured on the 2-core benchmark machine, benchmarks/RESULTS.md);
    single-threaded it is as fast on an idle machine and robust under load. Same numbers: OpenBLAS
    computes each GEMM element with the same reduction order whatever the thread count.
    """
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        xw = x * w[:, :, None]
        a = np.swapaxes(xw, 1, 2) @ x
        b = np.einsum("tnk,tn->tk", xw, y)
        del xw
        f, degenerate = _solve_normal(a, b, constraint, ridge)
        resid = y - np.einsum("tnk,tk->tn", x, f)
    return f, resid, degenerate


def _normal_equations(
    z: np.ndarray,
    w: np.ndarray,
    row_start: np.ndarray,
    cell: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Gram matrices of the dense columns and per-(date, category) weighted sums.

    z: (N, m) the dense columns of the rows, sorted by date, with the rows of date t in
    ``row_start[t]:row_start[t + 1]`` (columns: a column of ones, the styles, the returns y);
    w: (N,) regression weights; cell: (N,) ``t * k + category``. Returns ``g`` (T, m, m), the
    per-date ``Z_t' W_t Z_t`` (from which X'WX's dense block, X'Wy's dense part and y'Wy are
    read), and ``cross`` (T, k, m): ``sum w z_j`` over the rows of each (date, category), i.e.
    S'WZ (the ones column gives the category weight sums diag(S'WS), the y column S'Wy).

    Why this layout: the one-hot category columns make most of the (N, K) design zeros, so the
    dense (T, N, K) products of `constrained_wls` spend most of their work on them. Here the
    dense part is one BLAS product on a contiguous (n_t, m) slice per date, small enough to
    stay in cache (no padded (T, Nmax, q) copy), and the category part is a single pass of a
    sparse (T*k, N) matrix with one non-zero w_r per row r (faster than one `np.bincount` per
    column, which first materialises w * z_j).
    """
    import scipy.sparse

    n, m = z.shape
    n_dates = row_start.size - 1
    g = np.empty((n_dates, m, m))
    for t in range(n_dates):
        r0, r1 = row_start[t], row_start[t + 1]
        zt = z[r0:r1]
        g[t] = (zt * w[r0:r1, None]).T @ zt
    scatter = scipy.sparse.csc_array((w, cell, np.arange(n + 1)), shape=(n_dates * k, n))
    cross = np.empty((n_dates * k, m))
    for j in range(m):
        cross[:, j] = scatter @ z[:, j]
    return g, cross.reshape(n_dates, k, m)


def constrained_wls(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    constraint: np.ndarray,
    ridge: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Factor returns and residuals of the constrained WLS of every date, batched.

    X: (T, N, K) exposures, y: (T, N) returns, w: (T, N) regression weights (0 = left out, e.g.
    padding), constraint: (T, K) the row c with c'f = 0 (zero outside the categories; an all-zero
    row means no constraint on that date), ridge: (T, K) penalty r_k f_k^2 added to the weighted
    sum of squares, or None. Entries of X and y where w == 0 are ignored by the fit (they may be
    NaN). Returns f (T, K) and residuals y - X f (T, N), also where w == 0 (NaN if the inputs
    are). Degenerate dates: see the module docstring.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    constraint = np.asarray(constraint, dtype=np.float64)
    if X.ndim != 3 or y.shape != X.shape[:2] or w.shape != y.shape:
        raise ValueError(f"shapes: X {X.shape}, y {y.shape}, w {w.shape}; need (T,N,K),(T,N),(T,N)")
    if constraint.shape != (X.shape[0], X.shape[2]):
        raise ValueError(
            f"constraint has shape {constraint.shape}, need {(X.shape[0], X.shape[2])}"
        )
    if ridge is not None:
        ridge = np.asarray(ridge, dtype=np.float64)
        if ridge.shape != constraint.shape or np.any(ridge < 0.0):
            raise ValueError("ridge must be (T, K) and non-negative")
    if np.any(~np.isfinite(w)) or np.any(w < 0.0):
        raise ValueError("regression weights must be finite and >= 0")
    used = w > 0.0
    xc = np.where(used[:, :, None], X, 0.0)
    yc = np.where(used, y, 0.0)
    if not (np.all(np.isfinite(xc)) and np.all(np.isfinite(yc))):
        raise ValueError("X and y must be finite where w > 0")
    f, _, _ = _wls_core(xc, yc, w, constraint, ridge)
    resid = y - np.einsum("tnk,tk->tn", X, f)
    return f, resid


# Rows per block of whole dates in `relative_clip_bounds` (its padded grids stay a few MB).
CLIP_BLOCK_ROWS = 200_000


def _sorted_rows(grid: np.ndarray) -> np.ndarray:
    """Each row of a NaN-padded (dates x longest date) grid sorted (numpy sorts NaN last)."""
    grid.sort(axis=1)
    return grid


def _row_medians(grid: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The median of each row of a sorted grid whose first n >= 1 values are finite: the
    middle element(s) averaged, numpy's definition of the median."""
    at = np.arange(grid.shape[0])
    return 0.5 * (grid[at, (n - 1) // 2] + grid[at, n // 2])


def relative_clip_bounds(
    y: np.ndarray, row_start: np.ndarray, c: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per date, the bounds median +/- c x s of its returns, s = 1.4826 x MAD (module
    docstring), for all dates at once (no loop over dates or assets).

    `y`: finite returns sorted by date, date t in ``row_start[t]:row_start[t + 1]`` (no empty
    date). Where the MAD is 0 (more than half of the date's returns equal, e.g. stale prices
    on a thin day) s is the mean absolute deviation from the median x sqrt(pi / 2) (its
    normal-consistent scale), as for the descriptors; where that is 0 too (one asset, or all
    returns equal) the date is not clipped: its bounds are -inf, +inf. Returns (lower, upper),
    each (T,). The medians come from each date's values laid out as a row of a NaN-padded grid
    and sorted along the rows, blocks of whole dates of about CLIP_BLOCK_ROWS rows at a time
    (a lexsort of the whole panel by date and value was 15 times slower).
    """
    counts = np.diff(row_start)
    n_dates = counts.size
    lo, hi = np.full(n_dates, -np.inf), np.full(n_dates, np.inf)
    ends = np.cumsum(counts)
    first = 0
    while first < n_dates:  # blocks of whole dates, not a loop over dates
        r0 = int(row_start[first])
        last = max(first + 1, int(np.searchsorted(ends, r0 + CLIP_BLOCK_ROWS, side="right")))
        n = counts[first:last]
        rows = y[r0 : int(ends[last - 1])]
        width = int(n.max())
        if width * n.size == rows.size:  # every date of the block has as many rows
            grid = rows.reshape(n.size, width).copy()
        else:
            grid = np.full((n.size, width), np.nan)
            grid[np.arange(width)[None, :] < n[:, None]] = rows  # row-major: dates in order
        med = _row_medians(_sorted_rows(grid), n)
        dev = np.abs(grid - med[:, None])  # the same multiset per row as |y - median|
        scale = MAD_SCALE * _row_medians(_sorted_rows(dev), n)
        if not np.all(scale > 0.0):  # the fallback, only where the MAD is 0 (NaN sorts last)
            mean_ad = np.nansum(dev, axis=1) / n
            scale = np.where(scale > 0.0, scale, np.sqrt(np.pi / 2.0) * mean_ad)
        clip = scale > 0.0
        lo[first:last] = np.where(clip, med - c * scale, -np.inf)
        hi[first:last] = np.where(clip, med + c * scale, np.inf)
        first = last
    return lo, hi


def clip_returns(
    y: np.ndarray, row_start: np.ndarray, settings: ModelConstructionSettings
) -> np.ndarray:
    """The returns the regression uses: clipped relative to each date's dispersion
    (`return_clip_mad`, `relative_clip_bounds`), then to `return_clip_bounds`; either step
    only when set. `y` as in `relative_clip_bounds`; returns a new array."""
    out = np.array(y, dtype=np.float64, copy=True)
    if settings.return_clip_mad is not None and out.size:
        lo, hi = relative_clip_bounds(out, row_start, settings.return_clip_mad)
        counts = np.diff(row_start)
        out = np.clip(out, np.repeat(lo, counts), np.repeat(hi, counts))
    if settings.return_clip_bounds is not None:
        out = np.clip(out, *settings.return_clip_bounds)
    return out


# R^2 above 1 - this is an exact fit (rounding of a zero residual sum of squares).
EXACT_FIT_TOL = 1e-12
# Separator of category names in regression_stats (TRBC names contain commas, never ';').
NAME_SEPARATOR = "; "


def _category_names(
    hit: np.ndarray, sector_mask: np.ndarray, names: list[str], n_dates: int
) -> pl.Series:
    """Per date, the category factors where `hit` (T, K) holds, joined by NAME_SEPARATOR in
    the model's order; null where none (one polars group-by, no loop over dates)."""
    t_idx, k_idx = np.nonzero(hit & sector_mask[None, :])
    found = (
        pl.DataFrame({"t": t_idx, "name": pl.Series(names, dtype=pl.String).gather(k_idx)})
        .group_by("t", maintain_order=True)
        .agg(pl.col("name").str.join(NAME_SEPARATOR))
    )
    out = pl.DataFrame({"t": np.arange(n_dates)}).join(found, on="t", how="left")
    return out.sort("t")["name"]


def estimate_factor_returns(
    data: pl.DataFrame,
    factors: FactorSet,
    settings: ModelConstructionSettings,
    category_column: str = "sector",
    chunk_dates: int = 64,
) -> RegressionResult:
    """Daily factor returns, specific returns and fit statistics of the whole panel.

    `data`: one row per (date, asset) with `date, asset_id, asset_return` (return of the date),
    `market_cap` (cap at the previous session; regression weight sqrt(cap), USE4 eq. 2.2), the
    category column and one column per style factor (exposures of the previous session). Rows with
    a null/NaN return, cap, category or style exposure, or a cap <= 0, are left out of the date's
    regression (the caller validates inputs). Categories must be among `factors.sectors`.

    Returns are clipped before the regression (`clip_returns`: relative to the date's
    dispersion with `settings.return_clip_mad`, then to `settings.return_clip_bounds`, each
    when set); `n_clipped` counts the returns of the date that a clip changed. The specific
    return is the clipped return minus the fitted return. `r_squared` is the weighted, uncentred R^2,
    1 - sum w e^2 / sum w y^2 (y the clipped returns, e the specific returns; uncentred because
    Market plays the intercept's role and the zero-sum constraint ties it to the cap-weighted
    market). `thin_categories` counts the categories with at least one but fewer than
    THIN_CATEGORY_MIN_ASSETS assets; `degenerate` flags the dates solved by the minimum-norm
    fallback (rank-deficient design); `exactly_fitted` the dates with no more assets than
    factors or R^2 = 1 (to EXACT_FIT_TOL); `empty_categories` / `single_asset_categories`
    name (NAME_SEPARATOR-joined, null if none) the category factors with no asset (factor
    return 0, out of the constraint) and with one asset (that asset's specific return is 0
    by construction, unless `thin_category_shrinkage` is set). The batched solves take `chunk_dates` dates at a time;
    results do not depend on chunking beyond rounding. Memory: the input columns plus one
    (N, #styles + 2) float64 array (no padded (T, Nmax, K) design).
    """
    if chunk_dates < 1:
        raise ValueError(f"chunk_dates must be >= 1, got {chunk_dates}")
    k = factors.k
    has_market = GROUP_MARKET in factors.groups
    method = settings.zero_sum_constraints.get(ZERO_SUM_KEY)
    if method is None and has_market:
        raise ValueError(
            "modelconstruction.zero_sum_constraints is empty but the model has a Market factor: "
            "the sector dummies sum to the Market column and the regression is singular; set "
            "zero_sum_constraints={'trbc': 'mcap_weighted'} (or 'equal_weighted')"
        )
    style_names = [
        n for n, g in zip(factors.names, factors.groups, strict=True) if g == GROUP_STYLE
    ]
    needed = ["date", "asset_id", "asset_return", "market_cap", category_column, *style_names]
    missing = [col for col in needed if col not in data.columns]
    if missing:
        raise ValueError(f"regression input lacks columns {missing}")

    frame = data.select(needed).filter(
        pl.all_horizontal(
            pl.col(c).is_not_null() & pl.col(c).is_not_nan()
            for c in ["asset_return", "market_cap", *style_names]
        )
        & pl.col(category_column).is_not_null()
        & (pl.col("market_cap") > 0.0)
    )
    sector_names = [
        n for n, g in zip(factors.names, factors.groups, strict=True) if g == GROUP_TRBC
    ]
    # Rows sorted by date then asset: the pipeline's input already is (regression_input sorts),
    # so check first (one vectorised pass) and sort only when needed.
    day_phys = pl.col("date").to_physical()
    in_order = frame.select(
        (
            (day_phys.diff().fill_null(1) > 0)
            | ((day_phys.diff() == 0) & (pl.col("asset_id") >= pl.col("asset_id").shift(1)))
        ).all()
    ).item()
    if not in_order:
        frame = frame.sort("date", "asset_id")
    # Category -> factor position through an Enum of the model's categories (one hashing pass;
    # unknown categories become null and are reported by name).
    codes = frame[category_column].cast(pl.Enum(sector_names), strict=False)
    if codes.null_count():
        unknown = sorted(
            set(frame.filter(codes.is_null())[category_column].cast(pl.String).unique().to_list())
        )
        raise ValueError(
            f"categories in column {category_column!r} are not factors of the model: {unknown[:10]}"
        )
    sector_factor = np.array([factors.names.index(n) for n in sector_names], dtype=np.int64)
    k_all = sector_factor[codes.to_physical().to_numpy()]
    # Date index of every row and the first row of every date, from the sorted dates.
    day = frame["date"].to_physical().to_numpy()
    new_day = np.r_[True, day[1:] != day[:-1]] if day.size else np.zeros(0, dtype=bool)
    t_all = np.cumsum(new_day) - 1
    first_row = np.flatnonzero(new_day)
    dates = frame["date"].gather(first_row)
    n_dates = dates.len()
    n_rows = frame.height
    row_start = np.append(first_row, n_rows)
    n_assets = np.diff(row_start)
    cell = t_all * k + k_all

    # z: (N, m) column-major: [1, styles..., y]; the dense design columns are its first m - 1
    # (Market = the ones column when the model has one).
    n_styles = len(style_names)
    z = np.empty((n_styles + 2, n_rows)).T
    z[:, 0] = 1.0
    for j, name in enumerate(style_names):
        z[:, 1 + j] = frame[name].to_numpy()
    y_raw = np.asarray(frame["asset_return"].to_numpy(), dtype=np.float64)
    z[:, -1] = clip_returns(y_raw, row_start, settings)
    y_all = z[:, -1]
    cap_all = np.asarray(frame["market_cap"].to_numpy(), dtype=np.float64)
    w_all = np.sqrt(cap_all)

    market_idx = factors.groups.index(GROUP_MARKET) if has_market else None
    style_idx = np.array([factors.names.index(s) for s in style_names], dtype=np.int64)
    # Factor positions of the dense z columns (Market, then styles) and which z columns they are.
    dense_idx = np.array(([market_idx] if has_market else []) + list(style_idx), dtype=np.int64)
    dense_z = np.arange(0 if has_market else 1, n_styles + 1)
    y_col = n_styles + 1
    sector_mask = np.array([g == GROUP_TRBC for g in factors.groups])
    lam = settings.thin_category_shrinkage

    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        g, cross = _normal_equations(z, w_all, row_start, cell, k)
        # Assemble X'WX and X'Wy (module docstring): dense block, category-dense cross sums,
        # category weight sums on the diagonal, category sums of w y.
        a = np.zeros((n_dates, k, k))
        b = np.zeros((n_dates, k))
        a[:, dense_idx[:, None], dense_idx[None, :]] = g[:, dense_z[:, None], dense_z[None, :]]
        b[:, dense_idx] = g[:, dense_z, y_col]
        a[:, sector_factor[:, None], dense_idx[None, :]] = cross[:, sector_factor][:, :, dense_z]
        a[:, dense_idx[:, None], sector_factor[None, :]] = np.swapaxes(
            cross[:, sector_factor][:, :, dense_z], 1, 2
        )
        a[:, sector_factor, sector_factor] = cross[:, sector_factor, 0]
        b[:, sector_factor] = cross[:, sector_factor, y_col]
        if method == "mcap_weighted":
            c_all = np.bincount(cell, weights=cap_all, minlength=n_dates * k).reshape(n_dates, k)
        elif method == "equal_weighted":
            counts_c = np.bincount(cell, minlength=n_dates * k).reshape(n_dates, k)
            c_all = (counts_c > 0).astype(np.float64)
        else:
            c_all = np.zeros((n_dates, k))
        f_all = np.zeros((n_dates, k))
        degenerate_all = np.zeros(n_dates, dtype=bool)
        for t0 in range(0, n_dates, chunk_dates):
            t1 = min(t0 + chunk_dates, n_dates)
            ridge = None
            if lam > 0.0:  # r_k = lam * sum_n w_n: the ones column's Gram entry is sum_n w_n
                ridge = lam * g[t0:t1, 0, 0][:, None] * sector_mask[None, :]
            f, degenerate = _solve_normal(a[t0:t1], b[t0:t1], c_all[t0:t1], ridge)
            f_all[t0:t1] = f
            degenerate_all[t0:t1] = degenerate
        # Fitted returns: the dense columns per date (one matrix-vector product on the date's
        # slice; the y column gets coefficient 0), plus the category return of each row.
        coef = np.zeros((n_dates, z.shape[1]))
        coef[:, dense_z] = f_all[:, dense_idx]
        fitted = np.empty(n_rows)
        for t in range(n_dates):
            r0, r1 = row_start[t], row_start[t + 1]
            fitted[r0:r1] = z[r0:r1] @ coef[t]
        fitted += f_all.reshape(-1)[cell]
    resid_all = y_all - fitted

    ss_res = np.bincount(t_all, weights=w_all * resid_all**2, minlength=n_dates)
    ss_tot = g[:, y_col, y_col]  # sum_n w_n y_n^2 of the date, from its Gram matrix
    r2 = 1.0 - np.divide(ss_res, ss_tot, out=np.full(n_dates, np.nan), where=ss_tot > 0.0)
    n_clipped = np.bincount(t_all, weights=(y_all != y_raw).astype(np.float64), minlength=n_dates)
    counts = np.bincount(cell, minlength=n_dates * k).reshape(n_dates, k)
    thin = ((counts > 0) & (counts < THIN_CATEGORY_MIN_ASSETS) & sector_mask[None, :]).sum(axis=1)

    names = list(factors.names)
    groups = list(factors.groups)
    factor_returns = pl.DataFrame(
        {
            "date": dates.gather(np.repeat(np.arange(n_dates), k)),
            "factor": pl.Series(names * n_dates, dtype=pl.String),
            "factor_group": pl.Series(groups * n_dates, dtype=pl.String),
            "factor_return": f_all.reshape(-1),
        }
    )
    specific_returns = pl.DataFrame(
        {
            "date": frame["date"],
            "asset_id": frame["asset_id"],
            "specific_return": resid_all,
        }
    )
    stats = pl.DataFrame(
        {
            "date": dates,
            "n_assets": n_assets.astype(np.int64),
            "r_squared": r2,
            "n_clipped": n_clipped.astype(np.int64),
            "thin_categories": thin.astype(np.int64),
            "degenerate": degenerate_all,
            # No more assets than factors, or R^2 = 1 up to rounding: the returns are fitted
            # exactly, every specific return is 0 and the factor returns absorb all noise.
            "exactly_fitted": (n_assets <= k) | (r2 >= 1.0 - EXACT_FIT_TOL),
            "empty_categories": _category_names(counts == 0, sector_mask, names, n_dates),
            "single_asset_categories": _category_names(counts == 1, sector_mask, names, n_dates),
        }
    )
    return RegressionResult(factor_returns, specific_returns, stats)
