"""The request body limit: ``limits.body_bytes`` for every request, ``limits.bulk_body_bytes`` for keyed item writes.

A declared ``Content-Length`` over the limit is refused before the app runs; a body without one (chunked) is
counted as it streams, and refused with 413 the moment it passes the limit. The rest of such a body is never
buffered: uvicorn discards it, so the connection stays usable. It runs inside :class:`server.auth.APIKeyMiddleware`,
whose principal (:data:`plugins.context.REQUEST_PRINCIPAL`) tells a keyed request.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eofusion.config import Limits
from eofusion.errors import TooLarge
from plugins.context import REQUEST_PRINCIPAL
from server.errors import send_error

#: STAC transactions that may carry many items: item create (one item or a feature collection), item replace and
#: bulk items. Only these, and only with a valid key, get ``limits.bulk_body_bytes``.
_BULK_PATHS = re.compile(r"^/stac/collections/[^/]+/(items(/[^/]+)?|bulk_items)/?$")


def body_limit(method: str, path: str, keyed: bool, limits: Limits) -> int:
    """The largest body a request may send.

    Args:
        method: HTTP method.
        path: Request path.
        keyed: Whether the request carries a valid API key.
        limits: The installation's limits.
    """
    if keyed and method in ("POST", "PUT") and _BULK_PATHS.match(path):
        return limits.bulk_body_bytes
    return limits.body_bytes


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or ``None`` without a valid one (uvicorn refuses a malformed one)."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyTooLarge(TooLarge):
    """Raised into the app when its body passes the limit (the 413 has been sent already)."""


class BodyLimit:
    """Answer 413 (STAC error shape) to a request whose body is larger than :func:`body_limit` allows."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"], REQUEST_PRINCIPAL.get() is not None, self.limits)
        what = f"the request body is larger than this server accepts ({limit} bytes"
        what += ", EOFUSION_LIMIT_BULK_BODY_BYTES)" if limit == self.limits.bulk_body_bytes and \
            limit != self.limits.body_bytes else ", EOFUSION_LIMIT_BODY_BYTES)"
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await send_error(send, 413, what)
            return
        received = 0
        started = answered = False

        async def counted() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not answered:
                        answered = True
                        await send_error(send, 413, what)
                    raise BodyTooLarge(what)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 was the answer: whatever the app makes of the cut-off body is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not answered:
                raise
            # The app failed on the body cut off at the limit: that is the 413 already sent, not a fault.
