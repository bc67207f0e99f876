"""One BLAS thread for loops of small matrix products.

Why: OpenBLAS starts its threads for every call, and for the N x K (K ~ 20) products and solves
made once per date (the specific risk cross-section, the backtest's minimum-variance portfolio)
that start-up costs more than the arithmetic: one thread is about twice as fast on this 2-core
machine (benchmarks/run.py) and, on a loaded machine, up to 100x. With one thread the results
also no longer depend on the number of cores (a multi-threaded BLAS splits sums differently).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    """One controller per process (finding the BLAS libraries costs ~5 ms)."""
    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within this block BLAS runs on one thread (restored on exit)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
