"""Text tables that fit a terminal: a value is never cut, a wide table splits into blocks of
columns that fit (each repeating the leading key columns, as R and MATLAB print wide matrices),
and a value wider than its column folds onto more lines.

Used by `factorcov sql` (terminal.py) and `factorcov show` (session_view.py). Plain Python.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Sequence

DEFAULT_WIDTH = 100
SEPARATOR = "  "
# A column header longer than its values wraps onto more lines at about this width.
HEADER_WRAP = 12
# Key columns (repeated in every block) fold to no narrower than this.
MIN_KEY_WIDTH = 10


def terminal_width() -> int:
    """The terminal's width: `COLUMNS` when set, else the terminal's, else 100 (not a tty)."""
    return max(20, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def fold(text: str, width: int) -> list[str]:
    """`text` folded onto lines of at most `width` characters, breaking at spaces where it can
    and inside a word where it must; nothing is dropped but the spaces at the breaks."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        if len(paragraph) <= width:
            out.append(paragraph)
        else:
            out += textwrap.wrap(
                paragraph, width, break_long_words=True, break_on_hyphens=False
            ) or [""]
    return out


def grid(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    width: int,
    keys: int = 0,
    block_title: Callable[[int, int], str] | None = None,
) -> list[str]:
    """Lines of a text table at most `width` characters wide (a value is never cut).

    Columns that do not fit beside each other go to further blocks, each repeating the first
    `keys` columns; a header longer than its column's values wraps onto more lines, and a value
    wider than the whole width is folded. Headers align as their column's values. Each block
    of a split table starts with `block_title(first, last)` (0-based column indices), by default
    "(columns first-last of n)" counted from 1.
    """
    n = len(headers)
    natural = [max([len(r[j]) for r in rows] or [0]) for j in range(n)]
    widths = []
    for j, h in enumerate(headers):
        longest_word = max((len(w) for w in h.split()), default=0)
        widths.append(max(natural[j], min(len(h), max(HEADER_WRAP, longest_word))))
    keys = min(keys, n - 1)
    # The key columns take at most half the width, or all that the other columns leave: the
    # widest of them fold (water-filling down to MIN_KEY_WIDTH); only if that is not enough
    # are trailing key columns dropped.
    while keys > 0:
        rest = sum(widths[keys:]) + len(SEPARATOR) * (n - keys)
        budget = max(width // 2, width - rest) - len(SEPARATOR) * (keys - 1)
        cap = max(widths[:keys])
        while cap > MIN_KEY_WIDTH and sum(min(w, cap) for w in widths[:keys]) > budget:
            cap -= 1
        if sum(min(w, cap) for w in widths[:keys]) <= budget:
            widths[:keys] = [min(w, cap) for w in widths[:keys]]
            break
        keys -= 1
    key_width = sum(widths[:keys]) + len(SEPARATOR) * keys
    room = max(1, width - key_width)
    widths = widths[:keys] + [min(w, room) for w in widths[keys:]]
    blocks: list[list[int]] = []
    used = width + 1
    for j in range(keys, n):
        if used + widths[j] > width or not blocks:
            blocks.append([])
            used = key_width
        blocks[-1].append(j)
        used += widths[j] + len(SEPARATOR)
    lines: list[str] = []
    for b, block in enumerate(blocks):
        cols = list(range(keys)) + block
        if len(blocks) > 1:
            if b:
                lines.append("")
            title = block_title or (lambda first, last: f"(columns {first + 1}-{last + 1} of {n})")
            lines.append(title(block[0], block[-1]))
        lines += _render_row(
            [headers[j] for j in cols], [widths[j] for j in cols], [right[j] for j in cols]
        )
        lines.append(SEPARATOR.join("-" * widths[j] for j in cols).rstrip())
        for r in rows:
            lines += _render_row(
                [r[j] for j in cols], [widths[j] for j in cols], [right[j] for j in cols]
            )
    return lines


def _render_row(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> list[str]:
    folded = [fold(c, w) for c, w in zip(cells, widths, strict=True)]
    height = max(len(f) for f in folded)
    out = []
    for i in range(height):
        parts = []
        for f, w, r in zip(folded, widths, right, strict=True):
            piece = f[i] if i < len(f) else ""
            parts.append(piece.rjust(w) if r else piece.ljust(w))
        out.append(SEPARATOR.join(parts).rstrip())
    return out


# ---- the formats -------------------------------------------------------------------------
