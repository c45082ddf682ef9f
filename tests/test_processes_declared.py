"""Declared processes: typed inputs validated in one place, read-only declarations behind authorisation,
non-object execution bodies refused, the project's errors kept, and ids and paths confined (issue 13)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from catalog.db import connect
from eofusion.config import Settings
from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID

KEY = {"X-API-Key": API_KEY}
#: The processes anyone may run: read-only (they write nothing anywhere) and light.
OPEN = {"list-labels", "late-fusion-search", "tweets-near-patches", "text-search"}
#: Processes that write rows or files, or cost too much for an anonymous request.
CLOSED = {"create-label", "active-learning-round", "accept-annotations", "apply-model", "validate", "label-cleaning",
          "export", "train-hashing", "train-text2patch"}


def execute(client: httpx.Client, process: str, inputs: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(f"/ogc/processes/{process}/execution", json={"inputs": inputs}, headers=headers or {},
                       timeout=300)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture(scope="module")
def posts(loaded: dict, db_url: str) -> str:
    """The conftest's located posts ('tweets'), registered as a posts collection for late fusion."""
    with connect(db_url) as conn:
        conn.execute("INSERT INTO eofusion.tweet_collections (collection) VALUES ('tweets') ON CONFLICT DO NOTHING")
        conn.commit()
    return "tweets"


def _png(path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


# -- descriptions come from the models --------------------------------------------------------------------------


def test_every_description_has_the_inputs_of_its_model(client: httpx.Client, settings: Settings) -> None:
    from plugins.base import bind_limits, input_schemas
    from server.ogc import PROCESSES, process_class

    assert set(PROCESSES) == OPEN | CLOSED
    for pid in PROCESSES:
        model = bind_limits(process_class(pid).inputs_model, settings.limits)
        described = client.get(f"/ogc/processes/{pid}", params={"f": "json"}).json()["inputs"]
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        assert set(described) == set(fields), pid
        for name, schema in input_schemas(model).items():
            expected = {k: v for k, v in schema.items() if k not in ("title", "description")}
            if expected.get("default", 0) is None:
                del expected["default"]
            entry = described[name]
            assert entry["schema"] == expected, (pid, name)
            assert entry["title"] == schema.get("title", name), (pid, name)
            assert entry["minOccurs"] == (1 if fields[name].is_required() else 0) and entry["maxOccurs"] == 1
    # The installation's limits are in the schemas, not numbers written by hand.
    limits = settings.limits
    fusion = client.get("/ogc/processes/late-fusion-search", params={"f": "json"}).json()["inputs"]
    assert fusion["text"]["schema"]["maxLength"] == limits.text_chars
    assert fusion["depth"]["schema"]["maximum"] == min(limits.depth, 1000)
    near = client.get("/ogc/processes/tweets-near-patches", params={"f": "json"}).json()["inputs"]
    assert near["tweets"]["schema"]["maxItems"] == limits.reference_items
    assert near["text"]["schema"]["maxLength"] == limits.text_chars
    rounds = client.get("/ogc/processes/active-learning-round", params={"f": "json"}).json()["inputs"]
    assert rounds["feedback"]["schema"]["maxItems"] == limits.marks_per_round
    assert rounds["feedback"]["schema"]["items"]["required"] == ["item", "positive"]


# -- one validation for every execution ---------------------------------------------------------------------------


@pytest.mark.parametrize(("process", "inputs", "needle"), [
    ("list-labels", {"level": "1"}, "input 'level'"),
    ("list-labels", {"levle": 1}, "unknown input 'levle'"),
    ("text-search", {"collection": DEMO_COLLECTION, "text": "   "}, "input 'text'"),
    ("late-fusion-search", {"text": "flood", "depth": 5000}, "input 'depth'"),
    ("late-fusion-search", {"text": "flood", "lon": "9", "lat": 40}, "input 'lon'"),
    ("late-fusion-search", {"text": "flood", "datetime": "yesterday"}, "input 'datetime'"),
    ("tweets-near-patches", {"collection": DEMO_COLLECTION, "item": "x", "limit": 0}, "input 'limit'"),
    ("tweets-near-patches", {"collection": DEMO_COLLECTION, "tweets": [1, 2]}, "input 'tweets.0'"),
    ("active-learning-round", {"pool": "eurosat", "n_top": "5", "feedback": []}, "input 'n_top'"),
    ("active-learning-round", {"pool": "eurosat", "feedback": [{"item": "Forest_1031"}]},
     "missing input 'feedback.0.positive'"),
    ("validate", {"collection": "eurosat", "rounds": 21}, "input 'rounds'"),
    ("export", {"collection": ""}, "input 'collection'"),
    ("train-hashing", {"collection": "eurosat", "epochs": 2.5}, "input 'epochs'"),
])
def test_a_wrong_input_is_a_400_naming_it(client: httpx.Client, process: str, inputs: dict, needle: str) -> None:
    r = execute(client, process, inputs, KEY)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "InvalidParameterValue" and needle in body["description"], body


def test_nul_characters_and_non_finite_numbers_are_a_400(client: httpx.Client, posts: str) -> None:
    nul = execute(client, "tweets-near-patches", {"collection": DEMO_COLLECTION, "item": "a\x00b"})
    assert nul.status_code == 400 and "input 'item': text may not contain NUL" in nul.text, nul.text
    nul_mark = execute(client, "active-learning-round", {"pool": "eurosat", "feedback": [
        {"item": "Forest_1031\x00", "positive": True}]}, KEY)
    assert nul_mark.status_code == 400 and "input 'feedback.0.item'" in nul_mark.text, nul_mark.text
    for number in (b"NaN", b"Infinity", b"-Infinity"):
        r = client.post("/ogc/processes/late-fusion-search/execution", headers={"Content-Type": "application/json"},
                        content=b'{"inputs": {"collection": "tweets", "text": "flood", "lon": %s, "lat": 40}}' % number)
        assert r.status_code == 400 and "input 'lon'" in r.text, (number, r.text)


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"null", b"42", b'{"inputs": 5}', b'{"inputs": [1]}',
                                  b'{"inputs": null}', b'{"subscriber": "x"}', b'{"outputs": 3}',
                                  b'{"response": ["raw"]}', b"\xff\xfe{}", b"[" * 100_000])
def test_an_execution_body_that_is_not_an_object_is_a_400(client: httpx.Client, body: bytes) -> None:
    r = client.post("/ogc/processes/list-labels/execution", content=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "InvalidParameterValue"
    # The connection and the server stay usable.
    assert execute(client, "list-labels", {"level": 1}).status_code == 200


# -- authorisation follows the declarations -----------------------------------------------------------------------


def test_only_read_only_light_processes_run_without_a_key(client: httpx.Client) -> None:
    # An invalid input reaches the process's validation only if authorisation let the request in.
    for pid in sorted(OPEN | CLOSED):
        r = execute(client, pid, {"__not_an_input": 1})
        expected = 400 if pid in OPEN else 401
        assert r.status_code == expected, (pid, r.status_code, r.text)
    described = {pid: client.get(f"/ogc/processes/{pid}", params={"f": "json"}).json() for pid in OPEN | CLOSED}
    assert {pid for pid, d in described.items() if d["eofusion:readOnly"]} == OPEN | {"label-cleaning"}
    assert described["label-cleaning"]["eofusion:cost"]["weight"] == "heavy"
    # An unknown process is a 404, with or without a key, and never runs anything.
    assert execute(client, "no-such-process", {}).status_code == 404
    assert execute(client, "no-such-process", {}, KEY).status_code == 404


def test_anonymous_writes_are_refused_and_write_nothing(client: httpx.Client, archives: dict, loaded: dict,
                                                        data_dir: Path) -> None:
    valid = {
        "validate": {"collection": "eurosat", "descriptors": ["s2"], "rounds": 1, "seeds": 1},
        "label-cleaning": {"collection": "eurosat", "source": "ground_truth"},
        "export": {"collection": DEMO_COLLECTION},
        "train-hashing": {"collection": "eurosat", "epochs": 1},
        "train-text2patch": {"collection": "eurosat", "epochs": 1},
        "create-label": {"parent": "Forest", "name": "Anonymous grove"},
        "active-learning-round": {"pool": "eurosat", "feedback": [{"item": "Forest_1031", "positive": True}]},
    }
    before = files_under(data_dir / "files")
    for pid, inputs in valid.items():
        r = execute(client, pid, inputs)
        assert r.status_code == 401, (pid, r.status_code, r.text[:300])
        wrong = execute(client, pid, inputs, {"X-API-Key": "not-the-key"})
        assert wrong.status_code == 403, (pid, wrong.status_code)
    assert files_under(data_dir / "files") == before
    labels = execute(client, "list-labels", {"parent": "Forest"}).json()["labels"]
    assert "Anonymous grove" not in {lab["name"] for lab in labels}


def test_read_only_processes_run_anonymously(client: httpx.Client, posts: str, loaded: dict) -> None:
    assert execute(client, "list-labels", {"level": 1}).status_code == 200
    fused = execute(client, "late-fusion-search", {"collection": posts, "text": "Boulder flood", "limit": 5})
    assert fused.status_code == 200, fused.text
    assert fused.json()["results"] and "text" in fused.json()["modalities"]
    near = execute(client, "tweets-near-patches", {"collection": DEMO_COLLECTION, "tweets": [
        t.id for t in loaded["tweets"]][:3], "distance_km": 500})
    assert near.status_code == 200, near.text
    # text-search runs (it is refused for want of a model, not of a key).
    text = execute(client, "text-search", {"collection": DEMO_COLLECTION, "text": "forest"})
    assert text.status_code == 400 and "has no text-to-patch model" in text.text


# -- the project's errors keep their status -----------------------------------------------------------------------


def test_unknown_ids_are_a_404(client: httpx.Client, posts: str) -> None:
    unknown_session = execute(client, "accept-annotations", {"session": "00000000-0000-4000-8000-000000000000",
                                                             "label": "Forest"}, KEY)
    assert unknown_session.status_code == 404, unknown_session.text
    assert unknown_session.json()["code"] == "NotFound"
    round_of_ghost = execute(client, "active-learning-round", {
        "session": "00000000-0000-4000-8000-000000000000", "feedback": [{"item": "x", "positive": True}]}, KEY)
    assert round_of_ghost.status_code == 404, round_of_ghost.text
    assert execute(client, "late-fusion-search", {"collection": "no-such-posts", "text": "x"}).status_code == 404
    ghost_patch = execute(client, "tweets-near-patches", {"collection": DEMO_COLLECTION, "item": "ghost"})
    assert ghost_patch.status_code == 404 and "ghost" in ghost_patch.text


# -- bounded inputs -----------------------------------------------------------------------------------------------


def test_over_long_texts_and_lists_are_refused(client: httpx.Client, settings: Settings, posts: str) -> None:
    limits = settings.limits
    long_text = "flood " * (limits.text_chars // 6 + 1)
    assert len(long_text) > limits.text_chars
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("late-fusion-search", {"collection": posts, "text": long_text}, "input 'text'"),
        ("tweets-near-patches", {"collection": DEMO_COLLECTION, "item": f"{SCENE_ID}_L480_r0000_c0003",
                                 "text": long_text}, "input 'text'"),
        ("text-search", {"collection": DEMO_COLLECTION, "text": long_text}, "input 'text'"),
        ("tweets-near-patches", {"collection": DEMO_COLLECTION, "tweets": [
            f"post-{i}" for i in range(limits.reference_items + 1)]}, "input 'tweets'"),
        ("active-learning-round", {"pool": "eurosat", "feedback": [
            {"item": f"Forest_{i}", "positive": True} for i in range(limits.marks_per_round + 1)]},
         "input 'feedback'"),
    ]
    for pid, inputs, needle in cases:
        r = execute(client, pid, inputs, KEY)
        assert 400 <= r.status_code < 500, (pid, r.status_code, r.text[:300])
        assert needle in r.text, (pid, r.text[:300])
    # At the bound itself the text is taken.
    ok = execute(client, "late-fusion-search", {"collection": posts, "text": "x" * limits.text_chars})
    assert ok.status_code == 200, ok.text[:300]


# -- ids and paths ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traversal_scene(loaded: dict, db_url: str) -> dict[str, str]:
    """A keyed user's collection whose scene id climbs out of the export folder, with one annotated patch."""
    from catalog.annotations import NewAnnotation, add_annotations

    cid, sid = "evil-export", "../../../pwned"  # files/exports/<run>/../../../ is the data folder
    with connect(db_url) as conn:
        def one(query: str, *args: str) -> Any:
            row = conn.execute(query, args).fetchone()
            assert row is not None, (query, args)
            return row[0]

        coll = one("SELECT content FROM pgstac.collections WHERE id = %s", DEMO_COLLECTION)
        # Whole items (pgstac stores them dehydrated).
        scene = one("SELECT pgstac.get_item(%s, %s)", SCENE_ID, DEMO_COLLECTION)
        patch_id = f"{SCENE_ID}_L480_r0000_c0003"
        patch = one("SELECT pgstac.get_item(%s, %s)", patch_id, DEMO_COLLECTION)
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps({**coll, "id": cid}),))
        conn.execute("SELECT pgstac.create_item(%s::jsonb)",
                     (json.dumps({**scene, "id": sid, "collection": cid, "links": []}),))
        conn.execute("SELECT pgstac.create_item(%s::jsonb)", (json.dumps({
            **patch, "collection": cid, "links": [],
            "properties": {**patch["properties"], "eofusion:scene": sid}}),))
        add_annotations(conn, [NewAnnotation(cid, patch_id, "Water Bodies / Sea and ocean", user_id="tester")])
        conn.commit()
    return {"collection": cid, "scene": sid}


def test_an_export_of_a_traversal_scene_id_is_a_400(client: httpx.Client, traversal_scene: dict[str, str],
                                                    data_dir: Path) -> None:
    before = files_under(data_dir)
    r = execute(client, "export", {"collection": traversal_scene["collection"]}, KEY)
    assert r.status_code == 400, r.text[:300]
    assert "scene id" in r.text and "cannot name a file" in r.text
    written = files_under(data_dir) - before
    assert not [p for p in written if "pwned" in p], written


def test_a_photo_href_outside_the_photo_folder_is_refused(client: httpx.Client, posts: str,
                                                          data_dir: Path) -> None:
    def photo(href: str) -> httpx.Response:
        return execute(client, "late-fusion-search", {"collection": posts, "image": {"href": href},
                                                      "modalities": ["image"]})

    # A real photo, in the data folder but not in its query-photo folder.
    _png(data_dir / "ogc" / "photo.png")
    assert (data_dir / "ogc" / "pygeoapi-config.yml").exists()
    missing = photo("ogc/nothing-here.png")
    assert missing.status_code == 404, missing.text
    for href in ("ogc/photo.png", "ogc/pygeoapi-config.yml", "../ogc/photo.png", "../ogc/pygeoapi-config.yml",
                 str(data_dir / "ogc" / "photo.png"), "../../../../../../etc/passwd"):
        r = photo(href)
        # Exactly like a missing photo: what exists outside the folder does not show.
        assert r.status_code == missing.status_code, (href, r.status_code, r.text[:300])
        assert r.json()["description"] == missing.json()["description"].replace("ogc/nothing-here.png", href)
    for href in ("/vsicurl/http://127.0.0.1:1/cat.png", "file:///etc/passwd", "http://127.0.0.1:1/cat.png"):
        r = photo(href)
        assert r.status_code == 400 and "nothing is downloaded" in r.text, (href, r.text[:300])
    # Inside the folder the photo is read.
    _png(data_dir / "query-photos" / "inside.png")
    ok = photo("inside.png")
    assert ok.status_code == 200, ok.text[:300]


def test_a_training_collection_id_that_cannot_name_a_file_is_a_400(client: httpx.Client) -> None:
    r = execute(client, "train-hashing", {"collection": "../../models/x"}, KEY)
    assert r.status_code == 400 and "input 'collection'" in r.text, r.text


def test_base64_photo_still_accepted(client: httpx.Client, posts: str, tmp_path: Path) -> None:
    _png(tmp_path / "q.png")
    data = base64.b64encode((tmp_path / "q.png").read_bytes()).decode()
    r = execute(client, "late-fusion-search", {"collection": posts, "image": data, "modalities": ["image"]})
    assert r.status_code == 200, r.text[:300]
