"""`storage.read_ahead`: the next chunk is read on a background thread while the step computes
the current one; chunks come in order, a read's error is raised in the step, and a step that
stops early starts no further read. In the pipeline, reading ahead changes no stored bit."""

from __future__ import annotations

import threading
import time

import pytest

from factorcov_pipeline.storage import read_ahead as ra


class _Reader:
    def __init__(self, fail_on: int | None = None, delay: float = 0.0) -> None:
        self.read: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.delay = delay

    def __call__(self, chunk: int) -> str:
        time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        if chunk == self.fail_on:
            raise OSError(f"cannot read chunk {chunk}")
        self.read.append(chunk)
        return f"data {chunk}"


def test_chunks_come_in_order_with_their_data_read_on_one_background_thread() -> None:
    reader = _Reader(delay=0.01)
    got = list(ra.read_ahead(range(6), reader, in_background=True))
    assert got == [(c, f"data {c}") for c in range(6)]
    assert reader.read == list(range(6))
    assert len(reader.threads) == 1 and threading.current_thread().name not in reader.threads


def test_the_next_chunk_is_read_while_the_step_works_on_this_one() -> None:
    started = {c: threading.Event() for c in range(3)}

    def read(chunk: int) -> int:
        started[chunk].set()
        return chunk

    for chunk, _ in ra.read_ahead(range(3), read, in_background=True):
        if chunk < 2:  # the step is still on `chunk`; the next one is read meanwhile
            assert started[chunk + 1].wait(5.0)
    # never more than one chunk ahead: while the step holds chunk 0, chunk 2 is not read
    seen: list[int] = []

    def record(chunk: int) -> int:
        seen.append(chunk)
        return chunk

    gen = ra.read_ahead(range(5), record, in_background=True)
    first, _ = next(gen)
    time.sleep(0.05)
    assert first == 0 and seen == [0, 1]
    gen.close()


def test_a_read_error_is_raised_in_the_step_at_that_chunk() -> None:
    reader = _Reader(fail_on=2)
    done: list[int] = []
    with pytest.raises(OSError, match="cannot read chunk 2"):
        for chunk, _ in ra.read_ahead(range(5), reader, in_background=True):
            done.append(chunk)
    assert done == [0, 1]  # the chunks before the failed read were worked on
    assert reader.read == [0, 1]  # the failed read ended the reading: no later read started


def test_a_step_that_stops_starts_no_further_read() -> None:
    reader = _Reader(delay=0.02)
    with pytest.raises(RuntimeError, match="step failed"):
        for chunk, _ in ra.read_ahead(range(10), reader, in_background=True):
            if chunk == 1:
                raise RuntimeError("step failed")
    time.sleep(0.1)
    # chunk 2 was asked for while the step was on chunk 1 (read, or cancelled before it
    # started); nothing after it
    assert reader.read in ([0, 1], [0, 1, 2])


def test_direct_mode_reads_in_the_calling_thread() -> None:
    reader = _Reader()
    assert list(ra.read_ahead(range(3), reader, in_background=False)) == [
        (c, f"data {c}") for c in range(3)
    ]
    assert reader.threads == {threading.current_thread().name}


def test_read_meanwhile_runs_while_the_block_works_and_gives_its_result() -> None:
    started = threading.Event()
    threads: list[str] = []

    def read() -> str:
        threads.append(threading.current_thread().name)
        started.set()
        return "summary"

    with ra.read_meanwhile(read, in_background=True) as result:
        assert started.wait(5.0)  # under way before the block asks for it
        assert result() == "summary"
    assert threads and threads[0] != threading.current_thread().name

    def broken() -> str:
        raise OSError("cannot read the summary")

    with (
        pytest.raises(OSError, match="cannot read the summary"),
        ra.read_meanwhile(broken, in_background=True) as result,
    ):
        result()
    with ra.read_meanwhile(read, in_background=False) as result:
        assert result() == "summary" and threads[-1] == threading.current_thread().name
