"""Who is asking, for the parts below the HTTP layer (job ownership, audit logs).

``server.auth`` sets these for each request; the job manager and processes read them. A
principal is a short hash of the API key, never the key itself.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar

#: Hash of the request's valid API key; ``None`` for an anonymous request.
REQUEST_PRINCIPAL: ContextVar[str | None] = ContextVar("eofusion_principal", default=None)
#: Identifier of the request, in error bodies and the log.
REQUEST_ID: ContextVar[str | None] = ContextVar("eofusion_request_id", default=None)


def principal_of(key: str) -> str:
    """The principal a key stands for: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
