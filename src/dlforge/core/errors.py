"""Errors a user can act on. The CLI prints their message and exits non-zero.

Every message says what is wrong, where (file, row, key or field) and what to do.
"""

from __future__ import annotations

from pathlib import Path


class DlforgeError(Exception):
    """Base class: a problem with the user's input or state, not a bug."""

    exit_code = 1


class NotFound(DlforgeError):
    """A dataset, commit, snapshot version or config entry that does not exist."""


class InvalidInput(DlforgeError):
    """A source file (or one of its rows) that cannot be stored as given.

    Args:
        path: the offending file.
        problem: what is wrong, e.g. ``"empty utterance"``.
        fix: what the user should do about it.
        row: 1-based row in the file, when the problem is in one row.
        column: the column concerned, when there is one.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        fix: str,
        row: int | None = None,
        column: str | None = None,
    ):
        self.path, self.problem, self.fix = str(path), problem, fix
        self.row, self.column = row, column
        super().__init__(path, problem, fix, row, column)

    def __str__(self) -> str:
        where = self.path
        if self.row is not None:
            where += f": row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.problem}. Fix: {self.fix}"
