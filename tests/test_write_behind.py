"""`storage.write_behind`: chunks stored in order on one background thread, nothing stored after
a failed chunk, the error raised in the step, and every chunk stored when the block ends."""

from __future__ import annotations

import threading
import time

import pytest

from factorcov_pipeline.storage import write_behind as wb


class _Recorder:
    def __init__(self, fail_on: int | None = None, delay: float = 0.0) -> None:
        self.stored: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.delay = delay

    def replace(self, chunk: int, *, tag: str = "") -> None:
        time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        if chunk == self.fail_on:
            raise OSError(f"disk full at chunk {chunk}")
        self.stored.append(chunk)


def test_chunks_are_stored_in_order_on_one_background_thread() -> None:
    rec = _Recorder(delay=0.01)
    with wb.write_behind(rec.replace, in_background=True) as writer:
        for chunk in range(7):
            writer.replace(chunk, tag="x")
        assert len(rec.stored) < 7  # the step went on while chunks were being stored
    assert rec.stored == list(range(7))  # all stored when the block ends, in order
    assert len(rec.threads) == 1 and threading.current_thread().name not in rec.threads


def test_nothing_is_stored_after_a_failed_chunk_and_the_step_fails_with_its_error() -> None:
    rec = _Recorder(fail_on=2)
    with (
        pytest.raises(OSError, match="disk full at chunk 2"),
        wb.write_behind(rec.replace, in_background=True) as writer,
    ):
        for chunk in range(6):
            writer.replace(chunk)
            time.sleep(0.02)  # let the writer reach the failing chunk
    assert rec.stored == [0, 1]


def test_a_step_that_fails_lets_the_write_under_way_finish_whole() -> None:
    started, release = threading.Event(), threading.Event()
    stored: list[int] = []

    def slow(chunk: int) -> None:
        started.set()
        release.wait()
        stored.append(chunk)

    with (
        pytest.raises(ValueError, match="bad input"),
        wb.write_behind(slow, in_background=True) as writer,
    ):
        writer.replace(0)
        started.wait()
        threading.Timer(0.05, release.set).start()
        raise ValueError("bad input")
    assert stored == [0]  # the block ended only after the write under way was whole


def test_at_most_max_pending_chunks_wait_in_memory() -> None:
    gate = threading.Event()
    waiting: list[int] = []

    def slow(chunk: int) -> None:
        gate.wait()
        waiting.append(chunk)

    assert wb.MAX_PENDING == 1
    with wb.write_behind(slow, in_background=True) as writer:
        writer.replace(0)
        timer = threading.Timer(0.1, gate.set)
        timer.start()
        started = time.perf_counter()
        writer.replace(1)  # blocks until chunk 0 is stored: one chunk with the writer at most
        assert time.perf_counter() - started >= 0.05
        assert waiting == [0]
    assert waiting == [0, 1]


def test_direct_mode_stores_at_once_in_the_calling_thread() -> None:
    rec = _Recorder()
    with wb.write_behind(rec.replace, in_background=False) as writer:
        writer.replace(1)
        assert rec.stored == [1]
    assert rec.threads == {threading.current_thread().name}
