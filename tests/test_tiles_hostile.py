"""/tiles under hostile input: only scene COGs are opened, sizes are bounded, bad parameters are 4xx.

Against the real server and the real demo scene: files of the data folder that are not scene COGs
(the cluster's password file and data, pygeoapi's configuration) answer exactly like a missing file;
items whose asset hrefs point outside the scenes folder (``/vsicurl/``, ``http://``, other paths) are
refused without a byte being fetched; a 20000 px preview is refused at once; low-zoom tiles and
world-sized boxes are cheap; and the imagery still renders, pixel-checked against the COG.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import morecantile
import numpy as np
import pytest
from PIL import Image
from rio_tiler.io import Reader

from catalog.db import embedded_cluster
from eofusion.config import Settings
from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server

KEY = {"X-API-Key": API_KEY}
LOOK = {"collection": DEMO_COLLECTION, "item": SCENE_ID, "assets": "s2|bidx=3,2,1", "rescale": "0,3000"}
HOSTILE = "hostile-tiles"
WEB = morecantile.tms.get("WebMercatorQuad")


def _cog(loaded: dict) -> Path:
    return Path(loaded["scene"].cog)


def _centre(loaded: dict) -> tuple[float, float]:
    with Reader(str(_cog(loaded))) as src:
        west, south, east, north = src.get_geographic_bounds("EPSG:4326")
    return (west + east) / 2, (south + north) / 2


def _rgba(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))


def _shape(r: httpx.Response) -> tuple[int, str, str]:
    """Status, error code and description with the quoted reference blanked out."""
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"description": r.text}
    return r.status_code, body.get("code", ""), re.sub(r"'.*'", "'…'", body.get("description", ""))


@pytest.fixture()
def quick(server: Server) -> Iterator[httpx.Client]:
    """A client that gives up long before a worker held by unbounded work would answer."""
    with httpx.Client(base_url=server.url, timeout=20) as c:
        yield c


class _Recorder(BaseHTTPRequestHandler):
    """Counts every request (GDAL fetching a remote asset would be one) and answers 404."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def remote() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server standing for a remote host: its base URL and the paths requested from it."""
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_anonymous_huge_preview_is_refused_at_once(server: Server, loaded: dict) -> None:
    cog = str(_cog(loaded))
    lon, lat = _centre(loaded)
    tile = WEB.tile(lon, lat, 13)
    tile_path = f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    with Reader(cog) as src:
        west, south, east, north = src.get_geographic_bounds("EPSG:4326")
    huge: list[tuple[str, dict[str, Any]]] = [
        ("/tiles/stac/preview.png", {**LOOK, "width": 20000, "height": 20000}),
        ("/tiles/stac/preview/20000x20000.png", LOOK),
        ("/tiles/cog/preview.png", {"url": cog, "bidx": [3, 2, 1], "max_size": 20000}),
        (f"/tiles/cog/bbox/{west},{south},{east},{north}/20000x20000.png", {"url": cog, "bidx": [3, 2, 1]}),
        (f"/tiles/stac/{tile_path}", {**LOOK, "tilesize": 20000}),
        (f"/tiles/cog/{tile_path}", {"url": cog, "bidx": [3, 2, 1], "tilesize": 1024, "buffer": 1024}),
        ("/tiles/cog/statistics", {"url": cog, "histogram_bins": 10**9}),
    ]
    # No key: the refusal is for everybody, and a 5 s client fails on the old minute-long render.
    with httpx.Client(base_url=server.url, timeout=5) as anonymous:
        for path, params in huge:
            started = time.monotonic()
            r = anonymous.get(path, params=params)
            elapsed = time.monotonic() - started
            assert r.status_code == 413, (path, r.status_code, r.text[:300])
            assert "EOFUSION_LIMIT_TILE_PX" in r.json()["description"], r.text
            assert elapsed < 1.0, (path, elapsed)
        # Within the bound the same preview renders, at the asked size.
        small = _rgba(anonymous.get("/tiles/stac/preview.png", params={**LOOK, "width": 300, "height": 200}))
        assert small.shape == (200, 300, 4) and small[..., :3].std() > 5


def test_files_that_are_not_scene_cogs_answer_like_missing_ones(
        client: httpx.Client, server: Server, loaded: dict, settings: Settings, tmp_path: Path) -> None:
    cog = _cog(loaded)
    data_dir, scenes = settings.data_dir, settings.scenes_dir
    secrets = [data_dir / "ogc" / "pygeoapi-config.yml"]
    if settings.embedded:
        cluster = embedded_cluster(settings)
        secrets += [cluster.info_file, cluster.pgdata, cluster.pgdata / "PG_VERSION", data_dir / "db"]
    assert all(p.exists() for p in secrets), secrets
    # A real COG outside the scenes folder, inside the data folder and outside it, and links to them
    # (and to the password file) from inside the scenes folder.
    stray = data_dir / "not-scenes"
    stray.mkdir(exist_ok=True)
    copies = [stray / "copy.tif", tmp_path / "outside.tif"]
    links = scenes / "hostile-links"
    links.mkdir(exist_ok=True)
    try:
        for copy in copies:
            shutil.copyfile(cog, copy)
        for i, target in enumerate([*copies, secrets[-1] if settings.embedded else secrets[0]]):
            (links / f"escape{i}.tif").symlink_to(target)
        absolute = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()["assets"]["s2"]["href"]
        href = "/scenes/" + absolute.split("/scenes/", 1)[1]
        probes = [
            *map(str, secrets), *map(str, copies), *(str(p) for p in links.iterdir()),
            f"/vsicurl/{absolute}",  # a URL GDAL could really read
            absolute, f"file://{cog}", f"/vsizip/{cog}", "/scenes/../ogc/pygeoapi-config.yml",
            f"{cog}/../../../ogc/pygeoapi-config.yml", "../ogc/pygeoapi-config.yml", f"{cog}\x00.tif",
            str(scenes),
        ]
        missing = [str(scenes / "no-such-scene.tif"), str(data_dir / "db" / "no-such-file.json"), "/etc/no-such"]
        expected = {_shape(client.get("/tiles/cog/info", params={"url": missing[0]}))}
        assert next(iter(expected))[0] == 404, expected
        for url in [*probes, *missing[1:]]:
            assert _shape(client.get("/tiles/cog/info", params={"url": url})) in expected, url
        # The same on the reading routes, for the password file of the cluster (or pygeoapi's file).
        secret = str(secrets[1] if settings.embedded else secrets[0])
        lon, lat = _centre(loaded)
        tile = WEB.tile(lon, lat, 12)
        for path in ("/tiles/cog/preview.png", f"/tiles/cog/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                     "/tiles/cog/statistics", f"/tiles/cog/point/{lon},{lat}"):
            for url in (secret, missing[0]):
                assert _shape(client.get(path, params={"url": url})) in expected, (path, url)
        # The scene itself is served by any of its names.
        for url in (str(cog), href, href.removeprefix("/"), href.removeprefix("/scenes/")):
            assert client.get("/tiles/cog/info", params={"url": url}).json()["count"] == 4
    finally:
        shutil.rmtree(links, ignore_errors=True)
        shutil.rmtree(stray, ignore_errors=True)


def _hostile_item(scene: dict, item_id: str, href: str) -> dict:
    asset = {**scene["assets"]["s2"], "href": href}
    return {"type": "Feature", "stac_version": scene["stac_version"], "id": item_id, "collection": HOSTILE,
            "geometry": scene["geometry"], "bbox": scene["bbox"], "properties": scene["properties"],
            "links": [], "assets": {"s2": asset}, "stac_extensions": scene.get("stac_extensions", [])}


def test_asset_hrefs_outside_the_scenes_folder_are_never_opened(
        client: httpx.Client, loaded: dict, remote: tuple[str, list[str]], tmp_path: Path) -> None:
    base, hits = remote
    outside = tmp_path / "outside.tif"
    shutil.copyfile(_cog(loaded), outside)
    scene = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
    hrefs = {
        "vsicurl": f"/vsicurl/{base}/scene.tif",
        "http": f"{base}/scene.tif",
        "vsicurl-file": f"/vsicurl/file://{outside}",
        "outside-path": str(outside),
        "escape": "/scenes/../ogc/pygeoapi-config.yml",
        "relative": "scene.tif",
        "fine": scene["assets"]["s2"]["href"],  # the control: the same item with the scene's own href
    }
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": HOSTILE, "license": "CC0-1.0",
                  "description": "items with asset hrefs /tiles must not open", "links": [],
                  "extent": {"spatial": {"bbox": [scene["bbox"]]},
                             "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]}}}
    r = client.post("/stac/collections", json=collection, headers=KEY)
    assert r.status_code in (200, 201), r.text
    try:
        for name, href in hrefs.items():
            r = client.post(f"/stac/collections/{HOSTILE}/items", json=_hostile_item(scene, name, href), headers=KEY)
            assert r.status_code in (200, 201), r.text
        lon, lat = _centre(loaded)
        tile = WEB.tile(lon, lat, 12)
        routes = [("/tiles/stac/info", {}), ("/tiles/stac/preview.png", {"rescale": "0,3000"}),
                  (f"/tiles/stac/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png", {"rescale": "0,3000"}),
                  ("/tiles/stac/statistics", {})]
        for name in hrefs:
            for path, extra in routes:
                assets = "s2" if path.endswith("info") or "statistics" in path else "s2|bidx=3,2,1"
                r = client.get(path, params={"collection": HOSTILE, "item": name, "assets": assets, **extra})
                if name == "fine":
                    assert r.status_code == 200, (path, r.text[:300])
                else:
                    assert r.status_code == 404, (name, path, r.status_code, r.text[:300])
                    assert "names no scene COG" in r.json()["description"], r.text
        assert hits == [], hits
        for params in ({"collection": HOSTILE, "item": "nope"}, {"collection": "no-such-collection", "item": "x"}):
            r = client.get("/tiles/stac/info", params={**params, "assets": "s2"})
            assert r.status_code == 404 and "no item" in r.json()["description"]
    finally:
        client.delete(f"/stac/collections/{HOSTILE}", headers=KEY)


def test_bad_tiler_parameters_are_4xx(client: httpx.Client, loaded: dict) -> None:
    cog = str(_cog(loaded))
    rgb: dict[str, Any] = {"url": cog, "bidx": [3, 2, 1]}
    lon, lat = _centre(loaded)
    tile = WEB.tile(lon, lat, 12)
    tile_path = f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/tiles/stac/preview.png", {**LOOK, "assets": "s2", "asset_bidx": "s2|3,2,1"}, 400),
        ("/tiles/stac/preview.png", {**LOOK, "assets": "s2|bidx=9,2,1"}, 400),
        ("/tiles/stac/preview.png", {**LOOK, "assets": "s9"}, 400),
        ("/tiles/cog/preview.png", {"url": cog, "expression": "b9*2"}, 400),
        ("/tiles/cog/preview.png", {"url": cog, "expression": "b1+("}, 400),
        ("/tiles/cog/preview.png", {"url": cog, "bidx": [0]}, 400),
        ("/tiles/cog/statistics", {"url": cog, "bidx": -46325507}, 400),
        ("/tiles/cog/preview.png", {**rgb, "colormap": "{not json"}, 400),
        ("/tiles/cog/preview.png", {**rgb, "colormap_name": "no-such-map"}, 400),
        ("/tiles/cog/preview.png", {**rgb, "rescale": "a,b"}, 400),
        ("/tiles/cog/preview.png", {**rgb, "dst_crs": "epsg:999999"}, 400),
        ("/tiles/cog/preview.png", {**rgb, "width": 0}, 400),
        ("/tiles/cog/tiles/NoSuchMatrixSet/0/0/0.png", rgb, 400),
        ("/tiles/cog/tiles/WebMercatorQuad/12/0/0.png", rgb, 404),
        ("/tiles/cog/tiles/WebMercatorQuad/99/0/0.png", rgb, 400),
        ("/tiles/stac/tiles/WebMercatorQuad", {**LOOK, "maxzoom": 3940695427537}, 400),
        (f"/tiles/cog/{tile_path}", {**rgb, "buffer": 0.3}, 400),
        ("/tiles/cog/statistics", {"url": cog, "histogram_range": "5,1"}, 400),
        ("/tiles/cog/statistics", {"url": cog, "p": -5}, 400),
        ("/tiles/cog/statistics", {"url": cog, "histogram_bins": "3,2,1"}, 400),
        ("/tiles/cog/statistics", {"url": cog, "histogram_bins": 0}, 400),
        ("/tiles/stac/statistics", {**LOOK, "assets": "s2", "nodata": "-inf"}, 400),
        ("/tiles/cog/preview.png", {**rgb, "nodata": 70000}, 400),
        ("/tiles/cog/point/6.498274478257298e+16,5.037893061316105e-120", {"url": cog}, 404),
        ("/tiles/cog/bbox/0.0,0.0,0.0,0.0.png", rgb, 400),
        ("/tiles/cog/bbox/3.8e16,-5.9e15,1.7976931348623157e+308,4.9e179.npy", rgb, 400),
        ("/tiles/cog/tiles/WebMercatorQuad/0/0/0.png", {"url": cog}, 400),  # 4 bands cannot be a PNG
    ]
    for path, params, status in cases:
        r = client.get(path, params=params)
        assert r.status_code == status, (path, params, r.status_code, r.text[:300])
        assert r.json()["description"], r.text
    # A feature whose positions are no place on Earth (PROJ failed on them mid-read).
    far = {"type": "Feature", "properties": {}, "geometry": {
        "type": "MultiLineString", "coordinates": [[[82807891359222.5, -5.95e16], [-75.6, 37.6]]]}}
    r = client.post("/tiles/stac/feature.png", params=LOOK, json=far, headers=KEY)
    assert r.status_code == 400 and "not a place" in r.json()["description"], r.text[:300]
    # A 1-pixel tile of three 16-bit bands renders (titiler once took a row of its mask for a band).
    one = _rgba(client.get("/tiles/cog/tiles/WorldCRS84Quad/0/0/0.png", params={**rgb, "tilesize": 1}))
    assert one.shape == (1, 1, 4)


def _reference_tile(loaded: dict, z: int, x: int, y: int) -> np.ndarray:
    """The tile as rio-tiler renders it straight from the COG (its direct read), RGB 0..255 and validity."""
    with Reader(str(_cog(loaded)), tms=WEB) as src:
        img = src.tile(x, y, z, indexes=(3, 2, 1))
    rgb = np.clip(img.array.data.astype(float) / 3000 * 255, 0, 255)
    return np.concatenate([rgb, (~img.array.mask[:1]).astype(float) * 255]).transpose(1, 2, 0)


def test_tiles_render_at_every_zoom_and_world_boxes_are_cheap(quick: httpx.Client, loaded: dict) -> None:
    lon, lat = _centre(loaded)
    with Reader(str(_cog(loaded)), tms=WEB) as src:
        minzoom = src.minzoom
    # At the scene's own zoom and a few levels out (read by the bounded path), the tiles match the COG.
    for z in (minzoom + 1, minzoom - 2, minzoom - 3):
        t = WEB.tile(lon, lat, z)
        got = _rgba(quick.get(f"/tiles/stac/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png", params=LOOK)).astype(float)
        want = _reference_tile(loaded, t.z, t.x, t.y)
        valid_got, valid_want = got[..., 3] > 0, want[..., 3] > 0
        assert valid_want.sum() > 100
        overlap = (valid_got & valid_want).sum() / (valid_got | valid_want).sum()
        assert overlap > 0.95, (z, overlap)
        both = valid_got & valid_want
        corr = np.corrcoef(got[..., :3][both].ravel(), want[..., :3][both].ravel())[0, 1]
        assert corr > 0.95, (z, corr)
    # Far out the scene is a few pixels, read at once (this held a worker for minutes).
    for z in (4, 2, 0):
        t = WEB.tile(lon, lat, z)
        img = _rgba(quick.get(f"/tiles/stac/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png", params=LOOK))
        assert img.shape == (256, 256, 4) and (img[..., 3] > 0).sum() <= 64
    # A bbox of the whole world: bounded by the tile limit, the scene where it lies.
    world = _rgba(quick.get("/tiles/stac/bbox/-180,-85,180,85.png", params=LOOK))
    height, width = world.shape[:2]
    assert max(height, width) == 2048
    rows, cols = np.nonzero(world[..., 3])
    assert 0 < rows.size < 50
    assert abs(cols.mean() - (lon + 180) / 360 * width) < 3 and abs(rows.mean() - (85 - lat) / 170 * height) < 3


def test_feature_crops_and_statistics_of_posted_geometry_are_anonymous_reads(
        client: httpx.Client, loaded: dict) -> None:
    """POSTing a geometry to crop or summarise the scene reads only: no key is needed (it was a 401)."""
    lon, lat = _centre(loaded)
    d = 0.002
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
        [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]]}}
    r = client.post("/tiles/stac/feature.png", params={**LOOK, "max_size": 64}, json=feature)
    assert r.status_code == 200, r.text[:300]
    crop = _rgba(r)
    assert crop.shape[2] == 4 and crop[..., 3].any() and crop[..., :3].std() > 0  # real pixels, not an empty image
    r = client.post("/tiles/cog/statistics", params={"url": str(_cog(loaded)), "bidx": 1}, json=feature)
    assert r.status_code == 200, r.text[:300]
    stats = r.json()["properties"]["statistics"]  # a Feature posted, a Feature back
    band = next(iter(stats.values()))
    assert band["count"] > 0 and band["max"] >= band["min"] > 0
