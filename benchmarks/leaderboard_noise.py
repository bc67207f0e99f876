"""Are the leaderboard's differences larger than their noise? (docs/choosing-a-model.md)

    python benchmarks/leaderboard_noise.py data/etf-models.duckdb [--baseline default]

Reads a factorcov DuckDB file (read-only) holding several covariance models and recomputes,
independently of `core/leaderboard.py` (pandas pivots, batched Cholesky factors and
`numpy.linalg.solve` instead of one eigendecomposition), on the dates the `model_leaderboard`
table scored, per model and date t with F = F_{t-1} (the daily forecast of the previous stored
forecast date) and r = r_t:

* the Gaussian negative log-likelihood 0.5 (K log 2 pi + log det F + r' F^-1 r);
* the return of the fully invested minimum-variance factor portfolio w = F^-1 1 / 1' F^-1 1 and
  its standardised outcome z = w'r sqrt(1' F^-1 1).

It prints (1) the tie-out with the stored leaderboard (mean likelihood, annualised realised
volatility and bias statistic of the minimum-variance portfolio, n_obs), and (2) for each model
against the baseline the paired differences of the per-date likelihood and of the squared
minimum-variance return (realised variance), with Newey-West (HAC) standard errors
(statsmodels OLS on a constant, Bartlett kernel, lags floor(4 (T/100)^(2/9)); Newey and West,
"A simple, positive semi-definite, heteroskedasticity and autocorrelation consistent covariance
matrix", Econometrica 55(3), 1987, and the lag rule of their 1994 paper): a Diebold-Mariano
test (Diebold and Mariano, "Comparing predictive accuracy", JBES 13(3), 1995) of equal mean
loss. |t| < 2: the difference is within its noise.
"""

from __future__ import annotations

import argparse
import math

import duckdb
import numpy as np
import pandas as pd
import statsmodels.api as sm

ANNUALISATION_DAYS = 252


def newey_west_lags(t: int) -> int:
    """The Newey-West (1994) rule of thumb floor(4 (T/100)^(2/9))."""
    return math.floor(4.0 * (t / 100.0) ** (2.0 / 9.0))


def mean_and_hac_se(x: np.ndarray, lags: int) -> tuple[float, float]:
    """Mean of x and its Newey-West standard error (OLS of x on a constant)."""
    fit = sm.OLS(x, np.ones_like(x)).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    return float(fit.params[0]), float(fit.bse[0])


def read(path: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """The leaderboard, the wide factor returns and each model's long covariance frame."""
    con = duckdb.connect(path, read_only=True)
    try:
        board = con.execute("SELECT * FROM model_leaderboard ORDER BY rank").df()
        returns = con.execute("SELECT date, factor, factor_return FROM factor_returns").df()
        cov = con.execute(
            "SELECT model, date, factor_1, factor_2, covariance, warm FROM factor_covariance"
        ).df()
    finally:
        con.close()
    wide = returns.pivot(index="date", columns="factor", values="factor_return").sort_index()
    return board, wide, {str(m): g for m, g in cov.groupby("model")}


def per_date(
    cov: pd.DataFrame, returns: pd.DataFrame, factors: list[str], dates: pd.Index
) -> pd.DataFrame:
    """Per scored date t: the likelihood and the minimum-variance return and outcome of the
    forecast of the stored forecast date before t."""
    k = len(factors)
    cov = cov.assign(i=cov["factor_1"].map(factors.index), j=cov["factor_2"].map(factors.index))
    stored = np.sort(cov["date"].unique())
    cube = np.full((stored.size, k, k), np.nan)
    at = pd.Index(stored)
    cube[at.get_indexer(cov["date"]), cov["i"].to_numpy(), cov["j"].to_numpy()] = cov[
        "covariance"
    ].to_numpy()
    warm = cov.groupby("date")["warm"].all().reindex(at).to_numpy()
    pos = at.get_indexer(dates)
    if (pos < 1).any():
        raise SystemExit("a scored date has no previous forecast date in the file")
    if not warm[pos - 1].all():
        raise SystemExit("a scored date's forecast is not warm")
    f = cube[pos - 1] / ANNUALISATION_DAYS
    r = returns.loc[dates, factors].to_numpy()
    chol = np.linalg.cholesky(f)  # raises if a scored forecast is not positive definite
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    solved = np.linalg.solve(f, np.stack([r, np.ones_like(r)], axis=2))  # F^-1 [r, 1]
    quad = np.einsum("nk,nk->n", r, solved[:, :, 0])
    inv_one = solved[:, :, 1]
    s = inv_one.sum(axis=1)  # 1' F^-1 1
    r_mv = np.einsum("nk,nk->n", inv_one, r) / s
    return pd.DataFrame(
        {
            "nll": 0.5 * (k * math.log(2.0 * math.pi) + logdet + quad),
            "r_mv": r_mv,
            "z_mv": r_mv * np.sqrt(s),
        },
        index=dates,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("duckdb", help="a factorcov DuckDB file with model_leaderboard")
    parser.add_argument("--baseline", default="default", help="the model compared against")
    args = parser.parse_args(argv)
    board, returns, covs = read(args.duckdb)
    factors = sorted(returns.columns)
    first, last = board["first_date"].iloc[0], board["last_date"].iloc[0]
    complete = returns.notna().all(axis=1)
    window = returns.index[(returns.index >= first) & (returns.index <= last) & complete]
    # the common sample: dates whose previous forecast is warm in every model
    keep = np.ones(window.size, dtype=bool)
    for cov in covs.values():
        stored = pd.Index(np.sort(cov["date"].unique()))
        warm = cov.groupby("date")["warm"].all().reindex(stored)
        pos = stored.get_indexer(window)
        keep &= (pos >= 1) & warm.to_numpy()[np.maximum(pos - 1, 0)].astype(bool)
    dates = window[keep]
    models = list(board["model"])
    out = {m: per_date(covs[m], returns, factors, dates) for m in models}
    t = dates.size
    lags = newey_west_lags(t)

    span = f"{dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d}"
    print(f"{args.duckdb}: {t} scored dates {span}, K = {len(factors)}")
    print("\ntie-out with model_leaderboard (recomputed - stored)")
    print("| model | n_obs | gaussian_nll | min_variance_volatility | min_variance_bias |")
    print("|---|---|---|---|---|")
    for _, row in board.iterrows():
        m = row["model"]
        nll = out[m]["nll"].mean()
        vol = out[m]["r_mv"].std(ddof=1) * math.sqrt(ANNUALISATION_DAYS)
        bias = out[m]["z_mv"].std(ddof=1)
        print(
            f"| {m} | {t - row['n_obs']} | {nll - row['gaussian_nll']:.1e} | "
            f"{vol - row['min_variance_volatility']:.1e} | "
            f"{bias - row['min_variance_bias']:.1e} |"
        )

    base = out[args.baseline]
    print(
        f"\npaired differences against {args.baseline} (mean, Newey-West SE with {lags} lags, "
        "t = mean / SE; negative is better)"
    )
    print(
        "| model | rank | likelihood: mean diff (nats/date) | SE | t | "
        "min-variance realised volatility vs baseline | variance: mean diff / baseline | SE | t |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    base_var = float(np.mean(base["r_mv"] ** 2))
    for _, row in board.iterrows():
        m = row["model"]
        if m == args.baseline:
            continue
        d_nll = (out[m]["nll"] - base["nll"]).to_numpy()
        d_var = (out[m]["r_mv"] ** 2 - base["r_mv"] ** 2).to_numpy()
        mn, se = mean_and_hac_se(d_nll, lags)
        mv, sv = mean_and_hac_se(d_var, lags)
        ratio = out[m]["r_mv"].std(ddof=1) / base["r_mv"].std(ddof=1) - 1.0
        if np.abs(d_var).max() <= 1e-9 * base_var:  # a scalar multiple: the same weights
            variance = "same portfolio | | |"
        else:
            variance = f"{mv / base_var:+.2%} | {sv / base_var:.2%} | {mv / sv:+.1f} |"
        print(
            f"| {m} | {row['rank']} | {mn:+.4f} | {se:.4f} | {mn / se:+.1f} | {ratio:+.2%} | "
            f"{variance}"
        )
    asset_level(args.duckdb, args.baseline, models)
    return 0


def asset_level(path: str, baseline: str, models: list[str]) -> None:
    """The same paired test for the asset-level minimum-variance portfolio of `risk_backtest`
    (specific risk included; a model of a universe only, not of a factor-returns file), on the
    dates where every model has a warm outcome."""
    con = duckdb.connect(path, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        if "risk_backtest" not in tables:
            return
        frame = con.execute(
            "SELECT date, model, realised_return, predicted_risk FROM risk_backtest "
            "WHERE portfolio = 'min_variance' AND warm AND reason IS NULL"
        ).df()
    finally:
        con.close()
    ret = frame.pivot(index="date", columns="model", values="realised_return").dropna()
    risk = frame.pivot(index="date", columns="model", values="predicted_risk").loc[ret.index]
    t = len(ret)
    lags = newey_west_lags(t)
    base = ret[baseline].to_numpy()
    base_var = float(np.mean(base**2))
    print(
        f"\nasset-level minimum-variance portfolio (risk_backtest), {t} dates "
        f"{ret.index[0]:%Y-%m-%d} .. {ret.index[-1]:%Y-%m-%d}; against {baseline}"
    )
    print("| model | realised volatility | bias statistic | vs baseline | variance diff | SE | t |")
    print("|---|---|---|---|---|---|---|")
    for m in models:
        x = ret[m].to_numpy()
        vol = x.std(ddof=1) * math.sqrt(ANNUALISATION_DAYS)
        daily = risk[m].to_numpy() / math.sqrt(ANNUALISATION_DAYS)  # stored annualised
        bias = float(np.std(x / daily, ddof=1))
        cells = f"| {m} | {vol:.2%} | {bias:.3f} |"
        if m == baseline:
            print(cells + " | | | |")
            continue
        mv, sv = mean_and_hac_se(x**2 - base**2, lags)
        ratio = x.std(ddof=1) / base.std(ddof=1) - 1.0
        print(
            cells + f" {ratio:+.2%} | {mv / base_var:+.2%} | {sv / base_var:.2%} | {mv / sv:+.1f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
