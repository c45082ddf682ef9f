"""Photos of posts: the real EfficientNet-Lite0 model on real photographs (scikit-image) attached to real
CrisisLex posts, stored in the real database and searched through the late-fusion process."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as photos

from catalog.db import connect
from eofusion.social.image import ImageError, ImageFeatureExtractor, MediaLocator, decode_image, top_concepts
from tests.conftest import ROOT, data_path
from tests.numerics import assert_unit_norm, assert_within, gamma

#: ImageNet-1k class indices of domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat).
CAT_CLASSES = set(range(281, 286))
#: ImageNet-1k class indices of espresso and cup.
COFFEE_CLASSES = {967, 968}
COLLECTION = "photo-posts"
COLORADO = data_path("crisislex") / "CrisisLexT26" / "2013_Colorado_floods"


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _real_posts(n: int) -> list[tuple[str, str]]:
    """(id, text) of the first ``n`` labelled Colorado-flood posts."""
    path = next(COLORADO.glob("*-tweets_labeled.csv"))
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = [({k.strip(): v for k, v in r.items()}) for r in csv.DictReader(f)]
    return [(r["Tweet ID"].strip("'"), r["Tweet Text"]) for r in rows[:n]]


def _query_photo() -> np.ndarray:
    """The cat photo as another post would carry it: mirrored and cropped, not the stored file."""
    cat = photos.chelsea()
    return np.ascontiguousarray(cat[20:280, 40:420][:, ::-1])


@pytest.fixture(scope="module")
def ingested(settings_env: dict[str, str], db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Posts in Twitter v1.1 JSON lines, some with photos (local path, --media-dir by name or id), some bad."""
    root = tmp_path_factory.mktemp("photo-posts")
    media = root / "media"
    media.mkdir()
    Image.fromarray(photos.chelsea()).save(root / "chelsea.jpg", quality=90)
    Image.fromarray(photos.coffee()).save(media / "coffee.jpg", quality=90)
    posts = _real_posts(9)
    Image.fromarray(photos.astronaut()).save(media / f"{posts[2][0]}.png")
    (media / "junk.jpg").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image at all")
    # Huge dimensions in a small file: refused from the header, before any pixel is decoded.
    Image.fromarray(photos.chelsea()).resize((8000, 6000), Image.Resampling.NEAREST).save(media / "huge.jpg",
                                                                                         quality=20)
    links = {
        0: [(root / "chelsea.jpg").as_uri()],
        1: ["https://pbs.twimg.com/media/coffee.jpg"],
        2: ["https://pbs.twimg.com/media/BTxyz.png"],  # found as ID.png in --media-dir
        3: ["https://pbs.twimg.com/media/junk.jpg"],
        4: ["https://pbs.twimg.com/media/huge.jpg"],
        5: ["https://pbs.twimg.com/media/never-downloaded.jpg"],
    }
    lines = []
    for i, (tid, text) in enumerate(posts):
        obj: dict = {"id_str": tid, "full_text": text, "created_at": "Thu Sep 12 14:00:00 +0000 2013", "lang": "en"}
        if i in links:
            obj["extended_entities"] = {"media": [{"type": "photo", "media_url_https": u} for u in links[i]]}
        lines.append(json.dumps(obj))
    path = root / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-m", "cli", "ingest", "tweets", "twitter", str(path),
                          "--collection", COLLECTION, "--media-dir", str(media), "--no-geoparse"],
                         cwd=ROOT, env={**os.environ, **settings_env}, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {"report": report, "ids": [p[0] for p in posts], "texts": [p[1] for p in posts], "media": media}


def _search(client: httpx.Client, inputs: dict) -> httpx.Response:
    return client.post("/ogc/processes/late-fusion-search/execution", json={"inputs": inputs})


def test_extractor_outputs_and_cat_concept() -> None:
    out = ImageFeatureExtractor().extract([photos.chelsea(), photos.coffee(), photos.camera()])
    assert out.features.shape == (3, 1280) and out.probabilities.shape == (3, 1000)
    assert_unit_norm(out.features, axis=1)
    # A softmax: each probability divided once by a k-term float32 sum, then the check's own k-term sum.
    k = out.probabilities.shape[1]
    assert_within(out.probabilities.sum(axis=1), np.ones(len(out.probabilities)), 2 * gamma(k + 2, np.float32))
    assert top_concepts(out.probabilities[0], 1)[0].index in CAT_CLASSES
    assert top_concepts(out.probabilities[1], 1)[0].index in COFFEE_CLASSES
    with pytest.raises(ImageError) as bad:
        decode_image(b"GIF89a but nothing else")
    assert bad.value.reason == "unreadable_image"


def test_media_locator_never_downloads(tmp_path: Path) -> None:
    (tmp_path / "123_1.png").write_bytes(_png(photos.coffee()))
    found = MediaLocator(tmp_path).locate({"url": "https://example.org/x/abc.jpg"}, "123", 1)
    assert found == tmp_path / "123_1.png"
    with pytest.raises(ImageError) as remote:
        MediaLocator().locate({"url": "https://example.org/x/abc.jpg"}, "123", 0)
    assert remote.value.reason == "media_not_local"
    with pytest.raises(ImageError) as missing:
        MediaLocator().locate({"url": (tmp_path / "gone.jpg").as_uri()}, "123", 0)
    assert missing.value.reason == "media_file_not_found"


def test_ingest_stores_photos_and_reports_bad_ones(ingested: dict, db_url: str) -> None:
    report = ingested["report"]
    assert report["stored"] == len(ingested["ids"])
    images = report["images"]
    assert images["posts"] == 6 and images["stored"] == 3
    assert images["skipped"] == {"unreadable_image": 1, "image_too_large": 1, "media_not_local": 1}
    reasons = {e["reason"]: e["detail"] for e in images["examples"]}
    assert ingested["ids"][3] in reasons["unreadable_image"] and "8000x6000" in reasons["image_too_large"]
    with connect(db_url) as conn:
        rows: dict[str, list[dict]] = dict(conn.execute(
            "SELECT tweet_id, top_concepts FROM eofusion.tweet_images WHERE collection = %s", (COLLECTION,)).fetchall())
    ids = ingested["ids"]
    assert set(rows) == {ids[0], ids[1], ids[2]}
    assert rows[ids[0]][0]["class"] in CAT_CLASSES  # the cat photo is labelled a cat class
    assert rows[ids[1]][0]["class"] in COFFEE_CLASSES


def test_rerun_resumes_without_duplicates(ingested: dict, settings_env: dict[str, str], db_url: str) -> None:
    # --embed-only reads no file: PATH only has to exist.
    out = subprocess.run([sys.executable, "-m", "cli", "ingest", "tweets", "twitter", str(ingested["media"]),
                          "--collection", COLLECTION, "--embed-only", "--media-dir", str(ingested["media"])],
                         cwd=ROOT, env={**os.environ, **settings_env}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    again = json.loads(out.stdout.strip().splitlines()[-1])["images"]
    assert again["stored"] == 0 and again["posts"] == 3  # only the posts whose photos were refused
    with connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM eofusion.tweet_images WHERE collection = %s",
                           (COLLECTION,)).fetchone()
    assert row is not None and row[0] == 3


def test_query_photo_finds_the_cat_post(ingested: dict, client: httpx.Client) -> None:
    ids = ingested["ids"]
    query = base64.b64encode(_png(_query_photo())).decode()
    r = _search(client, {"collection": COLLECTION, "image": query, "modalities": ["image", "concepts"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities"] == ["image", "concepts"]
    ranked = body["per_modality"]["image"]
    assert ranked[0] == ids[0]
    assert ranked.index(ids[1]) > 0  # the coffee post comes lower
    assert body["per_modality"]["concepts"][0] == ids[0]
    first = body["results"][0]
    assert first["id"] == ids[0] and first["images"][0]["concepts"][0]["class"] in CAT_CLASSES
    # Only posts with photos can answer an image-only query.
    assert {res["id"] for res in body["results"]} <= {ids[0], ids[1], ids[2]}


def test_fused_text_and_photo_ranks_per_modality(ingested: dict, client: httpx.Client, data_dir: Path) -> None:
    ids, texts = ingested["ids"], ingested["texts"]
    folder = data_dir / "query-photos"
    folder.mkdir(exist_ok=True)
    (folder / "cat.png").write_bytes(_png(_query_photo()))
    r = _search(client, {"collection": COLLECTION, "text": texts[0], "image": {"href": "cat.png"},
                         "method": "rrf"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"text", "embedding", "image", "concepts"} <= set(body["modalities"])
    top = body["results"][0]
    assert top["id"] == ids[0] and {"text", "image", "concepts"} <= set(top["ranks"])
    # Posts without photos are still found by their words, with no image rank.
    plain = [res for res in body["results"] if not res["images"]]
    assert plain and all("image" not in res["ranks"] for res in plain)


def test_query_by_post_id_uses_its_stored_photo(ingested: dict, client: httpx.Client) -> None:
    ids = ingested["ids"]
    r = _search(client, {"collection": COLLECTION, "tweet": ids[1], "modalities": ["image"]})
    assert r.status_code == 200, r.text
    assert r.json()["per_modality"]["image"][0] == ids[1]
    r = _search(client, {"collection": COLLECTION, "tweet": ids[7], "modalities": ["text", "image"]})
    assert r.status_code == 200, r.text
    assert r.json()["modalities"] == ["text"]  # a post without photos simply has no image list


def test_bad_query_photos_are_4xx(ingested: dict, client: httpx.Client, data_dir: Path) -> None:
    junk = base64.b64encode(b"\xff\xd8\xff\xe0 certainly not a JPEG" * 10).decode()
    cases: list[tuple[dict[str, object], str]] = [
        ({"image": junk}, "unreadable_image"),
        ({"image": "not base64 at all!"}, "base64"),
        ({"image": base64.b64encode((ingested["media"] / "huge.jpg").read_bytes()).decode()}, "image_too_large"),
        # Paths outside the query-photo folder (DATA_DIR/query-photos) answer like a missing photo.
        ({"image": {"href": "/etc/passwd"}}, "media_file_not_found: no photo '/etc/passwd' in the server's "
                                             "query-photo folder"),
        ({"image": {"href": "../outside.png"}}, "media_file_not_found: no photo '../outside.png'"),
        ({"image": {"href": "https://example.org/cat.png"}}, "nothing is downloaded"),
        ({"image": {"href": "none.png"}}, "media_file_not_found: no photo 'none.png'"),
        ({"image": 42}, "base64"),
    ]
    for inputs, words in cases:
        r = _search(client, {"collection": COLLECTION, **inputs})
        assert 400 <= r.status_code < 500, (inputs, r.status_code, r.text[:300])
        assert words in r.text, (words, r.text[:300])


def test_process_description_offers_photos(client: httpx.Client) -> None:
    r = client.get("/ogc/processes/late-fusion-search", params={"f": "json"})
    assert r.status_code == 200
    inputs = r.json()["inputs"]
    assert {"image", "concepts"} <= set(inputs["modalities"]["schema"]["items"]["enum"])
    assert "base64" in inputs["image"]["title"] and "href" in json.dumps(inputs["image"]["schema"])
