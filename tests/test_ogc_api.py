"""OGC API Features and Processes at /ogc, over HTTP and through OWSLib, on the real catalogue."""

from __future__ import annotations

import time

import httpx
import pytest
from owslib.ogcapi.processes import Processes

from catalog.db import connect
from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server, start_server

LAYERS = ("scenes", "patches", "annotations", "tweets")


def test_landing_and_conformance(client: httpx.Client, server: Server) -> None:
    landing = client.get("/ogc", params={"f": "json"}).json()
    rels = {link["rel"] for link in landing["links"]}
    # QGIS needs service-desc and data on the landing page.
    assert {"service-desc", "data", "conformance"} <= rels
    assert all(link["href"].startswith(server.url + "/ogc") for link in landing["links"]
               if link["rel"] in ("service-desc", "data", "conformance", "self"))
    conf = set(client.get("/ogc/conformance", params={"f": "json"}).json()["conformsTo"])
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conf


def test_openapi_is_self_contained_and_declares_limit(client: httpx.Client) -> None:
    r = client.get("/ogc/openapi", params={"f": "json"})
    assert r.status_code == 200
    doc = r.json()
    assert "schemas.opengis.net" not in r.text  # clients offline must resolve every $ref
    params = doc["paths"]["/collections/patches/items"]["get"]["parameters"]
    limit = [p for p in params if p.get("name") == "limit"]
    assert limit and limit[0]["in"] == "query" and limit[0]["schema"]["maximum"] >= 1000
    assert doc["components"]["parameters"]["datetime"]["in"] == "query"


def test_collections_are_the_project_layers(client: httpx.Client) -> None:
    ids = {c["id"] for c in client.get("/ogc/collections", params={"f": "json"}).json()["collections"]}
    assert set(LAYERS) <= ids


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_has_geojson_features(client: httpx.Client, layer: str, loaded: dict) -> None:
    r = client.get(f"/ogc/collections/{layer}/items", params={"f": "json", "limit": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith(("application/geo+json", "application/json"))
    page = r.json()
    assert page["type"] == "FeatureCollection" and page["numberMatched"] >= 1
    # Every feature has a geometry: OGC API - Features' GeoJSON schema has no null geometry.
    assert all(f["geometry"]["type"] in ("Point", "Polygon", "MultiPolygon") for f in page["features"])


def test_posts_layer_holds_the_located_posts(client: httpx.Client, loaded: dict, db_url: str) -> None:
    with connect(db_url) as conn:  # a post nobody could place, beside the located ones
        conn.execute("INSERT INTO eofusion.tweets (collection, id, datetime, text) "
                     "VALUES ('ogc-unlocated', '1', now(), 'no place named here')")
    try:
        with connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FILTER (WHERE geometry IS NOT NULL), count(*) FROM eofusion.tweets"
                               ).fetchone()
        assert row is not None and 0 < row[0] < row[1]
        layer = client.get("/ogc/collections/tweets/items", params={"f": "json", "limit": 1}).json()
        assert layer["numberMatched"] == row[0]
        alone = client.get("/ogc/collections/tweets/items", params={"f": "json", "collection": "ogc-unlocated"})
        assert alone.status_code == 200 and alone.json()["features"] == []
    finally:
        with connect(db_url) as conn:
            conn.execute("DELETE FROM eofusion.tweets WHERE collection = 'ogc-unlocated'")


def test_items_page_with_next_links_and_number_matched(client: httpx.Client, loaded: dict, db_url: str) -> None:
    first = client.get("/ogc/collections/patches/items", params={"f": "json", "limit": 100}).json()
    total = first["numberMatched"]
    with connect(db_url) as conn:
        patches = conn.execute("SELECT count(*) FROM pgstac.items WHERE content->'properties'->>'eofusion:kind' = "
                               "'patch'").fetchone()[0]
    assert total == patches >= loaded["scene"].patches
    seen, page = [], first
    while True:
        seen += [f["id"] for f in page["features"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        page = httpx.get(nxt[0], timeout=30).json()
    assert len(seen) == len(set(seen)) == total


def test_items_filter_bbox_property_and_errors(client: httpx.Client, loaded: dict) -> None:
    # Other tests store posts of their own collections: this one's are in "tweets".
    tweets = client.get("/ogc/collections/tweets/items", params={
        "f": "json", "bbox": "-105.4,39.9,-105.1,40.1", "collection": "tweets", "limit": 100}).json()
    assert tweets["numberMatched"] == len(loaded["tweets"])
    assert all("boulder" in f["properties"]["text"].lower() for f in tweets["features"])
    far = client.get("/ogc/collections/tweets/items", params={"f": "json", "bbox": "10,40,11,41"}).json()
    assert far["numberMatched"] == 0
    level = client.get("/ogc/collections/patches/items", params={"f": "json", "grid_level": 480}).json()
    assert level["numberMatched"] >= 1 and all(f["properties"]["grid_level"] == 480 for f in level["features"])
    one = client.get(f"/ogc/collections/scenes/items/{DEMO_COLLECTION}.{SCENE_ID}", params={"f": "json"})
    assert one.status_code == 200 and one.json()["properties"]["item_id"] == SCENE_ID
    assert client.get("/ogc/collections/scenes/items/nope.nope", params={"f": "json"}).status_code == 404
    assert client.get("/ogc/collections/nope/items", params={"f": "json"}).status_code == 404
    typo = client.get("/ogc/collections/patches/items", params={"f": "json", "grid_level": "abc"})
    assert typo.status_code == 400
    bad = client.get("/ogc/collections/patches/items", params={"f": "json", "gird_level": 1})
    assert bad.status_code == 400 and "gird_level" in bad.text


def test_annotation_layer_carries_label_and_provenance(client: httpx.Client) -> None:
    page = client.get("/ogc/collections/annotations/items", params={"f": "json"}).json()
    props = page["features"][0]["properties"]
    assert props["label"] == "Water Bodies / Sea and ocean" and props["user_id"] == "tester"
    assert props["item_id"] == f"{SCENE_ID}_L480_r0000_c0003"


def test_process_runs_synchronously(client: httpx.Client) -> None:
    r = client.post("/ogc/processes/list-labels/execution", json={"inputs": {"level": 1}})
    assert r.status_code == 200
    names = [lab["name"] for lab in r.json()["labels"]]
    assert names == ["Agriculture", "Bare Ground", "Forest", "Transportation", "Urban Area", "Water Bodies"]
    bad = client.post("/ogc/processes/list-labels/execution", json={"inputs": {"level": 7}})
    assert bad.status_code == 400 and "level" in bad.text
    assert client.post("/ogc/processes/no-such/execution", json={"inputs": {}}).status_code == 404


def _wait_for_job(client: httpx.Client, location: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(location, params={"f": "json"}).json()
        if status["status"] in ("successful", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {location} did not finish")


def test_process_runs_asynchronously_with_job_status(client: httpx.Client) -> None:
    r = client.post("/ogc/processes/list-labels/execution", json={"inputs": {"parent": "Forest"}},
                    headers={"Prefer": "respond-async"})
    assert r.status_code == 201
    location = r.headers["location"]
    status = _wait_for_job(client, location)
    assert status["status"] == "successful" and status["progress"] == 100
    results = client.get(location + "/results", params={"f": "json"}).json()
    assert {lab["parent"] for lab in results["labels"]} == {"Forest"}
    jobs = client.get("/ogc/jobs", params={"f": "json"}).json()["jobs"]
    assert status["jobID"] in {j["jobID"] for j in jobs}


def test_write_process_needs_a_key(client: httpx.Client) -> None:
    body = {"inputs": {"parent": "Agriculture", "name": "Greenhouses"}}
    assert client.post("/ogc/processes/create-label/execution", json=body).status_code == 401
    r = client.post("/ogc/processes/create-label/execution", json=body, headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and r.json()["label"]["path"] == "Agriculture / Greenhouses"
    again = client.post("/ogc/processes/create-label/execution", json=body, headers={"X-API-Key": API_KEY})
    assert again.status_code == 400 and "exists already" in again.text
    # Reading the processes stays open; deleting a job is a write.
    assert client.get("/ogc/processes/create-label", params={"f": "json"}).status_code == 200
    assert client.delete("/ogc/jobs/whatever").status_code == 401


def test_owslib_processes_client(server: Server) -> None:
    ogc = Processes(server.url + "/ogc")
    ids = {p["id"] for p in ogc.processes()}
    assert {"list-labels", "create-label"} <= ids
    assert ogc.process("list-labels")["jobControlOptions"] == ["sync-execute", "async-execute"]
    result = ogc.execute("list-labels", inputs={"level": 1}, response="raw")
    assert len(result["labels"]) == 6
    started = ogc.execute("list-labels", inputs={"level": 2}, response="raw", async_=True)
    assert started["status"] == "accepted" and started["processID"] == "list-labels"
    status = _wait_for_job(httpx.Client(base_url=server.url), f"/ogc/jobs/{started['jobID']}")
    assert status["status"] == "successful"


def test_jobs_survive_a_server_restart(client: httpx.Client, settings_env: dict, data_dir) -> None:
    r = client.post("/ogc/processes/list-labels/execution", json={"inputs": {"level": 1}},
                    headers={"Prefer": "respond-async"})
    location = r.headers["location"]
    job_id = location.rstrip("/").rsplit("/", 1)[-1]
    _wait_for_job(client, location)
    # A second server process on the same database sees the job and its result.
    other = start_server(settings_env, data_dir / "server2.log")
    try:
        status = httpx.get(f"{other.url}/ogc/jobs/{job_id}", params={"f": "json"}, timeout=30).json()
        assert status["status"] == "successful"
        res = httpx.get(f"{other.url}/ogc/jobs/{job_id}/results", params={"f": "json"}, timeout=30).json()
        assert len(res["labels"]) == 6
    finally:
        other.stop()
