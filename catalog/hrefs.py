"""The one convention for the hrefs EOFusion stores: relative to the installation, never a host or a route.

Stored items, job results and process outputs name what the server publishes by its path below the server's
public root, without a leading slash:

===============================  ==========================================  ===============================
what                             stored href                                 answered as
===============================  ==========================================  ===============================
scene COG asset (``s2``, ``s1``)  ``scenes/<collection>/<file>.tif``          ``<base>/scenes/...``
quicklook (``thumbnail`` asset)  ``tiles/stac/...png?collection=..&item=..``  ``<base>/tiles/stac/...``
model weights (``model`` asset)  ``files/models/<item>.pt``                  ``<base>/files/models/...``
process files (exports...)       ``files/<folder>/<name>``                   ``<base>/files/...``
link inside a stored STAC item   ``collections/<c>/items/<id>`` (relative    ``<base>/stac/collections/...``
                                 to the STAC API root, as stac-fastapi
                                 resolves stored links)
===============================  ==========================================  ===============================

``<base>`` is the public base URL of the answering server (``EOFUSION_PUBLIC_URL``, or the request's host and
proxy headers; :mod:`server.hrefs`), so moving the server behind a proxy or under a prefix needs no re-ingest.
Hrefs that already carry a scheme (a client's own ``https://`` or ``s3://`` assets) are kept as they are; the
root-relative form of catalogues before migration 0020 (``/scenes/...``) is still answered, under the base.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

#: Route (first path segment) of the scene COGs, served with range requests.
SCENES = "scenes"
#: Route of the files processes write (reports, exports, model weights).
FILES = "files"
#: Route of the tiler.
TILES = "tiles"
#: Route of the STAC API.
STAC = "stac"
#: Route of the OGC API.
OGC = "ogc"
#: Where model weights go below :data:`FILES`.
MODELS_FOLDER = "models"
#: URL path prefixes the server mounts the scene COGs and the process files at.
SCENES_PREFIX = "/" + SCENES
FILES_PREFIX = "/" + FILES
#: The routes a stored href may start with (anything else relative is not ours to rewrite).
ROUTES: tuple[str, ...] = (SCENES, FILES, TILES, STAC, OGC)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def scene_asset(collection_id: str, file_name: str) -> str:
    """The stored href of a scene COG: ``scenes/<collection>/<file>``."""
    return f"{SCENES}/{collection_id}/{file_name}"


def file_href(relative: str) -> str:
    """The stored href of a file below the server's files folder (``relative`` to that folder)."""
    return f"{FILES}/{relative.lstrip('/')}"


def model_file(file_name: str) -> str:
    """The stored href of model weights: ``files/models/<file>``."""
    return file_href(f"{MODELS_FOLDER}/{file_name}")


def quicklook(collection_id: str, item_id: str, asset: str, rescale: str = "0,3000",
              bidx: tuple[int, ...] = (3, 2, 1), bbox: tuple[float, ...] | None = None) -> str:
    """The stored href of a tiler rendering of an item (a preview, or the crop of a bbox)."""
    params: list[tuple[str, str]] = [("collection", collection_id), ("item", item_id),
                                     ("assets", f"{asset}|bidx={','.join(str(b) for b in bidx)}"),
                                     ("rescale", rescale)]
    if bbox is None:
        return f"{TILES}/stac/preview.png?" + urlencode(params) + "&max_size=512"
    minx, miny, maxx, maxy = bbox
    return f"{TILES}/stac/bbox/{minx},{miny},{maxx},{maxy}.png?" + urlencode(params)


def stac_link(path: str) -> str:
    """The stored href of a link to a STAC resource: ``path`` relative to the STAC API root."""
    return path.lstrip("/")


def stac_item_path(collection_id: str, item_id: str) -> str:
    """Stored link of an item (relative to the STAC API root)."""
    return stac_link(f"collections/{collection_id}/items/{item_id}")


def stac_collection_path(collection_id: str) -> str:
    """Stored link of a collection (relative to the STAC API root)."""
    return stac_link(f"collections/{collection_id}")


def has_scheme(href: str) -> bool:
    """Whether ``href`` is an absolute URL (``http:``, ``s3:``, ``file:``...) or network-path reference."""
    return bool(_SCHEME.match(href)) or href.startswith("//")


def is_stored(href: Any) -> bool:
    """Whether ``href`` is one of our stored hrefs (or its legacy root-relative form ``/scenes/...``)."""
    if not isinstance(href, str) or not href or has_scheme(href):
        return False
    first = href.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return first in ROUTES and "/" in href.lstrip("/")


def absolute(base: str, href: str) -> str:
    """The URL a client is given for a stored href, under the public ``base`` (no trailing slash).

    Hrefs with a scheme and hrefs that are not of our routes are returned unchanged.
    """
    if not is_stored(href):
        return href
    return f"{base.rstrip('/')}/{href.lstrip('/')}"


def stored(base: str | Iterable[str], href: str) -> str:
    """The stored form of an href a client sent: our own absolute URL (under ``base``) or root-relative route
    becomes relative to the installation; anything else (another server's URL) is kept."""
    bases = [base] if isinstance(base, str) else list(base)
    for b in bases:
        prefix = b.rstrip("/") + "/"
        if href.startswith(prefix) and is_stored(href[len(prefix):]):
            return href[len(prefix):]
    if href.startswith("/") and not href.startswith("//") and is_stored(href):
        return href.lstrip("/")
    return href


def scene_path(href: str) -> str | None:
    """The path inside the scenes folder that a stored scene href names (``scenes/<rest>`` or the legacy
    ``/scenes/<rest>``), or None for any other href."""
    for prefix in (f"{SCENES}/", f"/{SCENES}/"):
        if href.startswith(prefix):
            return href[len(prefix):]
    return None


def map_asset_hrefs(doc: dict[str, Any], convert: Any) -> dict[str, Any]:
    """Apply ``convert(href) -> href`` to every asset href of a STAC item or collection, in place."""
    for key in ("assets", "item_assets"):
        assets = doc.get(key)
        if isinstance(assets, dict):
            for asset in assets.values():
                if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                    asset["href"] = convert(asset["href"])
    return doc


def legacy_to_stored(href: str) -> str:
    """The 0020 migration's rewrite: a root-relative route (``/scenes/...``, ``/tiles/...``, ``/files/...``)
    becomes the stored form; anything else is kept."""
    return href.lstrip("/") if href.startswith("/") and not href.startswith("//") and is_stored(href) else href
