"""The one user-facing error type: expected problems with a message that names what to fix."""

from __future__ import annotations


class TunesmithError(Exception):
    """An expected problem (bad config, bad data, missing model) the user can fix.

    The CLI prints ``message`` (and ``hint``, when given) on one line and exits non-zero;
    anything that is not a TunesmithError is a bug and keeps its traceback.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
