"""`plots`: the figures the UI shows, checked on their pixels and their axes, not only that a
PNG comes back."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest

from factorcov_pipeline.render import plots


def _pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")  # (rows, cols, RGBA) in [0, 1]


def test_heatmap_cells_show_the_matrix_on_the_diverging_scale() -> None:
    from matplotlib import colormaps

    rng = np.random.default_rng(3)
    k = 6
    corr = rng.uniform(-1.0, 1.0, (k, k))  # not symmetric: a transposed picture fails
    corr[0, 1], corr[1, 0] = -0.95, 0.95  # both ends of the scale
    labels = ["Market", 'O\'Reilly "x"', "Énergie", "a-b c", "Style 1", "Style 2"]
    fig = plots.heatmap_figure(corr, labels, "t")
    png = plots.heatmap(corr, labels, "t")
    img = _pixels(png)
    assert img.shape[1] == round(fig.get_figwidth() * plots.DPI)
    assert img.shape[0] == round(fig.get_figheight() * plots.DPI)
    ax = fig.axes[0]
    scale = plots.DPI / fig.dpi  # the transform is at the figure's dpi; the PNG at DPI
    cmap = colormaps["RdBu_r"]
    for i in range(k):
        for j in range(k):
            x, y = ax.transData.transform((j, i)) * scale  # cell (i, j): column j, row i
            pixel = img[img.shape[0] - round(float(y)), round(float(x)), :3]
            expected = np.asarray(cmap((corr[i, j] + 1.0) / 2.0)[:3])
            assert np.abs(pixel - expected).max() < 0.02, (i, j)
    # every row and column named, in order
    texts = [t.get_text() for t in fig.texts]
    assert texts[0::2] == labels and texts[1::2] == labels


def test_heatmap_labels_stay_inside_the_picture() -> None:
    labels = ["a much longer factor name than the others", "b", "c"]
    fig = plots.heatmap_figure(np.eye(3), labels, "t")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    box = fig.bbox
    assert len(fig.texts) == 2 * len(labels)
    for text in fig.texts:
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1, text.get_text()


def _tick_labels(fig) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]


@pytest.mark.parametrize("n_days", [1, 2, 5])
def test_a_few_sessions_are_ticked_by_day_not_by_hour(n_days: int) -> None:
    days = [dt.date(2026, 4, 1) + dt.timedelta(days=i) for i in range(n_days)]
    fig = plots.line_figure(days, {"a": np.linspace(0.1, 0.2, n_days)}, "t", "v")
    labels = _tick_labels(fig)
    assert labels
    ticks = fig.axes[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # whole days (matplotlib's date unit)
    if n_days == 1:  # a single point is drawn as a marker, a line would be invisible
        assert fig.axes[0].lines[0].get_marker() == "o"


def test_a_decade_is_ticked_by_year_on_one_row() -> None:
    days = [dt.date(2016, 4, 1) + dt.timedelta(days=i) for i in range(0, 3650, 1)]
    fig = plots.line_figure(days, {"a": np.ones(len(days))}, "t", "v")
    labels = _tick_labels(fig)
    assert "2018" in labels and "2024" in labels
    assert all(t.get_rotation() == 0 for t in fig.axes[0].get_xticklabels())


def test_line_chart_draws_each_series_and_the_band() -> None:
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(60)]
    series = {"x": np.linspace(0.5, 1.5, 60), "y": np.full(60, np.nan)}
    series["y"][10:20] = 1.0
    fig = plots.line_figure(days, series, "t", "bias", reference=1.0, band=(0.7, 1.3))
    ax = fig.axes[0]
    drawn = {line.get_label(): line for line in ax.lines}
    assert set(drawn) >= {"x", "y"}
    assert np.array_equal(drawn["x"].get_ydata(), series["x"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y", "95% band"]
    png = plots.line_chart(days, series, "t", "bias", reference=1.0, band=(0.7, 1.3))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert _pixels(png).shape[:2] == (
        round(plots.HEIGHT * plots.DPI),
        round(plots.WIDTH * plots.DPI),
    )


def test_a_reused_line_chart_is_the_png_of_a_new_figure() -> None:
    """`line_chart` draws each chart on the previous one's cleared figure: every PNG of a
    varied sequence (many series, a band, a reference, gaps, two dates with markers, other
    spans and titles) equals, byte for byte, the same chart drawn on a new figure."""
    rng = np.random.default_rng(3)
    long = [dt.date(2016, 4, 1) + dt.timedelta(days=i) for i in range(0, 3650, 2)]
    gappy = rng.normal(1.0, 0.1, 60)
    gappy[10:20] = np.nan
    charts = [
        (
            long,
            {f"s{i}": rng.normal(0.2, 0.02, len(long)) for i in range(8)},
            "vol",
            "v",
            None,
            None,
        ),
        (long[:60], {"x": gappy, "y": np.linspace(0.5, 1.5, 60)}, "bias", "b", 1.0, (0.7, 1.3)),
        (long[:2], {"only": np.array([0.3, 0.4])}, "two", "R²", None, None),
        (
            long[100:400],
            {"assets": np.arange(300.0) * 1e4},
            "assets in the regression",
            "n",
            None,
            None,
        ),
        (
            long,
            {f"s{i}": rng.normal(0.2, 0.02, len(long)) for i in range(3)},
            "vol",
            "v",
            None,
            None,
        ),
    ]
    for _ in range(2):  # each chart after a different one
        for dates, series, title, ylabel, reference, band in charts:
            fresh = plots._png(plots.line_figure(dates, series, title, ylabel, reference, band))
            assert plots.line_chart(dates, series, title, ylabel, reference, band) == fresh, title
