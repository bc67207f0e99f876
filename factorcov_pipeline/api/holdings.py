"""Holdings files: CSV, Parquet, or a table of a DuckDB file, read and validated
(`core/holdings.py` validates; this module reads)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from factorcov_pipeline.core.holdings import HoldingsError, validate_holdings


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
