"""Security headers on every answer: a Content-Security-Policy chosen by what the answer is, and ``nosniff``.

Our pages (``/``, ``/viewer``, ``/annotate``) load scripts and styles from this server only and hold no inline
script, style or event handler, so they get the strict :data:`PAGE_POLICY`. Every other HTML answer gets it too,
pygeoapi's HTML (``/ogc/...?f=html``) included: its templates write stored data into inline scripts and into
strings that Leaflet turns into HTML, so under this policy those pages show their content without their scripts
(they load them from CDNs, which an offline installation cannot reach anyway).

The two API documentation pages (stac-fastapi's Swagger UI at ``/stac/api.html``, pygeoapi's at ``/ogc/openapi``)
are built from configuration only (the OpenAPI URL and the title), never from stored data. They get
:func:`docs_policy`: their CDN scripts plus the SHA-256 hashes of their own inline scripts, which still blocks
inline event handlers and any other inline script.

JSON, images and scripts get :data:`API_POLICY` (nothing may load, nothing may frame them), so an answer a browser
is tricked into rendering as a document cannot run anything; files served as they are (``/files``, ``/scenes``)
get :data:`DOWNLOAD_POLICY`, which also sandboxes them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Our pages: everything from this server, nothing inline, no plugins, no framing, forms post here only.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'")
#: Answers that are not pages (JSON, images, scripts, style sheets).
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: Files served as they are: nothing runs, even if a file is HTML or SVG.
DOWNLOAD_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: Where the two Swagger UI pages load their scripts and style sheets from.
DOCS_CDNS = ("https://cdn.jsdelivr.net", "https://unpkg.com")

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SRC_ATTRIBUTE = re.compile(rb"\bsrc\s*=", re.IGNORECASE)


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP source expressions (``'sha256-...'``) of the inline scripts of an HTML document.

    Args:
        html: The document.

    Returns:
        One expression per distinct inline script (scripts with a ``src`` are not inline), in document order.
    """
    out: list[str] = []
    for match in _INLINE_SCRIPT.finditer(html):
        if _SRC_ATTRIBUTE.search(match.group(1)):
            continue
        digest = base64.b64encode(hashlib.sha256(match.group(2)).digest()).decode("ascii")
        source = f"'sha256-{digest}'"
        if source not in out:
            out.append(source)
    return out


def docs_policy(html: bytes, cdns: Iterable[str] = DOCS_CDNS) -> str:
    """The policy of an API documentation page: its CDNs and its own inline scripts, by hash.

    Args:
        html: The page as served (built from configuration, not from stored data).
        cdns: Origins its scripts, style sheets and images come from.

    Returns:
        The Content-Security-Policy value; inline event handlers stay blocked (no ``'unsafe-inline'`` for scripts).
    """
    hosts = " ".join(cdns)
    scripts = " ".join(["'self'", hosts, *inline_script_hashes(html)])
    return (f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline' {hosts}; "
            f"img-src 'self' data: {hosts} https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@dataclass(frozen=True)
class SecurityPolicies:
    """Which answers get which policy.

    Attributes:
        docs_paths: Paths of the API documentation pages (Swagger UI), which get :func:`docs_policy`.
        download_prefixes: Path prefixes of files served as they are, which get :data:`DOWNLOAD_POLICY`.
    """

    docs_paths: frozenset[str] = frozenset()
    download_prefixes: tuple[str, ...] = ()

    def is_download(self, path: str) -> bool:
        """Whether ``path`` serves a stored file as it is."""
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.download_prefixes)


def _is_html(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _HTML_TYPES


class SecurityHeaders:
    """ASGI middleware adding ``Content-Security-Policy`` and ``X-Content-Type-Options: nosniff`` to every answer.

    The policy is decided here and only here: one the application set is replaced.
    """

    def __init__(self, app: ASGIApp, policies: SecurityPolicies) -> None:
        """Wrap ``app``.

        Args:
            app: The application.
            policies: Which paths are documentation pages and downloads.
        """
        self.app = app
        self.policies = policies

    def _policy(self, path: str, content_type: str) -> str | None:
        """The policy of an answer, or None when it is a documentation page (decided once its body is known)."""
        if self.policies.is_download(path):
            return DOWNLOAD_POLICY
        if not _is_html(content_type):
            return API_POLICY
        if path in self.policies.docs_paths:
            return None
        return PAGE_POLICY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, adding the headers to the answer's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self.policies.docs_paths:
            # The page's inline scripts are hashed from its body: ask the app for it uncompressed (it is small).
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k != b"accept-encoding"]}
        held: Message | None = None  # a documentation page's start, sent with the policy once its body is read
        body: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers["x-content-type-options"] = "nosniff"
                policy = self._policy(path, headers.get("content-type", ""))
                message = {**message, "headers": headers.raw}
                if policy is None:
                    held = message
                    return
                headers["content-security-policy"] = policy
                message["headers"] = headers.raw
            elif message["type"] == "http.response.body" and held is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                document = b"".join(body)
                headers = MutableHeaders(raw=list(held["headers"]))
                headers["content-security-policy"] = docs_policy(document)
                start, held = {**held, "headers": headers.raw}, None
                await send(start)
                message = {"type": "http.response.body", "body": document, "more_body": False}
            await send(message)

        await self.app(scope, receive, send_with_headers)
