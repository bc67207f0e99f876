"""What the resumable EWMA forecasters share: annualisation, Newey-West terms, the state checks.

Three forecasters (`core/volatility.py`, `core/correlation.py`, `core/specific_risk.py`) run the
same pattern: a ``config`` array of the settings that shape the recursion, an
``initial_state(width)`` before the first date ever, ``run(state, X) -> (forecast, new_state)``
over a block of T dates, and a state check that refuses to resume a recursion built with other
settings or another width (factors, or assets). `Forecaster` holds that pattern once.

Newey-West (1987, Econometrica 55(3), eq. 2: Bartlett weights ``1 - l/(L+1)``) in the
EWMA-weighted form of Barra USE4 (Menchero, Orr and Wang 2011, "The Barra US Equity Model
(USE4) Methodology Notes", section 4.2), element-wise:

    C_l(t) = sum_s w_s x_s x_{s-l} / sum_s w_s         (EWMA over s <= t)
    var(t) = C_0(t) + sum_{l=1..L} (1 - l/(L+1)) * 2 * C_l(t)

Each ``C_l`` is normalised by its own weight sum over the dates at which the lag is available
(a missing ``x_{s-l}`` is a missing observation); until a lag has a first observation its term
is 0. A variance not above ``NW_MIN_RATIO * C_0`` falls back to ``C_0`` (`newey_west_variance`).
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import numpy as np

from factorcov_pipeline.core.ewma import EwmaState, ewma_run

# Trading sessions per year: daily variances are annualised by this factor everywhere.
ANNUALISATION_DAYS = 252
# A Newey-West variance not above this multiple of C_0 is zero up to rounding: fall back to C_0.
NW_MIN_RATIO = 1e-8


def bartlett_weights(n_lags: int) -> np.ndarray:
    """Bartlett kernel weights ``1 - l/(L+1)`` for l = 1..L (Newey and West 1987, eq. 2)."""
    lags = np.arange(1, n_lags + 1, dtype=np.float64)
    return 1.0 - lags / (n_lags + 1)


def lagged_products(buffer: np.ndarray, x: np.ndarray, n_lags: int) -> list[np.ndarray]:
    """``x_t * x_{t-l}`` element-wise for l = 1..L, with ``buffer`` the L rows before ``x``.

    ``buffer`` (L, K) holds the last L observations of the previous block (NaN where none), so a
    lag that reaches before the first date ever is missing (NaN).
    """
    g = np.concatenate([buffer, x], axis=0)
    n = x.shape[0]
    return [x * g[n_lags - lag : n_lags - lag + n] for lag in range(1, n_lags + 1)]


def next_buffer(buffer: np.ndarray, x: np.ndarray, n_lags: int) -> np.ndarray:
    """The last L rows of ``concat(buffer, x)``: the lag buffer after this block."""
    g = np.concatenate([buffer, x], axis=0)
    return g[g.shape[0] - n_lags :].copy()


def newey_west_variance(
    c0: np.ndarray,
    x: np.ndarray,
    lag_buffer: np.ndarray,
    nw_s: np.ndarray,
    nw_w: np.ndarray,
    n_lags: int,
    halflife: float,
) -> np.ndarray:
    """Element-wise Newey-West variance (module docstring) of the T dates of ``x`` (T, K).

    ``c0`` (T, K) is the EWMA of ``x^2``; ``lag_buffer`` (L, K) the L rows before ``x``;
    ``nw_s``/``nw_w`` (L, K) the lagged EWMA sums, UPDATED IN PLACE to their values after the
    block; ``halflife`` the lagged terms' half-life. Where the adjusted variance is not above
    ``NW_MIN_RATIO * c0`` (strong negative autocorrelation in a finite sample) the unadjusted
    ``c0`` is returned for that element and date: never zero or negative risk.
    """
    adj = c0.copy()
    products = lagged_products(lag_buffer, x, n_lags)
    for i, (b, prod) in enumerate(zip(bartlett_weights(n_lags), products, strict=True)):
        lag_state = EwmaState(halflife, nw_s[i], nw_w[i])
        block_l, lag_state = ewma_run(prod, halflife, lag_state)
        nw_s[i], nw_w[i] = lag_state.s, lag_state.w
        adj += 2.0 * b * np.nan_to_num(block_l.mean, nan=0.0)
    return np.where(adj > NW_MIN_RATIO * c0, adj, c0)


def as_block(x: np.ndarray, name: str = "F") -> np.ndarray:
    """``x`` as a float64 (T, K) block of dates x series, or a ValueError naming its shape."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (T, K), got shape {x.shape}")
    return x


class ForecasterState(Protocol):
    """A recursion's state: the settings it was built with, serialisable exactly."""

    config: np.ndarray

    def to_bytes(self) -> bytes: ...


StateT = TypeVar("StateT", bound=ForecasterState)


class Forecaster(Generic[StateT]):
    """The resumable-recursion pattern (module docstring).

    Subclasses set ``name`` (for messages), ``config_labels`` (what the entries of ``config``
    are), ``width_label`` ("factors", "assets"), build ``self.config`` in ``__init__``, and
    implement `initial_state` and `state_width`.
    """

    name = "forecaster"
    config_labels = ""
    width_label = "factors"
    config: np.ndarray

    def initial_state(self, k: int) -> StateT:
        """The state before the first date ever, for ``k`` series."""
        raise NotImplementedError

    def state_width(self, state: StateT) -> tuple[int, ...]:
        """The shape of the state's per-series sums (compared with the data's width)."""
        raise NotImplementedError

    def expected_width(self, k: int) -> tuple[int, ...]:
        return (k,)

    def _check_state(self, state: StateT, k: int) -> None:
        config = np.asarray(state.config)
        if not np.array_equal(config, self.config, equal_nan=True):
            raise ValueError(
                f"{self.name} state was built with settings {config.tolist()} "
                f"({self.config_labels}), not {self.config.tolist()}"
            )
        width = self.state_width(state)
        if width != self.expected_width(k):
            raise ValueError(f"{self.name} state has {width[0]} {self.width_label}, data {k}")

    def _start(self, state: StateT | None, k: int) -> StateT:
        """The state to run from: ``state`` checked, or the initial state when None."""
        if state is None:
            state = self.initial_state(k)
        self._check_state(state, k)
        return state
