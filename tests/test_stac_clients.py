"""Other people's STAC clients against the real server: each reads our assets as it would anyone's.

GDAL's STACIT driver opens a scene search (and a fused BigEarthNet patch) as a raster, GDAL ``/vsicurl/`` and
QGIS open the COG by its asset href, stac-asset downloads an item's assets and rustac writes a CQL2-filtered
search to GeoParquet (its command line posts CQL2 text, which POST searches take). Every value they report is
checked against the COG on disk read with rasterio, or against the API's own answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import geopandas
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import rustac
from pystac_client import Client
from rasterio.crs import CRS

from eofusion.config import Settings
from tests.conftest import DEMO_COLLECTION, ROOT, SCENE_ID, Server

BIN = Path(sys.executable).parent
#: (row, col) pixels of the scene where the clients' values are compared with rasterio's.
PIXELS = ((200, 100), (1500, 1700), (973, 966))
#: Patches of the scene: the finest level, first two rows or last column (a filter with AND, OR, < and =).
CQL2_TEXT = "\"eofusion:grid_level\" = 120 AND (\"eofusion:row\" < 2 OR \"eofusion:col\" = 15)"


def _run(args: list[str], timeout: int = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def cog(loaded: dict[str, Any]) -> Path:
    """The scene's S2 COG as ingest wrote it."""
    path: Path = loaded["scene"].cog
    return path


@pytest.fixture(scope="module")
def reference(cog: Path) -> dict[str, Any]:
    """What rasterio reads from the COG: size, CRS, transform, and band values at :data:`PIXELS`."""
    with rasterio.open(cog) as ds:
        values = [ds.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0].tolist() for r, c in PIXELS]
        out = {"width": ds.width, "height": ds.height, "count": ds.count, "crs": ds.crs,
               "transform": ds.transform, "bounds": tuple(ds.bounds), "values": values}
    # The pixels must hold data (0 is the nodata value): equal zeros would prove nothing.
    assert all(all(v > 0 for v in vs) for vs in values), values
    return out


@pytest.fixture(scope="module")
def scene_item(client: httpx.Client) -> dict[str, Any]:
    """The scene item as the API answers it."""
    response = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}")
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()
    return item


def _absolute_href(server: Server, item: dict[str, Any], asset: str) -> str:
    """The asset's href, which a client outside the server can only use when it is an absolute URL of it."""
    href: str = item["assets"][asset]["href"]
    assert href.startswith(server.url + "/"), f"asset {asset} href is not an absolute URL of the server: {href}"
    return href


def _gdal_values(dataset: str) -> list[list[float]]:
    """Band values at :data:`PIXELS` as ``gdallocationinfo`` reads them from a GDAL dataset name."""
    out = []
    for row, col in PIXELS:
        res = _run(["gdallocationinfo", "-valonly", dataset, str(col), str(row)])
        assert res.returncode == 0, res.stderr
        out.append([float(v) for v in res.stdout.split()])
    return out


def _gdalinfo(dataset: str) -> dict[str, Any]:
    res = _run(["gdalinfo", "-json", dataset])
    assert res.returncode == 0, res.stderr
    info: dict[str, Any] = json.loads(res.stdout)
    return info


def _check_gdalinfo(info: dict[str, Any], reference: dict[str, Any]) -> None:
    assert info["size"] == [reference["width"], reference["height"]]
    assert len(info["bands"]) == reference["count"]
    assert CRS.from_wkt(info["coordinateSystem"]["wkt"]) == reference["crs"]
    assert np.allclose(info["geoTransform"], reference["transform"].to_gdal())


def test_gdal_stacit_opens_a_scene_search(server: Server, reference: dict[str, Any]) -> None:
    search = f"{server.url}/stac/search?collections={DEMO_COLLECTION}&ids={SCENE_ID}"
    dataset = f'STACIT:"{search}":asset=s2'
    info = _gdalinfo(dataset)  # a VRT of the search's items, mosaicked by the driver
    _check_gdalinfo(info, reference)
    # The band names come from the asset's eo:bands.
    assert [b.get("description") for b in info["bands"]] == ["B02", "B03", "B04", "B08"]
    assert _gdal_values(dataset) == reference["values"]


def test_gdal_vsicurl_reads_the_cog_by_its_asset_href(server: Server, scene_item: dict[str, Any],
                                                      reference: dict[str, Any]) -> None:
    dataset = "/vsicurl/" + _absolute_href(server, scene_item, "s2")
    info = _gdalinfo(dataset)
    assert info["driverShortName"] == "GTiff"
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    _check_gdalinfo(info, reference)
    assert _gdal_values(dataset) == reference["values"]


def test_gdal_stacit_and_stac_asset_read_a_fused_archive_patch(server: Server, client: httpx.Client,
                                                              archives: dict[str, Any], settings: Settings,
                                                              tmp_path: Path) -> None:
    # A BigEarthNet S1+S2 pair: the SAR asset is float32 with NaN nodata and no eo:bands.
    page = client.get("/stac/search", params={"collections": "ben", "limit": 1}).json()
    item = page["features"][0]
    folder = settings.scenes_dir / "ben"
    for key in ("s1", "s2"):
        cog = folder / f"{item['id']}_{key}.tif"
        with rasterio.open(cog) as ds:
            expected = [ds.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0].tolist() for r, c in ((0, 0), (77, 41))]
            size, count, crs = [ds.width, ds.height], ds.count, ds.crs
        dataset = f'STACIT:"{server.url}/stac/search?collections=ben&ids={item["id"]}":asset={key}'
        info = _gdalinfo(dataset)
        assert info["size"] == size and len(info["bands"]) == count
        assert CRS.from_wkt(info["coordinateSystem"]["wkt"]) == crs
        values = []
        for row, col in ((0, 0), (77, 41)):
            res = _run(["gdallocationinfo", "-valonly", dataset, str(col), str(row)])
            assert res.returncode == 0, res.stderr
            values.append([float(v) for v in res.stdout.split()])
        assert np.allclose(values, expected, rtol=1e-9, atol=0), (key, values, expected)
    saved = tmp_path / "item.json"
    saved.write_text(json.dumps(item))
    res = _run([str(BIN / "stac-asset"), "download", "--fail-fast", str(saved), str(tmp_path / "downloads")],
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    written = json.loads(res.stdout)
    for key in ("s1", "s2"):
        got = tmp_path / "downloads" / Path(written["assets"][key]["href"]).name
        assert _sha256(got) == _sha256(folder / f"{item['id']}_{key}.tif"), key


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_stac_asset_downloads_the_item_assets(server: Server, client: httpx.Client, scene_item: dict[str, Any],
                                              cog: Path, tmp_path: Path) -> None:
    # As a user does: the item saved from the API, then `stac-asset download item.json DIR`.
    saved = tmp_path / "item.json"
    saved.write_text(json.dumps(scene_item))
    out = tmp_path / "downloads"
    res = _run([str(BIN / "stac-asset"), "download", "--fail-fast", str(saved), str(out)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Warning" not in res.stderr, res.stderr[-3000:]
    written = json.loads(res.stdout)  # the item, its asset hrefs now the downloaded files
    files = {key: out / Path(asset["href"]).name for key, asset in written["assets"].items()}
    assert set(files) == set(scene_item["assets"]) == {"s2", "thumbnail"}
    assert _sha256(files["s2"]) == _sha256(cog)
    # The thumbnail is rendered on request: its bytes equal what the server answers for the href.
    thumbnail = client.get(_absolute_href(server, scene_item, "thumbnail"))
    assert thumbnail.status_code == 200
    assert files["thumbnail"].read_bytes() == thumbnail.content
    assert thumbnail.content.startswith(b"\x89PNG\r\n\x1a\n")


def _expected_ids(server: Server, client: httpx.Client) -> list[str]:
    """The patches :data:`CQL2_TEXT` selects, counted twice: by pystac-client and by GET pages of the API."""
    stac = Client.open(server.url + "/stac")
    by_client = sorted(i.id for i in stac.search(collections=[DEMO_COLLECTION], filter=CQL2_TEXT,
                                                 filter_lang="cql2-text", method="GET").items())
    by_pages: list[str] = []
    url: str | None = "/stac/search"
    params: dict[str, Any] | None = {"collections": DEMO_COLLECTION, "filter": CQL2_TEXT,
                                     "filter-lang": "cql2-text", "limit": 100}
    while url:
        page = client.get(url, params=params).json()
        by_pages += [f["id"] for f in page["features"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        params = None
    assert by_client == sorted(by_pages)
    # 16 x 16 patches at 120 px: rows 0-1 (32) and column 15 of rows 2-15 (14).
    assert len(by_client) == 46, len(by_client)
    return by_client


def _check_geoparquet(path: Path, expected: list[str]) -> None:
    table = pq.read_table(path)
    assert sorted(table.column("id").to_pylist()) == expected
    assert set(table.column("eofusion:grid_level").to_pylist()) == {120}
    assert b"geo" in (pq.read_metadata(path).metadata or {})
    frame = geopandas.read_parquet(path)
    assert frame.crs == "OGC:CRS84"
    assert len(frame) == len(expected) and frame.geometry.is_valid.all()
    assert all((r < 2 or c == 15) for r, c in zip(frame["eofusion:row"], frame["eofusion:col"], strict=True))


def test_rustac_cli_searches_with_a_cql2_text_filter_into_geoparquet(server: Server, client: httpx.Client,
                                                                     tmp_path: Path) -> None:
    # The command line posts the filter as given, in cql2-text.
    out = tmp_path / "patches.parquet"
    res = _run([str(BIN / "rustac"), "search", f"{server.url}/stac", str(out), "--collections", DEMO_COLLECTION,
                "--filter", CQL2_TEXT])
    assert res.returncode == 0, res.stderr[-3000:]
    _check_geoparquet(out, _expected_ids(server, client))


def test_rustac_python_searches_with_a_cql2_json_filter_into_geoparquet(server: Server, client: httpx.Client,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "patches.parquet"
    cql2_json = {"op": "and", "args": [
        {"op": "=", "args": [{"property": "eofusion:grid_level"}, 120]},
        {"op": "or", "args": [{"op": "<", "args": [{"property": "eofusion:row"}, 2]},
                              {"op": "=", "args": [{"property": "eofusion:col"}, 15]}]}]}

    async def search() -> None:
        await rustac.search_to(str(out), f"{server.url}/stac", collections=[DEMO_COLLECTION], filter=cql2_json)

    asyncio.run(search())
    _check_geoparquet(out, _expected_ids(server, client))


def test_qgis_loads_a_scene_cog_asset_as_a_raster_layer(server: Server, scene_item: dict[str, Any],
                                                        reference: dict[str, Any]) -> None:
    href = _absolute_href(server, scene_item, "s2")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": ""}
    points = [reference["transform"] * (col + 0.5, row + 0.5) for row, col in PIXELS]
    res = _run(["/usr/bin/python3", str(ROOT / "tests" / "clients" / "qgis_load_raster.py"), "/vsicurl/" + href,
                *(repr(v) for point in points for v in point)], env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    layer = json.loads(res.stdout.strip().splitlines()[-1])
    assert layer["valid"], layer["error"]
    assert (layer["width"], layer["height"], layer["bands"]) == (reference["width"], reference["height"],
                                                                 reference["count"])
    assert layer["crs"] == f"EPSG:{reference['crs'].to_epsg()}"
    assert np.allclose(layer["extent"], reference["bounds"])
    assert layer["samples"] == reference["values"]


def _post_pages(client: httpx.Client, body: dict[str, Any]) -> list[str]:
    """The ids of a POST search, following its ``next`` links as a client does (their method and body)."""
    ids: list[str] = []
    request: dict[str, Any] | None = {"method": "POST", "url": "/stac/search", "json": body}
    while request:
        response = client.request(**request)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [f["id"] for f in page["features"]]
        link = next((link for link in page["links"] if link["rel"] == "next"), None)
        request = None if link is None else {"method": link.get("method", "GET"), "url": link["href"],
                                             **({"json": link["body"]} if "body" in link else {})}
    return ids


def test_post_search_takes_cql2_text_filters(server: Server, client: httpx.Client) -> None:
    # What rustac's command line sends; the filter extension lets POST take CQL2 text beside CQL2 JSON.
    expected = _expected_ids(server, client)
    text = {"collections": [DEMO_COLLECTION], "filter": CQL2_TEXT, "filter-lang": "cql2-text", "limit": 20}
    assert sorted(_post_pages(client, text)) == expected
    # The similarity ranking filters with it too (the patch itself is nearest).
    first = f"{SCENE_ID}_L120_r0000_c0000"
    similar = client.post("/stac/search", json={**text, "limit": 100, "similar_to": {
        "collection": DEMO_COLLECTION, "item": first}})
    assert similar.status_code == 200, similar.text
    ranked = [f["id"] for f in similar.json()["features"]]
    assert ranked[0] == first and sorted(ranked) == expected
    # CQL2 JSON as before (with either filter-lang); a text that is no condition is a 400 naming the filter.
    level = {"op": "=", "args": [{"property": "eofusion:grid_level"}, 120]}
    for lang in ({}, {"filter-lang": "cql2-json"}, {"filter-lang": "cql2-text"}):
        response = client.post("/stac/search", json={"collections": [DEMO_COLLECTION], "limit": 300,
                                                     "filter": level, **lang})
        assert response.status_code == 200, (lang, response.text)
        assert len(response.json()["features"]) == 256  # 16 x 16 patches at 120 px
    for bad in ("\"eofusion:grid_level\" = ", "eofusion:grid_level", "'forest'", "1 +"):
        response = client.post("/stac/search", json={"collections": [DEMO_COLLECTION], "filter": bad,
                                                     "filter-lang": "cql2-text"})
        assert response.status_code == 400, (bad, response.text)
        assert "filter" in response.json()["description"] and "CQL2 text" in response.json()["description"]
    wrong = client.post("/stac/search", json={"collections": [DEMO_COLLECTION], "filter": CQL2_TEXT,
                                              "filter-lang": "cql3"})
    assert wrong.status_code == 400 and "filter-lang" in wrong.json()["description"], wrong.text
