"""Absolute, stable hrefs: one database served under several public base URLs, stored hrefs without host or route.

Two real server processes serve the suite's catalogue: the session's loopback server, and one with
``EOFUSION_PUBLIC_URL=http://a.example:1/x`` (a server behind a proxy with a prefix). The loopback server is also
asked through proxy headers (``X-Forwarded-*`` and RFC 7239 ``Forwarded``). Every href of every answer (items,
searches, similarity searches, OGC features, process outputs and job results) must start with the base the
request was answered under; the stored item JSON has neither; and the loopback URLs download the right bytes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.db import connect
from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server, start_server

KEY = {"X-API-Key": API_KEY}
PUBLIC = "http://a.example:1/x"
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "b.example", "X-Forwarded-Prefix": "/eo/"}
PROXY_BASE = "https://b.example/eo"
FORWARDED = {"Forwarded": 'for=10.0.0.1;proto=https;host="c.example:8443"', "X-Forwarded-Prefix": "/p"}
FORWARDED_BASE = "https://c.example:8443/p"
#: Keys whose string values are hrefs (in STAC, OGC and process outputs); values of a ``files`` map are too.
HREF_KEYS = ("href", "quicklook", "stac_item", "report", "plot")
#: Our collections (other tests add collections with other servers' URLs on purpose).
OURS = (DEMO_COLLECTION, "ben", "eurosat", "annotations", "models")


def hrefs_in(doc: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (JSON path, href) of a document: ``href`` members and the other href-valued members, anywhere."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            where = f"{path}.{key}"
            if isinstance(value, str) and key in HREF_KEYS:
                yield where, value
            elif key == "files" and isinstance(value, dict):
                yield from ((f"{where}.{k}", v) for k, v in value.items() if isinstance(v, str))
            else:
                yield from hrefs_in(value, where)
    elif isinstance(doc, list):
        for n, value in enumerate(doc):
            yield from hrefs_in(value, f"{path}[{n}]")


def assert_under(doc: Any, base: str, what: str, minimum: int = 1) -> list[str]:
    found = list(hrefs_in(doc))
    wrong = [(p, h) for p, h in found if not (h == base or h.startswith(base + "/"))]
    assert not wrong, f"{what}: hrefs not under {base}: {wrong[:8]}"
    assert len(found) >= minimum, f"{what}: expected at least {minimum} hrefs, found {found}"
    return [h for _, h in found]


@pytest.fixture(scope="module")
def public_server(loaded: dict, archives: dict, settings_env: dict[str, str], data_dir: Path) -> Iterator[Server]:
    """A second server process on the same database and data folder, configured with a public URL."""
    srv = start_server({**settings_env, "EOFUSION_PUBLIC_URL": PUBLIC}, data_dir / "server-public.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def views(server: Server, public_server: Server) -> list[tuple[str, str, dict[str, str], str]]:
    """(name, transport URL, request headers, expected base) of each way the catalogue is reached."""
    return [("public-url", public_server.url, {}, PUBLIC),
            # EOFUSION_PUBLIC_URL wins over what a client's headers claim.
            ("public-url+proxy-headers", public_server.url, PROXY, PUBLIC),
            ("loopback", server.url, {}, server.url),
            ("x-forwarded", server.url, PROXY, PROXY_BASE),
            ("forwarded", server.url, FORWARDED, FORWARDED_BASE)]


def _get(url: str, path: str, headers: dict[str, str], **params: Any) -> Any:
    r = httpx.get(url + path, headers={**headers, **KEY}, params=params, timeout=120)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.json()


def _post(url: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, headers={**headers, **KEY}, json=body, timeout=600)


def _execute(url: str, process: str, headers: dict[str, str], inputs: dict[str, Any]) -> Any:
    r = _post(url, f"/ogc/processes/{process}/execution", headers, {"inputs": inputs})
    assert r.status_code == 200, (process, r.status_code, r.text[:500])
    return r.json()


def _async_job(server: Server, process: str, inputs: dict[str, Any]) -> str:
    """Run a process as a job on the loopback server; the job's path below /ogc once it succeeded."""
    r = httpx.post(f"{server.url}/ogc/processes/{process}/execution", json={"inputs": inputs},
                   headers={**KEY, "Prefer": "respond-async"}, timeout=120)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith(server.url + "/ogc/jobs/"), location
    for _ in range(3000):
        status = httpx.get(location, params={"f": "json"}, headers=KEY, timeout=60).json()
        if status["status"] in ("successful", "failed"):
            break
        time.sleep(0.1)
    assert status["status"] == "successful", status
    return location[len(server.url):]


@pytest.fixture(scope="module")
def jobs(server: Server, archives: dict, loaded: dict) -> dict[str, str]:
    """Stored job results: an export, a trained hashing model, an active-learning round."""
    pool = httpx.get(f"{server.url}/stac/collections/eurosat/items", params={"limit": 3}).json()["features"]
    return {
        "export": _async_job(server, "export", {"collection": DEMO_COLLECTION}),
        "train-hashing": _async_job(server, "train-hashing", {"collection": "eurosat", "descriptor": "s2",
                                                              "bits": 32, "epochs": 5}),
        "round": _async_job(server, "active-learning-round", {
            "pool": "eurosat", "descriptor": "s2", "n_top": 5,
            "feedback": [{"item": pool[0]["id"], "positive": True}, {"item": pool[1]["id"], "positive": False}]}),
    }


def test_stored_items_have_no_host_and_no_route(db_url: str, loaded: dict, archives: dict,
                                                jobs: dict[str, str]) -> None:
    with connect(db_url) as conn:
        rows = conn.execute("SELECT collection, id, content FROM pgstac.items WHERE collection = ANY(%s)",
                            (list(OURS),)).fetchall()
    assert {r[0] for r in rows} == set(OURS), {r[0] for r in rows}
    kinds: set[str] = set()
    for collection, item_id, content in rows:
        found = list(hrefs_in(content))
        assert found, (collection, item_id)
        for where, href in found:
            assert "://" not in href and not href.startswith("/"), (collection, item_id, where, href)
            first = href.split("/", 1)[0]
            if where.startswith(".assets"):
                assert first in ("scenes", "tiles", "files"), (collection, item_id, where, href)
                kinds.add(first)
            else:  # links are relative to the STAC API root
                assert first == "collections", (collection, item_id, where, href)
    assert kinds == {"scenes", "tiles", "files"}


def test_stac_answers_carry_the_base_they_were_asked_under(views: list, archives: dict, loaded: dict,
                                                           jobs: dict[str, str]) -> None:
    euro = "Forest_1031"
    for name, url, headers, base in views:
        what = f"{name}: "
        scene = _get(url, f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}", headers)
        assert_under(scene, base, what + "scene item", minimum=5)
        assert scene["assets"]["s2"]["href"] == f"{base}/scenes/{DEMO_COLLECTION}/{SCENE_ID}_s2.tif"
        assert scene["assets"]["thumbnail"]["href"].startswith(f"{base}/tiles/stac/preview.png?")
        assert_under(_get(url, f"/stac/collections/{DEMO_COLLECTION}/items", headers, limit=5), base,
                     what + "items page", minimum=10)
        page = _post(url, "/stac/search", headers, {"collections": list(OURS), "limit": 50})
        assert page.status_code == 200, page.text
        assert_under(page.json(), base, what + "POST search", minimum=50)
        kinds = {f["collection"] for f in page.json()["features"]}
        assert len(kinds) >= 2, kinds
        for coll in OURS:
            assert_under(_get(url, "/stac/search", headers, collections=coll, limit=3), base, f"{what}search {coll}")
        # Within eurosat: other tests publish copies of its patches (same descriptor) in collections of their own.
        similar = _post(url, "/stac/search", headers, {"similar_to": {"collection": "eurosat", "item": euro},
                                                       "collections": ["eurosat"], "limit": 4})
        assert similar.status_code == 200, similar.text
        assert_under(similar.json(), base, what + "similarity search", minimum=8)
        assert all(f["assets"]["s2"]["href"].startswith(base + "/scenes/eurosat/")
                   for f in similar.json()["features"])
        assert_under(_get(url, f"/stac/collections/eurosat/items/{euro}/similar", headers, limit=3), base,
                     what + "/similar")
        assert_under(_get(url, "/stac/collections", headers), base, what + "collections")
        assert_under(_get(url, "/stac/", headers), base, what + "landing page")
        models = _get(url, "/stac/collections/models/items", headers)
        weights = [f["assets"]["model"]["href"] for f in models["features"]]
        assert weights and all(w.startswith(base + "/files/models/") for w in weights), weights
        assert_under(models, base, what + "model items")


def test_ogc_features_and_process_outputs_carry_the_base(views: list, archives: dict, loaded: dict,
                                                         jobs: dict[str, str]) -> None:
    pool = [f["id"] for f in httpx.get(f"{views[2][1]}/stac/collections/eurosat/items",
                                       params={"limit": 2}).json()["features"]]
    for name, url, headers, base in views:
        what = f"{name}: "
        for layer in ("scenes", "patches", "annotations"):
            features = _get(url, f"/ogc/collections/{layer}/items", headers, f="json", limit=3)
            assert_under(features, base, f"{what}OGC {layer}", minimum=3)
            if layer != "annotations":  # the quicklook of each scene and patch, as a property
                looks = [f["properties"]["quicklook"] for f in features["features"]]
                assert looks and all(h.startswith(base + "/tiles/stac/") for h in looks), looks
        assert_under(_get(url, "/ogc/", headers, f="json"), base, what + "OGC landing page", minimum=3)
        # Synchronous outputs.
        round_ = _execute(url, "active-learning-round", headers, {
            "pool": "eurosat", "descriptor": "s2", "n_top": 5,
            "feedback": [{"item": pool[0], "positive": True}, {"item": pool[1], "positive": False}]})
        looks = assert_under(round_, base, what + "round", minimum=5)
        assert all(h.startswith(base + "/tiles/stac/") for h in looks), looks
        export = _execute(url, "export", headers, {"collection": DEMO_COLLECTION})
        files = assert_under(export, base, what + "export", minimum=3)
        assert all(h.startswith(base + "/files/exports/") for h in files), files
        # Stored job results, answered under each base.
        for process, path in jobs.items():
            result = _get(url, path + "/results", headers, f="json")
            assert_under(result, base, f"{what}job results of {process}")
            status = _get(url, path, headers, f="json")
            assert_under(status, base, f"{what}job status of {process}")
        hashed = _get(url, jobs["train-hashing"] + "/results", headers, f="json")
        assert hashed["stac_item"] == f"{base}/stac/collections/models/items/{hashed['item']}"


def test_loopback_hrefs_download_the_right_bytes(server: Server, data_dir: Path, loaded: dict,
                                                 jobs: dict[str, str]) -> None:
    scene = httpx.get(f"{server.url}/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
    cog = data_dir / "scenes" / DEMO_COLLECTION / f"{SCENE_ID}_s2.tif"
    got = httpx.get(scene["assets"]["s2"]["href"], timeout=120)
    assert got.status_code == 200 and got.content == cog.read_bytes()
    part = httpx.get(scene["assets"]["s2"]["href"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == cog.read_bytes()[100:300]
    thumb = httpx.get(scene["assets"]["thumbnail"]["href"], timeout=120)
    assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
    patch = httpx.get(f"{server.url}/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}_L480_r0000_c0003").json()
    look = httpx.get(patch["assets"]["thumbnail"]["href"], timeout=120)
    assert look.status_code == 200 and look.content.startswith(b"\x89PNG")
    export = httpx.get(f"{server.url}{jobs['export']}/results", params={"f": "json"}, headers=KEY).json()
    for href in export["files"].values():
        local = data_dir / "files" / href.split("/files/", 1)[1]
        assert httpx.get(href).content == local.read_bytes(), href
    hashed = httpx.get(f"{server.url}{jobs['train-hashing']}/results", params={"f": "json"}, headers=KEY).json()
    model = httpx.get(hashed["stac_item"]).json()
    weights = model["assets"]["model"]["href"]
    assert httpx.get(weights).content == (data_dir / "files" / weights.split("/files/", 1)[1]).read_bytes()
    round_ = httpx.get(f"{server.url}{jobs['round']}/results", params={"f": "json"}, headers=KEY).json()
    for q in round_["top"][:2]:
        r = httpx.get(q["quicklook"], timeout=120)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), q


# -- migration 0020 ------------------------------------------------------------------------------------------------

V1 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
LEGACY = "legacy-hrefs"


def old_form(item: dict[str, Any]) -> dict[str, Any]:
    """An item as catalogues before 0020 stored it (f8c790b's catalog/items.py, model_items.py, annotations.py):
    root-relative routes, links under /stac, projection v2.0.0 with proj:code only, no asset-level grid."""
    old = copy.deepcopy(item)
    for asset in old.get("assets", {}).values():
        asset["href"] = "/" + asset["href"]
        for k in ("proj:shape", "proj:transform", "proj:bbox"):
            asset.pop(k, None)
    for link in old.get("links", []):
        link["href"] = "/stac/" + link["href"]
    props = old["properties"]
    if "proj:epsg" in props:
        props["proj:code"] = f"EPSG:{props.pop('proj:epsg')}"
        props.pop("proj:wkt2", None)
        old["stac_extensions"] = [V2 if e == V1 else e for e in old["stac_extensions"]]
    return old


def _normal(item: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(item)
    out["stac_extensions"] = sorted(out.get("stac_extensions", []))
    return out


def test_migration_0020_brings_old_items_to_the_new_form(db_url: str, server: Server, public_server: Server,
                                                         loaded: dict, archives: dict, jobs: dict[str, str]) -> None:
    from catalog.load import upsert_collection, upsert_items
    from catalog.migrate import project_migrations

    step = dict(project_migrations())["0020_stable_hrefs.py"]
    assert callable(step)
    with connect(db_url) as conn:
        def stored(collection: str, ids: list[str]) -> list[dict[str, Any]]:
            return [r[0] for r in conn.execute(
                "SELECT pgstac.get_item(id, collection) FROM pgstac.items WHERE collection = %s AND id = ANY(%s) "
                "ORDER BY id", (collection, ids))]

        patches = [r[0] for r in conn.execute(
            "SELECT id FROM pgstac.items WHERE collection = %s AND content->'properties'->>'eofusion:kind' = 'patch' "
            "ORDER BY id LIMIT 5", (DEMO_COLLECTION,))]
        model = conn.execute("SELECT id FROM pgstac.items WHERE collection = 'models' LIMIT 1").fetchone()
        note = conn.execute("SELECT id FROM pgstac.items WHERE collection = 'annotations' LIMIT 1").fetchone()
        euro = conn.execute("SELECT id FROM pgstac.items WHERE collection = 'eurosat' ORDER BY id LIMIT 1").fetchone()
        assert model and note and euro
        originals = [*stored(DEMO_COLLECTION, [SCENE_ID, *patches]), *stored("models", [model[0]]),
                     *stored("annotations", [note[0]]), *stored("eurosat", [euro[0]])]
        expected = {}
        legacy = []
        for item in originals:
            new = {**copy.deepcopy(item), "collection": LEGACY, "id": f"{item['collection']}.{item['id']}"}
            if item["collection"] == DEMO_COLLECTION and "eofusion:scene" in new["properties"]:
                new["properties"]["eofusion:scene"] = f"{DEMO_COLLECTION}.{SCENE_ID}"
            expected[new["id"]] = new
            legacy.append(old_form(new))
        coll = conn.execute("SELECT content FROM pgstac.collections WHERE id = %s", (DEMO_COLLECTION,)).fetchone()
        assert coll is not None
        upsert_collection(conn, {**coll[0], "id": LEGACY})
        upsert_items(conn, legacy)
        conn.commit()
        before = {i["id"]: i for i in stored(LEGACY, list(expected))}
        assert before[f"{DEMO_COLLECTION}.{SCENE_ID}"]["assets"]["s2"]["href"].startswith("/scenes/")
        with conn.transaction():
            step(conn)
        after = {i["id"]: i for i in stored(LEGACY, list(expected))}
        # Exactly what ingest writes now, nothing else changed or lost.
        assert set(after) == set(expected)
        for item_id, item in expected.items():
            assert _normal(after[item_id]) == _normal(item), item_id
        # A second run changes nothing.
        with conn.transaction():
            step(conn)
        assert {i["id"]: i for i in stored(LEGACY, list(expected))} == after
    try:
        for url, base in ((server.url, server.url), (public_server.url, PUBLIC)):
            page = httpx.get(f"{url}/stac/collections/{LEGACY}/items", params={"limit": 100}).json()
            assert len(page["features"]) == len(expected)
            assert_under(page, base, f"migrated items at {base}", minimum=3 * len(expected))
        scene = f"{DEMO_COLLECTION}.{SCENE_ID}"
        info = httpx.get(f"{server.url}/tiles/stac/info", params={"collection": LEGACY, "item": scene,
                                                                 "assets": "s2"}, timeout=120)
        assert info.status_code == 200, info.text
    finally:
        with connect(db_url) as conn:
            conn.execute("SELECT pgstac.delete_collection(%s)", (LEGACY,))
            conn.commit()


def test_transactions_store_our_own_urls_relative_and_answer_absolute(db_url: str, server: Server,
                                                                      public_server: Server, loaded: dict) -> None:
    """An item written back as a client read it (absolute URLs of the base it was read under) stores no host."""
    coll = "hrefs-writes"
    scene = httpx.get(f"{server.url}/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}", headers=PROXY).json()
    assert scene["assets"]["s2"]["href"].startswith(PROXY_BASE + "/scenes/")
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": coll, "license": "CC0-1.0", "links": [],
                  "description": "items written back by a client", "extent": {
                      "spatial": {"bbox": [scene["bbox"]]}, "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]}}}
    r = httpx.post(f"{server.url}/stac/collections", json=collection, headers=KEY)
    assert r.status_code in (200, 201), r.text
    try:
        item = {**scene, "collection": coll, "links": [],
                "assets": {**scene["assets"], "other": {"href": "https://elsewhere.example/x.tif", "roles": ["data"]}}}
        r = httpx.post(f"{server.url}/stac/collections/{coll}/items", json=item, headers={**KEY, **PROXY})
        assert r.status_code in (200, 201), r.text
        assert r.json()["assets"]["s2"]["href"] == scene["assets"]["s2"]["href"]
        with connect(db_url) as conn:
            (stored,) = conn.execute("SELECT pgstac.get_item(%s, %s)", (SCENE_ID, coll)).fetchone()
        assert stored["assets"]["s2"]["href"] == f"scenes/{DEMO_COLLECTION}/{SCENE_ID}_s2.tif"
        assert stored["assets"]["thumbnail"]["href"].startswith("tiles/stac/preview.png?")
        assert stored["assets"]["other"]["href"] == "https://elsewhere.example/x.tif"  # not ours: kept
        got = httpx.get(f"{public_server.url}/stac/collections/{coll}/items/{SCENE_ID}").json()
        assert got["assets"]["s2"]["href"] == f"{PUBLIC}/scenes/{DEMO_COLLECTION}/{SCENE_ID}_s2.tif"
        assert got["assets"]["other"]["href"] == "https://elsewhere.example/x.tif"
        r = httpx.put(f"{public_server.url}/stac/collections/{coll}/items/{SCENE_ID}", json=got, headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["assets"]["s2"]["href"] == got["assets"]["s2"]["href"]
        with connect(db_url) as conn:
            (stored,) = conn.execute("SELECT pgstac.get_item(%s, %s)", (SCENE_ID, coll)).fetchone()
        assert stored["assets"]["s2"]["href"] == f"scenes/{DEMO_COLLECTION}/{SCENE_ID}_s2.tif"
        assert got["links"] and [h for _, h in hrefs_in(stored) if "://" in h] == ["https://elsewhere.example/x.tif"]
        # The tiler opens the written item's COG from its stored href.
        info = httpx.get(f"{server.url}/tiles/stac/info", params={"collection": coll, "item": SCENE_ID, "assets": "s2"},
                         timeout=120)
        assert info.status_code == 200, info.text
    finally:
        httpx.delete(f"{server.url}/stac/collections/{coll}", headers=KEY)
