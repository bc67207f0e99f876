"""The resumable EWMA against pandas' ewm(halflife=h).mean() and direct weight sums."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from factorcov_pipeline.core.ewma import (
    EwmaState,
    arrays_from_bytes,
    arrays_to_bytes,
    ewma_decay,
    ewma_mean,
    ewma_run,
)


def _with_nans(rng: np.random.Generator, shape: tuple[int, ...], frac: float) -> np.ndarray:
    x = rng.standard_normal(shape) ** 2 + 0.1 * rng.standard_normal(shape)
    x[rng.random(shape) < frac] = np.nan
    return x


@pytest.mark.parametrize("halflife", [0.7, 1.0, 5.5, 60.0, 120.0, 1e6])
def test_matches_pandas_with_nans(halflife: float) -> None:
    rng = np.random.default_rng(7)
    x = _with_nans(rng, (300, 6), 0.25)
    x[:40, 0] = np.nan  # leading missing block
    x[100:160, 1] = np.nan  # a long gap: the decay continues (ignore_na=False)
    x[:, 2] = np.nan  # never observed
    ours = ewma_mean(x, halflife)
    ref = pd.DataFrame(x).ewm(halflife=halflife).mean().to_numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-14, atol=1e-15)  # data ~ O(1)


def test_matrix_state_elementwise_nans_match_pandas() -> None:
    rng = np.random.default_rng(3)
    x = _with_nans(rng, (120, 4, 4), 0.2)
    ours = ewma_mean(x, 12.0)
    ref = pd.DataFrame(x.reshape(120, 16)).ewm(halflife=12.0).mean().to_numpy().reshape(120, 4, 4)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-14, atol=1e-15)  # data ~ O(1)


def test_decay_is_half_per_halflife() -> None:
    for h in (1.0, 3.0, 60.0, 120.0):
        assert ewma_decay(h) ** h == pytest.approx(0.5, rel=1e-13)
    with pytest.raises(ValueError):
        ewma_decay(0.0)


def test_weight_sums_against_direct_loop() -> None:
    rng = np.random.default_rng(11)
    x = _with_nans(rng, (80, 3), 0.3)
    h = 9.0
    block, _ = ewma_run(x, h, track_sq=True)
    a = 0.5 ** (1.0 / h)
    for t in (0, 10, 79):
        for k in range(3):
            w = np.array([a ** (t - s) for s in range(t + 1) if not np.isnan(x[s, k])])
            v = np.array([x[s, k] for s in range(t + 1) if not np.isnan(x[s, k])])
            assert block.weight_sum[t, k] == pytest.approx(w.sum(), rel=1e-13)
            assert block.weight_sq_sum[t, k] == pytest.approx((w**2).sum(), rel=1e-13)
            if w.size:
                assert block.effective_obs[t, k] == pytest.approx(
                    w.sum() ** 2 / (w**2).sum(), rel=1e-13
                )
                assert block.mean[t, k] == pytest.approx((w * v).sum() / w.sum(), rel=1e-13)


@pytest.mark.skipif(
    importlib.util.find_spec("factorcov_pipeline.core.shrinkage") is None,
    reason="core/shrinkage.py not present",
)
def test_effective_obs_agrees_with_shrinkage_closed_form() -> None:
    from factorcov_pipeline.core.shrinkage import ewma_effective_observations

    x = np.ones((400, 2))
    block, _ = ewma_run(x, 120.0, track_sq=True)
    closed = ewma_effective_observations(120.0, np.arange(1, 401))
    np.testing.assert_allclose(block.effective_obs[:, 0], closed, rtol=1e-10)


@pytest.mark.parametrize("split", [0, 1, 37, 99, 100])
def test_resume_from_bytes_is_bit_identical(split: int) -> None:
    rng = np.random.default_rng(5)
    x = _with_nans(rng, (100, 3, 3), 0.15)
    full, full_state = ewma_run(x, 17.0, track_sq=True)
    first, state = ewma_run(x[:split], 17.0, track_sq=True)
    state = EwmaState.from_bytes(state.to_bytes())
    second, end_state = ewma_run(x[split:], 17.0, state, track_sq=True)
    assert np.array_equal(np.concatenate([first.mean, second.mean]), full.mean, equal_nan=True)
    assert np.array_equal(
        np.concatenate([first.weight_sq_sum, second.weight_sq_sum]), full.weight_sq_sum
    )
    assert np.array_equal(end_state.s, full_state.s)
    assert np.array_equal(end_state.w, full_state.w)
    assert np.array_equal(end_state.q, full_state.q)


def test_state_guards_and_bytes_roundtrip() -> None:
    _, state = ewma_run(np.arange(10.0)[:, None], 4.0)
    with pytest.raises(ValueError, match="half-life"):
        ewma_run(np.ones((3, 1)), 5.0, state)
    with pytest.raises(ValueError, match="shape"):
        ewma_run(np.ones((3, 2)), 4.0, state)
    arrays = {"a": np.array([np.pi, np.nan, -0.0, 1e-300]), "b": np.eye(2)}
    back = arrays_from_bytes(arrays_to_bytes(arrays))
    assert back.keys() == arrays.keys()
    for k, v in arrays.items():
        assert back[k].tobytes() == v.tobytes()


def test_common_weight_fast_path_is_bit_identical_to_the_general_path(monkeypatch):
    """Without missing values the weights are one scalar series; the shortcut must not change a
    bit of the means, weights or the resumable state."""
    from factorcov_pipeline.core import ewma as ewma_module

    x = np.random.default_rng(3).standard_normal((40, 5, 5))
    fast, fast_state = ewma_module.ewma_run(x[:25], 9.0, None, True)
    fast2, fast_state2 = ewma_module.ewma_run(x[25:], 9.0, fast_state, True)
    monkeypatch.setattr(ewma_module, "_common_weights", lambda x, state: False)
    slow, slow_state = ewma_module.ewma_run(x[:25], 9.0, None, True)
    slow2, slow_state2 = ewma_module.ewma_run(x[25:], 9.0, slow_state, True)
    for a, b in [(fast, slow), (fast2, slow2)]:
        assert np.array_equal(a.mean, b.mean)
        assert np.array_equal(a.weight_sum, b.weight_sum)
        assert np.array_equal(a.weight_sq_sum, b.weight_sq_sum)
    assert fast_state2.to_bytes() == slow_state2.to_bytes()


# ----------------------------------------------------------------------------------------------
# Compiled kernels (core/kernels.py) against the numpy reference paths
# ----------------------------------------------------------------------------------------------


def test_jit_kernels_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    from factorcov_pipeline.core import ewma as ewma_module

    monkeypatch.setattr(ewma_module, "JIT_MODE", "0")
    assert ewma_module.jit_kernels(10**6) is None
    monkeypatch.setattr(ewma_module, "JIT_MODE", "auto")
    assert ewma_module.jit_kernels(ewma_module.JIT_MIN_DATES - 1) is None  # small: numpy
    assert ewma_module.jit_kernels(0) is None
    if importlib.util.find_spec("numba") is not None:
        assert ewma_module.jit_kernels(ewma_module.JIT_MIN_DATES) is not None
        monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
        assert ewma_module.jit_kernels(1) is not None


@pytest.mark.parametrize("shape", [(), (7,), (4, 4)])
@pytest.mark.parametrize("track_sq", [False, True])
def test_kernel_common_weights_is_bit_identical_to_numpy(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], track_sq: bool
) -> None:
    """The compiled common-weights loop performs the numpy loop's operations in the same order:
    same means, weights and state bit for bit, also when each path resumes the other's state."""
    pytest.importorskip("numba")
    from factorcov_pipeline.core import ewma as ewma_module

    x = np.random.default_rng(8).standard_normal((90, *shape)) * 1e-2
    x[5] = 0.0  # a date of exact zeros
    runs = {}
    for mode in ("0", "1"):
        monkeypatch.setattr(ewma_module, "JIT_MODE", mode)
        a, state = ewma_run(x[:33], 60.0, track_sq=track_sq)
        b, end = ewma_run(x[33:], 60.0, state, track_sq=track_sq)
        runs[mode] = (a, b, end)
    for blk_np, blk_jit in zip(runs["0"][:2], runs["1"][:2], strict=True):
        assert np.array_equal(blk_np.mean, blk_jit.mean)
        assert np.array_equal(blk_np.weight_sum, blk_jit.weight_sum)
        if track_sq:
            assert np.array_equal(blk_np.weight_sq_sum, blk_jit.weight_sq_sum)
    assert runs["0"][2].to_bytes() == runs["1"][2].to_bytes()
    # mixed: numpy for the first block, the kernel for the second (and the reverse)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "0")
    _, s_np = ewma_run(x[:33], 60.0, track_sq=track_sq)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
    b_mixed, end_mixed = ewma_run(x[33:], 60.0, s_np, track_sq=track_sq)
    assert np.array_equal(b_mixed.mean, runs["0"][1].mean)
    assert end_mixed.to_bytes() == runs["0"][2].to_bytes()


def test_kernel_path_is_not_taken_with_missing_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN cells keep the general per-cell path whatever the mode (same numbers either way)."""
    from factorcov_pipeline.core import ewma as ewma_module

    x = _with_nans(np.random.default_rng(9), (60, 3), 0.2)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "1")
    a, sa = ewma_run(x, 5.0, track_sq=True)
    monkeypatch.setattr(ewma_module, "JIT_MODE", "0")
    b, sb = ewma_run(x, 5.0, track_sq=True)
    assert np.array_equal(a.mean, b.mean, equal_nan=True)
    assert sa.to_bytes() == sb.to_bytes()
