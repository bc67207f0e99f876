"""Chinese, Japanese and Korean factor names are drawn as glyphs, not boxes, in the UI's figures
(issue 23.5): render/plots.py falls back to a CJK font (`fonts-wqy-microhei`, installed by
.ci/run) for characters matplotlib's DejaVu Sans does not have.

Independent check: with no CJK font every CJK character is the same "missing glyph" box, so two
heatmaps that differ only in their CJK labels would be the same picture, pixel for pixel."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from factorcov_pipeline.render import plots

MATRIX = np.array([[1.0, 0.3], [0.3, 1.0]])


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def test_a_cjk_font_is_used():
    families = plots.font_families()
    assert families[0] == plots.BASE_FAMILY
    assert len(families) > 1, (
        "no CJK font found: install Debian's fonts-wqy-microhei (.ci/run does), "
        f"or one of {list(plots.CJK_FONTS)}"
    )


def test_cjk_labels_are_glyphs_not_boxes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        a = plots.heatmap(MATRIX, ["市场", "价值"], "correlation")
        b = plots.heatmap(MATRIX, ["動量", "규모"], "correlation")
        same = plots.heatmap(MATRIX, ["市场", "价值"], "correlation")
    assert _pixels(a).shape == _pixels(b).shape  # same layout: 2 characters per label
    assert (_pixels(a) != _pixels(b)).sum() > 50  # different characters, different pixels
    assert np.array_equal(_pixels(a), _pixels(same))


def test_latin_text_is_drawn_as_before(monkeypatch):
    """The fallback only adds glyphs: Latin labels come from DejaVu Sans as they always did,
    and matplotlib's global settings are left as they were."""
    import matplotlib

    before = list(matplotlib.rcParams["font.family"])
    with_fallback = plots.heatmap(MATRIX, ["Market", "Value"], "correlation")
    assert list(matplotlib.rcParams["font.family"]) == before
    monkeypatch.setattr(plots, "font_families", lambda: (plots.BASE_FAMILY,))
    dejavu_only = plots.heatmap(MATRIX, ["Market", "Value"], "correlation")
    assert np.array_equal(_pixels(with_fallback), _pixels(dejavu_only))
