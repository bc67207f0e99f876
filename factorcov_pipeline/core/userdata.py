"""User datasets ("bring your own data"): loading and validation.

A user dataset is a Parquet file, a CSV file, or a table of a DuckDB database holding one row per
(date, asset). `load_universe` turns it into the universe frame of ARCHITECTURE.md
(`date, asset_id, sector, [industry_group,] market_cap, asset_return, descriptor_* | exposure_*`)
after validating it; every problem is reported as an `InputDataError` whose message names the
file, the column, and the first few offending dates and assets with the total count. The format
and the table of bad inputs are in docs/user-data.md.

Design choices (why):

* Column names are matched case-insensitively (`Date`, `DATE` and `date` are the same column)
  because spreadsheets and SQL exports disagree on case; two columns that differ only by case
  are refused as ambiguous.
* Validation covers every row of the file inside the session range `[sessions[0],
  sessions[-1]]`, not only the requested `dates`, so that a file is accepted or refused as a
  whole and partitions never disagree about it. Rows after the last session are ignored (they
  belong to partitions not yet requested); weekend dates are refused anywhere.
* Returns from prices are close-to-close between *consecutive exchange sessions* only: a price
  gap (an asset missing on a session) gives no return for the day after the gap, instead of
  attributing a multi-day return to one day.
* Extreme returns are not an error (the regression clips them with `return_clip_bounds`), but a
  total return <= -1 is impossible (a price cannot fall below zero) and is refused, and a
  return column that looks like percent (median |r| > 0.2, or more than 5% of |r| > 1, while
  real daily equity returns have a median |r| of about 0.01) is refused with the hint to
  divide by 100.

This is the one module of the core that may import DuckDB, and only inside `_read_duckdb`.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from factorcov_pipeline.core.errors import InputDataError
from factorcov_pipeline.core.factors import (
    GROUP_MARKET,
    GROUP_STYLE,
    GROUP_TRBC,
    MARKET_FACTOR,
    STYLE_FACTORS,
    TRBC_SECTORS,
)
from factorcov_pipeline.core.settings import UniverseSettings

SUPPORTED_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".duckdb")

# Percent detection (see the module docstring): daily decimal returns have a median |r| near
# 0.01 and essentially never |r| > 1 (a one-day doubling); percent returns have a median |r|
# near 1 and |r| > 1 on about a third of the rows.
PERCENT_MEDIAN_ABS = 0.2
PERCENT_SHARE_ABOVE_ONE = 0.05

# How many offenders an error message lists before "... and N more".
MAX_SHOWN = 5

DESCRIPTOR_PREFIX = "descriptor_"
EXPOSURE_PREFIX = "exposure_"

_NUMERIC_KINDS = (
    pl.Float32,
    pl.Float64,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
)
_INTEGER_KINDS = _NUMERIC_KINDS[2:]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    """A DuckDB/SQL identifier quoted literally: wrapped in double quotes, inner quotes doubled.

    This is the SQL standard's delimited identifier, so any table name (quotes, semicolons,
    keywords) is read as one name and never as SQL.
    """
    return '"' + name.replace('"', '""') + '"'


def _read_duckdb(path: Path, table: str | None) -> pl.DataFrame:
    """Read one table of a DuckDB file, read-only (the file may be open elsewhere)."""
    import duckdb  # the one DuckDB import of the core, kept local on purpose

    if not table:
        raise InputDataError(
            f"{path}: a DuckDB dataset needs `universe.table` (the table to read) in the settings"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise InputDataError(f"{path}: cannot open as a DuckDB database: {err}") from None
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY table_name"
            ).fetchall()
        ]
        if table not in names:
            raise InputDataError(f"{path}: table {table!r} not found; tables in the file: {names}")
        return con.sql(f"SELECT * FROM {_quote_identifier(table)}").pl()
    finally:
        con.close()


def read_table(path: str | Path, table: str | None = None) -> pl.DataFrame:
    """Read a user file as it is (Parquet, CSV, or a DuckDB table); no validation yet.

    CSV columns keep the types polars infers (dates stay text until `_as_date` parses them), so that a non-numeric value in a numeric column surfaces as a type error that
    `load_universe` reports with its row.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputDataError(
            f"{p}: unsupported file type {suffix or '(none)'!r}; use one of {list(SUPPORTED_SUFFIXES)}"
        )
    _require_file(p)
    if suffix == ".csv":
        _check_csv_text(p)
    try:
        if suffix == ".parquet":
            return pl.read_parquet(p)
        if suffix == ".csv":
            # dates stay text here and are parsed (and reported per row) by `_as_date`
            return pl.read_csv(p, try_parse_dates=False, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as err:
        # polars' own hints name reader options the user cannot set: say what the file
        # should look like instead, with polars' first line as the reason.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputDataError(
            f"{p}: cannot read as {suffix[1:]}: {first[:200]}. {LOOKS_LIKE[suffix]}"
        ) from None
    return _read_duckdb(p, table)


LOOKS_LIKE = {
    ".csv": "A CSV dataset is UTF-8 text, comma-separated, with one header line of column names "
    "(date,asset_id,sector,market_cap,total_return,...; docs/user-data.md)",
    ".parquet": "A Parquet dataset is a Parquet file as written by polars, pandas or DuckDB "
    "(docs/user-data.md)",
}


def _require_file(p: Path) -> None:
    """Refuse a data path that is not a readable regular file, saying what it is."""
    try:
        os.stat(p)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputDataError(f"{p}: is a symbolic link loop, not a file") from None
        if p.is_symlink():
            raise InputDataError(
                f"{p}: is a symbolic link to {os.readlink(p)!r}, which does not exist"
            ) from None
        if err.errno == errno.ENOENT:
            raise InputDataError(f"{p}: file not found") from None
        raise InputDataError(f"{p}: cannot be read: {err.strerror}") from None
    if p.is_dir():
        raise InputDataError(f"{p}: is a directory, not a data file")
    if not p.is_file():
        raise InputDataError(f"{p}: is not a regular file")


def _check_csv_text(p: Path) -> None:
    """Refuse, with what the file should look like, the CSV files polars would misread or
    answer with hints about reader options: UTF-16/32 text, non-UTF-8 bytes, and separators
    other than commas (semicolons as in continental Excel exports, tabs)."""
    with p.open("rb") as f:
        head = f.read(64 * 1024)
    hint = LOOKS_LIKE[".csv"]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[:200].count(b"\x00") > 10:
        raise InputDataError(f"{p}: is UTF-16 (or UTF-32) text. {hint}")
    text = head.decode("utf-8", errors="replace")
    if "\ufffd" in text[: max(0, len(text) - 4)]:
        at = text.index("\ufffd")
        raise InputDataError(f"{p}: is not UTF-8 text (near character {at}). {hint}")
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    if not header:
        raise InputDataError(f"{p}: is empty (no header line). {hint}")
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if sep in header and "," not in header:
            raise InputDataError(f"{p}: its header line is separated by {name}, not commas. {hint}")


# --------------------------------------------------------------------------------------------
# Error helpers
# --------------------------------------------------------------------------------------------


def _fmt_value(v: object) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _raise_rows(source: str, bad: pl.DataFrame, column: str, problem: str, hint: str = "") -> None:
    """Raise an InputDataError listing the first rows of `bad` (date, asset_id, value)."""
    n = bad.height
    rows = bad.head(MAX_SHOWN).to_dicts()
    parts = []
    for r in rows:
        bits = []
        if "date" in r:
            bits.append(f"date {r['date']}")
        if "asset_id" in r:
            bits.append(f"asset {_fmt_value(r['asset_id'])}")
        if "factor" in r:
            bits.append(f"factor {_fmt_value(r['factor'])}")
        if column in r:
            bits.append(f"{column}={_fmt_value(r[column])}")
        parts.append("(" + ", ".join(bits) + ")")
    more = f" ... and {n - len(rows)} more" if n > len(rows) else ""
    msg = f"{source}: column {column!r}: {n} row(s) {problem}: {'; '.join(parts)}{more}"
    if hint:
        msg += f". {hint}"
    raise InputDataError(msg)


def _lower_columns(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    lowered = [c.strip().lower() for c in frame.columns]
    if len(set(lowered)) != len(lowered):
        dupes = sorted({c for c in lowered if lowered.count(c) > 1})
        raise InputDataError(
            f"{source}: columns that differ only by case or spaces: {dupes} "
            "(column names are case-insensitive)"
        )
    return frame.rename(dict(zip(frame.columns, lowered, strict=True)))


def _require_columns(frame: pl.DataFrame, source: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputDataError(
            f"{source}: missing required column(s) {missing}; the file has {frame.columns}"
        )


def _key_columns(frame: pl.DataFrame, keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k in frame.columns]


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------


def _as_date(frame: pl.DataFrame, source: str, keys: Sequence[str]) -> pl.DataFrame:
    """Make `date` a polars Date; ISO strings and midnight datetimes are accepted."""
    dtype = frame.schema["date"]
    col = pl.col("date")
    if dtype == pl.Date:
        out = frame
    elif isinstance(dtype, pl.Datetime):
        with_time = frame.filter(col.dt.time() != dt.time(0))
        if with_time.height:
            _raise_rows(
                source,
                with_time.select(*_key_columns(with_time, keys)),
                "date",
                "with a time of day (expected a date)",
            )
        out = frame.with_columns(col.dt.date())
    elif dtype == pl.String:
        parsed = col.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        bad = frame.filter(parsed.is_null() & col.is_not_null())
        if bad.height:
            _raise_rows(
                source,
                bad.select(*_key_columns(bad, keys)),
                "date",
                "that are not dates (expected YYYY-MM-DD)",
            )
        out = frame.with_columns(parsed)
    else:
        raise InputDataError(
            f"{source}: column 'date' has type {dtype}; expected a date (YYYY-MM-DD)"
        )
    nulls = out.filter(pl.col("date").is_null())
    if nulls.height:
        _raise_rows(source, nulls.select(*_key_columns(nulls, keys)), "date", "without a date")
    return out


def _as_string(frame: pl.DataFrame, source: str, column: str, keys: Sequence[str]) -> pl.DataFrame:
    """Make a label column a String; integer ids are accepted (cast), empty labels refused."""
    dtype = frame.schema[column]
    if (
        dtype in (pl.String, pl.Categorical)
        or isinstance(dtype, pl.Enum)
        or dtype in _INTEGER_KINDS
    ):
        out = frame.with_columns(pl.col(column).cast(pl.String))
    else:
        raise InputDataError(f"{source}: column {column!r} has type {dtype}; expected text")
    bad = out.filter(pl.col(column).is_null() | (pl.col(column).str.strip_chars() == ""))
    if bad.height:
        _raise_rows(
            source, bad.select(*_key_columns(bad, [*keys, column])), column, "that are empty"
        )
    return out


def _as_float(frame: pl.DataFrame, source: str, column: str, keys: Sequence[str]) -> pl.DataFrame:
    """Make a numeric column Float64; text (e.g. 'n/a' in a CSV) is a type error with its rows."""
    dtype = frame.schema[column]
    if dtype in _NUMERIC_KINDS or isinstance(dtype, pl.Decimal):
        return frame.with_columns(pl.col(column).cast(pl.Float64))
    if dtype == pl.Null:
        return frame.with_columns(pl.col(column).cast(pl.Float64))
    if dtype == pl.String:
        parsed = pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)
        bad = frame.filter(parsed.is_null() & pl.col(column).is_not_null())
        if bad.height:
            _raise_rows(
                source,
                bad.select(*_key_columns(bad, [*keys, column])),
                column,
                "that are not numbers (the column must be numeric)",
            )
        return frame.with_columns(parsed)
    raise InputDataError(f"{source}: column {column!r} has type {dtype}; expected a number")


def _check_finite(
    frame: pl.DataFrame, source: str, column: str, keys: Sequence[str], allow_null: bool
) -> None:
    x = pl.col(column)
    bad = frame.filter(x.is_nan() | x.is_infinite())
    if bad.height:
        _raise_rows(
            source,
            bad.select(*_key_columns(bad, [*keys, column])),
            column,
            "that are NaN or infinite",
            "Leave a missing value empty (null) instead" if allow_null else "",
        )
    if not allow_null:
        nulls = frame.filter(x.is_null())
        if nulls.height:
            _raise_rows(
                source, nulls.select(*_key_columns(nulls, [*keys, column])), column, "missing"
            )


def _check_percent(frame: pl.DataFrame, source: str, column: str, keys: Sequence[str]) -> None:
    """Refuse returns that look like percent (see PERCENT_MEDIAN_ABS, PERCENT_SHARE_ABOVE_ONE)."""
    r = frame.get_column(column).drop_nulls()
    if r.len() == 0:
        return
    abs_r = r.abs()
    median_abs = float(abs_r.median() or 0.0)  # type: ignore[arg-type]
    share = float((abs_r > 1.0).mean() or 0.0)  # type: ignore[arg-type]
    if median_abs > PERCENT_MEDIAN_ABS or share > PERCENT_SHARE_ABOVE_ONE:
        big = frame.filter(pl.col(column).abs() > 1.0)
        if big.height == 0:
            big = frame.filter(pl.col(column).abs() > PERCENT_MEDIAN_ABS)
        _raise_rows(
            source,
            big.select(*_key_columns(big, [*keys, column])),
            column,
            f"out of a decimal return's range (median |r| = {median_abs:.3g}, "
            f"{share:.1%} of |r| > 1)",
            "The column looks like percent; divide by 100 (returns must be decimals, 0.01 = 1%)",
        )


def _check_duplicates(frame: pl.DataFrame, source: str, keys: Sequence[str]) -> None:
    dup = frame.filter(pl.struct(*keys).is_duplicated()).select(*keys).unique().sort(*keys)
    if dup.height:
        _raise_rows(source, dup, keys[-1], f"with duplicate ({', '.join(keys)}) pairs")


def _check_sessions(
    frame: pl.DataFrame,
    source: str,
    sessions: Sequence[dt.date],
    keys: Sequence[str],
    bounds: tuple[dt.date, dt.date] | None = None,
) -> pl.DataFrame:
    """Refuse weekends anywhere and non-sessions inside the session range; drop rows beyond it.

    Rows before the first session or after the last one are outside the model's calendar and
    are dropped (they are not validated); weekends are refused wherever they are because they
    can never be sessions. `bounds` overrides the range checked (default: the sessions' span).
    """
    weekend = frame.filter(pl.col("date").dt.weekday() >= 6)
    if weekend.height:
        _raise_rows(
            source,
            weekend.select(*_key_columns(weekend, keys)).sort("date"),
            "date",
            "on a weekend (not exchange sessions)",
        )
    if bounds is None and not sessions:
        raise InputDataError(f"{source}: no exchange sessions were given to load")
    lo, hi = bounds if bounds is not None else (min(sessions), max(sessions))
    inside = frame.filter(pl.col("date").is_between(lo, hi))
    session_set = pl.Series("s", list(sessions), dtype=pl.Date)
    off = inside.filter(~pl.col("date").is_in(session_set.implode()))
    if off.height:
        off_dates = off.get_column("date").unique().sort()
        _raise_rows(
            source,
            off.select(*_key_columns(off, keys)).sort(*_key_columns(off, keys)),
            "date",
            f"on dates that are not exchange sessions (holidays), {off_dates.len()} distinct "
            f"date(s): {[str(d) for d in off_dates.head(MAX_SHOWN).to_list()]}",
        )
    return inside


# --------------------------------------------------------------------------------------------
# Returns from prices
# --------------------------------------------------------------------------------------------


def returns_from_prices(frame: pl.DataFrame, sessions: Sequence[dt.date]) -> pl.Series:
    """Close-to-close returns p_t / p_{t-1} - 1 per asset, only between consecutive sessions.

    `frame` has `date, asset_id, price` (any row order; dates must be in `sessions`). The return
    of (t, asset) is null when the asset has no price (or a null price) on the previous session
    of `sessions`: the return over a gap is dropped, never attributed to the day after it.
    Returned in `frame`'s row order.
    """
    idx = pl.DataFrame(
        {"date": list(sessions), "_s": np.arange(len(sessions), dtype=np.int64)},
        schema={"date": pl.Date, "_s": pl.Int64},
    )
    work = (
        frame.select("date", "asset_id", "price")
        .with_row_index("_row")
        .join(idx, on="date", how="left")
        .sort("asset_id", "_s")
    )
    prev_price = pl.col("price").shift(1).over("asset_id")
    prev_s = pl.col("_s").shift(1).over("asset_id")
    ret = pl.when(prev_s == pl.col("_s") - 1).then(pl.col("price") / prev_price - 1.0)
    return work.with_columns(ret.alias("asset_return")).sort("_row").get_column("asset_return")


# --------------------------------------------------------------------------------------------
# The universe loader
# --------------------------------------------------------------------------------------------


# Market caps are weights: the regression weighs by sqrt(cap) and the zero-sum constraint by
# cap. Any currency unit works (dollars or millions), but values outside [MIN_CAP, MAX_CAP], or
# a date whose largest cap exceeds its smallest by more than MAX_CAP_RATIO, are data errors (a
# 1e300 cap makes the constraint lose every other sector to rounding; 5e-324 or 1.7e308
# underflow or overflow the weighted sums). The world's largest company is about 4e12 dollars.
MIN_CAP = 1e-6
MAX_CAP = 1e15
MAX_CAP_RATIO = 1e9


def _check_cap_range(frame: pl.DataFrame, source: str, keys: Sequence[str]) -> None:
    cap = pl.col("market_cap")
    out = frame.filter((cap < MIN_CAP) | (cap > MAX_CAP))
    if out.height:
        _raise_rows(
            source,
            out.select(*keys, "market_cap"),
            "market_cap",
            f"outside the sane range [{MIN_CAP:g}, {MAX_CAP:g}]",
            "Give caps in one currency unit (dollars or millions), all of one order of magnitude",
        )
    ratio = frame.group_by("date").agg((cap.max() / cap.min()).alias("ratio"))
    wide = ratio.filter(pl.col("ratio") > MAX_CAP_RATIO).sort("date")
    if wide.height:
        day = wide["date"][0]
        raise InputDataError(
            f"{source}: column 'market_cap': on {wide.height} date(s) (first {day}) the largest "
            f"cap is {wide['ratio'][0]:.3g} times the smallest, more than {MAX_CAP_RATIO:g}: "
            "mixed units? Give every cap in the same currency unit"
        )


def _style_columns(frame: pl.DataFrame, source: str) -> list[str]:
    """The descriptor_*/exposure_* columns; a style given both ways is ambiguous."""
    desc = {c[len(DESCRIPTOR_PREFIX) :] for c in frame.columns if c.startswith(DESCRIPTOR_PREFIX)}
    expo = {c[len(EXPOSURE_PREFIX) :] for c in frame.columns if c.startswith(EXPOSURE_PREFIX)}
    both = sorted(desc & expo)
    if both:
        raise InputDataError(
            f"{source}: style(s) {both} have both a descriptor_ and an exposure_ column; "
            "give each style one way only"
        )
    return sorted(c for c in frame.columns if c.startswith((DESCRIPTOR_PREFIX, EXPOSURE_PREFIX)))


def _check_categories(
    frame: pl.DataFrame, source: str, column: str, allowed: Sequence[str], keys: Sequence[str]
) -> None:
    bad = frame.filter(~pl.col(column).is_in(pl.Series(list(allowed), dtype=pl.String).implode()))
    if bad.height:
        names = sorted(set(bad.get_column(column).to_list()))
        shown = names[:MAX_SHOWN]
        _raise_rows(
            source,
            bad.select(*_key_columns(bad, [*keys, column])),
            column,
            f"with unknown {column} name(s) {shown}{' ...' if len(names) > len(shown) else ''}",
            f"Allowed names (TRBC, exactly as spelled): {list(allowed)}",
        )


def load_universe(
    settings: UniverseSettings,
    sessions: Sequence[dt.date],
    sectors: Sequence[str],
    dates: Sequence[dt.date] | None = None,
    styles: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Load and validate a user dataset; return the universe frame of ARCHITECTURE.md.

    `styles` (optional): the model's style factors. Each must be in the file as a
    `descriptor_<style>` or an `exposure_<style>` column (else an InputDataError names the
    missing styles and the setting that selects them); style columns of other styles are
    dropped.

    `settings.dataset` is a `.parquet`, `.csv` or `.duckdb` path (then `settings.table` names
    the table). `sessions` are the exchange sessions of the model's calendar (ascending);
    `sectors` are the model's category names (the 13 TRBC economic sectors, or the TRBC
    industry groups: then the file needs an `industry_group` column validated against them and
    `sector` is validated against the 13 economic sectors). `dates` restricts the output to
    those dates; the whole file inside the session range is still validated, and returns from
    prices use the previous session's price even when that session is not in `dates`.

    Output columns: `date` (Date), `asset_id` (String), `sector` (String), `industry_group`
    (String, when given), `market_cap` (Float64 > 0), `asset_return` (Float64, null where
    missing), then the file's `descriptor_*` / `exposure_*` columns (Float64, null where
    missing), sorted by date and asset_id. Every problem raises `InputDataError`.
    """
    path = Path(settings.dataset)
    source = (
        str(path)
        if not settings.table or path.suffix.lower() != ".duckdb"
        else (f"{path} (table {settings.table!r})")
    )
    raw = read_table(path, settings.table)
    frame = _lower_columns(raw, source)
    keys = ("date", "asset_id")

    # Required columns, with the specific messages users need.
    _require_columns(frame, source, ["date", "asset_id", "sector"])
    if "market_cap" not in frame.columns:
        raise InputDataError(
            f"{source}: missing required column 'market_cap'. Market caps give the regression "
            "weights (sqrt cap) and the sector zero-sum constraint; there is no implicit "
            "fallback. Supply a cap or a documented proxy in 'market_cap' (see "
            "docs/user-data.md, e.g. the S&P 500 example's dollar-volume proxy)"
        )
    has_ret, has_price = "total_return" in frame.columns, "price" in frame.columns
    if has_ret == has_price:
        raise InputDataError(
            f"{source}: supply exactly one of the columns 'total_return' (decimal) or 'price' "
            f"(close); the file has {'both' if has_ret else 'neither'} (columns: {frame.columns})"
        )
    value_col = "total_return" if has_ret else "price"
    categories_are_groups = not set(sectors) <= set(TRBC_SECTORS)
    if categories_are_groups and "industry_group" not in frame.columns:
        raise InputDataError(
            f"{source}: the model's categories are TRBC industry groups "
            "(universe.trbc_level='industry_group') but the file has no 'industry_group' column"
        )
    styles_wanted = None if styles is None else [st.lower() for st in styles]
    styles = _style_columns(frame, source)
    if styles_wanted is not None:
        given = {c.split("_", 1)[1] for c in styles}
        lacking = [st for st in styles_wanted if st not in given]
        if lacking:
            raise InputDataError(
                f"{source}: the model's style factor(s) {lacking} have neither a "
                f"'descriptor_<style>' nor an 'exposure_<style>' column. Supply them, or restrict "
                "the model with factor_model_settings.exposures (the style group's `factors`)"
            )
        styles = [c for c in styles if c.split("_", 1)[1] in styles_wanted]
    labels = ["sector", *(["industry_group"] if "industry_group" in frame.columns else [])]
    frame = frame.select("date", "asset_id", *labels, "market_cap", value_col, *styles)

    # Types.
    frame = _as_date(frame, source, keys)
    frame = _as_string(frame, source, "asset_id", ["date"])
    for c in labels:
        frame = _as_string(frame, source, c, keys)
    for c in ["market_cap", value_col, *styles]:
        frame = _as_float(frame, source, c, keys)

    # Calendar, duplicates, categories.
    frame = _check_sessions(frame, source, sessions, keys)
    _check_duplicates(frame, source, keys)
    if categories_are_groups:
        _check_categories(frame, source, "sector", TRBC_SECTORS, keys)
        _check_categories(frame, source, "industry_group", sectors, keys)
    else:
        _check_categories(frame, source, "sector", sectors, keys)

    # Values.
    _check_finite(frame, source, "market_cap", keys, allow_null=False)
    bad_cap = frame.filter(pl.col("market_cap") <= 0)
    if bad_cap.height:
        _raise_rows(
            source, bad_cap.select(*keys, "market_cap"), "market_cap", "that are not positive"
        )
    _check_cap_range(frame, source, keys)
    _check_finite(frame, source, value_col, keys, allow_null=True)
    for c in styles:
        _check_finite(frame, source, c, keys, allow_null=True)
    if has_ret:
        impossible = frame.filter(pl.col("total_return") <= -1.0)
        if impossible.height:
            _check_percent(frame, source, "total_return", keys)
            _raise_rows(
                source,
                impossible.select(*keys, "total_return"),
                "total_return",
                "at or below -1 (a total return cannot lose more than 100%)",
            )
        _check_percent(frame, source, "total_return", keys)
        frame = frame.rename({"total_return": "asset_return"})
    else:
        bad_price = frame.filter(pl.col("price") <= 0)
        if bad_price.height:
            _raise_rows(source, bad_price.select(*keys, "price"), "price", "that are not positive")
        frame = frame.with_columns(returns_from_prices(frame, sessions).alias("asset_return"))
        frame = frame.drop("price")

    if dates is not None:
        wanted = pl.Series("d", list(dates), dtype=pl.Date)
        frame = frame.filter(pl.col("date").is_in(wanted.implode()))
    return frame.select("date", "asset_id", *labels, "market_cap", "asset_return", *styles).sort(
        "date", "asset_id"
    )


# --------------------------------------------------------------------------------------------
# User factor returns
# --------------------------------------------------------------------------------------------


def _default_group(name: str) -> str:
    if name == MARKET_FACTOR:
        return GROUP_MARKET
    if name in STYLE_FACTORS:
        return GROUP_STYLE
    if name in TRBC_SECTORS:
        return GROUP_TRBC
    return "user"


def load_factor_returns(path: str) -> pl.DataFrame:
    """Load and validate user factor returns: long `date, factor, factor_return[, factor_group]`.

    Parquet or CSV. Refused (InputDataError naming file, date, factor, column): missing
    columns, wrong types, NaN/infinite/missing factor returns, duplicate (date, factor) pairs,
    dates that are not XNYS sessions, a factor without a return on some date of the file (the
    covariance recursions need a full panel), and returns that look like percent. Without
    `factor_group`, the group is `market`/`style`/`trbc` for the tutorial's names and `user`
    otherwise. Returns `date, factor, factor_group, factor_return` sorted by date and factor.
    """
    from factorcov_pipeline.core import calendar  # exchange-calendars is only needed here

    p = Path(path)
    if p.suffix.lower() == ".duckdb":
        raise InputDataError(f"{p}: factor returns must be a Parquet or CSV file")
    source = str(p)
    frame = _lower_columns(read_table(p), source)
    _require_columns(frame, source, ["date", "factor", "factor_return"])
    keys = ("date", "factor")
    has_group = "factor_group" in frame.columns
    frame = frame.select(
        "date", "factor", *(["factor_group"] if has_group else []), "factor_return"
    )
    frame = _as_date(frame, source, keys)
    frame = _as_string(frame, source, "factor", ["date"])
    if has_group:
        frame = _as_string(frame, source, "factor_group", keys)
    else:
        frame = frame.with_columns(
            pl.col("factor")
            .map_elements(_default_group, return_dtype=pl.String)
            .alias("factor_group")
        )
    frame = _as_float(frame, source, "factor_return", keys)
    if frame.height == 0:
        raise InputDataError(f"{source}: no rows")
    lo, hi = frame["date"].min(), frame["date"].max()
    sessions = calendar.sessions(lo, hi)  # type: ignore[arg-type]
    _check_sessions(frame, source, sessions, keys, bounds=(lo, hi))  # type: ignore[arg-type]
    _check_duplicates(frame, source, keys)
    _check_finite(frame, source, "factor_return", keys, allow_null=False)
    _check_percent(frame, source, "factor_return", keys)
    full = frame.select("date").unique().join(frame.select("factor").unique(), how="cross")
    missing = full.join(frame, on=["date", "factor"], how="anti").sort("date", "factor")
    if missing.height:
        _raise_rows(
            source,
            missing,
            "factor_return",
            "missing: a factor has no return on a date where other factors have one",
        )
    return frame.select("date", "factor", "factor_group", "factor_return").sort("date", "factor")
