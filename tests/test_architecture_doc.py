"""ARCHITECTURE.md's module map names every module of the package, and nothing that is gone.

A module is named as its path below `factorcov_pipeline/` in backticks (`core/eigen.py`), or,
inside the `orchestration/assets/` table, as `assets/<name>.py`; the package's top-level
modules by their file name.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "factorcov_pipeline"


def _module_map() -> str:
    text = (REPO / "ARCHITECTURE.md").read_text()
    return text.split("## Module map")[1].split("\n## ")[0]


def _named(section: str) -> set[str]:
    """Module paths (relative to the package) named in the map's first column."""
    names = set()
    for row in re.findall(r"^\| `([^`]+\.py)` \|", section, flags=re.MULTILINE):
        names.add(row.replace("assets/", "orchestration/assets/", 1) if row.startswith("assets/")
                  else row)  # fmt: skip
    return names


def test_every_module_is_in_the_map():
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    named = _named(_module_map())
    assert modules - named == set(), "ARCHITECTURE.md's module map misses these modules"
    assert named - modules == set(), "ARCHITECTURE.md's module map names modules that are gone"
