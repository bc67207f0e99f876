"""The text grid of `factorcov sql` and `factorcov show`: never wider than asked, never cuts."""

import numpy as np
import pytest

from factorcov_pipeline.render.textgrid import fold, grid

RNG = np.random.default_rng(20261125)
WORDS = ["a", "Market", "Institutions,", "&", "Organizations", "0.123456", "x" * 45, "-1e-05"]


def _text(n_words: int) -> str:
    return " ".join(RNG.choice(WORDS, size=n_words))


@pytest.mark.parametrize("case", range(40))
def test_random_tables_fit_the_width(case):
    width = int(RNG.integers(20, 140))
    n_cols = int(RNG.integers(1, 12))
    headers = [_text(int(RNG.integers(1, 4))) for _ in range(n_cols)]
    rows = [[_text(int(RNG.integers(1, 3))) for _ in range(n_cols)] for _ in range(5)]
    right = list(RNG.random(n_cols) < 0.5)
    keys = int(RNG.integers(0, 3))
    lines = grid(headers, rows, right, width, keys=keys)
    assert max(len(ln) for ln in lines) <= width, (width, lines)


def test_one_column_round_trips_whatever_its_length():
    text = "{" + ", ".join(f'"k{i}": {i * 0.125}' for i in range(200)) + "}"
    lines = grid(["settings_json"], [[text]], [False], 60)
    assert max(len(ln) for ln in lines) <= 60
    assert "".join("".join(lines[2:]).split()) == "".join(text.split())


def test_fold_breaks_at_spaces_and_inside_long_words():
    assert fold("Institutions, Associations & Organizations", 16) == [
        "Institutions,",
        "Associations &",
        "Organizations",
    ]
    assert fold("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_blocks_repeat_the_key_columns():
    headers = ["factor", *[f"c{i}" for i in range(30)]]
    rows = [["Market", *["0.100000"] * 30], ["Size", *["-0.200000"] * 30]]
    lines = grid(headers, rows, [False] + [True] * 30, 60, keys=1)
    titles = [ln for ln in lines if ln.startswith("(columns ")]
    assert len(titles) > 1
    assert sum(ln.startswith("Market ") for ln in lines) == len(titles)
    assert sum(ln.startswith("Size ") for ln in lines) == len(titles)
