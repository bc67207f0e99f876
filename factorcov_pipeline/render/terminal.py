"""Terminal output of `factorcov sql`: a query's rows as a readable table, CSV, JSON or markdown.

Plain Python (no Dagster); the command itself is thin in `cli.py`. The table format never
truncates a value (no ellipsis): a result wider than the terminal is split into blocks of
columns that fit, each block repeating the leading key columns (dates, names), the way R and
MATLAB print wide matrices; a single value wider than its column is folded onto more lines. It
shows at most `limit` rows and says so ("showing 1000 of 5271 rows"). The machine formats write
every value at full precision (Python's shortest round-trip `repr` of a float) to stdout.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from factorcov_pipeline.render.textgrid import grid
from factorcov_pipeline.storage.query import KEY_KINDS, NUMERIC_KINDS, QueryConnection

FORMATS = ("table", "csv", "json", "markdown")
DEFAULT_TABLE_LIMIT = 1000


@dataclass(frozen=True)
class QueryResult:
    """The first rows of a query's result and how many rows it has in all."""

    columns: list[str]
    kinds: list[str]  # DuckDB type ids (`storage.query`): "double", "date", "list", ...
    rows: list[tuple[Any, ...]]
    total: int

    @property
    def numeric(self) -> list[bool]:
        return [kind in NUMERIC_KINDS for kind in self.kinds]

    @property
    def cut(self) -> bool:
        return len(self.rows) < self.total


def run_query(
    con: QueryConnection, sql: str, limit: int | None, nested_as_json: bool = False
) -> QueryResult | None:
    """Run `sql` once, keep its first `limit` rows (all when None) and count the rest."""
    query = con.open(sql, nested_as_json)
    if query is None:
        return None
    rows: list[tuple[Any, ...]] = []
    total = 0
    for n, kept in query.batches(limit):
        total += n
        rows += kept
    return QueryResult(query.columns, query.kinds, rows, total)


# ---- values ------------------------------------------------------------------------------


def _float_formatter(values: Sequence[Any]) -> Callable[[float], str]:
    """One fixed-point format per float column (6 significant digits of its largest value),
    so that the decimal points line up; scientific notation when that would be unreadable."""
    finite = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v) and v != 0.0]
    if not finite:
        return lambda v: f"{v:g}"
    top = max(finite)
    if 1e-4 <= top < 1e9:
        decimals = min(12, max(0, 5 - math.floor(math.log10(top))))
        return lambda v: f"{v:.{decimals}f}"
    return lambda v: f"{v:.6e}"


def _display(value: Any, fmt_float: Callable[[float], str]) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return fmt_float(value)
    return str(value)


def _plain(value: Any) -> Any:
    """A value as JSON data: ISO dates, finite floats (NaN and infinities become null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _text(value: Any) -> str:
    """A value as CSV/markdown text at full precision (empty for null)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_plain(value))
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def as_table(result: QueryResult, width: int, limit: int | None) -> str:
    """The rows as a text table with a last line saying how many rows there are (and how many
    are shown when the limit cut them)."""
    formatters = []
    for j in range(len(result.columns)):
        formatters.append(_float_formatter([r[j] for r in result.rows]))
    cells = [[_display(v, formatters[j]) for j, v in enumerate(r)] for r in result.rows]
    # leading names and dates label the rows: repeated in every block of a wide result
    keys = 0
    while keys < len(result.columns) - 1 and result.kinds[keys] in KEY_KINDS:
        keys += 1
    lines = grid(result.columns, cells, result.numeric, width, keys) if result.columns else []
    noun = "row" if result.total == 1 else "rows"
    if result.cut:
        lines.append(
            f"showing {len(result.rows)} of {result.total} rows (--limit {limit}; "
            "--limit 0 shows all, --format csv|json|markdown writes all)"
        )
    else:
        lines.append(f"{result.total} {noun}")
    return "\n".join(lines) + "\n"


def _unique(names: Sequence[str]) -> list[str]:
    """Column names made unique for JSON objects (`a`, `a_2`, ...): SQL allows duplicates."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


class _Writer:
    """One machine format: a head, rows (given the number already written) and a tail.

    csv: RFC 4180 through Python's csv module, floats as their shortest round-trip text.
    json: a list of objects, one per line; dates ISO 8601; NaN and infinities as null.
    markdown: a GitHub-flavoured table, numbers right-aligned, `|` escaped.
    """

    def __init__(self, fmt: str, columns: list[str], numeric: list[bool]) -> None:
        if fmt not in FORMATS[1:]:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.fmt, self.columns, self.numeric = fmt, columns, numeric
        self.keys = _unique(columns)

    def head(self) -> str:
        if self.fmt == "csv":
            return self.rows([tuple(self.columns)], 0, header=True)
        if self.fmt == "json":
            return "["
        return (
            "| " + " | ".join(_md(c) for c in self.columns) + " |\n"
            "| " + " | ".join("---:" if n else "---" for n in self.numeric) + " |\n"
        )

    def rows(self, rows: list[tuple[Any, ...]], written: int, header: bool = False) -> str:
        if self.fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerows(r if header else [_text(v) for v in r] for r in rows)
            return buf.getvalue()
        if self.fmt == "json":
            return "".join(
                ("\n" if written + i == 0 else ",\n")
                + json.dumps(dict(zip(self.keys, map(_plain, r), strict=True)), allow_nan=False)
                for i, r in enumerate(rows)
            )
        return "".join("| " + " | ".join(_md(_text(v)) for v in r) + " |\n" for r in rows)

    def tail(self, written: int) -> str:
        if self.fmt == "json":
            return "\n]\n" if written else "]\n"
        return ""


def stream(
    con: QueryConnection,
    sql: str,
    fmt: str,
    limit: int | None,
    write: Callable[[str], Any],
) -> tuple[int, int] | None:
    """Write the result of `sql` in a machine format (csv, json, markdown) batch by batch, so
    an export of any size runs in bounded memory; (rows written, rows in the result)."""
    query = con.open(sql, nested_as_json=fmt == "json")
    if query is None:
        return None
    out = _Writer(fmt, query.columns, [k in NUMERIC_KINDS for k in query.kinds])
    write(out.head())
    written = total = 0
    for n, kept in query.batches(limit):
        total += n
        if kept:
            write(out.rows(kept, written))
            written += len(kept)
    write(out.tail(written))
    return written, total


def print_query(
    con: QueryConnection, sql: str, fmt: str, limit: int | None, width: int
) -> str | None:
    """`factorcov sql`'s output on stdout; returns a note for stderr when a limit cut a
    machine format's rows (the table says so itself). A reader that closes the pipe early
    (`| head`) ends the output quietly (Python's documented SIGPIPE handling: stdout is pointed
    at devnull so the interpreter's exit does not fail)."""
    try:
        if fmt == "table":
            result = run_query(con, sql, limit)
            if result is not None:
                sys.stdout.write(as_table(result, width, limit))
            counts = None
        else:
            counts = stream(con, sql, fmt, limit, sys.stdout.write)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return None
    if counts is not None and counts[0] < counts[1]:
        return f"wrote {counts[0]} of {counts[1]} rows (--limit {limit})"
    return None


# polars dtypes as the query kinds of `storage.query` (DuckDB's type ids), for `frame_text`
_POLARS_KINDS = {
    "String": "varchar",
    "Date": "date",
    "Datetime": "timestamp",
    "Boolean": "boolean",
    "Float64": "double",
    "Float32": "float",
    "Int64": "bigint",
    "Int32": "integer",
    "Int16": "smallint",
    "Int8": "tinyint",
    "UInt64": "ubigint",
    "UInt32": "uinteger",
}


def frame_text(frame: Any, fmt: str, width: int) -> str:
    """A polars frame as `factorcov sql` prints a query's result in `fmt` (`FORMATS`): the
    same table (every row), CSV, JSON or markdown (`factorcov compare`)."""
    kinds = [_POLARS_KINDS.get(type(t).__name__, "varchar") for t in frame.dtypes]
    rows = list(frame.iter_rows())
    if fmt == "table":
        return as_table(QueryResult(list(frame.columns), kinds, rows, len(rows)), width, None)
    out = _Writer(fmt, list(frame.columns), [k in NUMERIC_KINDS for k in kinds])
    return out.head() + (out.rows(rows, 0) if rows else "") + out.tail(len(rows))


def write_stdout(text: str) -> None:
    """Write to stdout; a reader that closed the pipe early (`| head`) is not an error
    (Python's documented handling of SIGPIPE: point stdout at devnull so exit does not fail)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
