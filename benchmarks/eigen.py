"""Benchmark 9 (issue 22.5): the eigenfactor risk adjustment per date, at K = 21 and K = 72,
and the Monte Carlo error of the simulated bias v(k) against the simulation count M.

Run through `python benchmarks/run.py --only 9` (or `python benchmarks/eigen.py`); the bias
study of docs/eigen-adjustment.md: `python benchmarks/eigen.py --bias DEFAULT.duckdb
ADJUSTED.duckdb ...` (`bias_study`). The
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

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
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


def _cold(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with the process's simulated sums forgotten first (a fresh process)."""
    from factorcov_pipeline.core.eigen import clear_simulation_cache

    clear_simulation_cache()
    return fn(*args)


def bench_eigen(
    quick: bool,
    repeats: int,
    timed: Callable[..., Any],
    print_table: Callable[..., None],
    fmt_s: Callable[[float], str],
) -> None:
    from factorcov_pipeline.core.eigen import DEFAULT_SIMULATIONS, EigenAdjustment

    def n_ramp(k: int) -> np.ndarray:
        return np.arange(2 * k, 2 * k + block)

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
        one, _, _ = timed(partial(_cold, eig.adjust, steady[:1], n_steady[:1]), repeats)
        kept, _, _ = timed(partial(eig.adjust, steady[:1], n_steady[:1]), repeats)
        first_t, _, _ = timed(partial(_cold, eig.adjust, first, n_first), repeats)
        many, _, _ = timed(partial(_cold, eig.adjust, steady, n_steady), max(1, repeats // 2))
        ramp, _, _ = timed(
            partial(_cold, eig.adjust, cov[2 * k - 1 : 2 * k - 1 + block], n_ramp(k)),
            max(1, repeats // 2),
        )
        timing_rows.append(
            [
                f"K = {k}, M = {DEFAULT_SIMULATIONS}",
                fmt_s(one),
                fmt_s(kept),
                fmt_s(first_t),
                fmt_s(many / block),
                fmt_s(ramp / block),
                fmt_s(ramp / block * 252),
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
            t_m, _, _ = timed(partial(_cold, adjust_m, steady[:8], n_steady[:8]), 1)
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
            "one date alone, n_t >= H, first in the process (a daily run)",
            "the same, simulation kept (the run's next call)",
            "one date alone, n_t = 2K, first in the process",
            f"per date in a block of {block}, n_t >= H",
            f"per date in a block of {block} from n_t = 2K",
            "x 252 dates (the tutorial's year)",
        ],
        timing_rows,
        [
            "core/eigen.py `EigenAdjustment.adjust` on the default model's forecasts (half-lives "
            f"60/120, H = {EigenAdjustment(1.2, 10, 0, 60.0, 120.0).horizon} simulated sessions "
            f"in the steady state); median of {repeats} runs; one BLAS thread. 'First in the "
            "process': the simulation cache emptied before each run, so the draws and weighted "
            "sums over the simulated ages are included (built once per process and kept); 'kept': "
            "a second call at the same n_t (the run's tie-out check, the next daily date)."
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


# ---- this version against another, alternated in one run ------------------------------------

_CHILD = """
import importlib.util, json, sys, time
import numpy as np
path, cov_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = importlib.util.spec_from_file_location("eigen_under_test", path)
mod = importlib.util.module_from_spec(spec)
sys.modules["eigen_under_test"] = mod
spec.loader.exec_module(mod)
cov = np.load(cov_file)
eig = mod.EigenAdjustment(1.2, mod.DEFAULT_SIMULATIONS, 0, 60.0, 120.0)
times = []
for _ in range(2):  # the first call of the process, then the same date again
    t0 = time.perf_counter()
    out = eig.adjust(cov, [n])
    times.append(time.perf_counter() - t0)
np.save(cov_file + ".out.npy", out)
print(json.dumps(times))
"""


def _module(path: Path, name: str) -> Any:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def compare_versions(rev: str, rounds: int = 5, block: int = 63) -> None:
    """core/eigen.py of this checkout against the one of git revision ``rev``, alternated in
    one run: per date in a block of ``block`` dates (from n_t = 2K, the ramp of a first year,
    and with n_t >= H, the steady state), and one date with n_t >= H in a fresh process (its
    first call, then the same date again: a run's tie-out check). Medians of ``rounds``; the
    load average before and after. Every output is checked equal bit for bit."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    here = Path(__file__).resolve().parent.parent
    tmp = Path(tempfile.mkdtemp(prefix="eigen-compare-"))
    old_path = tmp / "eigen_old.py"
    old_path.write_text(
        subprocess.run(
            ["git", "show", f"{rev}:factorcov_pipeline/core/eigen.py"],
            cwd=here,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    new_path = here / "factorcov_pipeline" / "core" / "eigen.py"
    old, new = _module(old_path, "eigen_old"), _module(new_path, "eigen_new")
    load_before = os.getloadavg()
    rows: list[list[str]] = []
    for k in SIZES:
        eig_old = old.EigenAdjustment(1.2, old.DEFAULT_SIMULATIONS, 0, 60.0, 120.0)
        eig_new = new.EigenAdjustment(1.2, new.DEFAULT_SIMULATIONS, 0, 60.0, 120.0)
        h = eig_new.horizon
        cov = _forecast(k, h + block, seed=k)
        blocks = {
            "ramp": (cov[2 * k - 1 : 2 * k - 1 + block], np.arange(2 * k, 2 * k + block)),
            "steady": (cov[h : h + block], np.arange(h + 1, h + block + 1)),
        }
        one_file = str(tmp / f"cov{k}.npy")
        np.save(one_file, cov[h : h + 1])
        t: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, (c, n_obs) in blocks.items():
                t0 = time.perf_counter()
                ref = eig_old.adjust(c, n_obs)
                t.setdefault(f"old {name}", []).append(time.perf_counter() - t0)
                new.clear_simulation_cache()
                t0 = time.perf_counter()
                out = eig_new.adjust(c, n_obs)
                t.setdefault(f"new {name} cold", []).append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                again = eig_new.adjust(c, n_obs)
                t.setdefault(f"new {name} kept", []).append(time.perf_counter() - t0)
                assert np.array_equal(out, ref) and np.array_equal(again, ref), (k, name)
            outs = []
            for label, path in (("old", old_path), ("new", new_path)):
                cmd = [sys.executable, "-c", _CHILD, str(path), one_file, str(h + 1)]
                times = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
                t.setdefault(f"{label} fresh", []).append(times[0])
                t.setdefault(f"{label} fresh again", []).append(times[1])
                outs.append(np.load(one_file + ".out.npy"))
            assert np.array_equal(outs[0], outs[1]), (k, "fresh process")
        med = {key: float(np.median(v)) for key, v in t.items()}
        for what, old_key, new_keys in (
            (f"per date, block of {block} from n_t = 2K", "old ramp", ["new ramp cold", "new ramp kept"]),
            (f"per date, block of {block}, n_t >= H", "old steady", ["new steady cold", "new steady kept"]),
            ("one date, n_t >= H, fresh process: first call", "old fresh", ["new fresh"]),
            ("the same date again in that process", "old fresh again", ["new fresh again"]),
        ):  # fmt: skip
            per = block if "block" in what else 1
            after = " / ".join(_ms(med[key] / per) for key in new_keys)
            speedup = f"{med[old_key] / med[new_keys[-1]]:.1f}x"
            rows.append([f"K = {k}", what, _ms(med[old_key] / per), after, speedup])
    load_after = os.getloadavg()
    print(f"core/eigen.py: {rev} against this checkout, M = 128, half-lives 60 / 120 (H = 1,200), "
          f"{rounds} alternated rounds, medians; outputs equal bit for bit; load average "
          f"{load_before[0]:.1f} / {load_before[1]:.1f} before, {load_after[0]:.1f} / "
          f"{load_after[1]:.1f} after (1 / 5 min), {os.cpu_count()} cores\n")  # fmt: skip
    print("| K | measure | before | after (simulation built / kept) | speed-up (kept) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _ms(sec: float) -> str:
    return f"{sec * 1e3:.1f} ms" if sec < 1.0 else f"{sec:.2f} s"


# ---- the bias study of docs/eigen-adjustment.md ----------------------------------------------


def _stored(db: str) -> tuple[list[Any], tuple[str, ...], np.ndarray, np.ndarray, Any]:
    """A materialised DuckDB file: return dates, factor names, factor returns (T, K), the stored
    annualised covariance forecasts (T, K, K) of the same dates, and the min-variance rows."""
    from factorcov_pipeline.core.panel import long_to_matrix, pairs_to_cube
    from factorcov_pipeline.storage import Store

    store = Store(db)
    fr = store.read("SELECT * FROM factor_returns ORDER BY date")
    names = tuple(dict.fromkeys(fr["factor"].to_list()))
    days = sorted(set(fr["date"].to_list()))
    f = long_to_matrix(fr, days, names, "factor_return")
    cov = pairs_to_cube(store.read("SELECT * FROM factor_covariance"), days, names, "covariance")
    mv = store.read(
        "SELECT date, realised_return, predicted_risk FROM risk_backtest "
        "WHERE portfolio_kind = 'min_variance' ORDER BY date"
    )
    return days, names, f, cov, mv


def bias_study(default_db: str, *adjusted_dbs: str) -> None:
    """Out-of-sample bias statistics of the default model's forecasts and of eigen-adjusted
    ones (files materialised over the same sessions with `eigen_adjustment_scale` set), from
    the first adjusted date (2K observations) on: the eigenportfolios of F0 (the eigenvectors of
    the default forecast of t-1, realised return at t, predicted risk under each forecast),
    the factor and random portfolios of `forecast_bias`, and the minimum-variance portfolio of
    `risk_backtest` (each file's own). Full-sample statistics (core/backtest.bias_report)."""
    from factorcov_pipeline.core.backtest import bias_report, factor_bias_report
    from factorcov_pipeline.core.settings import parse_settings
    from factorcov_pipeline.storage import Store

    days, names, f, cov0, mv0 = _stored(default_db)
    k = len(names)
    first = 2 * k - 1  # position of the first adjusted forecast (n_obs = 2K)
    _, u = np.linalg.eigh(cov0[first:-1])
    realised = np.einsum("tjk,tj->tk", u, f[first + 1 :])
    labels = ["default"]
    files = [(default_db, cov0, mv0)]
    for db in adjusted_dbs:
        d, n, _, c, m = _stored(db)
        assert d == days and n == names, f"{db} holds other sessions or factors"
        cs = parse_settings(json.loads(Store(db).stored_settings() or "{}"))
        labels.append(f"a = {cs.factor_cov_settings.eigen_adjustment_scale:g}")
        files.append((db, c, m))
    eig_rows, mv_rows, port_rows = [], [], []
    eig_bias, factor_bias = [], []
    for label, (_, cov, mv) in zip(labels, files, strict=True):
        predicted = np.sqrt(np.einsum("tjk,tjl,tlk->tk", u, cov[first:-1] / 252.0, u))
        rep = bias_report(realised / predicted, [str(i) for i in range(k)], ["eigen"] * k)
        b = rep["full_sample_bias"].to_numpy()
        band = float(rep["band_high"][0]) - 1.0
        eig_bias.append(b)
        eig_rows.append(
            [
                label,
                f"{np.abs(b - 1).mean():.3f}",
                f"{int((np.abs(b - 1) <= band).sum())} of {k}",
                f"{b[0]:.3f}",
                f"{b[:5].mean():.3f}",
                f"{b[-1]:.3f}",
            ]
        )
        fb = factor_bias_report(names, f[first + 1 :], cov[first:-1] / 252.0)
        factor_bias.append(fb["full_sample_bias"].to_numpy()[:k])
        for kind in ("factor", "random"):
            part = fb.filter(fb["portfolio_kind"] == kind)["full_sample_bias"].to_numpy()
            half = float(fb["band_high"][0]) - 1.0
            port_rows.append(
                [
                    label,
                    kind,
                    f"{part.mean():.3f}",
                    f"{np.abs(part - 1).mean():.3f}",
                    f"{int((np.abs(part - 1) <= half).sum())} of {len(part)}",
                ]
            )
        mv = mv.filter(mv["date"] > days[first])
        z = mv["realised_return"].to_numpy() / (mv["predicted_risk"].to_numpy() / np.sqrt(252.0))
        mrep = bias_report(z[:, None], ["min_variance"], ["min_variance"])
        mv_rows.append(
            [
                label,
                f"{mrep['full_sample_bias'][0]:.3f}",
                f"[{mrep['band_low'][0]:.3f}, {mrep['band_high'][0]:.3f}]",
                f"{np.sqrt(252.0) * np.std(mv['realised_return'].to_numpy(), ddof=1):.2%}",
            ]
        )
    n = realised.shape[0]
    print(f"sessions {days[0]} .. {days[-1]}, K = {k}; statistics over the {n} outcomes from "
          f"{days[first + 1]} on (forecasts from n = 2K = {2 * k} observations); band "
          f"1 +/- sqrt(2/{n}) = +/- {np.sqrt(2.0 / n):.3f}\n")  # fmt: skip
    print("| forecast | eigenportfolios: mean abs(b - 1) | inside the band | smallest "
          "eigenvalue | 5 smallest (mean) | largest |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in eig_rows:
        print("| " + " | ".join(r) + " |")
    print("\nEigenportfolio bias statistics, eigenvalue ascending:\n")
    print("| eigenportfolio | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for i in range(k):
        print(f"| {i + 1} | " + " | ".join(f"{b[i]:.3f}" for b in eig_bias) + " |")
    print("\n| forecast | portfolios | mean bias | mean abs(b - 1) | inside the band |")
    print("|---|---|---|---|---|")
    for r in port_rows:
        print("| " + " | ".join(r) + " |")
    print("\nFactor portfolios (unit exposure to one factor):\n")
    print("| factor | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for i, name in enumerate(names):
        print(f"| {name} | " + " | ".join(f"{b[i]:.3f}" for b in factor_bias) + " |")
    print("\n| forecast | minimum-variance portfolio: bias | band | realised volatility |")
    print("|---|---|---|---|")
    for r in mv_rows:
        print("| " + " | ".join(r) + " |")

    oracle_check(names, cov0[-1] / 252.0)


def oracle_check(names: tuple[str, ...], truth: np.ndarray, n: int = 173, sims: int = 300) -> None:
    """Why fixed portfolios can read over-forecast after the adjustment: the ideal eigenvalue
    correction (the "oracle" F = U diag(U' Sigma U) U' of a sample covariance with eigenvectors
    U, which the simulated bias approximates at a = 1) drops the cross terms of Sigma in the
    sample eigenbasis, so the variance it gives a single factor, F_ii, is not Sigma_ii on
    average, while the sample's S_ii is. Printed: E[F_ii] / Sigma_ii and E[S_ii] / Sigma_ii,
    with `truth` (Sigma) the default forecast of the last session and n equally weighted
    observations (173: the effective number of observations of the half-life 60)."""
    d, u = np.linalg.eigh(truth)
    rng = np.random.default_rng(0)
    oracle, sample = np.zeros(len(names)), np.zeros(len(names))
    for _ in range(sims):  # one sample covariance per simulation
        x = (rng.standard_normal((n, len(names))) * np.sqrt(np.maximum(d, 0.0))) @ u.T
        s = x.T @ x / n
        _, us = np.linalg.eigh(s)
        true_var = np.einsum("jk,jl,lk->k", us, truth, us)
        oracle += np.diag((us * true_var) @ us.T) / np.diag(truth) / sims
        sample += np.diag(s) / np.diag(truth) / sims
    print(f"\nThe oracle eigenvalue correction, {sims} samples of {n} observations of the last "
          "session's default forecast:\n")  # fmt: skip
    print("| factor | E[oracle F_ii] / Sigma_ii | E[S_ii] / Sigma_ii |")
    print("|---|---|---|")
    for name, o, sa in zip(names, oracle, sample, strict=True):
        print(f"| {name} | {o:.3f} | {sa:.3f} |")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--bias"]:
        bias_study(*sys.argv[2:])
        sys.exit(0)
    if sys.argv[1:2] == ["--against"]:
        compare_versions(sys.argv[2], *(int(a) for a in sys.argv[3:5]))
        sys.exit(0)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run

    bench_eigen("--quick" in sys.argv, 3, run.timed, run.print_table, run.fmt_s)
