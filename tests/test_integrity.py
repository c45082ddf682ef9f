"""Integrity of derived data (real database, real server): what is computed from a row follows the row.

Posts re-ingested with another text or other photos are embedded / described again; a STAC DELETE of a
patch takes its descriptors, codes, embeddings, ground truth and annotations with it while a PUT keeps them;
round models are stored as arrays, never as a pickle that would run code when read; two rounds of one
session never share a round number; a killed bulk load never loses a vector index.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as photos

from catalog.db import connect
from tests.conftest import API_KEY, ROOT, data_path

KEY = {"X-API-Key": API_KEY}
SARDINIA = data_path("crisislex") / "CrisisLexT26" / "2013_Sardinia_floods"


def execute(client: httpx.Client, process: str, inputs: dict, headers: dict | None = None) -> httpx.Response:
    return client.post(f"/ogc/processes/{process}/execution", json={"inputs": inputs},
                       headers=KEY if headers is None else headers)


@pytest.fixture(scope="module")
def labels(client: httpx.Client, archives: dict) -> dict[str, str]:
    """EuroSAT patch id -> its class."""
    feats = client.get("/stac/collections/eurosat/items", params={"limit": 1000}).json()["features"]
    return {f["id"]: f["properties"]["eofusion:source_labels"][0] for f in feats}


# --------------------------------------------------------------------------------------------------
# 1. Posts: a changed text is embedded again, changed media are described again
# --------------------------------------------------------------------------------------------------


def test_changed_post_text_and_media_are_redone_by_the_next_stages(db_url: str, tmp_path: Path) -> None:
    from catalog.tweet_images import ImageIngestConfig, ingest_images
    from catalog.tweets import embed_collection, upsert_tweets
    from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
    from eofusion.social.embedding import STATIC_MODEL_NAME, TextEmbedder
    from eofusion.social.image import ImageFeatureExtractor

    collection = "integrity-posts"
    Image.fromarray(photos.chelsea()).save(tmp_path / "cat.jpg", quality=90)
    Image.fromarray(photos.coffee()).save(tmp_path / "coffee.jpg", quality=90)
    distinct: dict[str, Any] = {}
    for t in read_crisislex(SARDINIA, report=IngestReport()):  # four real posts of different texts
        distinct.setdefault(t.text, t)
        if len(distinct) == 4:
            break
    real = list(distinct.values())
    assert len(real) == 4
    cat = [{"type": "photo", "url": (tmp_path / "cat.jpg").as_uri()}]
    coffee = [{"type": "photo", "url": (tmp_path / "coffee.jpg").as_uri()}]
    posts = [Tweet(id=r.id, text=r.text, datetime=r.datetime, lang=r.lang, media=cat) for r in real[:3]]
    embedder = TextEmbedder(STATIC_MODEL_NAME)
    extractor = ImageFeatureExtractor()
    with connect(db_url) as conn:
        upsert_tweets(conn, posts, collection)
        conn.commit()
    assert embed_collection(db_url, collection, embedder) == 3
    assert ingest_images(db_url, collection, extractor, ImageIngestConfig()).stored == 3

    def state() -> dict[str, tuple[Any, Any]]:
        with connect(db_url) as conn:
            rows = conn.execute(
                "SELECT t.id, t.embedding::real[], (SELECT array_agg(i.sha256 ORDER BY i.idx) FROM "
                "eofusion.tweet_images i WHERE i.collection = t.collection AND i.tweet_id = t.id) "
                "FROM eofusion.tweets t WHERE t.collection = %s", (collection,)).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    before = state()
    assert all(emb is not None and shas for emb, shas in before.values())
    a, b, c = posts
    # Re-ingest: a with the text of another real post, b with another photo, c unchanged.
    changed = [Tweet(id=a.id, text=real[3].text, datetime=a.datetime, lang=a.lang, media=cat),
               Tweet(id=b.id, text=b.text, datetime=b.datetime, lang=b.lang, media=coffee), c]
    with connect(db_url) as conn:
        upsert_tweets(conn, changed, collection)
        conn.commit()
    after = state()
    assert after[a.id][0] is None, "the embedding of the old text was kept"
    assert after[a.id][1] == before[a.id][1]  # same photo: its features stay
    assert after[b.id][0] == before[b.id][0]  # same text: its embedding stays
    assert after[b.id][1] is None, "the features of the old photo were kept"
    assert after[c.id] == before[c.id]
    # The next stages redo exactly those.
    assert embed_collection(db_url, collection, embedder) == 1
    assert ingest_images(db_url, collection, extractor, ImageIngestConfig()).posts == 1
    redone = state()
    expected = embedder.embed([real[3].text])[0]
    assert np.allclose(np.asarray(redone[a.id][0], dtype=np.float32), expected, atol=1e-3)
    assert redone[b.id][1] and redone[b.id][1] != before[b.id][1]
    assert redone[c.id] == before[c.id]


# --------------------------------------------------------------------------------------------------
# 2. STAC DELETE and PUT of a patch
# --------------------------------------------------------------------------------------------------


#: The real EuroSAT patches published once more under a collection of these tests' own: they delete and
#: replace patches, which other tests of the session must not see in "eurosat".
COPY = "eurosat-integrity"


@pytest.fixture(scope="module")
def learned(client: httpx.Client, db_url: str, settings: Any) -> dict[str, Any]:
    """The EuroSAT copy with hash codes and text-to-patch embeddings (short trainings through the server)."""
    from catalog.archives import publish_archive
    from eofusion.readers.archives import read_eurosat
    from tests.conftest import EUROSAT, EUROSAT_TIME

    publish_archive(db_url, COPY, settings.scenes_dir, read_eurosat(EUROSAT), "EuroSAT-MS subset (integrity tests)",
                    *EUROSAT_TIME)
    hashing = execute(client, "train-hashing", {"collection": COPY, "descriptor": "s2", "bits": 32, "epochs": 30})
    assert hashing.status_code == 200, hashing.text
    text = execute(client, "train-text2patch", {"collection": COPY, "descriptor": "s2", "epochs": 30})
    assert text.status_code == 200, text.text
    return {"hashing": hashing.json(), "text2patch": text.json()}


def _count(conn: Any, sql: str, *args: str) -> int:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def _rows(db_url: str, item: str) -> dict[str, int]:
    tables = {"descriptors": "item_id", "hash_codes": "item_id", "text2patch_embeddings": "item_id",
              "ground_truth": "item_id", "annotations": "item_id", "feedback": "item_id"}
    with connect(db_url) as conn:
        out = {t: _count(conn, f"SELECT count(*) FROM eofusion.{t} WHERE collection = %s AND {c} = %s",
                         COPY, item) for t, c in tables.items()}
        out["annotation_items"] = _count(
            conn, "SELECT count(*) FROM pgstac.items WHERE collection = 'annotations' AND id LIKE %s",
            f"{COPY}.{item}.L%")
    return out


def _annotate(db_url: str, item: str, label: str) -> None:
    from catalog.annotations import NewAnnotation, add_annotations

    with connect(db_url) as conn:
        add_annotations(conn, [NewAnnotation(COPY, item, label, user_id="tester")])
        conn.commit()


def _put_body(feature: dict) -> dict:
    body = {**feature, "links": []}
    body["properties"] = {k: v for k, v in feature["properties"].items() if k != "eofusion:annotations"}
    return body


def test_stac_put_of_a_patch_keeps_its_annotations_and_data(client: httpx.Client, db_url: str, learned: dict,
                                                            labels: dict[str, str]) -> None:
    item = sorted(i for i, c in labels.items() if c == "Forest")[0]
    _annotate(db_url, item, "Forest / Mixed forest")
    url = f"/stac/collections/{COPY}/items/{item}"
    feature = client.get(url).json()
    assert feature["properties"]["eofusion:annotations"] == ["Forest", "Forest / Mixed forest"]
    before = _rows(db_url, item)
    assert min(before[t] for t in ("descriptors", "hash_codes", "text2patch_embeddings", "ground_truth",
                                   "annotations", "annotation_items")) == 1, before
    # A client replaces the item with what it knows (it does not carry the annotations list).
    body = _put_body(feature)
    body["properties"]["title"] = "replaced by a client"
    r = client.put(url, json=body, headers=KEY)
    assert r.status_code == 200, r.text
    again = client.get(url).json()
    assert again["properties"]["title"] == "replaced by a client"
    assert again["properties"]["eofusion:annotations"] == ["Forest", "Forest / Mixed forest"]
    assert _rows(db_url, item) == before
    # Still found by a filter on its labels.
    found = client.post("/stac/search", json={
        "collections": [COPY], "ids": [item], "limit": 10, "filter-lang": "cql2-json",
        "filter": {"op": "a_contains", "args": [{"property": "eofusion:annotations"}, ["Forest / Mixed forest"]]}})
    assert item in [f["id"] for f in found.json()["features"]]


def test_stac_delete_of_a_patch_deletes_its_data(client: httpx.Client, db_url: str, learned: dict,
                                                 labels: dict[str, str]) -> None:
    item = sorted(i for i, c in labels.items() if c == "SeaLake")[0]
    _annotate(db_url, item, "Water Bodies / Water bodies")
    # A session marked it.
    r = execute(client, "active-learning-round", {"pool": COPY, "descriptor": "s2",
                                                  "feedback": [{"item": item, "positive": True}]})
    assert r.status_code == 200, r.text
    session = r.json()["session"]
    before = _rows(db_url, item)
    assert all(n >= 1 for n in before.values()), before
    url = f"/stac/collections/{COPY}/items/{item}"
    assert client.delete(url).status_code == 401  # no key, nothing deleted
    assert _rows(db_url, item) == before
    assert client.delete(url, headers=KEY).status_code == 200
    assert client.get(url).status_code == 404
    assert _rows(db_url, item) == dict.fromkeys(before, 0)
    # The session goes on without the deleted patch.
    other = sorted(i for i, c in labels.items() if c == "SeaLake")[1]
    r = execute(client, "active-learning-round", {"session": session,
                                                  "feedback": [{"item": other, "positive": True}]})
    assert r.status_code == 200, r.text
    assert item not in [p["item"] for p in r.json()["top"]]


# --------------------------------------------------------------------------------------------------
# 3. Round models: arrays and parameters, never a pickle
# --------------------------------------------------------------------------------------------------


class _Payload:
    """A pickle that creates a file when it is loaded: what a stored model must never be able to do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _session_with_a_round(client: httpx.Client, labels: dict[str, str]) -> tuple[str, list[str]]:
    forest = sorted(i for i, c in labels.items() if c == "Forest")[1:4]
    lakes = sorted(i for i, c in labels.items() if c == "SeaLake")[2:4]
    r = execute(client, "active-learning-round", {"pool": "eurosat", "descriptor": "s2", "feedback": [
        *({"item": i, "positive": True} for i in forest), *({"item": i, "positive": False} for i in lakes)]})
    assert r.status_code == 200, r.text
    return str(r.json()["session"]), forest


def test_a_stored_pickle_is_never_loaded(client: httpx.Client, db_url: str, labels: dict[str, str],
                                         tmp_path: Path) -> None:
    session, _ = _session_with_a_round(client, labels)
    # A pickle in the table (an old version's, or written by someone with database access) is never loaded.
    marker = tmp_path / "unpickled"
    with connect(db_url) as conn:
        conn.execute("UPDATE eofusion.rounds SET model = %s WHERE session_id = %s AND round = 1",
                     (pickle.dumps(_Payload(marker)), session))
        conn.commit()
    bad = execute(client, "accept-annotations", {"session": session, "label": "Forest"})
    assert not marker.exists(), "a stored pickle was loaded"
    assert bad.status_code == 400, bad.text
    # The next round fits a new model from the stored feedback, and that one is used.
    again = execute(client, "active-learning-round", {"session": session, "feedback": []})
    assert again.status_code == 200 and again.json()["round"] == 2, again.text
    assert execute(client, "accept-annotations", {"session": session, "label": "Forest"}).status_code == 200
    assert not marker.exists()
    for module in ("catalog/sessions.py", "plugins/active.py"):
        source = (ROOT / module).read_text()
        assert "import pickle" not in source and "pickle.loads" not in source, module


def test_round_models_are_stored_as_arrays(client: httpx.Client, db_url: str, labels: dict[str, str]) -> None:
    from catalog import sessions as store
    from eofusion.active.round import LinearModel, model_from_bytes

    session, forest = _session_with_a_round(client, labels)
    with connect(db_url) as conn:
        row = conn.execute("SELECT model FROM eofusion.rounds WHERE session_id = %s AND round = 1",
                           (session,)).fetchone()
        assert row is not None
        blob = bytes(row[0])
        assert blob.startswith(b"PK\x03\x04")  # an .npz archive
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:  # readable without pickle
            assert "weights" in archive.files and archive["weights"].dtype == np.float32
        model = model_from_bytes(blob)
        round_no, stored = store.latest_model(conn, store.get_session(conn, session))
        assert round_no == 1 and isinstance(stored, LinearModel) and isinstance(model, LinearModel)
        assert np.array_equal(stored.weights, model.weights)
        # An old pickle reads as no model (the next round refits), without being loaded.
        conn.execute("UPDATE eofusion.rounds SET model = %s WHERE session_id = %s AND round = 1",
                     (pickle.dumps({"weights": [1.0]}), session))
        assert store.latest_model(conn, store.get_session(conn, session)) == (1, None)
        conn.rollback()
    # The stored model is the one accept-annotations uses.
    ok = execute(client, "accept-annotations", {"session": session, "label": "Forest"})
    assert ok.status_code == 200, ok.text
    assert set(forest) <= set(ok.json()["items"])


def test_every_model_kind_round_trips_through_bytes(db_url: str, archives: dict) -> None:
    from catalog.sessions import pool_descriptors
    from eofusion.active.round import RoundConfig, model_from_bytes, model_to_bytes, run_round, score_pool

    with connect(db_url) as conn:
        ids, matrix, _ = pool_descriptors(conn, "eurosat", "s2")
    assert len(ids) > 20
    for kernel, negatives in (("hellinger", [5, 6, 7]), ("rbf", [5, 6, 7]), ("chi2", [5, 6]), ("hellinger", [])):
        result = run_round(matrix, [0, 1, 2], negatives, RoundConfig(kernel=kernel))  # type: ignore[arg-type]
        again = model_from_bytes(model_to_bytes(result.model))
        assert type(again) is type(result.model) and again.feature_map == result.model.feature_map
        assert np.array_equal(score_pool(again, matrix), score_pool(result.model, matrix))
    with pytest.raises(ValueError):
        model_from_bytes(pickle.dumps({"weights": [1.0]}))


# --------------------------------------------------------------------------------------------------
# 4. Two rounds of one session at once
# --------------------------------------------------------------------------------------------------


def test_concurrent_rounds_of_one_session_get_distinct_numbers(server: Any, db_url: str,
                                                               labels: dict[str, str]) -> None:
    forest = sorted(i for i, c in labels.items() if c == "Forest")
    others = sorted(i for i, c in labels.items() if c in ("SeaLake", "Industrial", "Highway"))
    with httpx.Client(base_url=server.url, timeout=120) as c:
        first = execute(c, "active-learning-round", {"pool": "eurosat", "descriptor": "s2", "feedback": [
            {"item": forest[0], "positive": True}, {"item": others[0], "positive": False}]})
    assert first.status_code == 200, first.text
    session = first.json()["session"]
    answers: list[httpx.Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    waves, width = 3, 4

    def one(k: int, barrier: threading.Barrier) -> None:
        try:
            # Each request on its own connection, so the server runs them at once.
            with httpx.Client(base_url=server.url, timeout=120) as c:
                barrier.wait(timeout=60)
                r = execute(c, "active-learning-round", {"session": session, "feedback": [
                    {"item": forest[1 + k % (len(forest) - 1)], "positive": True},
                    {"item": others[1 + k % (len(others) - 1)], "positive": False}]})
            with lock:
                answers.append(r)
        except BaseException as err:  # reported below
            errors.append(err)

    for wave in range(waves):
        barrier = threading.Barrier(width)
        threads = [threading.Thread(target=one, args=(wave * width + k, barrier)) for k in range(width)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert not errors, errors
    assert len(answers) == waves * width
    # Serialised rounds all succeed: the second waits for the first, then numbers itself after it.
    assert [r.status_code for r in answers] == [200] * len(answers), [r.text for r in answers if r.status_code != 200]
    numbers = [r.json()["round"] for r in answers]
    assert len(numbers) == len(set(numbers)), f"two rounds got one number: {sorted(numbers)}"
    with connect(db_url) as conn:
        stored = [r[0] for r in conn.execute("SELECT round FROM eofusion.rounds WHERE session_id = %s ORDER BY round",
                                             (session,))]
        marks = conn.execute("SELECT count(*) FROM eofusion.feedback WHERE session_id = %s", (session,)).fetchone()
    assert stored == list(range(1, len(numbers) + 2))
    expected = {forest[0], others[0]} | {
        x[1 + k % (len(x) - 1)] for k in range(waves * width) for x in (forest, others)}
    assert marks is not None and marks[0] == len(expected)  # every round's marks are stored


def test_a_round_number_taken_meanwhile_is_a_conflict_not_an_overwrite(client: httpx.Client, db_url: str,
                                                                       labels: dict[str, str]) -> None:
    """A writer that did not lock the session (or read it before the other round committed) gets a 409."""
    from catalog import sessions as store
    from eofusion.errors import Conflict, status_of

    session_id, _ = _session_with_a_round(client, labels)
    with connect(db_url) as first, connect(db_url) as second:
        a, b = store.get_session(first, session_id), store.get_session(second, session_id)
        assert a.rounds == b.rounds == 1
        store.save_round(first, a, 2, None, {"by": "first"})
        first.commit()
        with pytest.raises(Conflict) as taken:
            store.save_round(second, b, 2, None, {"by": "second"})
        assert status_of(taken.value) == 409
        second.rollback()
        row = second.execute("SELECT metrics FROM eofusion.rounds WHERE session_id = %s AND round = 2",
                             (session_id,)).fetchone()
    assert row is not None and row[0] == {"by": "first"}  # the first round's result is not overwritten


# --------------------------------------------------------------------------------------------------
# 5. A killed bulk load never loses a vector index
# --------------------------------------------------------------------------------------------------

_KILLED_LOAD = """
import sys, time
from catalog.bulk import deferred_vector_indexes
with deferred_vector_indexes(sys.argv[1]) as dropped:
    print("dropped", len(dropped), flush=True)
    time.sleep(600)
"""


def _kill_a_deferred_load(db_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_LOAD, db_url], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("dropped ") and int(line.split()[1]) == 3, line
    finally:
        proc.kill()  # SIGKILL: no finally block of the load runs
        proc.wait(timeout=30)


def _indexes(db_url: str) -> list[tuple[str, str]]:
    from catalog.bulk import vector_indexes

    deadline = time.monotonic() + 30
    with connect(db_url) as conn:
        while True:  # the killed session's backend may take a moment to go
            rows = [(ix.name, ix.definition) for ix in vector_indexes(conn)]
            gone = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
                                (0x0E0F,)).fetchone()
            conn.rollback()
            if (gone and gone[0] == 0) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def test_migrate_recreates_the_indexes_a_killed_bulk_load_dropped(db_url: str, archives: dict) -> None:
    from catalog.migrate import migrate

    before = _indexes(db_url)
    assert [n for n, _ in before] == ["descriptors_fused_hnsw", "descriptors_s1_hnsw", "descriptors_s2_hnsw"]
    _kill_a_deferred_load(db_url)
    assert _indexes(db_url) == []  # what the killed load left
    report = migrate(db_url)
    assert _indexes(db_url) == before
    assert sorted(report.indexes_restored) == [n for n, _ in before]
    assert migrate(db_url).indexes_restored == []  # nothing left to restore


def test_the_next_load_recreates_the_indexes_a_killed_bulk_load_dropped(db_url: str, archives: dict) -> None:
    from catalog.bulk import bulk_load_descriptors
    from catalog.sessions import pool_descriptors

    before = _indexes(db_url)
    assert len(before) == 3
    _kill_a_deferred_load(db_url)
    assert _indexes(db_url) == []
    with connect(db_url) as conn:
        ids, matrix, _ = pool_descriptors(conn, "eurosat", "s2")
        # A small load (it does not defer the indexes itself) into a scratch collection.
        report = bulk_load_descriptors(conn, "integrity-scratch", [f"copy-{i}" for i in ids[:50]],
                                       {"s2": matrix[:50]})
        conn.commit()
    assert not report.deferred
    assert _indexes(db_url) == before
    with connect(db_url) as conn:
        conn.execute("DELETE FROM eofusion.descriptors WHERE collection = 'integrity-scratch'")
        conn.commit()


def test_a_running_load_keeps_its_indexes_dropped_until_it_ends(db_url: str, archives: dict) -> None:
    from catalog.bulk import deferred_vector_indexes, restore_deferred_indexes

    before = _indexes(db_url)
    with deferred_vector_indexes(db_url) as dropped:
        assert len(dropped) == 3
        with connect(db_url) as conn:
            assert restore_deferred_indexes(conn) == []  # its owner is alive: left to it
        assert _indexes_now(db_url) == []
    assert _indexes(db_url) == before


def _indexes_now(db_url: str) -> list[tuple[str, str]]:
    from catalog.bulk import vector_indexes

    with connect(db_url) as conn:
        return [(ix.name, ix.definition) for ix in vector_indexes(conn)]


def test_a_put_that_moves_an_item_in_time_is_stored(client: httpx.Client, db_url: str, loaded: dict) -> None:
    """A replace whose new datetime widens the item's partition makes pgstac ALTER that partition in the same
    transaction; a deferred trigger on pgstac.items left events pending there and PostgreSQL refused the ALTER
    (a 500). The removed rows are queued instead, and judged at commit."""
    from tests.conftest import DEMO_COLLECTION, SCENE_ID

    scene = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
    cid = "integrity-moving"
    client.delete(f"/stac/collections/{cid}", headers=KEY)
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": cid, "license": "CC0-1.0",
                  "description": "items replaced with other times", "links": [],
                  "extent": {"spatial": {"bbox": [scene["bbox"]]}, "temporal": {"interval": [[None, None]]}}}
    assert client.post("/stac/collections", json=collection, headers=KEY).status_code in (200, 201)
    try:
        item = {"type": "Feature", "stac_version": "1.0.0", "id": "moving", "collection": cid,
                "geometry": scene["geometry"], "bbox": scene["bbox"], "links": [], "assets": {},
                "properties": {"datetime": "2020-01-01T00:00:00Z"}}
        assert client.post(f"/stac/collections/{cid}/items", json=item, headers=KEY).status_code in (200, 201)
        with connect(db_url) as conn:
            from catalog.annotations import NewAnnotation, add_annotations

            add_annotations(conn, [NewAnnotation(cid, "moving", "Forest / Mixed forest", user_id="tester")])
            conn.commit()
        for when in ("2024-06-01T00:00:00Z", "2011-03-01T00:00:00Z"):
            moved = {**item, "properties": {"datetime": when}}
            r = client.put(f"/stac/collections/{cid}/items/moving", json=moved, headers=KEY)
            assert r.status_code == 200, r.text[:500]
            again = client.get(f"/stac/collections/{cid}/items/moving").json()
            assert again["properties"]["datetime"] == when
            assert again["properties"]["eofusion:annotations"] == ["Forest", "Forest / Mixed forest"]
        with connect(db_url) as conn:
            assert _count(conn, "SELECT count(*) FROM eofusion.annotations WHERE collection = %s", cid) == 1
        assert client.delete(f"/stac/collections/{cid}/items/moving", headers=KEY).status_code == 200
        with connect(db_url) as conn:
            assert _count(conn, "SELECT count(*) FROM eofusion.annotations WHERE collection = %s", cid) == 0
    finally:
        client.delete(f"/stac/collections/{cid}", headers=KEY)
