"""Write a step's chunks while the step computes the next one.

Why: a step over a long range computes and stores one chunk of sessions at a time
(`orchestration.assets.common.date_chunks`), and storing a chunk (DuckDB's insert and commit)
takes about as long as computing it: universe 0.86 s of inserts against 0.61 s of computing
over the tutorial's year. DuckDB runs a statement without Python's global interpreter lock, so a
second thread can insert chunk k while the step computes chunk k + 1 on the other core.

What does not change: each chunk is still ONE `Store.replace` transaction, the chunks are
stored in the order the step made them, by one thread, and the step returns only after every
chunk is stored (`wait`). If a write fails, no later chunk is written and the step fails with
that write's error, at its next `replace` or at the end; a stopped or failed step therefore
leaves whole chunks only, as before, for `orchestration.consistency` to remove. At most
`MAX_PENDING` chunks are with the writer. Reads of the step's own table come after `wait`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

# Chunks handed to the writer and not yet stored, at most: with 1, a step holds the chunk being
# stored and the one it computes, twice the memory of writing in its own thread (a correlation
# block at 72 factors is about 600 MB as a long frame; benchmark 5 measures the peak).
MAX_PENDING = 1


class WriteBehind:
    """Runs the `Store.replace` calls given to `replace` on one background thread, in order."""

    def __init__(self, replace: Callable[..., None]) -> None:
        self._replace = replace
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="factorcov-writer")
        self._pending: list[Future[None]] = []
        self._failed = threading.Event()

    def replace(self, *args: Any, **kwargs: Any) -> None:
        """Queue `Store.replace(*args, **kwargs)`; raises a previous write's error first."""
        self._raise_failed()
        while len(self._pending) >= MAX_PENDING:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._write, args, kwargs))

    def _write(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._failed.is_set():  # an earlier chunk failed: never store a later one
            raise RuntimeError("an earlier chunk of this step failed to be stored")
        try:
            self._replace(*args, **kwargs)
        except BaseException:
            self._failed.set()
            raise

    def _raise_failed(self) -> None:
        for future in list(self._pending):
            if future.done():
                self._pending.remove(future)
                future.result()  # re-raises the write's error in the step's thread

    def wait(self) -> None:
        """Every queued write stored; the first error raised."""
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:  # interrupted or failed: the write under way finishes, queued ones never start
            self.abandon()

    def abandon(self) -> None:
        """The step failed or was stopped: store nothing more, finish the write under way."""
        self._failed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


@contextmanager
def write_behind(replace: Callable[..., None], in_background: bool) -> Iterator[Any]:
    """A `WriteBehind` over `replace` (`in_background`), or `replace` itself, as an object with
    a `replace` method; every write is stored when the block ends without an error."""
    if not in_background:
        yield SimpleNamespace(replace=replace)
        return
    writer = WriteBehind(replace)
    try:
        yield writer
    except BaseException:
        writer.abandon()
        raise
    writer.wait()
