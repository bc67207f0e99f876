"""Holdings: CSV, Parquet, a table of a DuckDB file, or (the Python API) a polars/pandas frame
or a mapping, read here and validated by `core/holdings.py`."""

from __future__ import annotations

import decimal
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from factorcov_pipeline.core.holdings import (
    EXACT_INTEGER,
    HoldingsError,
    brief,
    printable,
    validate_holdings,
)


def read_holdings_file(path: str | Path, table: str | None = None) -> pl.DataFrame:
    """The rows of a holdings file (CSV, Parquet, or a DuckDB file's ``table``), unvalidated."""
    p = Path(path)
    if not p.is_file():
        raise HoldingsError(f"holdings file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(p, schema_overrides={"asset_id": pl.String, "portfolio": pl.String})
        if suffix == ".parquet":
            return pl.read_parquet(p)
        if suffix == ".duckdb":
            import duckdb

            if not table:
                raise HoldingsError(f"holdings {p}: a DuckDB file needs the table name (table)")
            with duckdb.connect(str(p), read_only=True) as con:
                rel = con.sql(f'SELECT * FROM "{table.replace(chr(34), chr(34) * 2)}"')
                frame = pl.from_arrow(rel.to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            return frame
    except HoldingsError:
        raise
    except Exception as err:  # unreadable file: one line naming it
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HoldingsError(f"holdings {p} cannot be read: {first}") from None
    raise HoldingsError(f"holdings {p}: unsupported file type {suffix!r} (use .csv or .parquet)")


def load_holdings(path: str | Path) -> pl.DataFrame:
    """One portfolio's holdings (asset_id, weight) from a CSV or Parquet file, validated."""
    return validate_holdings(read_holdings_file(path), str(path))


def load_standing_holdings(path: str, table: str | None = None) -> pl.DataFrame:
    """Standing portfolios (portfolio, asset_id, weight) from a file or DuckDB table."""
    source = f"{path}" + (f" table {table}" if table else "")
    return validate_holdings(read_holdings_file(path, table), source, standing=True)


HoldingsLike = Any  # a path, a polars or pandas DataFrame, a pandas Series or a mapping


def holdings_input(holdings: HoldingsLike, label: str) -> tuple[pl.DataFrame, str]:
    """The rows of holdings given to the Python API, unvalidated, and the source that
    messages name: a CSV/Parquet path (named by its path), a polars or pandas DataFrame with
    columns ``asset_id, weight``, a pandas Series of weights indexed by asset id, or a mapping
    ``{asset_id: weight}`` (named by ``label``, e.g. "portfolio")."""
    if isinstance(holdings, (str, os.PathLike)):
        return read_holdings_file(holdings), str(holdings)
    source = f"({label})"
    if isinstance(holdings, pl.DataFrame):
        return holdings, source
    module = type(holdings).__module__.split(".")[0]
    try:
        if module == "pandas" and hasattr(holdings, "to_frame") and hasattr(holdings, "index"):
            holdings = dict(holdings.items())  # a Series: weights by asset id
        elif module == "pandas":
            frame = pl.from_pandas(holdings)
            assert isinstance(frame, pl.DataFrame)
            return frame, source
        if isinstance(holdings, Mapping):
            # the input is a Python mapping: its values are checked as Python objects (a bool
            # is an int to Python and would silently become a weight of 1.0)
            bad = [
                k
                for k, v in holdings.items()
                if isinstance(v, (bool, np.bool_))
                or not isinstance(v, (numbers.Real, decimal.Decimal))
            ]
            if bad:
                example = holdings[bad[0]]
                raise HoldingsError(
                    f"holdings {source}: weight is not a number for asset(s) {brief(bad)} "
                    f"(e.g. {printable(repr(example))[:40]})"
                )
            big = [
                k
                for k, v in holdings.items()
                if isinstance(v, numbers.Integral) and abs(int(v)) > EXACT_INTEGER
            ]
            if big:
                raise HoldingsError(
                    f"holdings {source}: weight {holdings[big[0]]} of asset {printable(big[0])} "
                    "is an integer beyond 2^53, which a float64 cannot hold exactly"
                )
            return pl.DataFrame(
                {
                    "asset_id": pl.Series(list(holdings.keys()), strict=False),
                    "weight": pl.Series([float(v) for v in holdings.values()], dtype=pl.Float64),
                }
            ), source
    except (TypeError, ValueError, pl.exceptions.PolarsError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HoldingsError(f"holdings {source} cannot be read: {first}") from None
    raise HoldingsError(
        f"holdings {source}: expected a CSV/Parquet path, a polars or pandas DataFrame "
        f"(asset_id, weight), a pandas Series or a mapping of asset_id to weight; got "
        f"{type(holdings).__name__}"
    )
