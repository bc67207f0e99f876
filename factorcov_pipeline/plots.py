"""Figures of the forecasts as PNG bytes (matplotlib, no Dagster): the UI shows them in the
assets' materialisation metadata (`orchestration/metadata.py`), and anyone can call them.

matplotlib is imported lazily with the non-interactive Agg backend, so importing this module
costs nothing and a headless server never needs a display. Figures are small (about 700 x 300
pixels at 80 dpi, 20-60 kB as PNG) because they travel inside the run's event log.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

WIDTH, HEIGHT, DPI = 8.0, 3.4, 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def line_chart(
    dates: Sequence[dt.date],
    series: Mapping[str, np.ndarray],
    title: str,
    ylabel: str,
    reference: float | None = None,
) -> bytes:
    """One line per named series over `dates` (NaN points are gaps); an optional horizontal
    reference line (e.g. the ideal bias statistic 1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    for name, values in series.items():
        ax.plot(list(dates), np.asarray(values, dtype=float), label=name, linewidth=1.2)
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, ncol=min(4, len(series)), loc="upper left", frameon=False)
    fig.autofmt_xdate()
    return _png(fig)


def heatmap(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """A K x K matrix (e.g. a correlation matrix) as a diverging heatmap on [-1, 1]."""
    plt = _pyplot()
    k = len(labels)
    size = max(4.0, 0.28 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(np.asarray(matrix, dtype=float), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_title(title, fontsize=11)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _png(fig)
