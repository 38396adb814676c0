"""The one error type for user errors: a bad flag, a missing or unreadable input file, a wrong checkpoint.

The command-line entry points print a :class:`UserError` as one line and exit with status 2; any other
exception is a bug and keeps its traceback. The subclasses also derive from the matching built-in
exception, so ``except FileNotFoundError`` still catches a missing input.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message names the file or flag and says what to do."""


class MissingInputError(UserError, FileNotFoundError):
    """An input file or folder that a pass needs does not exist."""


class BadInputError(UserError, ValueError):
    """An input file or flag value exists but cannot be used (corrupt, truncated, wrong shape or kind)."""
