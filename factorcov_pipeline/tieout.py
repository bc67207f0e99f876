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


def vol_from_vcov(df_vcov: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's ``df_vol``: ``sqrt(diag)`` of each date's block of ``df_vcov``."""
    # calculate actual factor volatilities from vcovs
    df_vol = df_vcov.groupby(level="date").apply(
        lambda df: pd.Series(np.diag(df) ** 0.5, df.index.droplevel("date"))
    )
    df_vol.columns.name = None
    return df_vol


def cor_from_vcov(df_vcov: pd.DataFrame) -> pd.DataFrame:
    """The tutorial's ``df_cor``: each date's block of ``df_vcov`` over ``outer(sd, sd)``."""
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
