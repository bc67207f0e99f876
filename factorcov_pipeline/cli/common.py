"""What every `factorcov` subcommand shares: the console, `UsageError` and date parsing."""

from __future__ import annotations

import datetime as dt

from rich.console import Console

console = Console(stderr=False, highlight=False, soft_wrap=True)


class UsageError(ValueError):
    """A command-line argument is invalid; the message says which and why."""


def parse_date(value: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date (YYYY-MM-DD)") from None
