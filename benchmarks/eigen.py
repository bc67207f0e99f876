"""Benchmark 9 (issue 22.5): the eigenfactor risk adjustment per date, at K = 21 and K = 72,
and the Monte Carlo error of the simulated bias v(k) against the simulation count M.

Run through `python benchmarks/run.py --only 9` (or `python benchmarks/eigen.py`). The
covariance of each size is the default model's forecast (EWMA half-lives 60 / 120, vol_i
vol_j corr_ij) of factor returns drawn from a covariance with a common factor and a spread of
volatilities (`run.factor_returns_frame`), at a date with a full simulated history
(n_t >= H = 1,200 sessions: the steady state of a daily run) and at the first adjusted date
(n_t = 2K). Timed:

* one date alone, as a daily run computes it (the draws and the weighted sums over the
  H ages included: they are built once per call);
* per date within a block of 63 dates (the draws and sums built once for the block);

Monte Carlo error: v(k) computed with R independent seeds at one date; reported as the
largest standard deviation of v(k) over k, the largest relative standard deviation of an
adjusted eigenvalue gamma(k)^2 D0(k) (2 a sd(v(k)) / gamma(k)), and for the smallest
eigenvalue (the most adjusted one) v with its sd and the adjustment gamma^2 - 1 with its sd.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

SIZES = (21, 72)
M_GRID = (32, 64, 128, 256, 512, 1024)


def _forecast(k: int, t: int, seed: int) -> np.ndarray:
    """The default model's annualised covariance forecasts (T, K, K) of random returns."""
    from factorcov_pipeline.core.correlation import CorrelationForecaster
    from factorcov_pipeline.core.covariance import covariance_from
    from factorcov_pipeline.core.settings import FactorCovarianceSettings
    from factorcov_pipeline.core.volatility import VolatilityForecaster

    rng = np.random.default_rng(seed)
    vols = rng.uniform(0.001, 0.01, k)
    load = rng.uniform(-0.6, 0.6, k)
    z = rng.standard_normal((t, k + 1))
    f = vols * (load * z[:, :1] + np.sqrt(1 - load**2) * z[:, 1:])
    cs = FactorCovarianceSettings()
    vol, _ = VolatilityForecaster(cs).run(None, f)
    cor, _ = CorrelationForecaster(cs).run(None, f, None)
    return covariance_from(vol.vol, cor.corr)


def bench_eigen(
    quick: bool,
    repeats: int,
    timed: Callable[..., Any],
    print_table: Callable[..., None],
    fmt_s: Callable[[float], str],
) -> None:
    from factorcov_pipeline.core.eigen import DEFAULT_SIMULATIONS, EigenAdjustment

    seeds = 4 if quick else 10
    m_grid = M_GRID[:4] if quick else M_GRID
    block = 10 if quick else 63
    timing_rows: list[list[Any]] = []
    error_rows: list[list[Any]] = []
    for k in SIZES:
        eig = EigenAdjustment(1.2, DEFAULT_SIMULATIONS, 0, 60.0, 120.0)
        h = eig.horizon
        cov = _forecast(k, h + block, seed=k)
        steady = cov[h : h + block]
        n_steady = np.arange(h + 1, h + block + 1)
        first = cov[2 * k - 1 : 2 * k]
        n_first = np.array([2 * k])
        one, _, _ = timed(partial(eig.adjust, steady[:1], n_steady[:1]), repeats)
        first_t, _, _ = timed(partial(eig.adjust, first, n_first), repeats)
        many, _, _ = timed(partial(eig.adjust, steady, n_steady), max(1, repeats // 2))
        timing_rows.append(
            [
                f"K = {k}, M = {DEFAULT_SIMULATIONS}",
                fmt_s(one),
                fmt_s(first_t),
                fmt_s(many / block),
                fmt_s(many / block * 252),
            ]
        )
        for m in m_grid:
            vs = np.stack(
                [
                    EigenAdjustment(1.2, m, s, 60.0, 120.0).simulated_bias(
                        steady[:1], n_steady[:1]
                    )[0]
                    for s in range(seeds)
                ]
            )
            adjust_m = EigenAdjustment(1.2, m, 0, 60.0, 120.0).adjust
            t_m, _, _ = timed(partial(adjust_m, steady[:8], n_steady[:8]), 1)
            sd = vs.std(axis=0, ddof=1)
            gamma = 1.2 * (vs.mean(axis=0) - 1.0) + 1.0
            rel_var = 2.0 * 1.2 * sd / gamma  # relative sd of gamma^2 D0 (delta method)
            error_rows.append(
                [
                    k,
                    m,
                    f"{sd.max():.4f}",
                    f"{rel_var.max():.2%}",
                    f"{vs[:, 0].mean():.3f} +/- {sd[0]:.4f}",
                    f"{(gamma[0] ** 2 - 1.0):.1%} +/- {rel_var[0] * gamma[0] ** 2:.2%}",
                    fmt_s(t_m / 8),
                ]
            )
    print_table(
        "9. Eigenfactor risk adjustment per date (issue 22.5)",
        [
            "size",
            "one date alone, n_t >= H (a daily run)",
            "one date alone, n_t = 2K",
            "per date in a block of " + str(block),
            "x 252 dates",
        ],
        timing_rows,
        [
            "core/eigen.py `EigenAdjustment.adjust` on the default model's forecasts (half-lives "
            f"60/120, H = {EigenAdjustment(1.2, 10, 0, 60.0, 120.0).horizon} simulated sessions "
            f"in the steady state); median of {repeats} runs; one BLAS thread. 'One date alone' "
            "includes the draws and weighted sums over the simulated ages, built once per call."
        ],
    )
    print_table(
        "9b. Monte Carlo error of v(k) against the simulation count M",
        [
            "K",
            "M",
            "largest sd of v(k)",
            "largest relative sd of an adjusted eigenvalue",
            "v of the smallest eigenvalue",
            "its adjustment gamma^2 - 1 (a = 1.2)",
            "time per date (block of 8)",
        ],
        error_rows,
        [
            f"{seeds} independent seeds per M at one steady-state date; sd over the seeds. The "
            "relative sd of an adjusted eigenvalue gamma(k)^2 D0(k) is 2 a sd(v(k)) / gamma(k) "
            "(a = 1.2). The draws are common to all dates, so this error is a smooth bias of "
            "the adjustment over time, not day-to-day noise."
        ],
    )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run

    bench_eigen("--quick" in sys.argv, 3, run.timed, run.print_table, run.fmt_s)
