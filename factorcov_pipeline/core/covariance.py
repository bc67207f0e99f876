"""Covariance = vol_i vol_j cor_ij, and the long / wide (tutorial ``df_vcov``) frames.

The tutorial splits the vendor's covariance report into volatilities ``sqrt(diag)`` and
correlations ``C / outer(sd, sd)``; we build it the other way round from the two forecasters, so
the tutorial's split recovers our ``vol`` and ``corr`` exactly (up to rounding). All frames are
built with vectorised index arithmetic (``np.repeat`` / ``np.tile``), no loop over dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl

from factorcov_pipeline.core.ewma import jit_kernels
from factorcov_pipeline.core.panel import cube_to_pairs, date_series, matrix_to_long, name_series

DateLike = Sequence[date] | np.ndarray | pl.Series


def covariance_from(vol: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """``cov_ij = vol_i vol_j corr_ij`` for (T, K) volatilities and (T, K, K) correlations.

    Symmetric and PSD whenever ``corr`` is (a congruence D R D with diagonal D). The product
    ``vol_i * vol_j`` is formed first so that symmetry holds bit for bit. Blocks of at least
    `factorcov_pipeline.core.ewma.JIT_MIN_DATES` dates use the compiled `kernels.outer_scale`
    (one pass, no (T, K, K) temporary for ``vol_i * vol_j``; the same two multiplications per
    cell, so bit-identical to the numpy expression, which is the reference).
    """
    vol = np.asarray(vol, dtype=np.float64)
    corr = np.asarray(corr, dtype=np.float64)
    if vol.ndim != 2 or corr.shape != (*vol.shape, vol.shape[1]):
        raise ValueError(f"vol (T, K) and corr (T, K, K) expected, got {vol.shape}, {corr.shape}")
    kernels = jit_kernels(vol.shape[0])
    if kernels is not None:
        out = np.empty(corr.shape)
        kernels.outer_scale(np.ascontiguousarray(vol), np.ascontiguousarray(corr), out)
        return out
    return (vol[:, :, None] * vol[:, None, :]) * corr


def volatility_long(dates: DateLike, names: Sequence[str], vol: np.ndarray) -> pl.DataFrame:
    """(T, K) -> long frame ``date, factor, volatility`` (date-major, factors in input order)."""
    return matrix_to_long(list(dates), names, vol, "volatility")


def covariance_long(dates: DateLike, names: Sequence[str], cov: np.ndarray) -> pl.DataFrame:
    """(T, K, K) -> ``date, factor_1, factor_2, covariance`` (all K x K cells, row-major)."""
    return cube_to_pairs(list(dates), names, cov, "covariance")


def correlation_long(dates: DateLike, names: Sequence[str], corr: np.ndarray) -> pl.DataFrame:
    """(T, K, K) -> ``date, factor_1, factor_2, correlation`` (all K x K cells, row-major)."""
    return cube_to_pairs(list(dates), names, corr, "correlation")


def covariance_report(
    dates: DateLike,
    names: Sequence[str],
    cov: np.ndarray,
    dtype: type[pl.Float64] | type[pl.Float32] = pl.Float64,
) -> pl.DataFrame:
    """The tutorial's ``df_vcov`` layout: ``date, factor, <one Float64 column per factor>``.

    Rows (per date) and factor columns are sorted alphabetically by factor name, as in the
    tutorial's printed report ('Academic & Educational Services', 'Basic Materials', ...).
    ``dtype=pl.Float32`` reproduces the vendor's report exactly: the tutorial's
    ``assert_frame_equal(df_vol, df_vol_tieout)`` checks dtypes, and ``df_vol_tieout`` is
    float32, so the vendor's covariance columns must be Float32.
    """
    cov = np.asarray(cov, dtype=np.float64)
    t, k, _ = cov.shape
    names = name_series(names, k).to_list()
    order = np.array(sorted(range(k), key=lambda i: names[i]), dtype=np.int64)
    sorted_names = [names[i] for i in order]
    c = cov[:, order][:, :, order].reshape(t * k, k)
    d = date_series(list(dates), t)
    columns: dict[str, pl.Series] = {
        "date": d.gather(np.repeat(np.arange(t), k)),
        "factor": pl.Series("factor", sorted_names, dtype=pl.String).gather(
            np.tile(np.arange(k), t)
        ),
    }
    if any(n in ("date", "factor") for n in sorted_names):
        raise ValueError("a factor may not be named 'date' or 'factor' in the wide report")
    for j, name in enumerate(sorted_names):
        columns[name] = pl.Series(name, c[:, j], dtype=pl.Float64).cast(dtype)
    return pl.DataFrame(columns)
