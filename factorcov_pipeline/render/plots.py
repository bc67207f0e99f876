"""Figures of the forecasts as PNG bytes (matplotlib, no Dagster): the UI shows them in the
assets' materialisation metadata (`orchestration/metadata.py`), and anyone can call them.

matplotlib is imported lazily and drawn with its Agg canvas (no pyplot), so importing this module
costs nothing and a headless server never needs a display. Figures are small (about 640 x 270
pixels at 80 dpi, 20-60 kB as PNG) because they travel inside the run's event log.

A daily run draws six figures (seven with standing portfolios), and matplotlib's own layout
passes were most of their cost (benchmark 4): so the margins are fixed rather than computed
(`bbox_inches="tight"` and `autofmt_xdate` lay a figure out twice), titles are placed rather than
moved clear of the tick labels (`Axes.set_title(y=...)` switches that search off), and the
heatmap's labels are plain text rather than K tick objects per axis.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HEIGHT, DPI = 8.0, 3.4, 80
LABEL_POINTS = 7  # tick labels of the heatmap
TITLE_POINTS = 11
# A date axis spanning fewer days than this is ticked by day: matplotlib's automatic locator
# wants at least 3 ticks and would tick a 2-session chart in hours.
DAILY_TICKS_BELOW_DAYS = 10
# The line chart's axes in figure fractions (left, bottom, right, top): room for the y tick
# labels and label on the left, one row of date labels below and the title above.
LINE_MARGINS = (0.09, 0.12, 0.98, 0.9)
SHORT_SERIES = 3  # a series of fewer dates is drawn with markers
# Text rasterised without FreeType's hinting (matplotlib's default autohints every glyph): the
# same glyphs, a little softer, and about 10% less time for a heatmap's 2K labels.
TEXT_RC = {"text.hinting": "no_hinting"}
# Factor names are data (a user's factor-returns file may name them in Chinese, Japanese or
# Korean). matplotlib's own DejaVu Sans has no CJK glyphs and draws boxes ("tofu") for them; a
# list of families is a per-character fallback since matplotlib 3.6 ("Font fallback"), so each
# character comes from the first of these fonts that has it: Latin text is drawn exactly as
# before, CJK text by the first CJK font installed. The files are where Debian's packages put
# them (`fonts-wqy-microhei`, installed by .ci/run; README, "Dagster UI"), because matplotlib's
# font cache does not see fonts installed after it was built.
BASE_FAMILY = "DejaVu Sans"
CJK_FONTS = {
    "WenQuanYi Micro Hei": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "Noto Sans CJK JP": "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "Droid Sans Fallback": "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
}


@functools.cache
def font_families() -> tuple[str, ...]:
    """DejaVu Sans, then each CJK font of `CJK_FONTS` that matplotlib knows or that is
    installed at its Debian path (then registered with matplotlib's font manager)."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    families = [BASE_FAMILY]
    for family, path in CJK_FONTS.items():
        if family not in known and Path(path).is_file():
            with contextlib.suppress(Exception):  # an unreadable file: as if not installed
                font_manager.fontManager.addfont(path)
                known = {f.name for f in font_manager.fontManager.ttflist}
        if family in known:
            families.append(family)
    return tuple(families)


@contextlib.contextmanager
def _text_style() -> Iterator[None]:
    """Unhinted text (`TEXT_RC`) in the fonts of `font_families`: figures are built and drawn
    inside it (text takes its font when it is created)."""
    import matplotlib

    with matplotlib.rc_context({**TEXT_RC, "font.family": list(font_families())}):
        yield


def _figure(width: float, height: float) -> Any:
    """A matplotlib `Figure` outside pyplot: no global figure manager to register with and
    close (matplotlib's advice for servers, "Embedding in a web application server"), and
    7 ms less per figure. `savefig` to PNG draws it with the Agg canvas, no display needed."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes, drawn once (every figure here is laid out by hand), its text
    unhinted in the fonts of `font_families` (`_text_style`)."""
    buf = io.BytesIO()
    # zlib level 1: 5 ms less per figure than Pillow's default 6, for PNGs about 9% larger
    with _text_style():
        fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _date_axis(ax: Any, first: np.datetime64, last: np.datetime64) -> None:
    """Concise date labels (year once, then months; matplotlib's `ConciseDateFormatter`), which
    fit one row without rotation; a span of a few days is ticked by day."""
    import matplotlib.dates as mdates

    span_days = int((last - first) / np.timedelta64(1, "D")) if first <= last else 0
    locator: Any
    if span_days < DAILY_TICKS_BELOW_DAYS:
        locator = mdates.DayLocator()
    else:
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _line_canvas() -> Any:
    """An empty line-chart figure: one axes inside the fixed margins."""
    fig = _figure(WIDTH, HEIGHT)
    left, bottom, right, top = LINE_MARGINS
    fig.subplots_adjust(left=left, bottom=bottom, right=right, top=top)
    fig.add_subplot()
    return fig


def _draw_lines(
    ax: Any,
    dates: Sequence[dt.date],
    series: Mapping[str, Sequence[float] | np.ndarray],
    title: str,
    ylabel: str,
    reference: float | None,
    band: tuple[float, float] | None,
    ylim: tuple[float, float] | None = None,
) -> None:
    x = np.asarray(dates, dtype="datetime64[D]")
    marker = "o" if x.size < SHORT_SERIES else None  # a single point has no line to show
    for name, values in series.items():
        ax.plot(x, np.asarray(values, dtype=float), label=name, linewidth=1.2, marker=marker)
    if band is not None:
        ax.axhspan(band[0], band[1], color="grey", alpha=0.2, label="95% band")
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_title(title, fontsize=TITLE_POINTS, y=1.0, pad=6)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1 or band is not None:
        ax.legend(fontsize=7, ncol=min(4, len(series) + 1), loc="upper left", frameon=False)
    if x.size:
        _date_axis(ax, x.min(), x.max())
    if ylim is not None:
        ax.set_ylim(*ylim)


def data_limits(
    values: np.ndarray | Sequence[float],
    include: Sequence[float] = (),
    margin: float = 0.05,
) -> tuple[float, float] | None:
    """Y-axis limits that fit the finite ``values`` (and the levels in ``include``, e.g. a
    band) with a ``margin`` of their span on each side; None when nothing is finite (the axis
    then autoscales). Used to clip an axis to the data shown (the warm forecasts), not to
    whatever an earlier point reached."""
    v = np.asarray(values, dtype=float).ravel()
    v = np.concatenate([v[np.isfinite(v)], np.asarray(list(include), dtype=float)])
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    pad = margin * (hi - lo) if hi > lo else max(abs(hi), 1.0) * margin
    return lo - pad, hi + pad


def _cleared(ax: Any) -> None:
    """Remove what `_draw_lines` drew (lines, band, legend), back to the colour cycle's start
    and to data limits that autoscale again; the axes, its ticks and its text stay."""
    for artist in [*ax.lines, *ax.patches, *ax.collections]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.set_prop_cycle(None)
    ax.relim()
    ax.set_autoscale_on(True)


def line_figure(
    dates: Sequence[dt.date],
    series: Mapping[str, Sequence[float] | np.ndarray],
    title: str,
    ylabel: str,
    reference: float | None = None,
    band: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Any:
    """The `line_chart` figure itself (a new matplotlib `Figure`), for callers that draw more
    on it."""
    with _text_style():
        fig = _line_canvas()
        _draw_lines(fig.axes[0], dates, series, title, ylabel, reference, band, ylim)
    return fig


# Per thread, the last line chart's figure, cleared and drawn again for the next one: building
# a figure's axes and its tick objects was a quarter of a chart's time (benchmark 4 draws five
# in a daily run); the PNG is the same, byte for byte, as a new figure's (tests/test_plots.py).
_REUSED = threading.local()


def line_chart(
    dates: Sequence[dt.date],
    series: Mapping[str, Sequence[float] | np.ndarray],
    title: str,
    ylabel: str,
    reference: float | None = None,
    band: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> bytes:
    """One line per named series over `dates` (NaN or None points are gaps); an optional
    horizontal reference line (e.g. the ideal bias statistic 1) and shaded band (e.g. its 95%
    confidence band), and fixed y limits (`data_limits`; default: matplotlib's autoscale).
    The dates are converted once (not once per series) and the legend has a fixed place
    (matplotlib's "best" searches every point): a 2,520-session chart stays fast."""
    if len(dates) == 0:  # no date axis to set: a new figure, as `line_figure` draws it
        return _png(line_figure(dates, series, title, ylabel, reference, band, ylim))
    fig = getattr(_REUSED, "figure", None)
    _REUSED.figure = None  # a failed draw leaves no half-drawn figure for the next chart
    with _text_style():
        if fig is None:
            fig = _line_canvas()
        else:
            _cleared(fig.axes[0])
        _draw_lines(fig.axes[0], dates, series, title, ylabel, reference, band, ylim)
    png = _png(fig)
    _REUSED.figure = fig
    return png


def heatmap_figure(matrix: np.ndarray, labels: Sequence[str], title: str) -> Any:
    """The `heatmap` figure itself (matplotlib `Figure`): cell (i, j) is centred on data
    coordinates (j, i) of its first axes, row 0 at the top; the labels are the figure's
    texts, columns and rows alternating."""
    with _text_style():
        return _heatmap_figure(matrix, labels, title)


def _heatmap_figure(matrix: np.ndarray, labels: Sequence[str], title: str) -> Any:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    k = len(labels)
    font = FontProperties(size=LABEL_POINTS)
    measure = TextToPath()
    label_in = (
        max(
            (measure.get_text_width_height_descent(str(x), font, False)[0] for x in labels),
            default=0,
        )
        / 72.0
    )
    side = max(2.6, 0.245 * k)  # the matrix, inches
    left = bottom = label_in + 0.15  # the labels and their gap
    top, bar = 0.45, 0.95  # the title; the colour bar and its tick labels
    width, height = left + side + bar, bottom + side + top
    fig = _figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
    image = ax.imshow(np.asarray(matrix, dtype=float), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    # the labels 3 points outside the matrix, placed in figure fractions from the layout above
    # (cell j's centre is (j + 0.5) / k of the matrix's side): the same pixels as text in
    # data coordinates with offset transforms, without composing 2K transforms
    gap = 3 / 72.0
    for i, name in enumerate(labels):
        centre = (i + 0.5) / k * side
        fig.text(
            (left + centre) / width,
            (bottom - gap) / height,
            str(name),
            rotation=90,
            ha="center",
            va="top",
            fontsize=LABEL_POINTS,
        )
        fig.text(
            (left - gap) / width,
            (bottom + side - centre) / height,
            str(name),
            ha="right",
            va="center",
            fontsize=LABEL_POINTS,
        )
    ax.set_title(title, fontsize=TITLE_POINTS, y=1.0, pad=6)
    cax = fig.add_axes(((left + side + 0.15) / width, bottom / height, 0.18 / width, side / height))
    fig.colorbar(image, cax=cax)
    return fig


def heatmap(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """A K x K matrix (e.g. a correlation matrix) as a diverging heatmap on [-1, 1], each row
    and column labelled; the margins come from the longest label's measured width, so the
    figure is drawn once (`bbox_inches="tight"` drew it twice: 190 instead of 130 ms)."""
    return _png(heatmap_figure(matrix, labels, title))


def boxes(labels: Sequence[str], stats: np.ndarray, title: str, xlabel: str, ylabel: str) -> bytes:
    """One box per label from precomputed percentiles: ``stats`` (G, 5) = 10th, 25th, 50th,
    75th and 90th percentile of each group (whiskers at the 10th and 90th), drawn with
    matplotlib's `Axes.bxp` (no raw data needed, no outliers drawn)."""
    fig = _line_canvas()
    ax = fig.axes[0]
    values = np.asarray(stats, dtype=float).reshape(len(labels), 5)
    ax.bxp(
        [
            {"label": lab, "whislo": v[0], "q1": v[1], "med": v[2], "q3": v[3], "whishi": v[4]}
            for lab, v in zip(labels, values, strict=True)
        ],
        showfliers=False,
    )
    ax.set_title(title, fontsize=TITLE_POINTS, y=1.0, pad=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
