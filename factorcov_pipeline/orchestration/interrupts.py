"""Knowing that a run was interrupted (SIGINT or SIGTERM), whatever swallowed the signal.

During a step Dagster replaces the SIGINT handler (and maps SIGTERM to it) with one that raises
`DagsterExecutionInterruptedError` wherever the main thread is (`dagster._utils.interrupts`).
That exception does not always reach the step's failure event:

- when the signal arrives while the main thread runs a DuckDB query, DuckDB runs Python's
  handler, drops the exception it raised and raises `RuntimeError('Query interrupted')`
  instead (duckdb 2.0.1, measured);
- when it arrives while Python runs a weakref callback or a `__del__`, the exception is printed
  as "Exception ignored in ..." and lost, and the run goes on to the end.

A run that is taken for a plain failure has the range's rows of its unfinished steps removed
(`consistency.remove_unfinished`), which after an interruption would delete forecasts that the
run was only re-writing (the CI failure of 2026-11-25: exit 130, then 13 tables short of the
range). So the signals themselves are read from Python's wakeup file descriptor, which receives
every delivered signal's number whatever the handler does with it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from dagster import DagsterExecutionInterruptedError

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The error classes of a step stopped by a signal. DuckDB's RuntimeError('Query interrupted') is
# not among them: DuckDB raises it too for a statement stopped by `connection.interrupt()` (the
# query timeout of `factorcov sql`), which is a failure.
INTERRUPTED_CLASSES = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


# The blocks of `signals_seen` active in this process, innermost last: the read end of each
# block's wakeup pipe, the bytes read from it so far, and the signal numbers among them.
_WATCHING: list[tuple[int, bytearray, list[int]]] = []


def _drain(rfd: int, raw: bytearray, seen: list[int]) -> None:
    """Move what the wakeup pipe holds into `raw`, and its SIGINT/SIGTERM numbers into `seen`."""
    while True:
        try:
            data = os.read(rfd, 4096)
        except BlockingIOError:
            return
        if not data:
            return
        raw += data
        seen += [b for b in data if b in INTERRUPT_SIGNALS]


@contextmanager
def signals_seen() -> Iterator[list[int] | None]:
    """The SIGINT/SIGTERM numbers delivered while the block runs, in order; the list is
    complete when the block exits. Outside the main thread no handler runs and nothing can be
    observed: it yields None."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    seen: list[int] = []
    raw = bytearray()
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    previous = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    _WATCHING.append((rfd, raw, seen))
    try:
        yield seen
    finally:
        _WATCHING.pop()
        signal.set_wakeup_fd(previous)
        _drain(rfd, raw, seen)
        if previous >= 0 and raw:  # an enclosing block is watching too: pass the numbers on
            with suppress(OSError):
                os.write(previous, bytes(raw))
        os.close(rfd)
        os.close(wfd)


def stop_if_interrupted() -> None:
    """At the start of a step: if a SIGINT/SIGTERM was delivered since the run began and the
    run is still going (Python lost the exception Dagster's handler raised, see the module
    docstring), stop here, before the step reads or writes anything, as Dagster stops a step
    it interrupts (`DagsterExecutionInterruptedError`: the run ends as interrupted). Without a
    watching block (a run launched from the UI) Dagster's handling is left alone."""
    if not _WATCHING or threading.current_thread() is not threading.main_thread():
        return
    rfd, raw, seen = _WATCHING[-1]
    _drain(rfd, raw, seen)
    if seen:
        raise DagsterExecutionInterruptedError(
            f"{signal.Signals(seen[-1]).name} was delivered during the run"
        )


def interrupted_by_error(events: list[Any]) -> bool:
    """Whether a step or run failure among `events` says it was caused by an interruption (its
    error, or any error it was raised from, is one of `INTERRUPTED_CLASSES`). Only for runs whose
    signals could not be observed: the error does not always say so (module docstring)."""
    for ev in events:
        if not (ev.is_step_failure or ev.is_failure):
            continue
        err = getattr(ev.event_specific_data, "error", None)
        while err is not None:
            if err.cls_name in INTERRUPTED_CLASSES:
                return True
            err = err.cause or err.context
        if "interrupt" in (ev.message or "").lower():
            return True
    return False
