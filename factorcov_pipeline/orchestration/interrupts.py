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


def pending() -> list[int]:
    """The SIGINT/SIGTERM numbers delivered so far inside the innermost `signals_seen` block
    (empty without one): read now, not only when the block exits."""
    if not _WATCHING:
        return []
    rfd, raw, seen = _WATCHING[-1]
    _drain(rfd, raw, seen)
    return list(seen)


@contextmanager
def deferred() -> Iterator[list[int]]:
    """Inside the block, SIGINT and SIGTERM raise nothing (outside a Dagster step, where Dagster
    installs its own handler and restores this one after); the block yields the numbers
    delivered, and `signals_seen` records them too.

    Why: after a run's last step, Python's handlers would raise KeyboardInterrupt wherever the
    main thread is (Dagster leaves SIGTERM mapped to SIGINT's handler): in the run's tear-down,
    in the removal of a failed run's unfinished rows, in the command's summary. The command
    then said "interrupted; nothing was written" with exit 130, for SIGTERM too, about a run
    whose every table was written (issue 21.7: 7 of 7 tries). With the signals deferred, the
    tear-down and the summary finish and the command reports what happened: a run that
    completed says so. A signal deferred before the run's first step stops the run there
    (`stop_if_interrupted`), before it reads or writes. Outside the main thread (no handler
    can be set there) the block changes nothing."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def _record(signo: int, _frame: object) -> None:
        got.append(signo)

    previous = {s: signal.getsignal(s) for s in INTERRUPT_SIGNALS}
    for s in INTERRUPT_SIGNALS:
        signal.signal(s, _record)
    try:
        yield got
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def stop_if_interrupted() -> None:
    """At the start of a step: if a SIGINT/SIGTERM was delivered since the run (or the command
    around it) began and the
    run is still going (Python lost the exception Dagster's handler raised, see the module
    docstring), stop here, before the step reads or writes anything, as Dagster stops a step
    it interrupts (`DagsterExecutionInterruptedError`: the run ends as interrupted). Without a
    watching block (a run launched from the UI) Dagster's handling is left alone."""
    if not _WATCHING or threading.current_thread() is not threading.main_thread():
        return
    # Every watching block, not only the innermost: a signal deferred (`deferred`) between the
    # command's block and the run's went to the command's pipe only.
    for rfd, raw, seen in _WATCHING:
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
