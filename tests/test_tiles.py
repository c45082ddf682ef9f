"""/tiles: COG and STAC-item tiles, previews and crops of the real Sentinel-2 scene, pixel-checked."""

from __future__ import annotations

import io

import httpx
import numpy as np
import rasterio
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.windows import Window

from tests.conftest import DEMO_COLLECTION, SCENE_ID


def _cog(loaded: dict) -> str:
    return str(loaded["scene"].cog)


def _png(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_crop_returns_the_source_pixels(client: httpx.Client, loaded: dict) -> None:
    with rasterio.open(_cog(loaded)) as src:
        row, col, size = 600, 900, 64
        window = Window(col, row, size, size)
        expected = src.read(window=window)
        minx, miny, maxx, maxy = rasterio.windows.bounds(window, src.transform)
        epsg = src.crs.to_epsg()
    r = client.get(f"/tiles/cog/bbox/{minx},{miny},{maxx},{maxy}/{size}x{size}.tif",
                   params={"url": _cog(loaded), "coord_crs": f"epsg:{epsg}"})
    assert r.status_code == 200, r.text[:300]
    with MemoryFile(r.content) as mem, mem.open() as got:
        assert np.array_equal(got.read(indexes=[1, 2, 3, 4]), expected)


def test_patch_quicklook_shows_that_patch(client: httpx.Client, loaded: dict) -> None:
    item = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}_L120_r0005_c0007").json()
    png = _png(client.get(item["assets"]["thumbnail"]["href"]))
    assert png.shape[:2] == (120, 120)
    with rasterio.open(_cog(loaded)) as src:
        rgb = src.read(indexes=[3, 2, 1], window=Window(7 * 120, 5 * 120, 120, 120)).astype(float)
    expected = np.clip(rgb / 3000 * 255, 0, 255).transpose(1, 2, 0)
    assert np.abs(png[..., :3].astype(float) - expected).max() <= 1.0
    # A different patch looks different: the check above is not trivially satisfied.
    other = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}_L120_r0010_c0012").json()
    assert not np.array_equal(_png(client.get(other["assets"]["thumbnail"]["href"])), png)


def test_preview_and_web_mercator_tile_carry_the_scene(client: httpx.Client, loaded: dict) -> None:
    params = {"url": _cog(loaded), "bidx": [3, 2, 1], "rescale": "0,3000"}
    preview = _png(client.get("/tiles/cog/preview.png", params={**params, "max_size": 256}))
    assert max(preview.shape[:2]) == 256
    with rasterio.open(_cog(loaded)) as src:
        small = src.read(indexes=[3, 2, 1], out_shape=(3, preview.shape[0], preview.shape[1]),
                         resampling=rasterio.enums.Resampling.average).astype(float)
    expected = np.clip(small / 3000 * 255, 0, 255).transpose(1, 2, 0)
    corr = np.corrcoef(preview[..., :3].ravel().astype(float), expected.ravel())[0, 1]
    assert corr > 0.95
    tilejson = client.get("/tiles/cog/WebMercatorQuad/tilejson.json", params=params).json()
    lon, lat, zoom = tilejson["center"]
    import morecantile

    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, int(zoom))
    img = _png(client.get(f"/tiles/cog/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png", params=params))
    assert img.shape == (256, 256, 4)
    assert (img[..., 3] == 255).mean() > 0.5 and img[..., :3].std() > 5  # real, varied data


def test_stac_item_endpoints(client: httpx.Client) -> None:
    query = {"collection": DEMO_COLLECTION, "item": SCENE_ID}
    assert client.get("/tiles/stac/assets", params=query).json() == ["s2"]
    info = client.get("/tiles/stac/info", params={**query, "assets": "s2"}).json()
    assert [d for _, d in info["s2"]["band_descriptions"]] == ["B02", "B03", "B04", "B08"]
    r = client.get("/tiles/stac/info", params={"collection": DEMO_COLLECTION, "item": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["description"]


def test_only_scene_cogs_are_served(client: httpx.Client, loaded: dict) -> None:
    # Outside the scenes folder is answered as missing: 404, never a hint that the file exists.
    assert client.get("/tiles/cog/info", params={"url": "/etc/passwd"}).status_code == 404
    assert client.get("/tiles/cog/info", params={"url": _cog(loaded) + "/../../../../etc/hosts"}).status_code == 404
    missing = _cog(loaded).replace(".tif", "-missing.tif")
    assert client.get("/tiles/cog/info", params={"url": missing}).status_code == 404
    # The scene COG by its path, by its /scenes route, its stored href and relative to the scenes folder (an
    # asset's absolute URL is a URL: the tiler does not fetch).
    href = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()["assets"]["s2"]["href"]
    relative = href.split("/scenes/", 1)[1]
    for url in (_cog(loaded), "/scenes/" + relative, "scenes/" + relative, relative):
        info = client.get("/tiles/cog/info", params={"url": url})
        assert info.status_code == 200 and info.json()["count"] == 4, (url, info.text[:200])


def test_scene_cog_is_served_for_range_reads(client: httpx.Client, server, loaded: dict) -> None:
    item = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
    href = item["assets"]["s2"]["href"]
    assert href.startswith(server.url + "/scenes/")
    window = Window(100, 200, 50, 40)
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(f"/vsicurl/{href}") as remote, rasterio.open(_cog(loaded)) as local:
            assert remote.profile["driver"] == "GTiff" and remote.crs == local.crs
            assert np.array_equal(remote.read(window=window), local.read(window=window))
    r = client.get(href, headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100
