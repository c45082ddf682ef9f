"""Handing the loopback demo's API key to its own pages, and to nobody else.

``eofusion demo`` generates a key on its first run (``deploy.demo_data.demo_api_key``). When it serves on a loopback
address, the annotation page asks ``/annotate/demo-key`` for it so that a newcomer can label at once. The key is
answered only when all of these hold, else the route is a 404 like any unknown path:

- the server was started by ``eofusion demo`` bound to a loopback address (``app.state.demo_key`` is set);
- the request comes from a loopback client and names a loopback host (``Host``): a page of another site that
  rebinds its name to 127.0.0.1 sends its own name, and is refused;
- the request carries no proxy header: a proxy in front of the demo may be serving other hosts. Whether it
  came with one is recorded by :class:`ProxiedMarker` outside ``server.hrefs.PublicBase``, which consumes the
  forwarding headers it reads.

A proxy that hands other hosts' requests to the loopback demo with a loopback ``Host`` and no forwarding header
at all cannot be told from a local browser: serve other hosts with ``eofusion serve``, not with the demo (which
also keeps its key to itself when ``EOFUSION_PUBLIC_URL`` names another host).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Headers a reverse proxy adds; a request carrying one may come from anywhere.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
                 "x-forwarded-prefix", "x-forwarded-server", "x-real-ip", "via")
_PROXY_HEADER_NAMES = frozenset(h.encode() for h in PROXY_HEADERS)
#: Scope key set by :class:`ProxiedMarker`: whether the request arrived with a proxy header.
PROXIED = "eofusion.proxied"
DEMO_KEY_PATH = "/annotate/demo-key"

router = APIRouter(include_in_schema=False)


class ProxiedMarker:
    """ASGI middleware recording in the scope whether a request arrived with a proxy header (:data:`PROXIED`).

    It must sit outside the middleware that consumes forwarding headers (``server.hrefs.PublicBase``).
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Mark the request, then pass it on."""
        if scope["type"] == "http":
            scope[PROXIED] = any(k.lower() in _PROXY_HEADER_NAMES for k, _ in scope.get("headers", ()))
        await self.app(scope, receive, send)


def is_loopback(host: str | None) -> bool:
    """Whether a host name or address is the local machine's loopback (``localhost``, 127.0.0.0/8, ``::1``).

    Args:
        host: A name or an IP address (IPv6 with or without brackets); None is not loopback.
    """
    if not host:
        return False
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str | None:
    try:
        return urlsplit("//" + header).hostname
    except ValueError:
        return None


def demo_key_for(request: Request) -> str | None:
    """The demo key when this request may have it (see the module's rules), else None.

    Args:
        request: The request.
    """
    key: str | None = getattr(request.app.state, "demo_key", None)
    if not key:
        return None
    if request.client is None or not is_loopback(request.client.host):
        return None
    proxied = request.scope.get(PROXIED)
    if proxied is None:  # not marked (an app without the marker): read the headers as they are now
        proxied = any(name in request.headers for name in PROXY_HEADERS)
    if proxied:
        return None
    if not is_loopback(_host_name(request.headers.get("host", ""))):
        return None
    return key


@router.get(DEMO_KEY_PATH)
async def demo_key(request: Request) -> JSONResponse:
    """The loopback demo's API key, for its annotation page.

    Returns:
        ``{"api_key": KEY}``, never cached.

    Raises:
        HTTPException: 404 unless the server is the loopback demo and the request a loopback one.
    """
    key = demo_key_for(request)
    if key is None:
        raise HTTPException(404, "Not Found")
    return JSONResponse({"api_key": key}, headers={"Cache-Control": "no-store"})
