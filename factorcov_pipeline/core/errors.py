"""Errors raised on bad user input.

`InputDataError` is a `ValueError` so that callers that already catch `ValueError` keep working;
its message always names the file and, where they apply, the offending date(s), asset(s) and
column, so that a user can find the row in their own data without a debugger.
"""

from __future__ import annotations


class InputDataError(ValueError):
    """Bad user input (a dataset or a factor-return file).

    The message names the file and, where it applies, the date, the asset and the column, the
    first few offenders and how many there are in total.
    """
