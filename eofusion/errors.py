"""The project's own exception tree: what went wrong, in words a client can act on.

Every layer raises these; the HTTP status of each kind is chosen in one place
(``server.errors.STATUS``), as stac-fastapi's ``types/errors.py`` does. ``InvalidInput`` is
also a ``ValueError`` and ``NotFound`` a ``LookupError``, so code that already catches those
keeps working.
"""

from __future__ import annotations


class EOFusionError(Exception):
    """Base of every error the project raises on purpose."""


class InvalidInput(EOFusionError, ValueError):
    """A parameter or body the client sent is malformed or out of range."""


class NotFound(EOFusionError, LookupError):
    """A collection, item, session, job or file the client named does not exist (or is not theirs)."""


class Conflict(EOFusionError):
    """The request clashes with the current state (a round of the same session is running, an id exists)."""


class TooLarge(EOFusionError):
    """A body, list, text, tile or page beyond the configured limits."""


class Busy(EOFusionError):
    """The server is at capacity (job queue full); try again later.

    Attributes:
        retry_after: Seconds the client should wait before retrying.
    """

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: The HTTP status of each kind, the one map every front door (STAC, OGC, tiles, labels, pages) uses.
STATUS_CODES: dict[type[EOFusionError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Busy: 503,
}


def status_of(exc: BaseException) -> int:
    """The HTTP status for ``exc``: its kind's (most specific class first), 500 for anything else."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]  # type: ignore[index]
    return 500
