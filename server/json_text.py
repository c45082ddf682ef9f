"""JSON request bodies whose strings PostgreSQL cannot store are a 400, before any app sees them.

PostgreSQL ``text`` and ``jsonb`` hold neither the NUL character nor a lone UTF-16 surrogate (``"\\ud800"`` without
its pair is valid JSON, but no UTF-8 string). Both reach the database from many places (a label's ``parent``, an
item's asset keys, a process input) and fail there with a 500; one check on the body covers them all.

The raw body is scanned first: only a body holding an escape that could decode to such a character is parsed.
A body that is no JSON is handed on unchanged, for the app to answer as it does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import send_error

#: ``\u0000`` or a ``\uD800``-``\uDFFF`` escape, in any case: the only ways JSON text can spell such a character
#: (raw control characters and invalid UTF-8 are no JSON at all).
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_JSON_TYPES = ("application/json", "application/geo+json", "application/merge-patch+json",
               "application/json-patch+json")


def unstorable_path(value: Any, where: str = "") -> str | None:
    """The JSON path of the first key or string holding NUL or a lone surrogate, ``None`` when there is none."""
    if isinstance(value, str):
        return where or "the body" if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _UNSTORABLE.search(key):
                return f"a key in {where or 'the body'}"
            found = unstorable_path(item, f"{where}.{key}" if where else key)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = unstorable_path(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower().decode("latin-1")
            return media in _JSON_TYPES or media.endswith("+json")
    return False


async def _ogc_error(send: Send, description: str) -> None:
    """The 400 of OGC API (its exception document), for bodies under the OGC prefix."""
    body = json.dumps({"type": "InvalidParameterValue", "code": "InvalidParameterValue",
                       "description": description}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class JsonTextGuard:
    """Answer 400 to a JSON body whose strings hold NUL or a lone surrogate (see the module docstring).

    It runs inside :class:`server.limits.BodyLimit`, so the body it buffers is bounded. Under ``ogc_prefix`` the
    answer is OGC API's exception document and names the process input, as the processes' own checks do.
    """

    def __init__(self, app: ASGIApp, ogc_prefix: str = "/ogc/") -> None:
        self.app = app
        self.ogc_prefix = ogc_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # the client left, or a limit answered: let the app see it
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if read[-1]["type"] == "http.request" and _SUSPECT.search(body):
            try:
                where = unstorable_path(json.loads(body))
            except ValueError:
                where = None  # no JSON: the app's own parser answers
            if where and scope["path"].startswith(self.ogc_prefix):
                # Named as the processes' own input checks name them: feedback.0.item
                name = re.sub(r"\[(\d+)\]", r".\1", where.removeprefix("inputs."))
                await _ogc_error(send, f"input {name!r}: text may not contain NUL characters or unpaired UTF-16 "
                                       "surrogates")
                return
            if where:
                await send_error(send, 400, f"{where} holds a NUL character or an unpaired UTF-16 surrogate, "
                                            "which text cannot store")
                return

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)
