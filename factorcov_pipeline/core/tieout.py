"""The vendor tutorial's pandas tie-out code, verbatim, as functions.

Source: ``factor-covariance-tutorial.txt`` ("Manually replicating the covariance forecasts" and
the df_vol / df_cor split of ``df_vcov``). The bodies of `tutorial_vol_tieout`,
`tutorial_cor_tieout`, `vol_from_vcov` and `cor_from_vcov` are the tutorial's statements with
``report_settings.factor_cov_settings.halflife_*`` replaced by a parameter; the ``*_f64``
variants drop only the ``.astype(np.float32)`` cast so they can be compared to 1e-12.
Shipped with the package (pandas is a dependency) so the Dagster asset checks can run them.

Inputs: ``df_factor_returns`` indexed by ``date`` with one column per factor (the tutorial's
``risk_model.fret()...set_index("date")``); ``df_vcov`` indexed by ``[date, factor]`` with one
column per factor (the tutorial's ``df_report.to_pandas().set_index(["date", "factor"])``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def tutorial_vol_tieout(df_factor_returns: pd.DataFrame, halflife_vol: float) -> pd.DataFrame:
    """The tutorial's ``df_vol_tieout`` (float32, annualised)."""
    # calculate expected factor volatilities using the ewma
    df_vol_tieout = (
        pd.DataFrame(df_factor_returns**2).ewm(halflife=halflife_vol).mean().astype(np.float32)
        ** 0.5
        * 252**0.5
    )
    return df_vol_tieout


def tutorial_vol_tieout_f64(df_factor_returns: pd.DataFrame, halflife_vol: float) -> pd.DataFrame:
    """`tutorial_vol_tieout` without the float32 cast."""
    df_vol_tieout = (
        pd.DataFrame(df_factor_returns**2).ewm(halflife=halflife_vol).mean() ** 0.5 * 252**0.5
    )
    return df_vol_tieout


def _outer(df_factor_returns: pd.DataFrame) -> pd.DataFrame:
    # calculate the ewma on the outer product (vcov with mean zero)
    df_factor_returns_outer = df_factor_returns.groupby("date").apply(
        lambda df: pd.DataFrame(np.outer(df, df), df.columns, df.columns)
    )
    df_factor_returns_outer.index.names = ["date", "factor"]
    return df_factor_returns_outer


def _cor(df_factor_returns: pd.DataFrame, halflife_cor: float, float32: bool) -> pd.DataFrame:
    df_factor_returns_outer = _outer(df_factor_returns)
    df_cor_tieout = (
        pd.DataFrame(df_factor_returns_outer)
        .unstack()
        .ewm(halflife=halflife_cor)
        .mean()
        .stack(future_stack=True)
        .reindex(df_factor_returns_outer.columns, axis=1)
        .groupby("date")
        .apply(lambda df: df.droplevel("date") / np.outer(np.diag(df) ** 0.5, np.diag(df) ** 0.5))
    )
    if float32:
        df_cor_tieout = df_cor_tieout.astype(np.float32)
    return df_cor_tieout


def tutorial_cor_tieout(df_factor_returns: pd.DataFrame, halflife_cor: float) -> pd.DataFrame:
    """The tutorial's ``df_cor_tieout`` (float32), index ``[date, factor]``."""
    return _cor(df_factor_returns, halflife_cor, float32=True)


def tutorial_cor_tieout_f64(df_factor_returns: pd.DataFrame, halflife_cor: float) -> pd.DataFrame:
    """`tutorial_cor_tieout` without the float32 cast."""
    return _cor(df_factor_returns, halflife_cor, float32=False)


def tutorial_cor_tieout_since(
    df_factor_returns: pd.DataFrame, halflife_cor: float, since: pd.Timestamp, float32: bool = True
) -> pd.DataFrame:
    """`tutorial_cor_tieout` (or its ``_f64`` variant) for the dates >= ``since`` only, at a cost
    that does not grow with the history before them (benchmark 4: a daily run's check).

    The tutorial's statement has two per-date steps (the outer products by ``groupby("date")
    .apply`` and the final normalisation by ``groupby("date").apply``) around the one step that
    spans the history (``unstack().ewm(halflife).mean()``). Here the outer products are formed
    for all dates at once (the same ``x_i * x_j`` products, so bit-identical to ``np.outer``),
    the pandas EWMA runs unchanged over the whole history, and the rows before ``since`` are
    dropped before the per-date normalisation, which runs for all wanted dates in one numpy
    expression (`_normalised`, the tutorial's lambda element by element). Every remaining
    statement is the tutorial's; tests/test_tieout.py asserts the result equals
    the verbatim code's rows exactly (``check_exact``).
    """
    x = df_factor_returns.to_numpy()
    n, k = x.shape
    df_factor_returns_outer = pd.DataFrame(
        (x[:, :, None] * x[:, None, :]).reshape(n * k, k),
        # levels in the frame's own order, as the groupby-apply builds them (`from_product`
        # would sort the factor level, and the tutorial's positional `np.diag` relies on the
        # stacked rows and the reindexed columns sharing one order)
        index=pd.MultiIndex(
            levels=[df_factor_returns.index, df_factor_returns.columns],
            codes=[np.repeat(np.arange(n), k), np.tile(np.arange(k), n)],
            names=["date", "factor"],
        ),
        columns=df_factor_returns.columns,
    )
    ewma = pd.DataFrame(df_factor_returns_outer).unstack().ewm(halflife=halflife_cor).mean()
    ewma = ewma.loc[ewma.index >= since]
    df_cor_tieout = _normalised(
        ewma.stack(future_stack=True).reindex(df_factor_returns_outer.columns, axis=1)
    )
    if float32:
        df_cor_tieout = df_cor_tieout.astype(np.float32)
    return df_cor_tieout


def _date_blocks(df: pd.DataFrame) -> np.ndarray | None:
    """``df`` (index ``[date, factor]``, k columns) as an (n_dates, k, k) array when it has the
    shape the tutorial's per-date ``groupby("date").apply`` sees block by block: k rows per date,
    the same row labels in the same order for every date, dates in increasing order (groupby's
    sorted groups). None otherwise (the callers then run the tutorial's groupby as written)."""
    n_rows, k = df.shape
    if k == 0 or n_rows == 0 or n_rows % k:
        return None
    n = n_rows // k
    dates = np.asarray(df.index.get_level_values(0)).reshape(n, k)
    rows = np.asarray(df.index.get_level_values(-1)).reshape(n, k)
    if not ((dates == dates[:, :1]).all() and (rows == rows[:1]).all()):
        return None
    if not pd.Index(dates[:, 0]).is_monotonic_increasing or pd.Index(dates[:, 0]).has_duplicates:
        return None
    return df.to_numpy().reshape(n, k, k)


def _normalised(df: pd.DataFrame) -> pd.DataFrame:
    """Each date's block over ``np.outer(np.diag(block) ** 0.5, np.diag(block) ** 0.5)``, the
    tutorial's lambda, for all dates in one numpy expression: the same element operations
    (``x_ij / (sqrt(d_i) * sqrt(d_j))``, positional diagonal), so the same bits
    (tests/test_tieout.py, ``check_exact``); the per-date groupby cost 1.6 s over 2,263 dates."""
    blocks = _date_blocks(df)
    if blocks is None:
        return df.groupby("date").apply(
            lambda df: df.droplevel("date") / np.outer(np.diag(df) ** 0.5, np.diag(df) ** 0.5)
        )
    sd = np.diagonal(blocks, axis1=1, axis2=2) ** 0.5
    # A factor of zero volatility (a sector without assets) gives 0/0 = NaN, as the tutorial's
    # pandas division does; pandas computes it without numpy's RuntimeWarning ("invalid value
    # encountered in divide", printed three times per check), and so does this. The checks say
    # it once, in words (`zero_volatility_factors`).
    with np.errstate(invalid="ignore", divide="ignore"):
        out = blocks / (sd[:, :, None] * sd[:, None, :])
    return pd.DataFrame(out.reshape(df.shape), index=df.index, columns=df.columns)


def zero_volatility_factors(df_vcov: pd.DataFrame) -> dict[pd.Timestamp, list[str]]:
    """The factors whose forecast variance (the diagonal of ``df_vcov``) is 0 on each date that
    has one: their correlations are 0/0, NaN in both frames of the correlation tie-out (a
    sector without assets has factor return 0 and so volatility 0)."""
    rows = df_vcov.index.get_level_values(-1)
    cols = df_vcov.columns.get_indexer(rows)  # each row's own column: the diagonal
    values = df_vcov.to_numpy()
    found = np.flatnonzero((cols >= 0) & (values[np.arange(len(rows)), np.maximum(cols, 0)] == 0))
    names = pd.Series(rows[found].astype(str), index=df_vcov.index.get_level_values(0)[found])
    return {day: list(group) for day, group in names.groupby(level=0)}


def vol_from_vcov(df_vcov: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's ``df_vol``: ``sqrt(diag)`` of each date's block of ``df_vcov``, for all
    dates in one numpy expression (the same bits as `vol_from_vcov_verbatim`, tested)."""
    blocks = _date_blocks(df_vcov)
    if blocks is None:
        return vol_from_vcov_verbatim(df_vcov)
    k = df_vcov.shape[1]
    return pd.DataFrame(
        np.diagonal(blocks, axis1=1, axis2=2) ** 0.5,
        index=df_vcov.index.get_level_values("date")[::k],
        columns=pd.Index(df_vcov.index.get_level_values(-1)[:k].to_numpy()),
    )


def cor_from_vcov(df_vcov: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's ``df_cor``, for all dates in one numpy expression (`_normalised`; the same
    bits as `cor_from_vcov_verbatim`, tested)."""
    return _normalised(df_vcov)


def vol_from_vcov_verbatim(df_vcov: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's ``df_vol`` statement as written."""
    # calculate actual factor volatilities from vcovs
    df_vol = df_vcov.groupby(level="date").apply(
        lambda df: pd.Series(np.diag(df) ** 0.5, df.index.droplevel("date"))
    )
    df_vol.columns.name = None
    return df_vol


def cor_from_vcov_verbatim(df_vcov: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's ``df_cor`` statement as written: each date's block over ``outer(sd, sd)``."""
    # calculate actual factor correlations from vcovs
    df_cor = df_vcov.groupby(level="date").apply(
        lambda df: df.droplevel("date") / np.outer(np.diag(df) ** 0.5, np.diag(df) ** 0.5)
    )
    return df_cor


def vcov_from_report(df_report: object) -> pd.DataFrame:
    """The tutorial's ``df_vcov`` from our `covariance_report` polars frame (date, factor, ...)."""
    df_vcov = (
        df_report.to_pandas()  # type: ignore[attr-defined]
        .set_index(["date", "factor"])
        .rename(columns=lambda c: c.split("^")[0])
    )
    return df_vcov
