"""Photos of posts in pgvector: storage, the ingest stage that fills it, and two modality searches.

``image`` ranks posts by the cosine of pooled CNN features (photos that look alike); ``concepts``
by the cosine of square-rooted ImageNet class distributions (photos of the same things). A post
with several photos is ranked by its best one. Posts without photos have no rows, so a search by
image never returns them and a query without an image simply has no image list.

The ingest stage runs after the posts are stored (like the text embeddings): it reads each media
file from local disk (see :class:`eofusion.social.image.MediaLocator`; nothing is downloaded),
refuses bad files with a reason in the report, and stores the rest in one transaction per batch.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from catalog.db import connect, use_vectors
from eofusion.fusion.base import RankedList
from eofusion.social.image import (
    ImageError,
    ImageFeatureExtractor,
    ImageLimits,
    MediaLocator,
    concept_vectors,
    decode_image,
    read_image_bytes,
    top_concepts,
)

#: Distinct photos whose outputs are remembered during one ingest (about 9 kB each).
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class StoredImage:
    """One photo of a post with the model's outputs.

    Attributes:
        tweet_id: The post.
        idx: Position of the photo in the post's media list.
        source: The media link the photo came from.
        sha256: Hash of the file's bytes.
        width: Pixels.
        height: Pixels.
        features: 1280-d unit vector.
        concepts: 1000-d unit vector of square-rooted class probabilities.
        top_concepts: The most probable classes, ``[{"class": i, "p": p}, ...]``.
    """

    tweet_id: str
    idx: int
    source: str
    sha256: str
    width: int
    height: int
    features: NDArray[np.float32]
    concepts: NDArray[np.float32]
    top_concepts: list[dict[str, Any]]


def store_images(conn: psycopg.Connection, collection: str, images: Sequence[StoredImage], model: str) -> int:
    """Insert or replace photos of stored posts (the caller commits)."""
    use_vectors(conn)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO eofusion.tweet_images (collection, tweet_id, idx, source, sha256, width, height, model, "
            "features, concepts, top_concepts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (collection, tweet_id, idx) DO UPDATE SET source = EXCLUDED.source, "
            "sha256 = EXCLUDED.sha256, width = EXCLUDED.width, height = EXCLUDED.height, model = EXCLUDED.model, "
            "features = EXCLUDED.features, concepts = EXCLUDED.concepts, top_concepts = EXCLUDED.top_concepts, "
            "created = now()",
            [(collection, im.tweet_id, im.idx, im.source, im.sha256, im.width, im.height, model, im.features,
              im.concepts, Jsonb(im.top_concepts)) for im in images])
    return len(images)


def _ranked(conn: psycopg.Connection, modality: str, column: str, collection: str, vector: NDArray[np.float32],
            n: int, ef_search: int) -> RankedList:
    use_vectors(conn)
    q = np.asarray(vector, dtype=np.float32)
    with conn.transaction():
        # pgvector caps ef_search at 1000; the iterative scan still returns deeper lists.
        conn.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(ef_search, 2 * n))}")
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # Fetch twice n photos so posts with several photos still leave n distinct posts.
        rows = conn.execute(
            f"WITH c AS MATERIALIZED (SELECT tweet_id, {column} <=> %s AS d FROM eofusion.tweet_images "
            f"WHERE collection = %s ORDER BY {column} <=> %s LIMIT %s) "
            "SELECT tweet_id, min(d) AS d FROM c GROUP BY tweet_id ORDER BY d, tweet_id LIMIT %s",
            (q, collection, q, 2 * n, n)).fetchall()
    return RankedList(modality, [r[0] for r in rows], [1.0 - float(r[1]) for r in rows])


def image(conn: psycopg.Connection, collection: str, vector: NDArray[np.float32], n: int,
          ef_search: int = 100) -> RankedList:
    """Posts whose photos look most like the query (cosine of pooled features, HNSW), best photo per post."""
    return _ranked(conn, "image", "features", collection, vector, n, ef_search)


def concepts(conn: psycopg.Connection, collection: str, vector: NDArray[np.float32], n: int,
             ef_search: int = 100) -> RankedList:
    """Posts whose photos show the same ImageNet classes (Bhattacharyya coefficient, HNSW)."""
    return _ranked(conn, "concepts", "concepts", collection, vector, n, ef_search)


def post_vectors(conn: psycopg.Connection, collection: str, tweet_id: str
                 ) -> tuple[NDArray[np.float32], NDArray[np.float32]] | None:
    """(features, concepts) of a stored post's first photo, or None when it has none."""
    use_vectors(conn)
    row = conn.execute("SELECT features, concepts FROM eofusion.tweet_images WHERE collection = %s AND tweet_id = %s "
                       "ORDER BY idx LIMIT 1", (collection, tweet_id)).fetchone()
    if row is None:
        return None
    return np.asarray(row[0].to_numpy(), np.float32), np.asarray(row[1].to_numpy(), np.float32)


def post_images(conn: psycopg.Connection, collection: str, tweet_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Photos of posts (index, source, top concepts), for result listings."""
    out: dict[str, list[dict[str, Any]]] = {}
    for tid, idx, source, top in conn.execute(
            "SELECT tweet_id, idx, source, top_concepts FROM eofusion.tweet_images WHERE collection = %s "
            "AND tweet_id = ANY(%s) ORDER BY tweet_id, idx", (collection, list(tweet_ids))):
        out.setdefault(tid, []).append({"index": idx, "source": source, "concepts": top})
    return out


def posts_with_media(conn: psycopg.Connection, collection: str, after: str, limit: int,
                     only_missing: bool = True) -> list[tuple[str, list[dict[str, Any]]]]:
    """(id, media list) of posts that carry media, in id order after ``after`` (keyset paging)."""
    missing = ("AND NOT EXISTS (SELECT 1 FROM eofusion.tweet_images i WHERE i.collection = t.collection "
               "AND i.tweet_id = t.id)") if only_missing else ""
    rows = conn.execute(
        "SELECT id, media FROM eofusion.tweets t WHERE collection = %s AND id > %s "
        f"AND jsonb_typeof(media) = 'array' AND jsonb_array_length(media) > 0 {missing} ORDER BY id LIMIT %s",
        (collection, after, limit)).fetchall()
    return [(r[0], [m for m in r[1] if isinstance(m, dict)]) for r in rows]


@dataclass
class ImageIngestReport:
    """What the image stage did: posts seen, photos stored, photos refused by reason (with examples)."""

    posts: int = 0
    stored: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)
    max_examples: int = 5

    def skip(self, err: ImageError) -> None:
        """Count a refused photo."""
        self.skipped[err.reason] += 1
        if sum(1 for e in self.examples if e["reason"] == err.reason) < self.max_examples:
            self.examples.append({"reason": err.reason, "detail": err.detail[:200]})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"posts": self.posts, "stored": self.stored, "skipped": dict(self.skipped),
                "examples": self.examples}


@dataclass(frozen=True)
class ImageIngestConfig:
    """Options of the image stage.

    Attributes:
        locator: Where media files are found.
        limits: Size caps of a media file.
        batch_size: Posts per batch (one transaction each).
        only_missing: Skip posts that already have stored photos (a rerun resumes).
        top_k: Concepts kept per photo.
    """

    locator: MediaLocator = MediaLocator()
    limits: ImageLimits = ImageLimits()
    batch_size: int = 64
    only_missing: bool = True
    top_k: int = 5


def ingest_images(database_url: str, collection: str, extractor: ImageFeatureExtractor,
                  config: ImageIngestConfig = ImageIngestConfig(),
                  progress: Callable[[int], None] | None = None) -> ImageIngestReport:
    """Second stage: features and concepts of the photos of stored posts.

    Args:
        database_url: The catalogue.
        collection: The posts collection.
        extractor: The image model.
        config: Locator, limits and batching.
        progress: Called with the number of posts seen so far.

    Returns:
        Counts, with each refused photo's reason (missing file, remote link, junk, too large).
    """
    report = ImageIngestReport()
    cache: dict[str, tuple[NDArray[np.float32], NDArray[np.float32], list[dict[str, Any]]]] = {}
    after = ""
    while True:
        with connect(database_url) as conn:
            posts = posts_with_media(conn, collection, after, config.batch_size, config.only_missing)
        if not posts:
            return report
        after = posts[-1][0]
        report.posts += len(posts)
        todo: list[tuple[str, int, str, str, NDArray[np.uint8]]] = []
        for tid, media in posts:
            for idx, item in enumerate(media):
                try:
                    path = config.locator.locate(item, tid, idx)
                    data = read_image_bytes(path, config.limits)
                    pixels = decode_image(data, config.limits)
                except ImageError as err:
                    report.skip(ImageError(err.reason, f"post {tid} photo {idx}: {err.detail}"))
                    continue
                digest = hashlib.sha256(data).hexdigest()
                todo.append((tid, idx, str(item.get("url") or item.get("path") or path), digest, pixels))
        if len(cache) > _CACHE_MAX:
            cache.clear()
        fresh = list({t[3]: t for t in todo if t[3] not in cache}.values())
        if fresh:
            out = extractor.extract([t[4] for t in fresh])
            roots = concept_vectors(out.probabilities)
            for i, t in enumerate(fresh):  # retweets share photos: one forward pass per distinct file
                cache[t[3]] = (out.features[i], roots[i],
                               [c.as_dict() for c in top_concepts(out.probabilities[i], config.top_k)])
        rows = [StoredImage(tid, idx, src, digest, int(px.shape[1]), int(px.shape[0]), *cache[digest])
                for tid, idx, src, digest, px in todo]
        with connect(database_url) as conn, conn.transaction():
            report.stored += store_images(conn, collection, rows, extractor.name)
        if progress:
            progress(report.posts)
