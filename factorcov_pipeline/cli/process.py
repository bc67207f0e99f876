"""The `factorcov` process's garbage collection at start-up and at exit (issue 23.4).

Why (measured on the 2-core machine with `python -X importtime`, `gc.callbacks` and py-spy):

- Importing what `factorcov materialize` needs (Dagster, polars, DuckDB, pandas, the pipeline's
  assets and checks) creates about 400,000 container objects and almost no garbage, yet Python's
  cyclic collector traverses them again and again while they are created: 0.3-0.4 s of CPU of a
  1.7 s start-up. `imports()` pauses the collector while modules load.
- What the imports built lives until the process ends. Frozen (`gc.freeze`: moved to a
  generation the collector never traverses), it no longer slows each full collection of the
  run: in the tutorial's year they took 0.9 s, 0.07 s once the imports were frozen.
- At exit, Python collects every tracked object again while it tears the modules down: 0.6 s
  after a daily run, 2 s after the tutorial's year, between the summary and the shell prompt.
  Frozen first (an `atexit` handler, so after the command's own end: threads joined, output
  flushed, files closed as always), nothing is traversed; only cyclic garbage left at exit
  is not collected, which the exiting process returns to the system anyway.

Only the process that runs the command does this (`own_process`, called by `main` when it
parses the process's own command line): a program or test that calls `main([...])` keeps its
collector as it was (`imports()` alone restores the collector's state on leaving).
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager

_OWNED = False


@contextmanager
def imports() -> Iterator[None]:
    """The collector paused while the block imports modules (they create no garbage worth
    collecting), then as it was; in the command's own process, what they built is frozen
    first (else the first allocation after the block would traverse all of it at once)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _OWNED:
            gc.freeze()
        if enabled:
            gc.enable()


def own_process() -> None:
    """This process is the `factorcov` command: freeze what is alive when it exits."""
    global _OWNED
    if not _OWNED:
        _OWNED = True
        atexit.register(gc.freeze)
