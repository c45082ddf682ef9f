"""API-key protection of writes; reads stay open.

A request is a write when its method changes state, except the read-only POSTs of the
APIs: STAC item search, and executing a process that declares itself read-only and light
(``plugins.base.open_to_anonymous``). Every other process execution needs a key: a process
is closed unless it says otherwise. An execution of an unknown process id is left to the OGC
API, which answers 404 and runs nothing.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Collection, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from plugins.context import REQUEST_PRINCIPAL, principal_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EXECUTION = re.compile(r"^/ogc/processes/(?P<pid>[^/]+)/execution/?$")
_SEARCH = re.compile(r"^/stac/search/?$")
_TILES = re.compile(r"^/tiles/")


def is_write(method: str, path: str, processes: Mapping[str, bool]) -> bool:
    """Whether a request changes data (or costs too much to run anonymously) and so needs an API key.

    Args:
        method: HTTP method.
        path: Request path.
        processes: Every process id and whether it is open to anonymous executions.
    """
    if method.upper() in SAFE_METHODS:
        return False
    if method.upper() == "POST":
        if _SEARCH.match(path) or _TILES.match(path):
            return False  # a search, or a feature crop / statistics of posted geometry: reads, bounded in size
        m = _EXECUTION.match(path)
        if m:
            pid = m.group("pid")
            return pid in processes and not processes[pid]
    return True


def _key_from_headers(headers: dict[bytes, bytes]) -> str | None:
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].decode("latin-1").strip()
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


class APIKeyMiddleware:
    """Refuse writes without a valid key: 401 without a key, 403 with a wrong one."""

    def __init__(self, app: ASGIApp, keys: Collection[str], processes: Mapping[str, bool]) -> None:
        """Protect ``app``.

        Args:
            app: The application.
            keys: Keys that authorise writes.
            processes: Every process id and whether it runs without a key (see :func:`is_write`).
        """
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.processes = dict(processes)

    def _valid(self, key: str | None) -> bool:
        return key is not None and any(hmac.compare_digest(key.encode(), k) for k in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = _key_from_headers(dict(scope["headers"]))
        valid = self._valid(key)
        if is_write(scope["method"], scope["path"], self.processes):
            if not valid:
                await _drain(receive)  # read the body so the connection stays usable for the client
            if key is None:
                await _deny(send, 401, "Unauthorized",
                            "this request changes data: send an API key in the X-API-Key header "
                            "(or Authorization: Bearer KEY)")
                return
            if not valid:
                await _deny(send, 403, "Forbidden", "the API key is not valid for writes on this server")
                return
        # Reads with a valid key run as that key's principal (its jobs, its results); others are anonymous.
        token = REQUEST_PRINCIPAL.set(principal_of(key) if valid and key is not None else None)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_PRINCIPAL.reset(token)


#: How much of a refused request's body is read before answering; uvicorn discards the rest itself.
_DRAIN_BYTES = 64 * 1024


async def _drain(receive: Receive) -> None:
    # Reading a small body lets the client finish sending before it reads the refusal; an anonymous
    # client must not make the server read an unbounded body it is going to refuse.
    seen = 0
    while seen <= _DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        seen += len(message.get("body", b""))


async def _deny(send: Send, status: int, code: str, description: str) -> None:
    body = json.dumps({"code": code, "description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'ApiKey header="X-API-Key"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
