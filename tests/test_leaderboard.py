"""Tests of core/leaderboard.py: every statistic against an independent per-date loop (numpy
per date, pandas rolling windows, scipy's multivariate normal density) to ~1e-12, the ranking
rule on a known covariance, warm-up and missing returns left out, singular forecasts handled."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.stats import multivariate_normal

from factorcov_pipeline.core.leaderboard import (
    LEADERBOARD_SCHEMA,
    REASON_NO_FORECAST,
    REASON_NOT_POSITIVE_DEFINITE,
    ROLLING_SCHEMA,
    evaluate_model,
    factor_min_variance,
    leaderboard,
    rank_models,
    scored_dates,
)

NAMES = ["Market", "Size", "Value", "Energy"]


def _dates(t: int) -> list[dt.date]:
    start = dt.date(2024, 1, 1)
    return [start + dt.timedelta(days=i) for i in range(t)]


def _spd_path(t: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A different symmetric positive definite daily covariance each date."""
    a = rng.standard_normal((t, k, k)) / math.sqrt(k)
    cov = (a @ a.transpose(0, 2, 1) + 0.3 * np.eye(k)) * 1e-4
    return 0.5 * (cov + cov.transpose(0, 2, 1))


def _unit_rows(w: np.ndarray) -> np.ndarray:
    return w / np.linalg.norm(w, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def messy():
    """T = 330 dates, K = 4: forecasts F_{t-1} (row 0 none), returns drawn with a covariance
    that drifts around the forecast (bias statistics on both sides of 1), warm from date 25,
    sessions without returns, a missing forecast, a singular and an indefinite one."""
    t, k = 330, len(NAMES)
    rng = np.random.default_rng(11)
    cov = _spd_path(t, k, rng)
    scale = np.exp(0.5 * np.sin(np.arange(t) / 23.0))
    chol = np.linalg.cholesky(cov * scale[:, None, None])
    r = np.einsum("tkl,tl->tk", chol, rng.standard_normal((t, k)))
    r[[60, 61, 200]] = np.nan  # sessions without returns
    r[150, 2] = np.nan  # one factor missing: the session is skipped
    cov[0] = np.nan  # no forecast before the first date
    cov[90] = np.nan  # a missing forecast
    v = rng.standard_normal(k)
    cov[120] = np.outer(v, v) * 1e-4 + np.diag([0.0, 1e-4, 1e-4, 1e-4])  # rank 3 + ... below
    cov[120][:, 0] = cov[120][:, 1]  # make the first two columns (and rows) equal: singular
    cov[120][0, :] = cov[120][1, :]
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    cov[170] = (q * np.array([-1e-5, 1e-4, 2e-4, 3e-4])) @ q.T  # indefinite
    cov[170] = 0.5 * (cov[170] + cov[170].T)
    warm = np.arange(t) >= 25
    cov[5] = np.full((k, k), 1e-4)  # singular inside the warm-up: neither scored nor counted
    w_rand = _unit_rows(rng.standard_normal((3, k)))
    return _dates(t), r, cov, warm, w_rand


def _reference(r, cov, warm, w_rand, window=252, roll_window=63):
    """The statistics written as a plain loop over dates and portfolios."""
    t, k = r.shape
    ones = np.ones(k)
    outcomes, nll, qlike, r_mv, var_mv, used = [], [], [], [], [], []
    singular = 0
    ports = [np.eye(k)[i] for i in range(k)] + list(w_rand)
    for i in range(t):
        if not warm[i] or np.isnan(r[i]).any() or np.isnan(cov[i]).any():
            continue
        f = cov[i]
        ev = np.linalg.eigvalsh(f)
        if ev[0] <= 1e-10 * max(abs(ev[0]), abs(ev[-1])):  # core.eigen.RANK_RTOL
            singular += 1
            continue
        used.append(i)
        row = []
        for w in ports:
            h = w @ f @ w
            row.append((w @ r[i]) / math.sqrt(h))
            qlike.append((w @ r[i]) ** 2 / h + math.log(h))
        d, u = np.linalg.eigh(f)
        for j in range(k):
            vec = u[:, j]
            top = max(range(k), key=lambda m, vec=vec: abs(vec[m]))
            if vec[top] < 0:
                vec = -vec
            row.append((vec @ r[i]) / math.sqrt(d[j]))
        x = np.linalg.solve(f, ones)
        w = x / x.sum()
        mv_var = w @ f @ w
        row.append((w @ r[i]) / math.sqrt(mv_var))
        r_mv.append(w @ r[i])
        var_mv.append(mv_var)
        nll.append(-multivariate_normal.logpdf(r[i], mean=np.zeros(k), cov=f))
        outcomes.append(row)
    z = pd.DataFrame(outcomes, index=used)
    n = len(used)
    full = z.std()  # ddof 1
    # the session grid from the first scored date, unscored sessions as NaN
    grid = z.reindex(range(used[0], t))
    roll = grid.rolling(window, min_periods=2).std().iloc[window - 1 :]
    count = grid.rolling(window, min_periods=0).count().iloc[window - 1 :]
    inside = ((roll - 1).abs() <= np.sqrt(2.0 / count)) & roll.notna()
    share12 = inside.sum() / roll.notna().sum()
    q_roll = grid.rolling(roll_window, min_periods=2).std().iloc[roll_window - 1 :]
    q_count = grid.rolling(roll_window, min_periods=0).count().iloc[roll_window - 1 :]
    return {
        "z": z,
        "n": n,
        "used": used,
        "singular": singular,
        "full": full.to_numpy(),
        "share12": share12.to_numpy(),
        "nll": float(np.mean(nll)),
        "qlike": float(np.mean(qlike)),
        "mv_vol": float(pd.Series(r_mv).std() * math.sqrt(252)),
        "mv_forecast_vol": math.sqrt(252 * np.mean(var_mv)),
        "roll": q_roll[q_count.max(axis=1) >= 2],
        "roll_count": q_count.max(axis=1)[q_count.max(axis=1) >= 2],
    }


def test_every_statistic_ties_out_against_a_per_date_loop(messy):
    dates, r, cov, warm, w_rand = messy
    k, p = len(NAMES), w_rand.shape[0]
    ev = evaluate_model(dates, NAMES, r, cov, warm, w_rand, model="m")
    ref = _reference(r, cov, warm, w_rand)
    s = ev.summary
    assert s["n_obs"] == ref["n"] == 330 - 25 - 3 - 1 - 1 - 2
    assert s["n_singular_forecasts"] == ref["singular"] == 2
    assert s["first_date"] == dates[ref["used"][0]] and s["last_date"] == dates[ref["used"][-1]]
    np.testing.assert_array_equal(np.flatnonzero(ev.scored), ref["used"])

    b, share = ref["full"], ref["share12"]
    groups = {"factor": b[:k], "random": b[k : k + p], "eigen": b[k + p : 2 * k + p]}
    shares = {"factor": share[:k], "random": share[k : k + p], "eigen": share[k + p : 2 * k + p]}
    half = math.sqrt(2.0 / ref["n"])
    expected = {
        "bias_band": half,
        "min_variance_bias": b[-1],
        "min_variance_share_12m_inside_band": share[-1],
        "min_variance_volatility": ref["mv_vol"],
        "min_variance_forecast_volatility": ref["mv_forecast_vol"],
        "gaussian_nll": ref["nll"],
        "qlike": ref["qlike"],
        "mean_abs_bias_minus_1": np.mean(
            [np.mean(np.abs(g - 1)) for g in groups.values()] + [abs(b[-1] - 1)]
        ),
    }
    for g, bg in groups.items():
        expected[f"{g}_mean_bias"] = np.mean(bg)
        expected[f"{g}_mean_abs_bias_minus_1"] = np.mean(np.abs(bg - 1))
        expected[f"{g}_share_inside_band"] = np.mean(np.abs(bg - 1) <= half)
        expected[f"{g}_share_12m_inside_band"] = np.mean(shares[g])
    for key, want in expected.items():
        assert s[key] == pytest.approx(want, rel=1e-12, abs=1e-13), key
    # the statistics are informative here: some 12-month windows in, some out of the band
    assert 0.0 < s["factor_share_12m_inside_band"] < 1.0
    assert set(s) | {"rank", "score"} == set(LEADERBOARD_SCHEMA)

    # per portfolio (the per-rank eigenportfolio statistics for a plot)
    port = ev.portfolios
    assert port["portfolio"].to_list() == [
        *NAMES,
        "random_01",
        "random_02",
        "random_03",
        "eigen_01",
        "eigen_02",
        "eigen_03",
        "eigen_04",
        "min_variance",
    ]
    assert port["portfolio_kind"].to_list() == ["factor"] * 4 + ["random"] * 3 + ["eigen"] * 4 + [
        "min_variance"
    ]
    np.testing.assert_allclose(port["full_sample_bias"].to_numpy(), b, rtol=1e-12)
    np.testing.assert_allclose(port["share_12m_inside_band"].to_numpy(), share, rtol=1e-12)
    assert (port["model"] == "m").all() and (port["n_obs"] == ref["n"]).all()
    assert port["n_windows_12m"][0] == 330 - 25 - 252 + 1


def test_rolling_bias_series_ties_out_against_pandas(messy):
    dates, r, cov, warm, w_rand = messy
    k, p = len(NAMES), w_rand.shape[0]
    ev = evaluate_model(dates, NAMES, r, cov, warm, w_rand, model="m", rolling_window=63)
    ref = _reference(r, cov, warm, w_rand, roll_window=63)
    roll = ref["roll"].to_numpy()
    out = ev.rolling
    assert out.schema == pl.Schema(ROLLING_SCHEMA)
    assert out.height == len(roll) == 330 - 25 - 63 + 1
    assert out["date"].to_list() == [dates[i] for i in ref["roll"].index]
    np.testing.assert_array_equal(out["n_obs"].to_numpy(), ref["roll_count"].to_numpy())
    cols = {
        "factor_mean_bias": roll[:, :k].mean(axis=1),
        "factor_mean_abs_bias_minus_1": np.abs(roll[:, :k] - 1).mean(axis=1),
        "random_mean_abs_bias_minus_1": np.abs(roll[:, k : k + p] - 1).mean(axis=1),
        "eigen_mean_abs_bias_minus_1": np.abs(roll[:, k + p : 2 * k + p] - 1).mean(axis=1),
        "min_variance_bias": roll[:, -1],
    }
    for name, want in cols.items():
        np.testing.assert_allclose(out[name].to_numpy(), want, rtol=1e-12, err_msg=name)


def test_warm_up_dates_are_excluded(messy):
    """Garbage forecasts inside the warm-up change nothing: the statistics equal those of the
    history cut at the first warm date (the 12-month windows start there in both)."""
    dates, r, cov, warm, w_rand = messy
    bad = cov.copy()
    bad[1:25] = bad[1:25] * 100.0
    bad[3] = -bad[3]  # not even positive definite
    a = evaluate_model(dates, NAMES, r, bad, warm, w_rand).summary
    b = evaluate_model(dates[25:], NAMES, r[25:], cov[25:], warm[25:], w_rand).summary
    assert a == b
    assert a["first_date"] == dates[25]
    # scoring the warm-up too changes the answer (the test could fail)
    c = evaluate_model(dates, NAMES, r, bad, np.ones(len(dates), dtype=bool), w_rand).summary
    assert c["n_obs"] > a["n_obs"] and c["gaussian_nll"] != a["gaussian_nll"]


def test_sessions_without_returns_are_skipped(messy):
    """Full-sample statistics are those of the history without the NaN rows."""
    dates, r, cov, warm, w_rand = messy
    keep = np.isfinite(r).all(axis=1)
    a = evaluate_model(dates, NAMES, r, cov, warm, w_rand).summary
    dropped = [d for d, k in zip(dates, keep, strict=True) if k]
    b = evaluate_model(dropped, NAMES, r[keep], cov[keep], warm[keep], w_rand).summary
    for key in ("n_obs", "n_singular_forecasts", "first_date", "last_date"):
        assert a[key] == b[key], key
    for key in (
        "factor_mean_bias",
        "random_mean_abs_bias_minus_1",
        "eigen_mean_abs_bias_minus_1",
        "min_variance_bias",
        "min_variance_volatility",
        "gaussian_nll",
        "qlike",
    ):
        assert a[key] == pytest.approx(b[key], rel=1e-13), key


def test_singular_forecasts_are_counted_and_left_out_not_raised(messy):
    dates, r, cov, warm, w_rand = messy
    mv = factor_min_variance(cov)
    assert mv.reason[0] == REASON_NO_FORECAST and mv.reason[90] == REASON_NO_FORECAST
    assert mv.reason[120] == REASON_NOT_POSITIVE_DEFINITE
    assert mv.reason[170] == REASON_NOT_POSITIVE_DEFINITE
    assert mv.reason[5] == REASON_NOT_POSITIVE_DEFINITE
    ok = np.array([x is None for x in mv.reason])
    assert ok.sum() == 330 - 5 and np.isnan(mv.weights[~ok]).all()
    for i in (1, 26, 329):  # against solve, date by date
        x = np.linalg.solve(cov[i], np.ones(4))
        np.testing.assert_allclose(mv.weights[i], x / x.sum(), rtol=1e-12, atol=1e-14)
        assert mv.variance[i] == pytest.approx(1.0 / x.sum(), rel=1e-12)
    np.testing.assert_allclose(mv.weights[ok].sum(axis=1), 1.0, rtol=1e-13)
    with pytest.raises(np.linalg.LinAlgError):  # what the module never lets through
        np.linalg.inv(cov[120])

    scored = scored_dates(r, cov, warm)
    assert not scored[[5, 90, 120, 170]].any() and scored[[25, 119, 121]].all()
    # a model whose every forecast is singular: null statistics, ranked last, no exception
    flat = np.broadcast_to(np.full((4, 4), 1e-4), cov.shape).copy()
    board = leaderboard(
        dates,
        NAMES,
        r,
        {"flat": (flat, warm), "m": (cov, warm)},
        w_rand,
        common_sample=False,
    ).table
    assert board["model"].to_list() == ["m", "flat"]
    last = board.row(1, named=True)
    assert last["n_obs"] == 0 and last["n_singular_forecasts"] == 330 - 25 - 4
    assert last["gaussian_nll"] is None and last["first_date"] is None
    assert last["min_variance_volatility"] is None and last["factor_mean_bias"] is None


def test_an_eigenvalue_zero_up_to_rounding_is_singular():
    """F = v v' (K = 3) has two eigenvalues that LAPACK returns as +-1e-20-ish, F + e I with
    e = 1e-11 of the largest is rank-deficient by the eigen adjustment's threshold: singular,
    whatever their sign; with e = 1e-9 the forecast is scored."""
    v = np.array([[1.0, 2.0, 3.0]]) * 1e-2
    f = np.stack([v.T @ v, v.T @ v + 1.4e-14 * np.eye(3), v.T @ v + 1.4e-12 * np.eye(3)])
    mv = factor_min_variance(f)
    assert mv.reason.tolist() == [REASON_NOT_POSITIVE_DEFINITE] * 2 + [None]
    scored = scored_dates(np.zeros((3, 3)), f, np.ones(3, dtype=bool))
    assert scored.tolist() == [False, False, True]


@pytest.fixture(scope="module")
def known():
    """T = 400 returns drawn from a known constant covariance (K = 5, correlated factors)."""
    t, k = 400, 5
    rng = np.random.default_rng(5)
    a = rng.standard_normal((k, k))
    vol = np.array([0.012, 0.006, 0.005, 0.009, 0.004])
    c = a @ a.T + 2 * np.eye(k)
    corr = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    sigma = corr * np.outer(vol, vol)
    r = rng.multivariate_normal(np.zeros(k), sigma, size=t)
    truth = np.broadcast_to(sigma, (t, k, k)).copy()
    names = [f"f{i}" for i in range(k)]
    return _dates(t), names, r, truth, _unit_rows(rng.standard_normal((20, k)))


def test_the_true_covariance_ranks_first(known):
    dates, names, r, truth, w_rand = known
    t = len(dates)
    warm = np.arange(t) >= 1
    diag = np.broadcast_to(np.diag(np.diag(truth[0])), truth.shape).copy()
    models = {
        "double": (truth * 2.0, warm),
        "half": (truth * 0.5, warm),
        "truth": (truth, warm),
        "uncorrelated": (diag, warm),
    }
    out = leaderboard(dates, names, r, models, w_rand)
    table = out.table
    assert table.schema == pl.Schema(LEADERBOARD_SCHEMA)
    assert table["model"][0] == "truth" and table["rank"].to_list() == [1, 2, 3, 4]
    row = {m: table.filter(pl.col("model") == m).row(0, named=True) for m in models}
    assert row["half"]["factor_mean_bias"] > 1.3 and row["double"]["factor_mean_bias"] < 0.75
    assert abs(row["truth"]["factor_mean_bias"] - 1) < 3 * row["truth"]["bias_band"]
    assert row["truth"]["min_variance_volatility"] < row["uncorrelated"]["min_variance_volatility"]
    # a covariance scaled by 2 or 1/2 builds the same minimum-variance portfolio: a tie
    assert row["half"]["min_variance_volatility"] == row["truth"]["min_variance_volatility"]
    assert row["double"]["min_variance_volatility"] == row["truth"]["min_variance_volatility"]
    nll = {m: row[m]["gaussian_nll"] for m in models}
    assert min(nll, key=nll.get) == "truth"
    # the score is the mean of the three per-criterion ranks (average ranks on ties)
    for m in models:
        crit = ("mean_abs_bias_minus_1", "min_variance_volatility", "gaussian_nll")
        ranks = [pd.Series({n: row[n][c] for n in models}).rank(method="average")[m] for c in crit]
        assert row[m]["score"] == pytest.approx(np.mean(ranks), rel=1e-15)
    # every model on the same dates; the rolling series of all four models
    assert table["n_obs"].n_unique() == 1 and table["n_obs"][0] == t - 1
    assert out.rolling["model"].unique(maintain_order=True).to_list() == list(models)
    assert out.portfolios.height == 4 * (5 + 20 + 5 + 1)


def test_ties_are_broken_deterministically_and_missing_values_rank_last():
    frame = pl.DataFrame(
        {
            "model": ["b", "a", "c", "d"],
            "mean_abs_bias_minus_1": [0.1, 0.1, 0.1, None],
            "min_variance_volatility": [0.05, 0.05, 0.05, 0.01],
            "gaussian_nll": [-30.0, -30.0, None, -40.0],
        }
    )
    out = rank_models(frame)
    # ranks (bias, min-variance volatility, likelihood): a and b (2, 3, 2.5) -> 2.5,
    # c (2, 3, 4) -> 3, d (4, 1, 1) -> 2; a and b tie on everything: by name
    assert out["model"].to_list() == ["d", "a", "b", "c"]
    assert out["rank"].to_list() == [1, 2, 3, 4]
    np.testing.assert_allclose(out["score"].to_numpy(), [2.0, 2.5, 2.5, 3.0], rtol=1e-15)
    assert out.schema == pl.Schema(LEADERBOARD_SCHEMA)
    # the input order does not matter
    assert rank_models(frame.reverse()).equals(out)
    with pytest.raises(ValueError, match="one row per model"):
        rank_models(pl.concat([frame, frame.head(1)]))
    with pytest.raises(ValueError, match="gaussian_nll"):
        rank_models(frame.drop("gaussian_nll"))


def test_values_equal_up_to_rounding_tie():
    """A model with the volatility regime adjustment multiplies the default's covariance by a
    scalar: the same minimum-variance portfolio, whose realised volatility differs from the
    default's only by rounding (seen on the real S&P 500 sample, docs/choosing-a-model.md:
    0.005117227095132523 and ...534). Those are a tie (average rank), not a win decided by the
    17th digit; values 1e-8 apart are not."""
    frame = pl.DataFrame(
        {
            "model": ["default", "vra", "eigen", "eigen_vra"],
            "mean_abs_bias_minus_1": [0.119, 0.103, 0.044, 0.061],
            "min_variance_volatility": [
                0.005117227095132523,
                0.005117227095132534,
                0.005083712611257492,
                0.005083712611257383,
            ],
            "gaussian_nll": [-57.19, -57.22, -57.53, -57.42],
        }
    )
    out = rank_models(frame)
    score = dict(zip(out["model"], out["score"], strict=True))
    # ranks (bias, volatility, likelihood): default (4, 3.5, 4), vra (3, 3.5, 3),
    # eigen (1, 1.5, 1), eigen_vra (2, 1.5, 2)
    expected = {"default": 11.5 / 3, "vra": 9.5 / 3, "eigen": 3.5 / 3, "eigen_vra": 5.5 / 3}
    assert score == pytest.approx(expected, rel=1e-15)
    assert out["model"].to_list() == ["eigen", "eigen_vra", "vra", "default"]
    # a real difference, however small next to the noise, still ranks
    apart = frame.with_columns(
        pl.Series("min_variance_volatility", [0.0051172271, 0.0051172272, 0.0050837126, 0.005])
    )
    score = dict(zip(*rank_models(apart).select("model", "score"), strict=True))
    assert score == pytest.approx(
        {"default": 11 / 3, "vra": 10 / 3, "eigen": 4 / 3, "eigen_vra": 5 / 3}, rel=1e-15
    )
    # missing values tie with each other, never with a present one
    missing = frame.with_columns(pl.Series("gaussian_nll", [None, None, -57.53, math.nan]))
    ranked = rank_models(missing)
    assert ranked["model"].to_list()[:2] == ["eigen", "eigen_vra"]
    score = dict(zip(*ranked.select("model", "score"), strict=True))
    assert score["default"] == pytest.approx((4 + 3.5 + 3) / 3, rel=1e-15)


def test_a_scalar_multiple_ties_on_the_minimum_variance_volatility(known):
    """The same through `leaderboard`: truth x 1.21 (the regime adjustment's lambda^2 = 1.1^2)
    builds truth's minimum-variance portfolio; its realised volatility ties with truth's."""
    dates, names, r, truth, w_rand = known
    warm = np.arange(len(dates)) >= 1
    models = {"truth": (truth, warm), "scaled": (truth * 1.21, warm)}
    table = leaderboard(dates, names, r, models, w_rand).table
    vol = dict(zip(table["model"], table["min_variance_volatility"], strict=True))
    assert vol["scaled"] == pytest.approx(vol["truth"], rel=1e-13)
    # truth wins the other two criteria: score (1 + 1.5 + 1) / 3, the scaled model (2 + 1.5 + 2) / 3
    score = dict(zip(table["model"], table["score"], strict=True))
    assert score == pytest.approx({"truth": 3.5 / 3, "scaled": 5.5 / 3}, rel=1e-15)


def test_common_sample_scores_every_model_on_the_same_dates(known):
    dates, names, r, truth, w_rand = known
    t = len(dates)
    early, late = np.arange(t) >= 1, np.arange(t) >= 120
    models = {"early": (truth, early), "late": (truth * 1.5, late)}
    common = leaderboard(dates, names, r, models, w_rand).table
    assert common["n_obs"].to_list() == [t - 120] * 2
    assert common["first_date"].to_list() == [dates[120]] * 2
    own = leaderboard(dates, names, r, models, w_rand, common_sample=False).table
    n = dict(zip(own["model"], own["n_obs"], strict=True))
    assert n == {"early": t - 1, "late": t - 120}
    # the common sample's early model equals the early model scored on the late warm mask
    alone = evaluate_model(dates, names, r, truth, late, w_rand, model="early").summary
    got = common.filter(pl.col("model") == "early").drop("rank", "score").row(0, named=True)
    assert got == alone


def test_no_random_portfolios_and_a_short_history():
    """P = 0 (null random statistics) and fewer than 252 scored sessions (null 12-month
    shares, no error)."""
    rng = np.random.default_rng(2)
    t, k = 40, 3
    cov = _spd_path(t, k, rng)
    r = rng.standard_normal((t, k)) * 0.01
    s = evaluate_model(
        _dates(t), ["a", "b", "c"], r, cov, np.ones(t, dtype=bool), np.empty((0, k))
    ).summary
    assert s["n_obs"] == t and s["random_mean_bias"] is None
    assert s["factor_share_12m_inside_band"] is None and s["factor_mean_bias"] is not None
    assert s["mean_abs_bias_minus_1"] == pytest.approx(
        np.mean(
            [
                s["factor_mean_abs_bias_minus_1"],
                s["eigen_mean_abs_bias_minus_1"],
                abs(s["min_variance_bias"] - 1),
            ]
        ),
        rel=1e-15,
    )


def test_nothing_scored_gives_a_row_of_nulls():
    """No warm date, or no date at all: n_obs 0 and null statistics, not an error."""
    for t in (0, 30):
        cov = np.broadcast_to(np.eye(2) * 1e-4, (t, 2, 2))
        ev = evaluate_model(
            _dates(t), ["a", "b"], np.zeros((t, 2)), cov, np.zeros(t, dtype=bool), np.ones((1, 2))
        )
        s = ev.summary
        assert s["n_obs"] == 0 and s["n_singular_forecasts"] == 0 and s["first_date"] is None
        values = [
            v for key, v in s.items() if key not in ("model", "n_obs", "n_singular_forecasts")
        ]
        assert values == [None] * len(values)
        assert ev.portfolios.height == 2 + 1 + 2 + 1 and ev.rolling.height == 0
        assert not ev.scored.any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"r": np.zeros((9, 4))}, r"factor_returns must be \(T, K\) = \(10, 4\)"),
        ({"cov": np.zeros((10, 4, 3))}, r"prior_cov_daily must be \(T, K, K\)"),
        ({"warm": np.ones(10)}, "warm must be boolean"),
        ({"warm": np.ones(9, dtype=bool)}, r"warm must be \(T,\)"),
        ({"w": np.zeros((2, 3))}, r"random_weights must be \(P, K\) with K = 4"),
        ({"w": np.zeros((2, 4))}, "random_weights row 0 is all zero"),
        ({"dates": _dates(10)[::-1]}, "dates must be strictly increasing"),
        ({"names": ["a", "a", "b", "c"]}, "factor_names must be unique"),
    ],
)
def test_bad_input_is_refused_in_one_line(change, message):
    args = {
        "dates": _dates(10),
        "names": NAMES,
        "r": np.zeros((10, 4)),
        "cov": np.broadcast_to(np.eye(4), (10, 4, 4)),
        "warm": np.ones(10, dtype=bool),
        "w": np.ones((2, 4)),
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        evaluate_model(
            args["dates"], args["names"], args["r"], args["cov"], args["warm"], args["w"]
        )
    if "cov" in change or "warm" in change:  # leaderboard names the model
        with pytest.raises(ValueError, match=f"model x: .*{message}"):
            leaderboard(
                args["dates"],
                args["names"],
                args["r"],
                {"x": (args["cov"], args["warm"])},
                args["w"],
            )


def test_a_model_never_scored_is_not_ranked():
    """A model whose every forecast is within its warm-up has no statistic: a null rank and
    score, after the ranked models (ranking it by name made an untested `default` the best
    model of the S&P 500 sample with warmup_length 0)."""
    frame = pl.DataFrame(
        {
            "model": ["slow", "default", "fast"],
            "mean_abs_bias_minus_1": [None, 0.10, 0.05],
            "min_variance_volatility": [None, 0.011, 0.012],
            "gaussian_nll": [None, -50.0, -51.0],
        }
    )
    out = rank_models(frame)
    assert out["model"].to_list() == ["fast", "default", "slow"]
    assert out["rank"].to_list() == [1, 2, None]
    assert out["score"][2] is None and out["score"][0] == pytest.approx(4 / 3, rel=1e-15)
    nothing = rank_models(frame.filter(pl.col("model") == "slow"))
    assert nothing["rank"].to_list() == [None] and nothing["model"].to_list() == ["slow"]
