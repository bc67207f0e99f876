"""Figures of the risk assets for the Dagster UI: PNG line plots embedded in markdown metadata.

Dagster-free; matplotlib is imported lazily with the non-interactive Agg backend (no display).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any


def line_plot_png(
    x: Sequence[Any],
    series: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str,
    band: tuple[float, float] | None = None,
) -> bytes:
    """One line per entry of ``series`` over ``x`` (a shaded horizontal ``band`` if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=80)
    try:
        for name, values in series.items():
            ax.plot(list(x), list(values), label=name, linewidth=1.2)
        if band is not None:
            ax.axhspan(band[0], band[1], color="grey", alpha=0.2, label="95% band")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if 0 < len(series) <= 12:
            ax.legend(fontsize=7, loc="best")
        fig.autofmt_xdate()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def png_markdown(png: bytes, alt: str = "plot") -> str:
    """Markdown that shows ``png`` inline (Dagster renders data URIs in md metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
