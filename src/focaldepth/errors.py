"""User-facing errors.

Anything a user can cause (a bad file, a bad setting) raises :class:`UserError`. The CLI
prints its message on one line and exits with status 2; no traceback is shown.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: printed as one line, never as a traceback."""

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
