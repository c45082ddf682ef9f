"""The STAC API at /stac, through pystac-client and plain HTTP, on the real catalogue."""

from __future__ import annotations

import httpx
import pytest
from pystac_client import Client

from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server


@pytest.fixture(scope="module")
def stac(server: Server) -> Client:
    return Client.open(server.url + "/stac")


def test_landing_links_stay_under_the_prefix(client: httpx.Client, server: Server) -> None:
    landing = client.get("/stac/").json()
    assert landing["id"] == "eofusion"
    hrefs = [link["href"] for link in landing["links"]]
    assert hrefs and all(h.startswith(server.url + "/stac") for h in hrefs), hrefs
    assert any(link["rel"] == "search" for link in landing["links"])
    conformance = set(landing["conformsTo"])
    for uri in ("https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter", "https://api.stacspec.org/v1.1.0/item-search#sort",
                "https://api.stacspec.org/v1.0.0/item-search#fields",
                "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
                "https://api.stacspec.org/v1.0.0/collections/extensions/transaction",
                "https://api.stacspec.org/v1.0.0-rc.1/collection-search"):
        assert uri in conformance, uri


def test_pystac_client_lists_collections(stac: Client) -> None:
    ids = {c.id for c in stac.get_collections()}
    assert DEMO_COLLECTION in ids


def test_search_by_bbox_datetime_and_cql2(stac: Client, loaded: dict) -> None:
    # The scene covers the Virginia coast: a bbox on it finds scene and patches, one in Europe nothing.
    on_scene = stac.search(collections=[DEMO_COLLECTION], bbox=[-75.62, 37.65, -75.60, 37.67], max_items=500)
    found = list(on_scene.items())
    assert any(i.id == SCENE_ID for i in found)
    assert any(i.properties.get("eofusion:grid_level") == 120 for i in found)
    assert not list(stac.search(collections=[DEMO_COLLECTION], bbox=[10, 45, 11, 46]).items())
    # The demo's time is an interval (2015-06-23 .. 2017-12-31): intersecting ranges match, others do not.
    assert list(stac.search(collections=[DEMO_COLLECTION], datetime="2016-01-01/2016-02-01", max_items=5).items())
    assert not list(stac.search(collections=[DEMO_COLLECTION], datetime="2019-01-01/2019-02-01").items())
    # CQL2 on our own properties: every item returned honours the filter.
    level = stac.search(collections=[DEMO_COLLECTION], filter={"op": "=", "args": [
        {"property": "eofusion:grid_level"}, 480]}, filter_lang="cql2-json", max_items=100)
    items = list(level.items())
    published = loaded["scene"]
    assert items and all(i.properties["eofusion:grid_level"] == 480 for i in items)
    assert len(items) < published.patches
    text = stac.search(collections=[DEMO_COLLECTION], filter="\"eofusion:kind\" = 'scene'", filter_lang="cql2-text",
                       method="GET")
    assert [i.id for i in text.items()] == [SCENE_ID]


def test_scene_links_its_patches(client: httpx.Client, server: Server, loaded: dict) -> None:
    scene = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
    link = next(link for link in scene["links"] if link.get("title") == "Patches of this scene")
    page = client.get(link["href"] + "&limit=1000").json()
    ids = [f["id"] for f in page["features"]]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)[:4]
    assert len(ids) == loaded["scene"].patches == scene["properties"]["eofusion:patches"]
    assert {f["properties"]["eofusion:scene"] for f in page["features"]} == {SCENE_ID}
    queryables = client.get(f"/stac/collections/{DEMO_COLLECTION}/queryables").json()["properties"]
    assert queryables["eofusion:grid_level"]["type"] == "integer"


def test_search_pages_with_next_links(client: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = f"/stac/search?collections={DEMO_COLLECTION}&limit=50&filter=eofusion:grid_level=240"
    while url:
        page = client.get(url).json()
        seen += [f["id"] for f in page["features"]]
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        url = nxt[0]["href"] if nxt else None
    assert len(seen) == len(set(seen)) > 50


@pytest.mark.parametrize(("path", "status", "needle"), [
    ("/stac/search?filter=grid_level%20%3D%3D%3D%201", 400, "filter"),
    ("/stac/search?bbox=0,0,200,10", 400, "longitudes"),
    ("/stac/search?bbox=0,95,10,96", 400, "latitudes"),
    ("/stac/search?bbox=1,2,3", 400, "bbox"),
    ("/stac/collections/no-such-collection", 404, "no-such-collection"),
    ("/stac/collections/no-such-collection/items", 404, "no-such-collection"),
    (f"/stac/collections/{DEMO_COLLECTION}/items/no-such-item", 404, "no-such-item"),
])
def test_bad_input_gets_a_clear_4xx(client: httpx.Client, path: str, status: int, needle: str) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    assert needle in r.json()["description"]


def test_malformed_json_and_bad_post_bbox(client: httpx.Client) -> None:
    r = client.post("/stac/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["description"]
    r = client.post("/stac/search", json={"bbox": [0, 0, 300, 10]})
    assert r.status_code == 400 and "180" in r.json()["description"]
    r = client.post("/stac/search", json={"filter": {"op": "nonsense", "args": []}, "filter-lang": "cql2-json"})
    assert 400 <= r.status_code < 500


def _collection(cid: str) -> dict:
    return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": "written by a test",
            "license": "CC0-1.0", "links": [],
            "extent": {"spatial": {"bbox": [[-1, -1, 1, 1]]},
                       "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}}


def test_transactions_need_a_key(client: httpx.Client) -> None:
    body = _collection("written-by-test")
    assert client.post("/stac/collections", json=body).status_code == 401
    r = client.post("/stac/collections", json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 403
    assert client.get("/stac/collections/written-by-test").status_code == 404
    r = client.post("/stac/collections", json=body, headers={"X-API-Key": API_KEY})
    assert r.status_code in (200, 201), r.text
    assert client.get("/stac/collections/written-by-test").json()["description"] == "written by a test"
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "pt", "collection": "written-by-test",
            "geometry": {"type": "Point", "coordinates": [0.5, 0.5]}, "bbox": [0.5, 0.5, 0.5, 0.5],
            "properties": {"datetime": "2021-05-01T00:00:00Z"}, "links": [], "assets": {}}
    assert client.post("/stac/collections/written-by-test/items", json=item).status_code == 401
    r = client.post("/stac/collections/written-by-test/items", json=item,
                    headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code in (200, 201), r.text
    assert client.delete("/stac/collections/written-by-test").status_code == 401
    assert client.delete("/stac/collections/written-by-test", headers={"X-API-Key": API_KEY}).status_code == 200
    assert client.get("/stac/collections/written-by-test").status_code == 404


def test_bulk_transaction_with_key(client: httpx.Client) -> None:
    client.post("/stac/collections", json=_collection("bulk-test"), headers={"X-API-Key": API_KEY})
    items = {f"b{i}": {"type": "Feature", "stac_version": "1.0.0", "id": f"b{i}", "collection": "bulk-test",
                       "geometry": {"type": "Point", "coordinates": [0.1 * i, 0.1]}, "bbox": [0.1 * i, 0.1] * 2,
                       "properties": {"datetime": "2021-05-01T00:00:00Z"}, "links": [], "assets": {}}
             for i in range(3)}
    url = "/stac/collections/bulk-test/bulk_items"
    assert client.post(url, json={"items": items}).status_code == 401
    r = client.post(url, json={"items": items, "method": "upsert"}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 200, r.text
    page = client.get("/stac/collections/bulk-test/items").json()
    assert sorted(f["id"] for f in page["features"]) == ["b0", "b1", "b2"]
    client.delete("/stac/collections/bulk-test", headers={"X-API-Key": API_KEY})


def test_landing_page_and_health(client: httpx.Client, server: Server) -> None:
    page = client.get("/", headers={"accept": "text/html"})
    # Without JavaScript too, the page links every API (relative: right under a proxy prefix).
    assert page.status_code == 200 and '<a href="stac">' in page.text and '<a href="ogc">' in page.text
    links = {link["rel"]: link["href"] for link in client.get("/?f=json").json()["links"]}
    assert links["stac"] == server.url + "/stac" and links["ogc"] == server.url + "/ogc"
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["pgvector"].startswith("0.8")


def test_label_api_read_open_write_with_key(client: httpx.Client) -> None:
    level1 = client.get("/labels", params={"level": 1}).json()["labels"]
    assert len(level1) == 6
    body = {"parent": "Water Bodies", "name": "Flooded fields"}
    assert client.post("/labels", json=body).status_code == 401
    r = client.post("/labels", json=body, headers={"X-API-Key": API_KEY})
    assert r.status_code == 201 and r.json()["path"] == "Water Bodies / Flooded fields"
    assert client.post("/labels", json=body, headers={"X-API-Key": API_KEY}).status_code == 409
    r = client.post("/labels", json={"parent": "Oceans", "name": "x"}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 400 and "unknown level-1 class" in r.json()["description"]
    under = client.get("/labels", params={"parent": "Water Bodies"}).json()["labels"]
    assert "Flooded fields" in {lab["name"] for lab in under}
