"""One error model for the top-level app: client mistakes are 4xx in the STAC shape, a bug is a 500 with a request id
that leaves the connection usable, and request bodies and similarity searches stay within the configured limits.

Most cases run against the suite's server process. The cases that need other limits, or a genuine 500, run against
a second server process (``tests/errors_server.py``: ``create_app`` with tight limits, ``EOFUSION_LIMIT_*``, served
by uvicorn on a loopback port); its only additions are test routes that fail the way a bug does or raise the
project's errors.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from catalog import similarity
from tests.conftest import API_KEY, DEMO_COLLECTION, EUROSAT_PATCHES, ROOT, SCENE_ID, Server, free_port
from tests.errors_server import BUG, RAISED

KEY = {"X-API-Key": API_KEY}
#: Limits of the in-process server (every other limit keeps its default).
TIGHT = {"EOFUSION_LIMIT_BODY_BYTES": "65536", "EOFUSION_LIMIT_BULK_BODY_BYTES": "1000000",
         "EOFUSION_LIMIT_PAGE_LIMIT": "50", "EOFUSION_LIMIT_REFERENCE_ITEMS": "5", "EOFUSION_LIMIT_TEXT_CHARS": "50",
         "EOFUSION_LIMIT_PAGE_OFFSET": "100", "EOFUSION_LIMIT_DEPTH": "20"}


def assert_error(r: httpx.Response, status: int, needle: str = "") -> dict[str, Any]:
    """An error answer: the status, the STAC shape (code and description, both strings), the needle in it."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("description"), str) and body["description"], body
    assert needle in body["description"], body
    return dict(body)


@pytest.fixture(scope="module")
def tight(settings_env: dict[str, str], db_url: str, loaded: dict, archives: dict, data_dir: Path) -> Iterator[Server]:
    port = free_port()
    log = data_dir / "errors-server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.errors_server", str(port)],
                                env={**os.environ, **settings_env, **TIGHT}, stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "the test server did not start"
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    yield server
    server.stop()


@pytest.fixture
def tight_client(tight: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tight.url, timeout=60) as c:
        yield c


# --- unknown ids and bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/stac/collections/0/items/0",
    "/stac/collections/0/items",
    f"/stac/collections/{DEMO_COLLECTION}/items/0",
    f"/stac/collections/{DEMO_COLLECTION}/items/0/similar",
    "/labels?parent=nope",
])
def test_unknown_ids_are_404(client: httpx.Client, loaded: dict, path: str) -> None:
    assert_error(client.get(path), 404)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/stac/search", b"[null, null]"),
    ("POST", "/stac/search", b"5"),
    ("POST", "/stac/search", b"null"),
    ("POST", "/stac/search", b' "sea"'),
    ("POST", f"/stac/collections/{DEMO_COLLECTION}/items", b""),
    ("PUT", f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}", b""),
    ("PUT", f"/stac/collections/{DEMO_COLLECTION}", b""),
    ("PATCH", f"/stac/collections/{DEMO_COLLECTION}", b"7"),
])
def test_a_body_that_is_no_json_object_is_400(client: httpx.Client, loaded: dict, method: str, path: str,
                                               body: bytes) -> None:
    r = client.request(method, path, content=body, headers={**KEY, "content-type": "application/json"})
    assert_error(r, 400, "JSON object")
    # Nothing was written: the scene item is still there, unchanged.
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").status_code == 200


@pytest.mark.parametrize(("path", "needle"), [
    ("/stac/search?intersects=x", "intersects"),
    ("/stac/search?query=x", "query"),
    ("/stac/search?query=%5B1%5D", "query"),
    (f"/stac/collections/{DEMO_COLLECTION}/items?query=x", "query"),
    ("/stac/collections?query=x", "query"),
    ("/stac/search?fields=,", "fields"),
    (f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}/similar?datetime=x", "datetime"),
])
def test_bad_get_parameters_are_400(client: httpx.Client, loaded: dict, path: str, needle: str) -> None:
    assert_error(client.get(path), 400, needle)


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/stac/collections?q=%C3%B3%09%3D%C3%AD%22x", None, 400),
    ("GET", "/stac/search?q=6)", None, 400),
    ("POST", "/stac/search", {"q": ["a\u00e1 | b", "6)\n"], "ids": []}, 400),
    ("PATCH", f"/stac/collections/{DEMO_COLLECTION}", [{"op": "remove", "path": "/properties/foo"}], 400),
    ("PATCH", f"/stac/collections/{DEMO_COLLECTION}", [{"op": "copy", "from": "x", "path": "d"}], 400),
    ("PATCH", f"/stac/collections/{DEMO_COLLECTION}", [{"op": "test", "path": "/id", "value": "other"}], 409),
])
def test_free_text_and_json_patch_mistakes_are_4xx(client: httpx.Client, loaded: dict, method: str, path: str,
                                                   body: Any, status: int) -> None:
    before = client.get(f"/stac/collections/{DEMO_COLLECTION}").json()
    headers = {**KEY, "content-type": "application/json-patch+json" if method == "PATCH" else "application/json"}
    r = client.request(method, path, headers=headers, content=None if body is None else json.dumps(body))
    assert_error(r, status)
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}").json() == before


@pytest.mark.parametrize(("content_type", "body", "needle"), [
    ("application/merge-patch+json", {"links": {"a": {}}}, "links"),
    ("application/json-patch+json", [{"op": "replace", "path": "/links", "value": {"a": {}}}], "links"),
    ("application/json-patch+json", [{"op": "add", "path": "/links/0", "value": {"rel": 5}}], "links"),
    ("application/merge-patch+json", {"extent": {"spatial": "everywhere"}}, "extent"),
])
def test_a_patch_that_breaks_a_collection_is_refused_before_it_is_stored(
        client: httpx.Client, loaded: dict, content_type: str, body: Any, needle: str) -> None:
    """pgstac wrote such a patched collection unvalidated, then failed on its links: a 500, the damage stored."""
    before = client.get(f"/stac/collections/{DEMO_COLLECTION}").json()
    r = client.patch(f"/stac/collections/{DEMO_COLLECTION}", headers={**KEY, "content-type": content_type},
                     content=json.dumps(body))
    assert_error(r, 400, needle)
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}").json() == before


NESTED = {"type": "GeometryCollection", "geometries": [
    {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [-75.6, 37.6]}]}]}


def test_a_nested_geometry_collection_is_refused_before_it_is_stored(client: httpx.Client, loaded: dict) -> None:
    """PostGIS stores one but cannot write it back as GeoJSON: every later read of the item, its collection's
    pages and searches answered 500 (long fuzz run)."""
    scene = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "nested-gc", "collection": DEMO_COLLECTION,
            "geometry": NESTED, "bbox": [-75.7, 37.5, -75.5, 37.7], "links": [], "assets": {},
            "properties": {"datetime": scene["properties"].get("datetime") or "2020-01-01T00:00:00Z"}}
    r = client.post(f"/stac/collections/{DEMO_COLLECTION}/items", json=item, headers=KEY)
    assert_error(r, 400, "GeometryCollection")
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}/items/nested-gc").status_code == 404
    assert_error(client.post("/stac/search", json={"intersects": NESTED}), 400, "GeometryCollection")
    assert_error(client.get("/stac/search", params={"intersects": json.dumps(NESTED)}), 400, "GeometryCollection")
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}/items").status_code == 200


def test_a_cql2_text_filter_that_is_no_condition_is_400(client: httpx.Client, loaded: dict) -> None:
    """pgstac turned it into SQL PostgreSQL refused ("argument of AND must be type boolean"): a 500."""
    assert_error(client.get("/stac/collections", params={"filter": "title", "filter-lang": "cql2-text"}), 400)


def test_an_empty_query_parameter_is_no_query(client: httpx.Client, loaded: dict) -> None:
    """``query=`` on the collection search was parsed as JSON by pgstac's client: a 500."""
    r = client.get("/stac/collections", params={"query": ""})
    assert r.status_code == 200, r.text[:300]
    assert DEMO_COLLECTION in {c["id"] for c in r.json()["collections"]}
    assert client.get("/stac/search", params={"query": "", "collections": DEMO_COLLECTION}).status_code == 200


@pytest.mark.parametrize("body", [
    b'{"bbox": [1e400, 0, 1, 1]}',
    b'{"bbox": [NaN, 0, 1, 1]}',
    b'{"intersects": {"type": "Point", "coordinates": [-Infinity, 0]}}',
    b'{"filter": {"op": "=", "args": [{"property": "eofusion:grid_level"}, 1e999]}}',
])
def test_numbers_json_cannot_carry_are_400(client: httpx.Client, loaded: dict, body: bytes) -> None:
    r = client.post("/stac/search", content=body, headers={"content-type": "application/json"})
    assert_error(r, 400, "finite")


#: A point at longitude inf: Python's json module writes it as ``Infinity`` (and reads it back).
_INF_ITEM = {"type": "Feature", "stac_version": "1.0.0", "id": "inf-point", "collection": DEMO_COLLECTION,
             "geometry": {"type": "Point", "coordinates": [float("inf"), 0.5]}, "bbox": [0.5, 0.5, 0.5, 0.5],
             "properties": {"datetime": "2021-05-01T00:00:00Z"}, "links": [], "assets": {}}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"/stac/collections/{DEMO_COLLECTION}/items", json.dumps(_INF_ITEM)),
    ("PUT", f"/stac/collections/{DEMO_COLLECTION}/items/inf-point", json.dumps(_INF_ITEM)),
    ("POST", f"/stac/collections/{DEMO_COLLECTION}/bulk_items", json.dumps({"items": {"inf-point": _INF_ITEM}})),
    ("PATCH", f"/stac/collections/{DEMO_COLLECTION}", '[{"op": "add", "path": "/x", "value": NaN}]'),
])
def test_writes_holding_inf_or_nan_are_400_and_store_nothing(client: httpx.Client, loaded: dict, method: str,
                                                             path: str, body: str) -> None:
    # pgstac would store the point at longitude 0 (the number dumped as null).
    before = client.get(f"/stac/collections/{DEMO_COLLECTION}").json()
    r = client.request(method, path, content=body, headers={**KEY, "content-type": "application/json"})
    assert_error(r, 400, "finite")
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}/items/inf-point").status_code == 404
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}").json() == before



#: JSON escapes of characters PostgreSQL text cannot hold (NUL, lone surrogates), as a fuzzer sends them.
_UNSTORABLE = ["\\u0000", "a\\u0000b", "\\ud800", "x\\udfffy", "\\uDBFF"]


@pytest.mark.parametrize("escape", _UNSTORABLE)
def test_a_label_holding_nul_or_a_lone_surrogate_is_400_and_stores_nothing(client: httpx.Client, loaded: dict,
                                                                          escape: str) -> None:
    before = client.get("/labels").json()
    for body in (f'{{"parent": "{escape}", "name": "x"}}', f'{{"parent": "Water Bodies", "name": "{escape}"}}'):
        r = client.post("/labels", content=body, headers={**KEY, "content-type": "application/json"})
        assert_error(r, 400, "NUL character or an unpaired UTF-16 surrogate")
    assert client.get("/labels").json() == before


@pytest.mark.parametrize("escape", _UNSTORABLE)
def test_an_item_write_holding_nul_or_a_lone_surrogate_is_400_and_keeps_the_item(client: httpx.Client,
                                                                                loaded: dict, escape: str) -> None:
    path = f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}"
    before = client.get(path).json()
    key_body = json.dumps({**before, "assets": {**before["assets"], "k": {"href": "x.tif"}}}).replace(
        '"k"', f'"k{escape}"')
    value_body = json.dumps({**before, "properties": {**before["properties"], "title": "T"}}).replace(
        '"T"', f'"T{escape}"')
    for method, url, body in (("PUT", path, key_body), ("PUT", path, value_body),
                              ("PATCH", path, f'{{"properties": {{"title": "{escape}"}}}}'),
                              ("POST", f"/stac/collections/{DEMO_COLLECTION}/items",
                               value_body.replace(f'"{SCENE_ID}"', '"nul-item"'))):
        r = client.request(method, url, content=body, headers={**KEY, "content-type": "application/json"})
        assert_error(r, 400, "NUL character or an unpaired UTF-16 surrogate")
    assert client.get(path).json() == before
    assert client.get(f"/stac/collections/{DEMO_COLLECTION}/items/nul-item").status_code == 404


def test_paired_surrogates_and_an_escaped_backslash_pass(client: httpx.Client, loaded: dict) -> None:
    # A paired escape is one character (an emoji); "\\u0000" is the six characters \u0000: both are storable text.
    for q in ('"flood \\ud83c\\udf0a"', '"\\\\u0000"', '"\\\\ud800"'):
        body = (f'{{"filter": {{"op": "=", "args": [{{"property": "title"}}, {q}]}}, '
                f'"collections": ["{DEMO_COLLECTION}"]}}')
        r = client.post("/stac/search", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, (q, r.text[:300])


def test_a_process_input_holding_nul_is_400(client: httpx.Client, loaded: dict) -> None:
    for escape in ("\\u0000", "\\udc00"):
        r = client.post("/ogc/processes/late-fusion-search/execution",
                        content=f'{{"inputs": {{"text": "a{escape}"}}}}', headers={"content-type": "application/json"})
        body = assert_error(r, 400, "input 'text': text may not contain NUL characters or unpaired UTF-16 surrogates")
        assert body["type"] == "InvalidParameterValue"  # OGC API's exception document


def test_every_answer_carries_a_request_id(client: httpx.Client) -> None:
    ok, missing = client.get("/stac/"), client.get("/stac/collections/0")
    ids = [ok.headers.get("x-request-id"), missing.headers.get("x-request-id")]
    assert all(ids) and ids[0] != ids[1]
    # A client's own id (a proxy's) is kept, so its logs and ours meet.
    assert client.get("/healthz", headers={"X-Request-ID": "proxy-1234-abcd"}).headers["x-request-id"] == \
        "proxy-1234-abcd"


@pytest.mark.parametrize(("kind", "status"), [("invalid", 400), ("missing", 404), ("clash", 409), ("large", 413),
                                              ("busy", 503)])
def test_project_errors_map_through_the_one_status_table(tight_client: httpx.Client, kind: str,
                                                         status: int) -> None:
    r = tight_client.get(f"/test-only/raise/{kind}")
    assert_error(r, status, str(RAISED[kind]))
    if kind == "busy":
        assert r.headers["retry-after"] == "7"


# --- a bug: 500 with a request id, and the connection stays usable -----------------------------------------------


def test_a_bug_is_a_500_with_a_request_id_and_the_connection_survives(tight: Server) -> None:
    host, port = tight.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/test-only/boom")
        r = conn.getresponse()
        raw = r.read()
        sock = conn.sock
        assert r.status == 500
        body = json.loads(raw)
        assert body["code"] and body["request_id"] and body["request_id"] in body["description"]
        assert r.getheader("x-request-id") == body["request_id"]
        assert BUG not in raw.decode()  # the fault's detail stays in the log
        # The same keep-alive connection serves the next request.
        conn.request("GET", "/healthz")
        after = conn.getresponse()
        assert after.status == 200, after.read()
        after.read()
        assert conn.sock is sock, "the client had to open a new connection"
    finally:
        conn.close()
    # The server's log names the request id, with the traceback of the bug.
    deadline = time.monotonic() + 10
    while True:
        text = tight.log.read_text(errors="replace")
        at = text.find(body["request_id"])
        if at >= 0 and BUG in text[at:]:
            break
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)
    assert "Traceback" in text[at:at + 20000]


def test_many_bugs_on_one_connection(tight_client: httpx.Client) -> None:
    # httpx keeps one connection per host: every second request follows a 500 on it.
    for _ in range(5):
        assert_error(tight_client.get("/test-only/boom"), 500)
        assert tight_client.get(f"/stac/collections/{DEMO_COLLECTION}").status_code == 200


# --- body size ----------------------------------------------------------------------------------------------------


def _search_body(size: int) -> bytes:
    """A search body of about ``size`` bytes (item ids)."""
    ids = [f"{SCENE_ID}_L120_r{i:04d}_c0000" for i in range(size // 32 + 1)]
    return json.dumps({"ids": ids, "collections": [DEMO_COLLECTION], "limit": 1}).encode()


def _chunks(body: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def test_a_3mb_search_body_is_413_and_the_connection_survives(client: httpx.Client, loaded: dict) -> None:
    body = _search_body(3 * 1024 * 1024)
    assert len(body) > 3 * 1024 * 1024
    r = client.post("/stac/search", content=body, headers={"content-type": "application/json"})
    assert_error(r, 413, "EOFUSION_LIMIT_BODY_BYTES")
    # Without Content-Length (chunked), counted as it streams.
    r = client.post("/stac/search", content=_chunks(body), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "EOFUSION_LIMIT_BODY_BYTES")
    assert client.get("/healthz").status_code == 200
    # A large body within the limit is searched.
    r = client.post("/stac/search", content=_search_body(1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize(("path", "headers"), [
    ("/ogc/processes/validate/execution", KEY),
    ("/ogc/processes/late-fusion-search/execution", {}),
    ("/labels", KEY),
    ("/stac/collections", KEY),
])
def test_other_requests_get_the_small_limit(client: httpx.Client, path: str, headers: dict[str, str]) -> None:
    body = _search_body(3 * 1024 * 1024)
    for content in (body, _chunks(body)):
        r = client.post(path, content=content, headers={**headers, "content-type": "application/json"})
        assert_error(r, 413, "EOFUSION_LIMIT_BODY_BYTES")


def _collection(cid: str) -> dict[str, Any]:
    return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": "bulk limit test",
            "license": "CC0-1.0", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}}


def test_keyed_item_writes_get_the_bulk_limit(tight_client: httpx.Client, client: httpx.Client,
                                               loaded: dict) -> None:
    # Real patch items of the demo scene, copied into a collection of their own.
    page = client.get(f"/stac/collections/{DEMO_COLLECTION}/items", params={"limit": 200}).json()["features"]
    cid = "errors-bulk"
    assert_error(tight_client.post("/stac/collections", json={**_collection(cid), "padding": "x" * 70_000},
                                   headers=KEY), 413, "EOFUSION_LIMIT_BODY_BYTES")
    r = tight_client.post("/stac/collections", json=_collection(cid), headers=KEY)
    assert r.status_code in (200, 201), r.text
    try:
        items: dict[str, Any] = {}
        for f in page:
            if len(json.dumps(items)) > 200_000:
                break
            items[f["id"]] = {**f, "collection": cid, "links": []}
        body = json.dumps({"items": items, "method": "upsert"}).encode()
        assert 65536 * 2 < len(body) < 1_000_000
        url = f"/stac/collections/{cid}/bulk_items"
        anonymous = tight_client.post(url, content=body, headers={"content-type": "application/json"})
        assert anonymous.status_code in (401, 413)
        r = tight_client.post(url, content=_chunks(body), headers={**KEY, "content-type": "application/json"})
        assert r.status_code == 200, r.text[:500]
        got = client.get(f"/stac/collections/{cid}/items", params={"limit": 500}).json()["features"]
        assert sorted(f["id"] for f in got) == sorted(items)
        # Beyond the bulk limit, even with a key.
        huge = json.dumps({"items": {f"{k}-{n}": v for n in range(6) for k, v in items.items()}}).encode()
        assert len(huge) > 1_000_000
        assert_error(tight_client.post(url, content=huge, headers={**KEY, "content-type": "application/json"}),
                     413, "EOFUSION_LIMIT_BULK_BODY_BYTES")
        assert_error(tight_client.post(url, content=_chunks(huge),
                                       headers={**KEY, "content-type": "application/json"}),
                     413, "EOFUSION_LIMIT_BULK_BODY_BYTES")
    finally:
        tight_client.delete(f"/stac/collections/{cid}", headers=KEY)


# --- similarity limits --------------------------------------------------------------------------------------------


def _search(c: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return c.post("/stac/search", json=body)


REF = {"collection": "eurosat", "item": "Forest_1031"}


@pytest.mark.parametrize("token", ["similar:²", "similar:" + "9" * 5000, "similar:100001", "next:abc",
                                   "similar:-5", "similar:5\n"])
def test_similarity_paging_tokens_are_checked(client: httpx.Client, archives: dict, token: str) -> None:
    assert_error(_search(client, {"similar_to": REF, "collections": ["eurosat"], "limit": 3, "token": token}),
                 400, "token")
    assert_error(client.get("/stac/collections/eurosat/items/Forest_1031/similar", params={"token": token}),
                 400, "token")


def test_similarity_next_links_stop_at_the_offset_limit(tight_client: httpx.Client, archives: dict) -> None:
    body = {"similar_to": REF, "collections": ["eurosat"], "limit": 40}
    pages = 0
    while True:
        r = _search(tight_client, body)
        assert r.status_code == 200, r.text
        pages += 1
        nxt = [link for link in r.json()["links"] if link["rel"] == "next"]
        if not nxt:
            break
        body = nxt[0]["body"]
        assert pages < 10
    # Offsets 0, 40, 80: the link to offset 120 would pass the limit of 100 (with fewer patches, as in the
    # 50-patch fixture, the pages end first).
    assert pages == min(3, math.ceil(EUROSAT_PATCHES / 40))


def test_a_vector_of_no_descriptor_dimension_is_refused_before_the_database(client: httpx.Client,
                                                                           loaded: dict) -> None:
    # With descriptor 'hash' the dimension depends on the collection's model; a length no descriptor has is
    # refused before looking for one (this collection has none).
    r = _search(client, {"similar_to": {"vector": [0.1] * 7}, "descriptor": "hash",
                         "collections": [DEMO_COLLECTION]})
    assert_error(r, 400, "has 7 values")
    r = _search(client, {"similar_to": {"vector": [0.1] * 100_000}, "descriptor": "s2"})
    assert_error(r, 400, "has 160 values, got 100000")


def test_reference_lists_are_bounded(client: httpx.Client, archives: dict) -> None:
    many = [REF] * 201
    assert_error(_search(client, {"similar_to": {"positive": many}, "collections": ["eurosat"]}), 400,
                 "EOFUSION_LIMIT_REFERENCE_ITEMS")
    assert_error(_search(client, {"similar_to": {"positive": [REF], "negative": many}}), 400,
                 "similar_to.negative")
    r = _search(client, {"similar_to": {"positive": [REF] * 200}, "collections": ["eurosat"], "limit": 1})
    assert r.status_code == 200 and r.json()["features"][0]["id"] == "Forest_1031"


def test_positive_and_negative_items_are_fetched_in_one_query(db_url: str, archives: dict) -> None:
    positive = [{"collection": "eurosat", "item": i} for i in ("Forest_1031", "Forest_1075", "Forest_1031")]
    negative = [{"collection": "eurosat", "item": i} for i in ("SeaLake_1005", "River_1237")]

    async def run() -> tuple[np.ndarray, list[str], list[np.ndarray]]:
        conn = await asyncpg.connect(db_url)
        try:
            singles = [await similarity.query_vector(conn, "s2", r) for r in positive + negative]
            queries: list[str] = []
            conn.add_query_logger(lambda q: queries.append(q.query))
            q = await similarity.query_vector(conn, "s2", {"positive": positive, "negative": negative})
            return q, queries, singles
        finally:
            await conn.close()

    q, queries, singles = asyncio.run(run())
    assert len(queries) == 1, queries
    expected = np.mean(singles[:3], axis=0) - similarity.NEGATIVE_WEIGHT * np.mean(singles[3:], axis=0)
    assert np.allclose(q, expected)


def test_an_unknown_reference_in_a_list_is_named(client: httpx.Client, archives: dict) -> None:
    body = {"similar_to": {"positive": [REF, {"collection": "eurosat", "item": "nope"}]}}
    assert_error(_search(client, body), 400, "'nope' of collection 'eurosat' does not exist")


def test_limit_depth_and_text_are_bounded(tight_client: httpx.Client, client: httpx.Client,
                                          archives: dict) -> None:
    # A limit above the maximum returns the maximum (as the STAC API asks), for similarity and plain searches.
    r = _search(tight_client, {"similar_to": REF, "collections": ["eurosat"], "limit": 51})
    assert r.status_code == 200 and len(r.json()["features"]) == 50, r.text[:300]
    r = _search(tight_client, {"collections": [DEMO_COLLECTION], "limit": 51})
    assert r.status_code == 200 and len(r.json()["features"]) == 50, r.text[:300]
    for path in ("/stac/search", f"/stac/collections/{DEMO_COLLECTION}/items"):
        r = tight_client.get(path, params={"collections": DEMO_COLLECTION, "limit": 51})
        assert r.status_code == 200 and len(r.json()["features"]) == 50, r.text[:300]
    assert_error(_search(tight_client, {"similar_to": {"positive": [REF] * 6}}), 400,
                 "EOFUSION_LIMIT_REFERENCE_ITEMS")
    assert_error(_search(tight_client, {"similar_to": REF, "descriptor": "hash", "rerank_depth": 21,
                                        "collections": ["eurosat"]}), 400, "EOFUSION_LIMIT_DEPTH")
    assert_error(_search(tight_client, {"q_semantic": "s" * 51, "collections": ["eurosat"]}), 400,
                 "EOFUSION_LIMIT_TEXT_CHARS")
    # The default limits on the suite's server.
    assert_error(_search(client, {"q_semantic": "sea " * 501, "collections": ["eurosat"]}), 400,
                 "EOFUSION_LIMIT_TEXT_CHARS")
    assert_error(_search(client, {"similar_to": REF, "descriptor": "hash", "rerank_depth": 5001,
                                  "collections": ["eurosat"]}), 400, "EOFUSION_LIMIT_DEPTH")


def test_every_path_parameter_is_declared_in_the_openapi_document(client: httpx.Client) -> None:
    # A client or fuzzer generated from the document must be able to fill in each {parameter} of a path.
    doc = client.get("/stac/api").json()
    undeclared = []
    for path, operations in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in operations.items():
            declared = {p["name"] for p in op.get("parameters", []) + operations.get("parameters", [])
                        if p.get("in") == "path"}
            if names - declared:
                undeclared.append(f"{method.upper()} {path}: {sorted(names - declared)}")
    assert not undeclared, undeclared
