"""Read a step's next chunk while the step computes the current one.

Why: a step over a long range reads and computes one chunk of sessions at a time
(`orchestration.assets.common.date_chunks`), and in the steps downstream of the regression
reading a chunk (DuckDB's scans and joins, then polars' reshaping) takes about half as long as
computing it: over 10 years `risk_backtest` spent 4.4 s of 11.9 in its reads and
`specific_risk` 4.0 s of 10.3 (profiles of benchmark 8's steps). DuckDB and polars run without
Python's global interpreter lock, so a second thread can read chunk k + 1 while the step
computes chunk k on the other core. `storage.write_behind` is the same idea for writes.

What does not change: the chunks come in order, each read is the same function of its chunk
as before (so a step's results are identical bit for bit, tests/test_fast_paths.py), and a
read only ever sees other steps' tables (a step reading its own table must not read ahead: it
would not see its own earlier chunks). At most one chunk is read ahead. An error of a read is
raised in the step's thread when the step reaches that chunk; when the step stops early
(error, interruption), the read under way finishes and no other one starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

Chunk = TypeVar("Chunk")
Data = TypeVar("Data")


def read_ahead(
    chunks: Iterable[Chunk], read: Callable[[Chunk], Data], in_background: bool
) -> Iterator[tuple[Chunk, Data]]:
    """``(chunk, read(chunk))`` for every chunk, in order; with `in_background`, ``read`` of
    the next chunk runs on a background thread while the caller works on this one."""
    if not in_background:
        for chunk in chunks:
            yield chunk, read(chunk)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="factorcov-reader")
    try:
        pending: tuple[Chunk, Future[Data]] | None = None
        for chunk in chunks:
            if pending is None:
                pending = (chunk, pool.submit(read, chunk))
                continue
            data = pending[1].result()  # a failed read raises here: no later read starts
            ready, pending = pending[0], (chunk, pool.submit(read, chunk))
            yield ready, data
        if pending is not None:
            yield pending[0], pending[1].result()
    finally:  # finished, failed or stopped: the read under way ends, no queued one starts
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def read_meanwhile(read: Callable[[], Data], in_background: bool) -> Iterator[Callable[[], Data]]:
    """`read()` started at once on a background thread (with `in_background`), while the block
    does other work; the block gets a function that returns its result (raising its error).
    For a step's one-off summary of other steps' tables (risk_backtest's per-asset specific
    bias, 0.1 s of a daily run) that does not depend on what the step writes."""
    if not in_background:
        yield read
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="factorcov-reader")
    try:
        future = pool.submit(read)
        yield future.result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
