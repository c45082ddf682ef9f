"""The similarity extension of the STAC API, on real patches (EuroSAT-MS, BigEarthNet, the demo scene)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import numpy as np
import pytest

from catalog import similarity
from catalog.annotations import NewAnnotation, add_annotations
from catalog.db import connect
from catalog.load import upsert_items
from server.similarity import SIMILARITY_CONFORMANCE
from tests.conftest import DEMO_COLLECTION, EUROSAT, EUROSAT_LABELS, SCENE_ID


def search(client: httpx.Client, body: dict) -> httpx.Response:
    return client.post("/stac/search", json=body)


def test_conformance_is_advertised(client: httpx.Client) -> None:
    assert SIMILARITY_CONFORMANCE in client.get("/stac/conformance").json()["conformsTo"]


@pytest.mark.parametrize("descriptor", ["s2", "fused", "s1"])
def test_patch_itself_comes_first(client: httpx.Client, archives: dict, descriptor: str) -> None:
    collection = "ben" if descriptor != "s2" else "eurosat"
    ids = [f["id"] for f in client.get(f"/stac/collections/{collection}/items", params={"limit": 5}).json()["features"]]
    for item in ids:
        r = search(client, {"similar_to": {"collection": collection, "item": item}, "descriptor": descriptor,
                            "collections": [collection], "limit": 5})
        assert r.status_code == 200, r.text
        feats = r.json()["features"]
        assert feats[0]["id"] == item and feats[0]["properties"]["eofusion:distance"] == pytest.approx(0, abs=1e-6)
        d = [f["properties"]["eofusion:distance"] for f in feats]
        assert d == sorted(d)


def test_neighbours_share_the_class(client: httpx.Client, archives: dict) -> None:
    """Real descriptors separate land cover: a SeaLake patch's neighbours are mostly water."""
    lakes = client.post("/stac/search", json={"collections": ["eurosat"], "limit": 10, "filter-lang": "cql2-json",
                                              "filter": {"op": "a_contains", "args": [
                                                  {"property": "eofusion:source_labels"}, ["SeaLake"]]}}).json()
    hits = 0
    n_water = sum(label in ("SeaLake", "River") for label in EUROSAT_LABELS)
    for f in lakes["features"][:5]:
        r = search(client, {"similar_to": {"collection": "eurosat", "item": f["id"]}, "collections": ["eurosat"],
                            "limit": 6}).json()
        hits += sum("Water Bodies" in g["properties"]["eofusion:ground_truth"] for g in r["features"][1:])
    # Chance is the share of the other water patches (43 of 215 in the full sample, 9 of 49 in the fixture, about
    # 0.2); the descriptors give 2.5x that on the full sample, 2.2x on the fixture's.
    chance = (n_water - 1) / (len(EUROSAT_LABELS) - 1)
    assert hits >= 2 * chance * 5 * 5, (hits, chance)


def test_results_honour_every_filter(client: httpx.Client, archives: dict, loaded: dict) -> None:
    ref = {"collection": DEMO_COLLECTION, "item": f"{SCENE_ID}_L120_r0005_c0007"}
    body = {"similar_to": ref, "collections": [DEMO_COLLECTION, "eurosat"], "limit": 20,
            "bbox": [-75.7, 37.6, -75.6, 37.7], "datetime": "2016-01-01T00:00:00Z/2016-12-31T00:00:00Z",
            "filter-lang": "cql2-json", "filter": {"op": "=", "args": [{"property": "eofusion:grid_level"}, 120]}}
    feats = search(client, body).json()["features"]
    assert feats
    for f in feats:
        assert f["collection"] == DEMO_COLLECTION and f["properties"]["eofusion:grid_level"] == 120
        w, s, e, n = f["bbox"]
        assert w <= -75.6 and e >= -75.7 and s <= 37.7 and n >= 37.6
    # Without the filters the set is larger; with ids only those come back.
    unfiltered = search(client, {"similar_to": ref, "collections": [DEMO_COLLECTION], "limit": 200}).json()
    assert len(unfiltered["features"]) > len(feats)
    some = [f["id"] for f in unfiltered["features"][5:8]]
    only = search(client, {"similar_to": ref, "ids": some, "limit": 10}).json()["features"]
    assert sorted(f["id"] for f in only) == sorted(some)


def test_sortby_orders_each_page_of_nearest_items(client: httpx.Client, archives: dict) -> None:
    body = {"similar_to": {"collection": "eurosat", "item": "Forest_1031"}, "collections": ["eurosat"], "limit": 12}
    nearest = search(client, body).json()
    by_id = {f["id"]: f["properties"]["eofusion:distance"] for f in nearest["features"]}
    sorted_page = search(client, {**body, "sortby": [{"field": "id", "direction": "desc"}]}).json()
    ids = [f["id"] for f in sorted_page["features"]]
    # The same nearest items, with their distances, in sortby's order; the next page goes on by distance.
    assert set(ids) == set(by_id) and ids == sorted(ids, reverse=True) and ids != list(by_id)
    assert {f["id"]: f["properties"]["eofusion:distance"] for f in sorted_page["features"]} == by_id
    nxt = next(link for link in sorted_page["links"] if link["rel"] == "next")
    second = client.post(nxt["href"], json=nxt["body"]).json()["features"]
    assert len(second) == 12 and not set(by_id) & {f["id"] for f in second}
    assert min(f["properties"]["eofusion:distance"] for f in second) >= max(by_id.values())


def _annotated(db_url: str, level1: str) -> set[str]:
    with connect(db_url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT a.item_id FROM eofusion.annotations a JOIN eofusion.labels l ON l.id = a.label_id "
            "WHERE a.collection = 'eurosat' AND split_part(l.path, ' / ', 1) = %s", (level1,))}


def test_multi_knowledge_query_with_annotation_labels(client: httpx.Client, archives: dict, db_url: str) -> None:
    """"Like this patch, annotated Urban Area" and "not yet labelled Urban Area", with metadata, in one search."""
    mine = ["Highway_1069", "Residential_1031", "Industrial_1224"]
    with connect(db_url) as conn:
        add_annotations(conn, [NewAnnotation("eurosat", mine[0], "Urban Area"),
                               NewAnnotation("eurosat", mine[1], "Urban Area / Continuous urban fabric"),
                               NewAnnotation("eurosat", mine[2], "Urban Area / Industrial or commercial units")])
    urban = _annotated(db_url, "Urban Area")
    assert set(mine) <= urban
    item = client.get(f"/stac/collections/eurosat/items/{mine[1]}").json()
    with connect(db_url) as conn:  # other tests may have annotated the patch too
        paths = [r[0] for r in conn.execute(
            "SELECT l.path FROM eofusion.annotations a JOIN eofusion.labels l ON l.id = a.label_id "
            "WHERE a.collection = 'eurosat' AND a.item_id = %s", (mine[1],))]
    assert "Urban Area / Continuous urban fabric" in paths
    assert item["properties"]["eofusion:annotations"] == sorted(set(paths) | {p.split(" / ")[0] for p in paths})
    label = {"op": "a_contains", "args": [{"property": "eofusion:annotations"}, ["Urban Area"]]}
    level = {"op": "=", "args": [{"property": "eofusion:grid_level"}, 64]}
    base = {"similar_to": {"collection": "eurosat", "item": "Forest_1031"}, "collections": ["eurosat"],
            "filter-lang": "cql2-json", "limit": 100}
    found = search(client, {**base, "filter": {"op": "and", "args": [label, level]}}).json()["features"]
    assert {f["id"] for f in found} == urban
    d = [f["properties"]["eofusion:distance"] for f in found]
    assert d == sorted(d)
    r = search(client, {**base, "limit": 30, "filter": {"op": "and", "args": [{"op": "not", "args": [label]}, level]}})
    assert r.status_code == 200, r.text
    others = r.json()["features"]
    assert len(others) == 30 and not urban & {f["id"] for f in others}
    # A search nothing passes is an empty page, not an error.
    r = search(client, {**base, "filter": {"op": "and", "args": [label, {"op": "=", "args": [
        {"property": "eofusion:grid_level"}, 9999]}]}})
    assert r.status_code == 200, r.text
    assert r.json()["features"] == [] and r.json()["numberReturned"] == 0
    # Re-publishing a patch (an archive ingested again) keeps the labels users gave it.
    fresh = {**item, "properties": {k: v for k, v in item["properties"].items() if k != "eofusion:annotations"}}
    fresh["links"] = []
    with connect(db_url) as conn:
        upsert_items(conn, [fresh])
    again = client.get(f"/stac/collections/eurosat/items/{mine[1]}").json()
    assert again["properties"]["eofusion:annotations"] == item["properties"]["eofusion:annotations"]


def test_paging_returns_each_item_once_in_distance_order(client: httpx.Client, archives: dict) -> None:
    body = {"similar_to": {"collection": "eurosat", "item": "Forest_1031"}, "collections": ["eurosat"], "limit": 25}
    seen, dists, page = [], [], search(client, body).json()
    while True:
        seen += [f["id"] for f in page["features"]]
        dists += [f["properties"]["eofusion:distance"] for f in page["features"]]
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        page = client.post(nxt[0]["href"], json=nxt[0]["body"]).json()
    assert len(seen) == len(set(seen)) == archives["eurosat"].patches
    assert dists == sorted(dists)


def test_positive_and_negative_examples(client: httpx.Client, archives: dict) -> None:
    body = {"similar_to": {"positive": [{"collection": "eurosat", "item": "Forest_1031"},
                                        {"collection": "eurosat", "item": "Forest_1075"}],
                           "negative": [{"collection": "eurosat", "item": "SeaLake_1005"}]},
            "collections": ["eurosat"], "limit": 10}
    r = search(client, body)
    assert r.status_code == 200, r.text
    labels = [f["properties"]["eofusion:source_labels"][0] for f in r.json()["features"]]
    assert labels.count("SeaLake") == 0 and labels.count("Forest") >= 5


def test_get_similar_route(client: httpx.Client, archives: dict) -> None:
    r = client.get("/stac/collections/eurosat/items/Forest_1031/similar", params={"limit": 4})
    assert r.status_code == 200, r.text
    assert [f["id"] for f in r.json()["features"]][0] == "Forest_1031"
    r = client.get("/stac/collections/eurosat/items/Forest_1031/similar",
                   params={"limit": 4, "filter": "\"eofusion:grid_level\" = 64", "descriptor": "s2"})
    assert r.status_code == 200 and len(r.json()["features"]) == 4


def test_raw_vector_query(client: httpx.Client, archives: dict) -> None:
    item = client.get("/stac/collections/eurosat/items/SeaLake_1005/similar", params={"limit": 1}).json()
    assert item["features"][0]["id"] == "SeaLake_1005"
    uniform = list(np.full(160, 1 / 160))
    r = search(client, {"similar_to": {"vector": uniform}, "descriptor": "s2", "collections": ["eurosat"],
                        "limit": 3})
    assert r.status_code == 200 and len(r.json()["features"]) == 3


@pytest.mark.parametrize(("body", "needle"), [
    ({"similar_to": {"vector": [0.5, 0.5]}, "descriptor": "s2"}, "has 160 values, got 2"),
    ({"similar_to": {"collection": "eurosat", "item": "Forest_1031"}, "descriptor": "sift"}, "descriptor"),
    ({"similar_to": {"collection": DEMO_COLLECTION, "item": SCENE_ID}}, "has no descriptors"),
    ({"similar_to": {"collection": "eurosat", "item": "nope"}}, "does not exist"),
    ({"similar_to": {"collection": "eurosat", "item": "Forest_1031"}, "descriptor": "s1"}, "no 's1' descriptor"),
    ({"similar_to": {"vector": [1.0] * 160}}, "give descriptor"),
    ({"similar_to": {}}, "exactly one of"),
])
def test_bad_similarity_input_is_a_400(client: httpx.Client, archives: dict, loaded: dict, body: dict,
                                       needle: str) -> None:
    r = search(client, {**body, "limit": 3})
    assert r.status_code == 400, r.text
    assert needle in r.json()["description"]


def test_hnsw_path_equals_exact_path_and_fills_the_limit_under_a_selective_filter(db_url: str,
                                                                                  archives: dict) -> None:
    async def run() -> tuple[list, list, list]:
        conn = await asyncpg.connect(db_url, server_settings={"search_path": "pgstac,public"})
        try:
            q = await similarity.query_vector(conn, "s2", {"collection": "eurosat", "item": "River_1237"})
            everything = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            exact = await similarity.nearest(conn, "s2", q, everything, 10, exact_below=10**9)
            approx = await similarity.nearest(conn, "s2", q, everything, 10, exact_below=0)
            # A selective filter (the Highway patches only): the HNSW path must still return all of them.
            narrow = await similarity.where_clause(conn, {"collections": ["eurosat"], "filter-lang": "cql2-json",
                                                          "filter": {"op": "a_contains", "args": [
                                                              {"property": "eofusion:source_labels"},
                                                              ["Highway"]]}})
            filtered = await similarity.nearest(conn, "s2", q, narrow, 1000, exact_below=0)
            return exact, approx, filtered
        finally:
            await conn.close()

    exact, approx, filtered = asyncio.run(run())
    assert [n.item_id for n in exact][:3] == [n.item_id for n in approx][:3]
    recall = len({n.item_id for n in exact} & {n.item_id for n in approx}) / 10
    assert recall >= 0.9
    highway = len(list((EUROSAT / "Highway").glob("*.tif")))
    assert len(filtered) == highway and all(n.item_id.startswith("Highway") for n in filtered)


def test_exact_or_hnsw_choice_asks_the_planner_then_counts_with_a_cap(db_url: str, archives: dict) -> None:
    """use_exact answers like a count of the filtered rows would, whatever the planner's estimate."""
    async def run() -> list[bool]:
        conn = await asyncpg.connect(db_url, server_settings={"search_path": "pgstac,public"})
        try:
            where = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            base = (f"FROM (SELECT collection, id FROM pgstac.items WHERE {where}) i JOIN eofusion.descriptors d "
                    "ON d.collection = i.collection AND d.item_id = i.id WHERE d.s2 IS NOT NULL")
            n = archives["eurosat"].patches
            return [await similarity.use_exact(conn, base, below) for below in (0, 10, n - 1, n, 10**6)]
        finally:
            await conn.close()

    assert asyncio.run(run()) == [False, False, False, True, True]


def test_search_settings_stay_inside_the_search(db_url: str, archives: dict) -> None:
    """Repeated searches (past the five after which PostgreSQL may cache a generic plan) return the same ranking,
    and the search's SET LOCALs end with it, on its own or inside a caller's transaction, also after an error."""
    async def run() -> None:
        conn = await asyncpg.connect(db_url, server_settings={"search_path": "pgstac,public"})
        try:
            q = await similarity.query_vector(conn, "s2", {"collection": "eurosat", "item": "River_1237"})
            everything = await similarity.where_clause(conn, {"collections": ["eurosat"]})
            runs = [[n.item_id for n in await similarity.nearest(conn, "s2", q, everything, 10, exact_below=0)]
                    for _ in range(8)]
            assert runs[0][0] == "River_1237" and all(r == runs[0] for r in runs)
            pages = [[n.item_id for n in await similarity.nearest(conn, "s2", q, everything, 5, offset=o,
                                                                  exact_below=0)] for o in (0, 5)]
            assert pages[0] + pages[1] == runs[0]
            assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
            assert await conn.fetchval("SHOW hnsw.ef_search") == "40"
            assert not conn.is_in_transaction()
            work_mem = await conn.fetchval("SHOW work_mem")
            async with conn.transaction():
                await conn.execute("SET LOCAL hnsw.ef_search = 77")
                await similarity.nearest(conn, "s2", q, everything, 10, exact_below=0)
                assert await conn.fetchval("SHOW hnsw.ef_search") == "77"  # the caller's setting is back
                assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
                with pytest.raises(asyncpg.PostgresError):
                    async with similarity.local_settings(conn, {"work_mem": "7MB"}):
                        assert await conn.fetchval("SHOW work_mem") == "7MB"
                        await conn.fetch("SELECT 1/0")
                assert await conn.fetchval("SHOW work_mem") == work_mem  # the caller's transaction goes on
            with pytest.raises(asyncpg.PostgresError):
                async with similarity.local_settings(conn, {"work_mem": "7MB"}):
                    await conn.fetch("SELECT 1/0")
            assert not conn.is_in_transaction() and await conn.fetchval("SHOW work_mem") == work_mem
        finally:
            await conn.close()

    asyncio.run(run())


def test_api_ranks_on_the_similarity_pool(client: httpx.Client, db_url: str, archives: dict) -> None:
    """The server's similarity searches run on its tuned pool (application_name eofusion-similarity), whose
    sessions hold the search settings."""
    async def last_statements() -> list[str]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT query FROM pg_stat_activity WHERE application_name = $1",
                                    similarity.TUNED_APPLICATION)
            return [r["query"] for r in rows]
        finally:
            await conn.close()

    r = search(client, {"similar_to": {"collection": "eurosat", "item": "Forest_1031"}, "descriptor": "s2",
                        "collections": ["eurosat"], "limit": 3})
    assert r.status_code == 200 and r.json()["features"][0]["id"] == "Forest_1031"
    # Small archive: the exact path, whose transaction ends with COMMIT; the HNSW path ends with its ranking.
    assert any(q == "COMMIT" or "eofusion.descriptors" in q for q in asyncio.run(last_statements()))
