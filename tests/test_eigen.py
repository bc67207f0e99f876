"""The eigenfactor risk adjustment (core/eigen.py; Menchero, Wang and Orr 2011).

* Against a plain loop written here from the paper's steps (one simulation at a time, the
  simulated returns built in factor space, the EWMA estimates by pandas' recursion over time,
  the model's vol_i vol_j corr_ij, one eigendecomposition per simulation), with the documented
  random stream: v(k) and the adjusted matrix to 1e-12.
* Its properties: eigenvectors unchanged, the small eigenvalues raised, PSD and symmetric,
  a = 0 gives F0 back, scale equivariance (so adjusting after the regime multiplier is USE4's
  order), determinism (same bits twice, one date at a time = one block = any chunks), dates
  with fewer than 2K observations and non-finite matrices unchanged, a rank-deficient F0,
  a scale that makes some gamma non-positive refused naming the date, parameter bounds.
* The settings: off by default, not printed (the tutorial's nine keys and the 0.8.0 identity
  stay exact), printed with the adjustment on, bounds refused naming the field.
* On the planted synthetic model (the tutorial's year, 300 assets): the out-of-sample bias
  statistics of the eigenportfolios of F0 move toward 1 (docs/eigen-adjustment.md).
"""

from __future__ import annotations

import datetime as dt
import json
import threading

import numpy as np
import pytest

from factorcov_pipeline.core import calendar
from factorcov_pipeline.core import eigen as eigen_module
from factorcov_pipeline.core.backtest import bias_report
from factorcov_pipeline.core.correlation import CorrelationForecaster
from factorcov_pipeline.core.covariance import covariance_from
from factorcov_pipeline.core.eigen import (
    AGE_BLOCK,
    DEFAULT_SIMULATIONS,
    SIM_BATCH,
    EigenAdjustment,
    clear_simulation_cache,
)
from factorcov_pipeline.core.factors import factor_set_for
from factorcov_pipeline.core.panel import long_to_matrix
from factorcov_pipeline.core.settings import (
    FactorCovarianceReportSettingsV2,
    FactorCovarianceSettings,
    FactorRiskModelSettings,
    SettingsError,
    UniverseSettings,
    parse_settings,
)
from factorcov_pipeline.core.synthetic import generate_universe_range
from factorcov_pipeline.core.volatility import VolatilityForecaster

# The tutorial's nine keys as 0.8.0 printed and fingerprinted them.
TUTORIAL_COV = {
    "combine_standardized": False,
    "halflife_cor": 120.0,
    "halflife_vol": 60.0,
    "halflife_vra": None,
    "nw_lags_cor": 0,
    "nw_lags_vol": 0,
    "nw_lags_vol_halflife_override": None,
    "shrink_cor_length": None,
    "shrink_cor_method": None,
}


def random_cov(k: int, seed: int, spread: float = 2.0) -> np.ndarray:
    """A well-conditioned random covariance: random eigenvectors, log-uniform eigenvalues."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    d = 10.0 ** rng.uniform(-spread, 0.0, k)
    c = (q * d) @ q.T
    return (c + c.T) / 2.0


def loop_reference(
    f0: np.ndarray, n_obs: int, m_sims: int, seed: int, hl_vol: float, hl_cor: float, a: float
) -> tuple[np.ndarray, np.ndarray]:
    """v(k) and the adjusted F of one date, one simulation and one session at a time.

    Written from the paper's steps, not from core/eigen.py's algebra: each simulated history is
    a list of factor returns r = U0 sqrt(D0) z in time order (oldest first), estimated by
    pandas' EWMA recursion S = d S + x, W = d W + 1 (adjust=True) with each half-life, and the
    model's covariance sqrt(var_i var_j) corr_ij. Only the random stream's layout (documented
    in core/eigen.py) and pandas' decay are shared.
    """
    k = f0.shape[0]
    d0, u0 = np.linalg.eigh(f0)
    horizon = int(min(2520, np.ceil(10 * max(hl_vol, hl_cor))))
    n = min(n_obs, horizon)

    def decay(h: float) -> float:
        com = 1.0 / (1.0 - np.exp(np.log(0.5) / h)) - 1.0
        return 1.0 - 1.0 / (1.0 + com)

    dv, dc = decay(hl_vol), decay(hl_cor)
    streams: dict[tuple[int, int], np.ndarray] = {}
    ratios = np.zeros((m_sims, k))
    for m in range(m_sims):
        batch, row = divmod(m, SIM_BATCH)
        z_by_age = []
        for age in range(n):
            block, col = divmod(age, AGE_BLOCK)
            if (batch, block) not in streams:
                rng = np.random.default_rng([seed, batch, block])
                streams[batch, block] = rng.standard_normal((SIM_BATCH, AGE_BLOCK, k))
            z_by_age.append(streams[batch, block][row, col])
        returns = [u0 @ (np.sqrt(d0) * z) for z in reversed(z_by_age)]  # oldest first
        s_v = np.zeros(k)
        w_v = 0.0
        s_c = np.zeros((k, k))
        w_c = 0.0
        for r in returns:
            s_v = dv * s_v + r * r
            w_v = dv * w_v + 1.0
            s_c = dc * s_c + np.outer(r, r)
            w_c = dc * w_c + 1.0
        var = s_v / w_v
        c = s_c / w_c
        corr = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
        f_m = np.sqrt(np.outer(var, var)) * corr
        d_m, u_m = np.linalg.eigh(f_m)
        for j in range(k):
            ratios[m, j] = (u_m[:, j] @ f0 @ u_m[:, j]) / d_m[j]
    v = np.sqrt(ratios.mean(axis=0))
    gamma = a * (v - 1.0) + 1.0
    f = u0 @ np.diag(gamma**2 * d0) @ u0.T
    return v, f


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# ---- against the plain loop ------------------------------------------------------------------


def test_vectorised_equals_a_plain_loop_to_1e_12():
    """Dates with partial age blocks, exactly one block (64), one more (65), the capped
    horizon (H = 70 at half-lives 4 and 7) and beyond it; 150 simulations span a full and a
    partial batch."""
    k, m_sims, seed, a = 5, 150, 11, 1.3
    eig = EigenAdjustment(a, m_sims, seed, 4.0, 7.0)
    assert eig.horizon == 70
    n_obs = np.array([10, 37, 64, 65, 70, 95])
    cov = np.stack([random_cov(k, 100 + i) for i in range(len(n_obs))])
    v = eig.simulated_bias(cov, n_obs)
    adjusted = eig.adjust(cov, n_obs)
    for i, n in enumerate(n_obs):
        v_ref, f_ref = loop_reference(cov[i], int(n), m_sims, seed, 4.0, 7.0, a)
        assert rel_err(v[i], v_ref) < 1e-12, (n, v[i], v_ref)
        assert rel_err(adjusted[i], f_ref) < 1e-12, n
    # the capped horizon: 95 observations simulate the same 70 sessions as 70
    np.testing.assert_array_equal(
        eig.simulated_bias(cov[4:5], [95]), eig.simulated_bias(cov[4:5], [70])
    )


def test_two_equal_half_lives_are_one_ewma():
    """With halflife_vol = halflife_cor the model's estimate is the plain EWMA covariance: the
    same loop with one weighting."""
    k, m_sims = 4, 40
    eig = EigenAdjustment(1.2, m_sims, 3, 9.0, 9.0)
    cov = random_cov(k, 7)[None]
    v_ref, f_ref = loop_reference(cov[0], 30, m_sims, 3, 9.0, 9.0, 1.2)
    assert rel_err(eig.simulated_bias(cov, [30])[0], v_ref) < 1e-12
    assert rel_err(eig.adjust(cov, [30])[0], f_ref) < 1e-12


# ---- properties on the planted model's forecasts ---------------------------------------------


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    """The planted factor returns of the tutorial's year (300 assets) and the default model's
    annualised covariance forecasts of them, (T, K) and (T, K, K)."""
    settings = FactorRiskModelSettings(universe=UniverseSettings(n_assets=300))
    factors = factor_set_for(settings)
    sessions = calendar.sessions(dt.date(2025, 3, 31), dt.date(2026, 3, 31))
    day = generate_universe_range(sessions, sessions, settings.universe, factors)
    pf = day.planted_factor_returns
    days = sorted(set(pf["date"].to_list()))
    f = long_to_matrix(pf, days, factors.names, "factor_return")
    cs = FactorCovarianceSettings()
    vol, _ = VolatilityForecaster(cs).run(None, f)
    cor, _ = CorrelationForecaster(cs).run(None, f, None)
    return f, covariance_from(vol.vol, cor.corr)


@pytest.fixture(scope="module")
def adjusted(planted) -> tuple[EigenAdjustment, np.ndarray, np.ndarray, np.ndarray]:
    """Every 10th date of the year adjusted (a = 1.2, 64 simulations): (eig, n_obs, F0, F)."""
    _, cov = planted
    pick = np.arange(41, cov.shape[0], 10)
    eig = EigenAdjustment(1.2, 64, 5, 60.0, 120.0)
    return eig, pick + 1, cov[pick], eig.adjust(cov[pick], pick + 1)


def test_eigenvectors_unchanged_small_eigenvalues_raised_psd(adjusted):
    eig, n_obs, f0, f = adjusted
    d0, u0 = np.linalg.eigh(f0)
    rotated = u0.transpose(0, 2, 1) @ f @ u0  # diagonal: F has F0's eigenvectors
    diag = np.diagonal(rotated, axis1=1, axis2=2)
    off = rotated - diag[:, :, None] * np.eye(f0.shape[1])
    assert np.abs(off).max() <= 1e-12 * np.abs(diag).max()
    ratio = diag / d0  # gamma^2, eigenvalues ascending
    v = eig.simulated_bias(f0, n_obs)
    np.testing.assert_allclose(ratio, eig.gamma(v) ** 2, rtol=1e-10)
    assert (ratio[:, 0] > 1.1).all()  # the smallest raised most ...
    assert (ratio[:, :3].min(axis=1) > ratio[:, -3:].max(axis=1)).all()  # ... more than the top
    assert (ratio[:, -1] < 1.0).all()  # the largest is over-estimated: slightly lowered
    assert np.array_equal(f, f.transpose(0, 2, 1))  # symmetric bit for bit
    assert (np.linalg.eigvalsh(f)[:, 0] > d0[:, 0]).all()  # PSD, smallest eigenvalue raised
    # the bias of the smallest eigenvalue is largest with the fewest observations (n = 42)
    assert v[0, 0] > v[-1, 0] + 0.5 and v[0, 0] == v[:, 0].max()


def test_zero_scale_gives_f0_back(planted):
    _, cov = planted
    eig = EigenAdjustment(0.0, 32, 0, 60.0, 120.0)
    n_obs = np.arange(1, cov.shape[0] + 1)[100:110]
    v = eig.simulated_bias(cov[100:110], n_obs)
    assert (eig.gamma(v) == 1.0).all()
    assert rel_err(eig.adjust(cov[100:110], n_obs), cov[100:110]) < 1e-12


@pytest.mark.parametrize("c", [1.0 / 252.0, 3.7, 1.44])
def test_scale_equivariance(adjusted, c):
    """E(c F0) = c E(F0) (core/eigen.py's proof): the regime multiplier lambda^2 commutes with
    the adjustment, so adjusting after it is USE4's order."""
    eig, n_obs, f0, f = adjusted
    np.testing.assert_allclose(
        eig.simulated_bias(c * f0, n_obs), eig.simulated_bias(f0, n_obs), rtol=1e-12
    )
    assert rel_err(eig.adjust(c * f0, n_obs), c * f) < 1e-12


def test_deterministic_and_resumable(planted):
    """The same bits twice; one date per call (a daily run) = one block = chunks of any size
    = dates in reverse order."""
    _, cov = planted
    eig = EigenAdjustment(1.2, 40, 9, 60.0, 120.0)
    days = np.arange(38, 70)  # from before the first adjusted date (n = 42) on
    n_obs = days + 1
    block = eig.adjust(cov[days], n_obs)
    assert np.array_equal(block, eig.adjust(cov[days], n_obs))
    daily = np.stack([eig.adjust(cov[d : d + 1], [d + 1])[0] for d in days])
    assert np.array_equal(daily, block)
    chunks = np.concatenate(
        [eig.adjust(cov[days][s], n_obs[s]) for s in (slice(0, 7), slice(7, 8), slice(8, None))]
    )
    assert np.array_equal(chunks, block)
    assert np.array_equal(eig.adjust(cov[days][::-1], n_obs[::-1])[::-1], block)
    # a fresh object with the same parameters (another process) gives the same bits
    again = EigenAdjustment(1.2, 40, 9, 60.0, 120.0).adjust(cov[days], n_obs)
    assert np.array_equal(again, block)
    # another seed is another stream
    assert not np.array_equal(EigenAdjustment(1.2, 40, 10, 60.0, 120.0).adjust(cov[50:51], [51]),
                              block[12:13])  # fmt: skip


def test_dates_before_2k_observations_and_non_finite_matrices_unchanged(planted):
    _, cov = planted
    k = cov.shape[1]
    eig = EigenAdjustment(1.2, 16, 0, 60.0, 120.0)
    days = np.arange(0, 45)
    n_obs = days + 1
    bad = cov[days].copy()
    bad[43, 2, 3] = np.nan
    out = eig.adjust(bad, n_obs)
    kept = (n_obs < 2 * k) | (days == 43)
    assert np.array_equal(out[kept], bad[kept], equal_nan=True)
    assert not np.isclose(out[~kept], bad[~kept], rtol=1e-6).all()
    v = eig.simulated_bias(bad, n_obs)
    assert np.isnan(v[kept]).all() and np.isfinite(v[~kept]).all()
    assert eig.applies([2 * k - 1, 2 * k], k).tolist() == [False, True]


def test_rank_deficient_forecast():
    """A factor without any variance (a zero row and column): its eigenvalue is zero, keeps
    gamma = 1 and stays 0; the others are adjusted; no NaN."""
    k = 5
    f0 = np.zeros((k, k))
    f0[1:, 1:] = random_cov(k - 1, 3)
    eig = EigenAdjustment(1.2, 32, 0, 20.0, 30.0)
    v = eig.simulated_bias(f0[None], [40])[0]
    assert v[0] == 1.0 and np.isfinite(v).all()
    f = eig.adjust(f0[None], [40])[0]
    assert np.isfinite(f).all()
    assert np.abs(f[0]).max() <= 1e-14 * np.abs(f).max()
    assert np.linalg.eigvalsh(f)[0] >= -1e-14 * np.abs(f).max()
    assert np.linalg.eigvalsh(f)[1] > np.linalg.eigvalsh(f0)[1]


def test_a_scale_that_makes_gamma_non_positive_is_refused_naming_the_date():
    """Identity covariance, n = 2K: the top sample eigenvalue is about (1 + sqrt(1/2))^2 = 2.9
    times the truth, v ~ 0.6, and a = 3 gives gamma = 1 + 3 (v - 1) < 0."""
    k = 20
    eig = EigenAdjustment(3.0, 16, 0, 1e6, 1e6)
    day = dt.date(2026, 1, 5)
    with pytest.raises(ValueError, match=r"eigen_adjustment_scale=3 .*2026-01-05.*smaller"):
        eig.adjust(np.eye(k)[None], [2 * k], labels=[day])
    assert np.isfinite(EigenAdjustment(1.0, 16, 0, 1e6, 1e6).adjust(np.eye(k)[None], [2 * k])).all()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"scale": -0.1}, "eigen_adjustment_scale"),
        ({"scale": 3.5}, "eigen_adjustment_scale"),
        ({"scale": float("nan")}, "eigen_adjustment_scale"),
        ({"n_simulations": 9}, "eigen_adjustment_simulations"),
        ({"n_simulations": 100_001}, "eigen_adjustment_simulations"),
        ({"seed": -1}, "eigen_adjustment_seed"),
        ({"seed": 2**63}, "eigen_adjustment_seed"),
        ({"halflife_vol": 0.0}, "halflife_vol"),
        ({"halflife_cor": float("inf")}, "halflife_cor"),
    ],
)
def test_parameters_are_validated_once(kwargs, name):
    base = {
        "scale": 1.2,
        "n_simulations": 64,
        "seed": 0,
        "halflife_vol": 60.0,
        "halflife_cor": 120.0,
    }
    with pytest.raises(ValueError, match=name):
        EigenAdjustment(**(base | kwargs))


def test_shapes_are_checked():
    eig = EigenAdjustment(1.2, 16, 0, 60.0, 120.0)
    with pytest.raises(ValueError, match=r"\(T, K, K\)"):
        eig.adjust(np.eye(3), [10])
    with pytest.raises(ValueError, match="n_obs"):
        eig.adjust(np.eye(3)[None], [10, 11])


# ---- the simulated sums kept in the process --------------------------------------------------


def test_a_partial_batch_draws_the_first_rows_of_the_stream():
    """core/eigen.py draws only the `size` simulations of a partial batch: numpy fills an array
    in order, so they are the first rows of the documented (SIM_BATCH, AGE_BLOCK, K) draw."""
    for size in (1, 22, SIM_BATCH):
        fewer = np.random.default_rng([3, 1, 2]).standard_normal((size, AGE_BLOCK, 7))
        every = np.random.default_rng([3, 1, 2]).standard_normal((SIM_BATCH, AGE_BLOCK, 7))
        assert np.array_equal(fewer, every[:size])


@pytest.fixture
def draws(monkeypatch) -> list[object]:
    """The seeds of every `np.random.default_rng` made while the test runs."""
    made: list[object] = []
    real = np.random.default_rng

    def counting(seed=None):
        made.append(seed)
        return real(seed)

    monkeypatch.setattr(np.random, "default_rng", counting)
    return made


def test_a_full_history_draws_once_per_process_with_the_same_bits(planted, draws):
    """A daily run's date with a full history (n_t >= H) draws the simulation once per process:
    the next call (the run's tie-out check, the next session) draws nothing, and both give the
    bits of one block over the history and of a cold start. Half-lives 4 / 7: H = 70, two age
    blocks; M = 150: two batches (128 and 22)."""
    _, cov = planted
    eig = EigenAdjustment(1.2, 150, 4, 4.0, 7.0)
    days = np.arange(40, 100)
    clear_simulation_cache()
    block = eig.adjust(cov[days], days + 1)
    clear_simulation_cache()
    draws.clear()
    first = eig.adjust(cov[80:81], [81])
    assert len(draws) == 2 * 2  # two age blocks of two batches
    second = eig.adjust(cov[85:86], [86])
    again = eig.adjust(cov[80:81], [81])
    assert len(draws) == 4  # nothing drawn again
    assert np.array_equal(first[0], block[40]) and np.array_equal(again, first)
    assert np.array_equal(second[0], block[45])
    # a date of the ramp (n_t < H) after them rebuilds its sums from age 0: the same bits
    assert np.array_equal(eig.adjust(cov[50:51], [51])[0], block[10])


def test_any_order_of_calls_and_a_full_cache_give_the_same_bits(planted, monkeypatch):
    """Several models (seeds, half-lives, simulation counts, sizes K) interleaved in one process,
    dates forward, backward and repeated, with a cache that holds about one model's sums (so
    they are evicted and rebuilt): every date gets the bits of a cold start, and the kept
    bytes stay within the bound."""
    _, cov = planted
    models = [
        EigenAdjustment(1.2, 40, 9, 4.0, 7.0),
        EigenAdjustment(1.5, 40, 10, 4.0, 7.0),
        EigenAdjustment(1.2, 150, 9, 5.0, 3.0),
        EigenAdjustment(1.2, 64, 9, 60.0, 120.0),
    ]
    sub = cov[:, :8, :8]  # another K shares nothing with K = 21
    calls = [(m, c, d) for m in models for c in (cov, sub) for d in (45, 90, 46, 80, 150, 45)]
    cold = []
    for model, c, d in calls:
        clear_simulation_cache()
        cold.append(model.adjust(c[d : d + 1], [d + 1]))
    one_model = 4 * 40 * 21 * 21 * 8
    monkeypatch.setattr(eigen_module, "CACHE_BYTES", one_model + 1)
    clear_simulation_cache()
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(calls)):
        model, c, d = calls[i]
        assert np.array_equal(model.adjust(c[d : d + 1], [d + 1]), cold[i]), calls[i]
        assert sum(s.nbytes for s in eigen_module._CACHE.values()) <= one_model + 1
    assert eigen_module._CACHE  # something was kept


def test_what_is_kept_per_simulation_is_bounded(planted, monkeypatch):
    """After a call over many dates the process keeps, per batch, the two running sums and the
    means of n = H (not every date's means, not the draws); a model whose batches would not
    all fit in CACHE_BYTES keeps nothing (it would only evict the others)."""
    _, cov = planted
    eig = EigenAdjustment(1.2, 40, 9, 4.0, 7.0)  # H = 70
    clear_simulation_cache()
    real = eigen_module._Sums.mean
    held: list[int] = []

    def mean(self, n):
        out = real(self, n)
        held.append(len(self.means))
        return out

    monkeypatch.setattr(eigen_module._Sums, "mean", mean)
    eig.adjust(cov[40:200], np.arange(41, 201))
    assert max(held) <= 2  # during the call too: the last n's means and those of n = H
    (kept,) = eigen_module._CACHE.values()
    assert kept.nbytes == 4 * 40 * 21 * 21 * 8 and set(kept.means) == {70}
    monkeypatch.setattr(eigen_module, "CACHE_BYTES", 4 * 150 * 21 * 21 * 8 - 1)
    EigenAdjustment(1.2, 150, 9, 4.0, 7.0).adjust(cov[100:101], [101])  # 128 would fit, not 150
    assert list(eigen_module._CACHE.values()) == [kept]


class _FailingProduct(np.ndarray):
    """An array whose matrix product fails (a MemoryError in the middle of a sum)."""

    def __matmul__(self, other):
        raise MemoryError("simulated")


def test_an_error_during_a_call_keeps_no_half_built_sums(planted, monkeypatch):
    """A call that fails midway (here between the two weightings' sums of the first full age block,
    one already added) puts nothing back in the cache: the next call builds its sums afresh
    and gets the right bits."""
    _, cov = planted
    eig = EigenAdjustment(1.2, 40, 9, 4.0, 7.0)
    days = np.arange(42, 160, 7)
    clear_simulation_cache()
    expected = eig.adjust(cov[days], days + 1)
    clear_simulation_cache()
    real = eigen_module._Sums.weighted_draws

    def failing(self, g):
        z, zw_v, zw_c = real(self, g)
        return (z, zw_v, zw_c.view(_FailingProduct)) if g == 0 else (z, zw_v, zw_c)

    monkeypatch.setattr(eigen_module._Sums, "weighted_draws", failing)
    with pytest.raises(MemoryError):
        eig.adjust(cov[days], days + 1)
    monkeypatch.setattr(eigen_module._Sums, "weighted_draws", real)
    assert not eigen_module._CACHE
    assert np.array_equal(eig.adjust(cov[days], days + 1), expected)


def test_concurrent_calls_give_the_bits_of_one_thread(planted):
    """Two threads adjusting dates of the same model at once (each takes the kept sums out of
    the cache while it uses them): the bits of one thread."""
    _, cov = planted
    eig = EigenAdjustment(1.2, 40, 9, 4.0, 7.0)
    parts = [np.arange(42, 120, 3), np.arange(121, 200, 3)]
    clear_simulation_cache()
    expected = [eig.adjust(cov[d], d + 1) for d in parts]
    clear_simulation_cache()
    got: dict[int, np.ndarray] = {}

    def run(j: int) -> None:
        for _ in range(3):
            got[j] = eig.adjust(cov[parts[j]], parts[j] + 1)

    threads = [threading.Thread(target=run, args=(j,)) for j in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for j in (0, 1):
        assert np.array_equal(got[j], expected[j])


# ---- settings --------------------------------------------------------------------------------


def test_off_by_default_and_the_identity_of_0_8_0_is_kept():
    """Defaults: no eigen key printed or fingerprinted (the tutorial's nine keys, the 0.8.0
    fingerprint); a simulation count or seed without a scale changes no number and no
    identity; with a scale all three are printed and part of the identity."""
    default = FactorCovarianceReportSettingsV2()
    assert default.factor_cov_settings.eigen_adjustment_scale is None
    assert EigenAdjustment.from_settings(default.factor_cov_settings) is None
    assert json.loads(default.fingerprint())["factor_cov_settings"] == TUTORIAL_COV
    idle = parse_settings(
        {"factor_cov_settings": {"eigen_adjustment_simulations": 999, "eigen_adjustment_seed": 4}}
    )
    assert idle.fingerprint() == default.fingerprint()
    assert idle.factor_cov_settings.non_default() == {}
    on = parse_settings({"factor_cov_settings": {"eigen_adjustment_scale": 1.2}})
    printed = on.factor_cov_settings.model_dump()
    assert printed["eigen_adjustment_scale"] == 1.2
    assert printed["eigen_adjustment_simulations"] == DEFAULT_SIMULATIONS
    assert printed["eigen_adjustment_seed"] == 0
    assert on.fingerprint() != default.fingerprint()
    other_seed = parse_settings(
        {"factor_cov_settings": {"eigen_adjustment_scale": 1.2, "eigen_adjustment_seed": 1}}
    )
    assert other_seed.fingerprint() != on.fingerprint()
    eig = EigenAdjustment.from_settings(on.factor_cov_settings)
    assert eig == EigenAdjustment(1.2, DEFAULT_SIMULATIONS, 0, 60.0, 120.0)
    # the printed settings read back to the same settings
    again = FactorCovarianceSettings.model_validate(printed)
    assert again == on.factor_cov_settings


@pytest.mark.parametrize(
    ("cov", "field"),
    [
        ({"eigen_adjustment_scale": -1}, "factor_cov_settings.eigen_adjustment_scale"),
        ({"eigen_adjustment_scale": 4.0}, "factor_cov_settings.eigen_adjustment_scale"),
        ({"eigen_adjustment_scale": "1.2"}, "factor_cov_settings.eigen_adjustment_scale"),
        ({"eigen_adjustment_simulations": 5}, "factor_cov_settings.eigen_adjustment_simulations"),
        (
            {"eigen_adjustment_simulations": 64.0},
            "factor_cov_settings.eigen_adjustment_simulations",
        ),
        ({"eigen_adjustment_seed": -3}, "factor_cov_settings.eigen_adjustment_seed"),
        ({"eigen_adjustment_seed": True}, "factor_cov_settings.eigen_adjustment_seed"),
    ],
)
def test_invalid_eigen_settings_are_refused_naming_the_field(cov, field):
    with pytest.raises(SettingsError, match=field.replace(".", r"\.")):
        parse_settings({"factor_cov_settings": cov}, source="s.yaml")


# ---- the planted model: eigenportfolio bias statistics ---------------------------------------


def eigenportfolio_bias(
    f: np.ndarray, cov0: np.ndarray, cov: np.ndarray, first: int
) -> tuple[np.ndarray, float]:
    """Full-sample bias statistics (core/backtest.py) of the eigenportfolios of F0: on date t
    the portfolios are the eigenvectors of F0(t-1), their realised return u_k' f_t and their
    predicted daily risk sqrt(u_k' Sigma(t-1) u_k) under `cov` (F0 itself or the adjusted F),
    over the dates t - 1 >= first. Returns the statistics (eigenvalue ascending) and the half
    width of the band."""
    _, u = np.linalg.eigh(cov0[first:-1])
    realised = np.einsum("tjk,tj->tk", u, f[first + 1 :])
    predicted = np.sqrt(np.einsum("tjk,tjl,tlk->tk", u, cov[first:-1] / 252.0, u))
    k = f.shape[1]
    report = bias_report(realised / predicted, [f"eigen_{i}" for i in range(k)], ["eigen"] * k)
    n = report["n_obs"][0]
    return report["full_sample_bias"].to_numpy(), float(np.sqrt(2.0 / n))


def test_eigenportfolio_bias_moves_toward_1_on_the_planted_model(planted):
    """The tutorial's year of the planted model, default settings, a = 1.2, from the first
    adjusted date (2K = 42 observations) on: the smallest eigenportfolios' risk is under-
    forecast by F0 (bias far above 1) and much less by the adjusted F; the mean |b - 1| over
    the 21 eigenportfolios falls by more than half, more of them lie inside the band."""
    f, cov = planted
    k = f.shape[1]
    n_obs = np.arange(1, cov.shape[0] + 1)
    eig = EigenAdjustment(1.2, 64, 0, 60.0, 120.0)
    adj = eig.adjust(cov, n_obs)
    first = 2 * k - 1  # the first adjusted date
    before, band = eigenportfolio_bias(f, cov, cov, first)
    after, _ = eigenportfolio_bias(f, cov, adj, first)
    msg = f"before {np.round(before, 3)}, after {np.round(after, 3)}, band 1 +/- {band:.3f}"
    assert before[0] > 1.5 and abs(after[0] - 1.0) < 0.5 * abs(before[0] - 1.0), msg
    assert np.abs(after - 1).mean() < 0.5 * np.abs(before - 1).mean(), msg
    assert (np.abs(after - 1) <= band).sum() > (np.abs(before - 1) <= band).sum() + 5, msg
