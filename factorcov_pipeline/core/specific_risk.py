"""Specific (idiosyncratic) risk forecasts after Barra USE4 (Menchero, Orr and Wang 2011, "The
Barra US Equity Model (USE4) Methodology Notes", MSCI, section 5).

For asset n with specific returns u_n,s (the regression residuals, `specific_returns`), the
daily specific variance forecast made at the close of t is built in four steps, each vectorised
over assets (arrays of N assets; the only Python loop is over dates):

1. Time series (USE4 section 5.1): the EWMA of squared specific returns, pandas-adjusted
   weights, no demeaning, half-life ``halflife`` (the same `ewma_run` as the factor
   volatilities), with ``nw_lags`` Newey-West lags in the element-wise EWMA form of the factor
   volatilities (`core/forecaster.py`, USE4 section 4.2, applied per asset as in section 5.1):

       sigma_TS,n^2(t) = C_0,n(t) + sum_l (1 - l/(L+1)) 2 C_l,n(t)

   A missing return (not regressed that day, or not listed) is a missing observation: the
   weights age, nothing is added (pandas ``ignore_na=False``).

2. Structural model and blending (USE4 section 5.2): assets with too little history get a
   forecast from the cross-section. ``h_n`` = number of specific returns observed so far; the
   blending coefficient is

       gamma_n = min(1, max(0, (h_n - min_history) / (full_history - min_history)))

   (USE4 uses 60 and 180 days; it also multiplies gamma by a fat-tail factor exp(1 - Z_n),
   which we leave out: our clipped regression residuals have no data errors to guard against).
   The structural forecast regresses ln sigma_TS of the assets with gamma = 1 on their
   exposures at t (their category dummies and style exposures, no Market: the category dummies
   span it), weighted by sqrt(market cap) as the factor regression:

       ln sigma_TS,n = sum_k X_nk b_k + e_n,     sigma_STR,n = E_0 exp(sum_k X_nk b_k)

   with E_0 chosen on each date so that the fitted assets' cap-weighted mean of sigma_STR equals
   that of sigma_TS (USE4 fixes E_0 ~ 1.05 to undo the log's downward bias; ours is that ratio,
   measured on the date). Blended: ``sigma_n = gamma_n sigma_TS,n + (1 - gamma_n) sigma_STR,n``.
   When fewer than ``2 * (regressors + 1)`` assets have gamma = 1 (the first weeks of a
   history), the structural forecast is the cap-weighted mean of sigma_TS over every asset with
   at least one observation (the "shrinkage target alone" fallback), the same for all.
   ``structural_model = false`` always uses that fallback.

3. Bayesian shrinkage (USE4 section 5.3) toward the cap-weighted mean of the asset's size
   decile s_n (assets ranked by market cap at t into ``shrink_size_groups`` equal-count groups):

       sigma_SH,n = v_n sigma_bar(s_n) + (1 - v_n) sigma_n
       sigma_bar(s) = sum_{n in s} w_n sigma_n / sum_{n in s} w_n          (w = market cap)
       v_n = q |sigma_n - sigma_bar(s_n)| / (Delta(s_n) + q |sigma_n - sigma_bar(s_n)|)
       Delta(s) = sqrt( 1/N_s sum_{n in s} (sigma_n - sigma_bar(s))^2 )

   with q = ``shrink_intensity`` (USE4: 0.1). q = 0 switches shrinkage off.

4. Volatility regime adjustment (USE4 section 5.4, ``halflife_vra`` set): the cap-weighted
   cross-sectional bias statistic of the standardised specific returns,

       B_t^2 = sum_n w_n (u_n,t / sigma_SH,n(t-1))^2 / sum_n w_n,
       lambda_t^2 = EWMA of B_t^2 (half-life halflife_vra),   sigma_VRA = lambda_t sigma_SH,

   over the assets with a return at t and a forecast at t-1 (the forecast before the regime
   adjustment, as for the factor volatilities, so no return of t or later enters a forecast
   dated before t); lambda = 1 until the first B term.

References are to the subsections of the notes' section 5 (5.1 time series, 5.2 structural
model and blending, 5.3 Bayesian shrinkage, 5.4 volatility regime adjustment) with every formula
written out above, rather than to equation numbers, which could not be checked against the text
here.

The published forecast is annualised, ``sigma * sqrt(252)``, for every asset with a market cap,
a category and finite style exposures at t (present assets), whatever its history.

Specific returns that are 0 by construction carry no information about an asset's specific
variance and are treated as missing observations (``uninformative``; they neither age into nor
count towards ``h_n``): every residual of an exactly fitted date (no more assets than factors,
or R^2 = 1, `regression_stats.exactly_fitted`), and the residual of the only regressed asset of
its category (the category's factor return absorbs its return, unless
`thin_category_shrinkage` damps it). Before, their ~1e-17 residuals made specific risks of
2.4e-17 (and a singular minimum-variance problem downstream); now such an asset keeps the
structural forecast, and a date on which no present asset has an informative return has no
forecast (NaN) for any asset.

Each forecast says why it was not estimated from the asset's own returns (`reason`, codes in
`REASONS`, `None` when gamma_n = 1): its latest return (that date's, or the last before it
when it was not regressed that day) was uninformative (`exactly_fitted`,
`single_asset_category`; kept in the state across runs), or it has too few informative returns
(`short_history`: at most ``min_history``, gamma_n = 0, the structural forecast alone;
`partial_history`: fewer than ``full_history``, a blend).

State: the EWMA sums and observation counts per asset id, the Newey-West sums and lag buffer,
the regime EWMA, and the last pre-VRA forecast, keyed by asset id; assets that appear later are
added with empty sums. Running [a, c] in one call equals [a, b] then [b+1, c] from the state,
bit for bit (the same operations in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factorcov_pipeline.core.blas import one_blas_thread
from factorcov_pipeline.core.ewma import EwmaState, arrays_from_bytes, arrays_to_bytes, ewma_run
from factorcov_pipeline.core.forecaster import (
    ANNUALISATION_DAYS,
    Forecaster,
    as_block,
    newey_west_variance,
    next_buffer,
)
from factorcov_pipeline.core.settings import SpecificRiskSettings

# Why a forecast was not estimated from the asset's own returns (module docstring), by code:
# 0 = it was (reason NULL); -1 in `SpecificRiskForecast.reason` = the asset is not present.
UNINFORMATIVE_EXACT_FIT, UNINFORMATIVE_SINGLE_ASSET = 1, 2
REASONS: dict[int, str] = {
    UNINFORMATIVE_EXACT_FIT: "exactly_fitted",
    UNINFORMATIVE_SINGLE_ASSET: "single_asset_category",
    3: "short_history",
    4: "partial_history",
}
SHORT_HISTORY, PARTIAL_HISTORY = 3, 4
# The same, in words a portfolio manager reads (the warnings of `factorcov risk`).
REASON_WORDS: dict[str, str] = {
    "exactly_fitted": "its latest return was exactly fitted by the factors (specific return 0)",
    "single_asset_category": (
        "it is the only asset of its category (its specific return is absorbed by the "
        "category's factor)"
    ),
    "short_history": "too few returns of its own: the structural forecast alone",
    "partial_history": "a short history: blended with the structural forecast",
}


@dataclass
class SpecificRiskState:
    """Everything the specific risk recursion needs to continue, per asset id (module docstring).

    ``config`` = (halflife, nw_lags, halflife_vra or NaN) guards against resuming with other
    settings (the cross-sectional steps keep no state, so their settings may change).
    """

    config: np.ndarray
    asset_ids: np.ndarray
    var_ewma: EwmaState
    n_obs: np.ndarray
    nw_s: np.ndarray
    nw_w: np.ndarray
    lag_buffer: np.ndarray
    vra_ewma: EwmaState | None
    last_var: np.ndarray
    last_cause: np.ndarray | None = None  # per asset: its last return's uninformative code

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "config": self.config,
            "asset_ids": np.asarray(self.asset_ids, dtype=np.str_),
            "n_obs": self.n_obs,
            "nw_s": self.nw_s,
            "nw_w": self.nw_w,
            "lag_buffer": self.lag_buffer,
            "last_var": self.last_var,
            "last_cause": self.causes(),
            **self.var_ewma.to_arrays("var_"),
        }
        if self.vra_ewma is not None:
            arrays.update(self.vra_ewma.to_arrays("vra_"))
        return arrays_to_bytes(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> SpecificRiskState:
        a = arrays_from_bytes(data)
        return cls(
            config=a["config"],
            asset_ids=a["asset_ids"],
            var_ewma=EwmaState.from_arrays(a, "var_"),
            n_obs=a["n_obs"],
            nw_s=a["nw_s"],
            nw_w=a["nw_w"],
            lag_buffer=a["lag_buffer"],
            vra_ewma=EwmaState.from_arrays(a, "vra_") if "vra_s" in a else None,
            last_var=a["last_var"],
            # states stored before 0.9 have none: no uninformative return seen
            last_cause=a.get("last_cause"),
        )

    def causes(self) -> np.ndarray:
        """`last_cause`, zeros (informative) where none was recorded."""
        if self.last_cause is None:
            return np.zeros(self.asset_ids.shape[0], dtype=np.int8)
        return np.asarray(self.last_cause, dtype=np.int8)


@dataclass
class SpecificRiskForecast:
    """Per date (rows) and asset of the block (columns, the caller's order); NaN where absent.

    ``specific_risk``: annualised published forecast; ``sigma_ts``: daily time-series
    volatility (step 1); ``gamma``: blending coefficient; ``sigma_str``: daily structural
    forecast; ``sigma_blend``: blended; ``sigma_sh``: after shrinkage (daily, before the regime
    adjustment); ``vra_multiplier`` (T,): lambda_t; ``bias_stat`` (T,): B_t (NaN when off);
    ``reason`` (T, N) int8: a code of `REASONS`, 0 when estimated from the asset's own returns,
    -1 where the asset is not present (no forecast and no row).
    """

    specific_risk: np.ndarray
    sigma_ts: np.ndarray
    gamma: np.ndarray
    sigma_str: np.ndarray
    sigma_blend: np.ndarray
    sigma_sh: np.ndarray
    vra_multiplier: np.ndarray
    bias_stat: np.ndarray
    reason: np.ndarray


def blending_coefficient(n_obs: np.ndarray, min_history: int, full_history: int) -> np.ndarray:
    """gamma = min(1, max(0, (h - min_history) / (full_history - min_history))) (USE4 5.2)."""
    return np.clip((n_obs - min_history) / float(full_history - min_history), 0.0, 1.0)


def size_groups(caps: np.ndarray, n_groups: int) -> np.ndarray:
    """Equal-count size groups 0..n_groups-1 by market cap (0 = smallest), ties by position."""
    n = caps.shape[0]
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(caps, kind="stable")] = np.arange(n)
    return (rank * n_groups) // max(n, 1)


def bayesian_shrinkage(
    sigma: np.ndarray, caps: np.ndarray, groups: np.ndarray, q: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """USE4 section 5.3 (module docstring, step 3): returns (sigma_SH, v, sigma_bar per asset).

    ``sigma`` (N,) the blended forecasts, ``caps`` (N,) the weights of the group means,
    ``groups`` (N,) size-group codes.
    """
    g = groups.max() + 1 if groups.size else 0
    wsum = np.bincount(groups, weights=caps, minlength=g)
    mean = np.bincount(groups, weights=caps * sigma, minlength=g) / np.where(wsum > 0, wsum, 1.0)
    bar = mean[groups]
    count = np.bincount(groups, minlength=g)
    dev2 = np.bincount(groups, weights=(sigma - bar) ** 2, minlength=g)
    delta = np.sqrt(dev2 / np.maximum(count, 1))[groups]
    dist = q * np.abs(sigma - bar)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(delta + dist > 0, dist / np.where(delta + dist > 0, delta + dist, 1.0), 0.0)
    return v * bar + (1.0 - v) * sigma, v, bar


def structural_forecast(
    sigma_ts: np.ndarray,
    fit: np.ndarray,
    design: np.ndarray,
    caps: np.ndarray,
) -> np.ndarray:
    """USE4 section 5.2 (module docstring, step 2): E_0 exp(X b) for every row of ``design``.

    ``fit`` (N,) marks the assets whose ln ``sigma_ts`` is regressed on ``design`` (N, P) with
    weights sqrt(cap) (least squares, minimum norm if a column is empty among them).
    """
    sw = np.sqrt(caps[fit])
    b = np.linalg.lstsq(design[fit] * sw[:, None], np.log(sigma_ts[fit]) * sw, rcond=None)[0]
    raw = np.exp(design @ b)
    e0 = np.sum(caps[fit] * sigma_ts[fit]) / np.sum(caps[fit] * raw[fit])
    return e0 * raw


def _contains(universe: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Whether each of ``ids`` is in ``universe`` (a binary search, not a loop over assets)."""
    if universe.size == 0:
        return np.zeros(ids.shape[0], dtype=bool)
    sorter = np.argsort(universe, kind="stable")
    at = np.searchsorted(universe, ids, sorter=sorter)
    return universe[sorter[np.minimum(at, universe.size - 1)]] == ids


def _positions(universe: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each of ``ids`` in ``universe`` (all present), without a loop over assets."""
    sorter = np.argsort(universe, kind="stable")
    return sorter[np.searchsorted(universe, ids, sorter=sorter)]


class SpecificRiskForecaster(Forecaster[SpecificRiskState]):
    """Runs the specific risk recursion over blocks of dates (module docstring)."""

    name = "specific risk"
    config_labels = "halflife, nw_lags, halflife_vra"
    width_label = "assets"

    def __init__(self, settings: SpecificRiskSettings) -> None:
        self.settings = settings
        self.halflife = float(settings.halflife)
        self.n_lags = int(settings.nw_lags)
        self.halflife_vra = None if settings.halflife_vra is None else float(settings.halflife_vra)
        self.config = np.array(
            [
                self.halflife,
                float(self.n_lags),
                np.nan if self.halflife_vra is None else self.halflife_vra,
            ]
        )

    def initial_state(self, k: int) -> SpecificRiskState:
        """The state before the first date ever, with no asset (assets are added as they come;
        ``k`` must be 0)."""
        if k != 0:
            raise ValueError("the specific risk state starts with no asset")
        return SpecificRiskState(
            config=self.config.copy(),
            asset_ids=np.empty(0, dtype=np.str_),
            var_ewma=EwmaState.empty(self.halflife, (0,)),
            n_obs=np.zeros(0),
            nw_s=np.zeros((self.n_lags, 0)),
            nw_w=np.zeros((self.n_lags, 0)),
            lag_buffer=np.full((self.n_lags, 0), np.nan),
            vra_ewma=None if self.halflife_vra is None else EwmaState.empty(self.halflife_vra, ()),
            last_var=np.zeros(0),
        )

    def state_width(self, state: SpecificRiskState) -> tuple[int, ...]:
        return state.var_ewma.s.shape

    def expected_width(self, k: int) -> tuple[int, ...]:
        return (k,)

    def _extend(self, state: SpecificRiskState, ids: np.ndarray) -> SpecificRiskState:
        """The state with the assets of ``ids`` it does not hold yet appended (empty sums)."""
        new = ids[~_contains(state.asset_ids, ids)]
        m = new.shape[0]
        if m == 0:
            return state
        z = np.zeros(m)
        nan = np.full(m, np.nan)
        ewma = state.var_ewma
        return SpecificRiskState(
            config=state.config,
            asset_ids=np.concatenate([state.asset_ids.astype(np.str_), new.astype(np.str_)]),
            var_ewma=EwmaState(
                ewma.halflife, np.concatenate([ewma.s, z]), np.concatenate([ewma.w, z])
            ),
            n_obs=np.concatenate([state.n_obs, z]),
            nw_s=np.concatenate([state.nw_s, np.zeros((self.n_lags, m))], axis=1),
            nw_w=np.concatenate([state.nw_w, np.zeros((self.n_lags, m))], axis=1),
            lag_buffer=np.concatenate(
                [state.lag_buffer, np.full((self.n_lags, m), np.nan)], axis=1
            ),
            vra_ewma=state.vra_ewma,
            last_var=np.concatenate([state.last_var, nan]),
            last_cause=np.concatenate([state.causes(), np.zeros(m, dtype=np.int8)]),
        )

    def run(
        self,
        state: SpecificRiskState | None,
        asset_ids: Sequence[str],
        specific_returns: np.ndarray,
        caps: np.ndarray,
        categories: np.ndarray,
        styles: np.ndarray,
        uninformative: np.ndarray | None = None,
    ) -> tuple[SpecificRiskForecast, SpecificRiskState]:
        """Forecasts for the T dates of a block and the state after them.

        ``asset_ids`` (N,) unique ids of the block's columns; ``specific_returns`` (T, N) the
        specific return of each date (NaN: none); ``caps`` (T, N) market caps at each date
        (NaN: not present); ``categories`` (T, N) integer category codes (-1: none);
        ``styles`` (T, N, S) style exposures at each date; ``uninformative`` (T, N) optional
        codes of returns that are 0 by construction (`UNINFORMATIVE_EXACT_FIT`,
        `UNINFORMATIVE_SINGLE_ASSET`; 0: informative), treated as missing. An asset is present
        (gets a row) on a date where its cap is positive, its category >= 0 and its styles
        finite.
        """
        given = np.asarray(list(asset_ids), dtype=np.str_)
        u_in = as_block(specific_returns, "specific_returns")
        t_n, n = u_in.shape
        cause = np.zeros((t_n, n), dtype=np.int8)
        if uninformative is not None:
            cause = np.asarray(uninformative, dtype=np.int8)
            if cause.shape != (t_n, n):
                raise ValueError("uninformative must have the shape of specific_returns")
        seen = np.isfinite(u_in) | (cause > 0)  # the asset was regressed on the date
        if uninformative is not None:
            u_in = np.where(cause > 0, np.nan, u_in)
        caps_in = as_block(caps, "caps")
        categories = np.asarray(categories)
        styles = np.asarray(styles, dtype=np.float64)
        if (
            caps_in.shape != (t_n, n)
            or categories.shape != (t_n, n)
            or styles.shape[:2] != (t_n, n)
        ):
            raise ValueError("specific_returns, caps, categories and styles must share (T, N)")
        # Cross-sectional sums run over assets in id order, whatever the caller's column order
        # or the state's, so that a forecast does not depend on how dates were split into runs.
        order = np.argsort(given, kind="stable")
        ids, u, caps = given[order], u_in[:, order], caps_in[:, order]
        if ids.size > 1 and bool(np.any(ids[1:] == ids[:-1])):
            raise ValueError("asset_ids must be unique")
        categories, styles = categories[:, order], styles[:, order]
        cause, seen = cause[:, order], seen[:, order]
        if state is None:
            state = self.initial_state(0)
        self._check_state(state, state.asset_ids.shape[0])
        state = self._extend(state, ids)
        m = state.asset_ids.shape[0]
        pos = _positions(state.asset_ids, ids)

        u_all = np.full((t_n, m), np.nan)
        u_all[:, pos] = u
        block0, var_state = ewma_run(u_all * u_all, self.halflife, state.var_ewma)
        var_ts = block0.mean
        nw_s, nw_w = state.nw_s.copy(), state.nw_w.copy()
        if self.n_lags > 0:
            var_ts = newey_west_variance(
                block0.mean, u_all, state.lag_buffer, nw_s, nw_w, self.n_lags, self.halflife
            )
        lag_buffer = (
            next_buffer(state.lag_buffer, u_all, self.n_lags)
            if self.n_lags > 0
            else state.lag_buffer
        )
        n_obs = state.n_obs + np.cumsum(np.isfinite(u_all), axis=0)
        sigma_ts = np.sqrt(var_ts)[:, pos]
        h = n_obs[:, pos]

        out = {k: np.full((t_n, n), np.nan) for k in ("gamma", "str", "blend", "sh", "present")}
        # One BLAS thread for the small (N x P) regressions (core/blas.py).
        with one_blas_thread():
            for t in range(t_n):  # the cross-section of each date (vectorised over assets)
                self._cross_section(t, sigma_ts[t], h[t], caps[t], categories[t], styles[t], out)

        # Regime adjustment (step 4): needs the previous date's pre-VRA forecast per asset.
        sh_all = np.full((t_n, m), np.nan)
        sh_all[:, pos] = out["sh"]
        var_sh = sh_all**2
        prior = np.concatenate([state.last_var[None, :], var_sh], axis=0)[:t_n]
        multiplier = np.ones(t_n)
        bias = np.full(t_n, np.nan)
        vra_state = state.vra_ewma
        if self.halflife_vra is not None:
            w_all = np.full((t_n, m), np.nan)
            w_all[:, pos] = caps
            with np.errstate(invalid="ignore", divide="ignore"):
                z2 = np.where(prior > 0, u_all * u_all / np.where(prior > 0, prior, 1.0), np.nan)
            ok = np.isfinite(z2) & np.isfinite(w_all) & (w_all > 0)
            by_id = np.argsort(state.asset_ids, kind="stable")
            b2 = np.full(t_n, np.nan)
            for t in range(t_n):  # sums over the observed assets, in id order (see above)
                sel = by_id[ok[t, by_id]]
                if sel.size:
                    w_t = w_all[t, sel]
                    b2[t] = np.sum(w_t * z2[t, sel]) / np.sum(w_t)
            bias = np.sqrt(b2)
            vra_block, vra_state = ewma_run(b2, self.halflife_vra, vra_state)
            lam2 = np.where(np.isnan(vra_block.mean), 1.0, vra_block.mean)
            multiplier = np.sqrt(lam2)
        daily = out["sh"] * multiplier[:, None]
        last_var = state.last_var.copy()
        if t_n > 0:
            last_var = var_sh[-1].copy()
        # each asset's cause as of its latest return (a date it was not regressed on, e.g. a
        # session without returns, keeps the cause of the one before, across blocks too)
        cause_all = np.zeros((t_n, m), dtype=np.int8)
        seen_all = np.zeros((t_n, m), dtype=bool)
        cause_all[:, pos], seen_all[:, pos] = cause, seen
        last_cause = carry_forward(state.causes(), cause_all, seen_all)
        reason = forecast_reasons(out["present"] > 0, out["gamma"], last_cause[:, pos])
        back = np.argsort(order, kind="stable")  # to the caller's column order
        forecast = SpecificRiskForecast(
            specific_risk=(daily * np.sqrt(float(ANNUALISATION_DAYS)))[:, back],
            sigma_ts=np.where(np.isfinite(out["gamma"]), sigma_ts, np.nan)[:, back],
            gamma=out["gamma"][:, back],
            sigma_str=out["str"][:, back],
            sigma_blend=out["blend"][:, back],
            sigma_sh=out["sh"][:, back],
            vra_multiplier=multiplier,
            bias_stat=bias,
            reason=reason[:, back],
        )
        new_state = SpecificRiskState(
            config=self.config.copy(),
            asset_ids=state.asset_ids,
            var_ewma=var_state,
            n_obs=n_obs[-1].copy() if t_n > 0 else state.n_obs.copy(),
            nw_s=nw_s,
            nw_w=nw_w,
            lag_buffer=lag_buffer,
            vra_ewma=vra_state,
            last_var=last_var,
            last_cause=last_cause[-1].copy() if t_n > 0 else state.causes(),
        )
        return forecast, new_state

    def _cross_section(
        self,
        t: int,
        sigma_ts: np.ndarray,
        h: np.ndarray,
        caps: np.ndarray,
        categories: np.ndarray,
        styles: np.ndarray,
        out: dict[str, np.ndarray],
    ) -> None:
        """Steps 2 and 3 of the module docstring for the present assets of one date."""
        s = self.settings
        present = (
            np.isfinite(caps) & (caps > 0) & (categories >= 0) & np.isfinite(styles).all(axis=1)
        )
        if not present.any():
            return
        idx = np.flatnonzero(present)
        out["present"][t, idx] = 1.0
        cap = caps[idx]
        ts = sigma_ts[idx]
        has_ts = np.isfinite(ts) & (ts > 0)
        if not has_ts.any():
            return  # no specific return observed yet for any present asset: no forecast
        gamma = np.where(has_ts, blending_coefficient(h[idx], s.min_history, s.full_history), 0.0)
        codes = np.unique(categories[idx], return_inverse=True)[1].reshape(-1)
        design = np.concatenate([np.eye(codes.max() + 1)[codes], styles[idx]], axis=1)
        fit = has_ts & (gamma >= 1.0)
        if s.structural_model and fit.sum() >= 2 * (design.shape[1] + 1):
            sigma_str = structural_forecast(np.where(has_ts, ts, 1.0), fit, design, cap)
        else:
            target = np.sum(cap[has_ts] * ts[has_ts]) / np.sum(cap[has_ts])
            sigma_str = np.full(idx.shape[0], target)
        blend = np.where(has_ts, gamma * np.where(has_ts, ts, 0.0), 0.0) + (1.0 - gamma) * sigma_str
        if s.shrink_intensity > 0:
            groups = size_groups(cap, s.shrink_size_groups)
            sh = bayesian_shrinkage(blend, cap, groups, s.shrink_intensity)[0]
        else:
            sh = blend
        out["gamma"][t, idx] = gamma
        out["str"][t, idx] = sigma_str
        out["blend"][t, idx] = blend
        out["sh"][t, idx] = sh


def carry_forward(first: np.ndarray, values: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(T, M) ``values`` where ``seen``, elsewhere the last seen value before (``first``, (M,),
    before the first row): a vectorised forward fill (no loop over dates or assets)."""
    t_n = values.shape[0]
    rows = np.concatenate([first[None, :], values], axis=0)
    at = np.where(
        np.concatenate([np.ones((1, values.shape[1]), dtype=bool), seen], axis=0),
        np.arange(t_n + 1)[:, None],
        0,
    )
    at = np.maximum.accumulate(at, axis=0)
    return np.take_along_axis(rows, at, axis=0)[1:]


def forecast_reasons(present: np.ndarray, gamma: np.ndarray, cause: np.ndarray) -> np.ndarray:
    """`SpecificRiskForecast.reason` (module docstring) from the present mask, the blending
    coefficients (NaN where no forecast was possible) and the uninformative-return code of each
    asset's latest return, all (T, N): -1 absent; 0 gamma = 1; else that cause, or
    `SHORT_HISTORY` (gamma = 0 or no forecast), or `PARTIAL_HISTORY`."""
    g = np.where(np.isfinite(gamma), gamma, 0.0)
    history = np.where(g > 0.0, PARTIAL_HISTORY, SHORT_HISTORY).astype(np.int8)
    why = np.where(cause > 0, cause, history)
    return np.where(present, np.where(g >= 1.0, 0, why), -1).astype(np.int8)
