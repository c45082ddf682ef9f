"""Answering with absolute hrefs: the public base URL of a request, and the steps that write it into answers.

Stored hrefs are relative to the installation (:mod:`catalog.hrefs`); every answer makes them absolute under
the public base URL of the request:

- ``EOFUSION_PUBLIC_URL`` when it is set (``Settings.public_url``), whatever the request says;
- else the request's own origin, as a proxy forwarded it: ``Forwarded`` (RFC 7239 ``proto=``, ``host=``), else
  ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` / ``X-Forwarded-Port``, else the ``Host`` header, and the path
  prefix the proxy strips in ``X-Forwarded-Prefix``.

:class:`PublicBase` writes that base into the ASGI scope (scheme, ``Host``, ``app_root_path``) before anything
builds a URL, so Starlette's ``request.base_url`` is the public base everywhere: stac-fastapi's links (its
``get_base_url``), the similarity search's links and the pages follow it. Routing is untouched (``root_path``
and ``path`` stay as the server received them). Asset hrefs are written by the STAC client
(:func:`absolute_assets`, ``server.stac_client``) and process outputs and OGC features by :class:`OgcHrefs`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog import hrefs

#: Scope key of the public base URL (no trailing slash).
SCOPE_KEY = "eofusion.public_base"
_FORWARDING_HEADERS = (b"forwarded", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                       b"x-forwarded-prefix")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$")
_FORWARDED_PAIR = re.compile(r'(?i)\b(proto|host)=("[^"]*"|[^;,\s]*)')


def split_public_url(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path prefix without trailing slash) of a public base URL.

    Raises:
        ValueError: not an ``http(s)://host[:port][/prefix]`` URL.
    """
    parts = urlsplit(url.strip())
    prefix = parts.path.rstrip("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or not _HOST.match(parts.netloc) \
            or not _PREFIX.match(prefix) or parts.query or parts.fragment:
        raise ValueError(f"EOFUSION_PUBLIC_URL must be an http(s)://host[:port][/prefix] URL, got {url!r}")
    return parts.scheme, parts.netloc, prefix


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    return values[0].split(",")[0].strip() if values else None


def forwarded_base(scope: Scope) -> tuple[str, str, str]:
    """(scheme, host[:port], prefix) of a request as its proxy forwarded it (malformed values are ignored)."""
    scheme = str(scope.get("scheme") or "http")
    host = _header(scope, b"host")
    if not host or not _HOST.match(host):
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
    forwarded = _header(scope, b"forwarded")
    if forwarded:
        for key, value in _FORWARDED_PAIR.findall(forwarded):
            value = value.strip('"')
            if key.lower() == "proto" and value in ("http", "https"):
                scheme = value
            elif key.lower() == "host" and _HOST.match(value):
                host = value
    else:
        proto = _header(scope, b"x-forwarded-proto")
        if proto in ("http", "https"):
            scheme = proto
        fhost = _header(scope, b"x-forwarded-host")
        if fhost and _HOST.match(fhost):
            host = fhost
        port = _header(scope, b"x-forwarded-port")
        if port and port.isascii() and port.isdigit() and int(port) < 65536 and fhost:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            default = {"http": 80, "https": 443}[scheme]
            host = name if int(port) == default else f"{name}:{int(port)}"
    prefix = (_header(scope, b"x-forwarded-prefix") or "").rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    if not _PREFIX.match(prefix) or "//" in prefix:
        prefix = ""
    return scheme, host, prefix


class PublicBase:
    """Put the public base URL of each request into its scope (see the module docstring).

    The forwarding headers are consumed here: stac-fastapi's own ``ProxyHeaderMiddleware`` further in then sees
    the resolved ``Host`` and scheme only, so ``EOFUSION_PUBLIC_URL`` wins over what a client claims.
    """

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.fixed = split_public_url(public_url) if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scheme, host, prefix = self.fixed or forwarded_base(scope)
            headers = [(k, v) for k, v in scope.get("headers", ())
                       if k.lower() not in _FORWARDING_HEADERS and k.lower() != b"host"]
            root = scope.get("root_path", "") or ""
            scope = {**scope, "scheme": scheme if scope["type"] == "http" else scope.get("scheme"),
                     "headers": [*headers, (b"host", host.encode("latin-1"))],
                     # Starlette builds request.base_url from app_root_path; routing reads root_path only.
                     "app_root_path": prefix + root, SCOPE_KEY: f"{scheme}://{host}{prefix}{root}"}
        await self.app(scope, receive, send)


def public_base(request: Request | Scope) -> str:
    """The public base URL (no trailing slash) of a request that passed :class:`PublicBase`."""
    scope = request.scope if isinstance(request, Request) else request
    base = scope.get(SCOPE_KEY)
    if isinstance(base, str):
        return base
    return str(Request(scope).base_url).rstrip("/")


def absolute_assets(doc: Any, base: str) -> Any:
    """A STAC item or collection (or an item collection's features) with absolute asset hrefs, in place."""
    if isinstance(doc, dict):
        if doc.get("type") == "FeatureCollection" or isinstance(doc.get("features"), list):
            for feature in doc.get("features") or ():
                if isinstance(feature, dict):
                    hrefs.map_asset_hrefs(feature, lambda h: hrefs.absolute(base, h))
        elif isinstance(doc.get("collections"), list):
            for coll in doc["collections"]:
                if isinstance(coll, dict):
                    hrefs.map_asset_hrefs(coll, lambda h: hrefs.absolute(base, h))
        else:
            hrefs.map_asset_hrefs(doc, lambda h: hrefs.absolute(base, h))
    return doc


def stored_assets(doc: Any, bases: Iterable[str]) -> Any:
    """A STAC item or collection a client writes, its hrefs under our own base made relative (stored form)."""
    if isinstance(doc, dict):
        known = list(bases)
        hrefs.map_asset_hrefs(doc, lambda h: hrefs.stored(known, h))
    return doc


#: Members of process outputs and OGC features whose value is an href (``files`` holds a name -> href map).
OUTPUT_HREF_KEYS = frozenset({"href", "quicklook", "stac_item", "report", "plot"})
_OUTPUT_HREF_MAPS = frozenset({"files"})


def absolute_outputs(value: Any, base: str, configured: str | None = None) -> Any:
    """Process outputs / OGC documents with absolute hrefs (in place).

    Stored hrefs (``files/...``, ``tiles/...``, the legacy ``/files/...``) in :data:`OUTPUT_HREF_KEYS` members
    (and in the values of a ``files`` map) become absolute under ``base``; an ``href`` pygeoapi wrote under the
    server's ``configured`` URL is moved under ``base`` when the request came through another one (a proxy).
    """
    old = configured.rstrip("/") + "/" if configured and configured.rstrip("/") != base.rstrip("/") else None

    def convert(href: str) -> str:
        if hrefs.is_stored(href):
            return hrefs.absolute(base, href)
        if old and (href.startswith(old) or href == old[:-1]):
            return base.rstrip("/") + "/" + href[len(old):]
        return href

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                if isinstance(sub, str) and key in OUTPUT_HREF_KEYS:
                    node[key] = convert(sub)
                elif key in _OUTPUT_HREF_MAPS and isinstance(sub, dict):
                    for name, href in sub.items():
                        if isinstance(href, str):
                            sub[name] = convert(href)
                        else:
                            walk(href)
                else:
                    walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(value)
    return value


_JSON_TYPES = ("application/json", "application/geo+json", "application/schema+json", "application/problem+json")


class OgcHrefs:
    """The OGC API's answer step: JSON answers (features, process results, job results, links) get absolute
    hrefs under the request's public base; a ``Location`` header under the configured URL follows it too.

    Args:
        app: pygeoapi's app (mounted at ``/ogc``).
        configured: The public URL pygeoapi was configured with (its links start with it).
    """

    def __init__(self, app: ASGIApp, configured: str) -> None:
        self.app = app
        self.configured = configured.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        base = public_base(scope)
        start: Message | None = None
        chunks: list[bytes] = []
        buffering = False

        async def step(message: Message) -> None:
            nonlocal start, buffering
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                ctype = next((v.decode("latin-1").lower() for k, v in headers if k.lower() == b"content-type"), "")
                encoded = any(k.lower() == b"content-encoding" for k, _ in headers)
                headers = [(k, self._location(v, base) if k.lower() == b"location" else v) for k, v in headers]
                message = {**message, "headers": headers}
                buffering = ctype.split(";")[0].strip() in _JSON_TYPES and not encoded
                if buffering:
                    start = message
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and buffering:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = self._rewrite(b"".join(chunks), base)
                assert start is not None
                headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, step)

    def _location(self, value: bytes, base: str) -> bytes:
        text = value.decode("latin-1")
        if text.startswith(self.configured + "/") and self.configured != base:
            text = base + text[len(self.configured):]
        return text.encode("latin-1")

    def _rewrite(self, body: bytes, base: str) -> bytes:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body
        return json.dumps(absolute_outputs(doc, base, self.configured), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
