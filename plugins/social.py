"""Late fusion of social-media modalities, and the spatial join of posts with image patches."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from numpy.typing import NDArray
from pygeoapi.process.base import ProcessorExecuteError

from catalog import tweet_images, tweet_search
from eofusion.config import Settings
from eofusion.fusion import fusers
from eofusion.fusion.base import RankedList
from eofusion.social.embedding import TextEmbedder, UnknownEmbedderError, embedder_names, get_embedder
from eofusion.social.image import (
    ImageError,
    ImageFeatureExtractor,
    ImageLimits,
    concept_vectors,
    decode_image,
    read_image,
)
from plugins.base import EOFusionProcessor, InputError, require

MODALITIES = ("text", "embedding", "time", "place", "image", "concepts")
#: The fusers the process offers: the tensor method of the EOPEN papers and the usual baselines.
METHODS = ("tensor", "rrf", "combsum", "combmnz")
#: Each modality's list depth before fusion: the usual TREC fusion depth. The lists of four modalities barely
#: overlap at the depth of the results, and fusion then only interleaves them (bench/late_fusion_eval.py).
DEFAULT_DEPTH = 1000
#: A query photo in a request: smaller caps than at ingest, since anyone may send one.
REQUEST_IMAGE_LIMITS = ImageLimits(max_bytes=8_000_000, max_pixels=24_000_000)
_EXTRACTOR = ImageFeatureExtractor()  # the model loads on the first query photo, once per process

_RESULT = {"type": "object", "properties": {"id": {"type": "string"}, "score": {"type": "number"},
                                            "ranks": {"type": "object"}, "text": {"type": "string"},
                                            "images": {"type": "array", "items": {"type": "object"}}}}

FUSION_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "late-fusion-search",
    "title": {"en": "Multimodal search of posts with late fusion"},
    "description": {"en": "A query post (or free text, time, place and a photo) is searched in each modality (text "
                          "words, text embedding, time, place, image features, image concepts); the ranked lists are "
                          "fused (tensor-based rank fusion by default; rrf, combsum and combmnz as baselines). Each "
                          "result carries its rank per modality. A modality the query lacks (no photo, no place...) is "
                          "simply absent. Photos: EfficientNet-Lite0 (ImageNet) pooled features (image) and class "
                          "distributions (concepts); concepts are ImageNet class indices."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["late fusion", "social media"], "links": [],
    "inputs": {
        "collection": {"title": "Posts collection", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
        "tweet": {"title": "Id of a stored post used as the query", "schema": {"type": "string"}, "minOccurs": 0,
                  "maxOccurs": 1},
        "text": {"title": "Free text", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
        "datetime": {"title": "Time (RFC 3339)", "schema": {"type": "string", "format": "date-time"},
                     "minOccurs": 0, "maxOccurs": 1},
        "lon": {"title": "Longitude", "schema": {"type": "number"}, "minOccurs": 0, "maxOccurs": 1},
        "lat": {"title": "Latitude", "schema": {"type": "number"}, "minOccurs": 0, "maxOccurs": 1},
        "image": {"title": "Query photo: base64 PNG/JPEG (or a data: URL), or {\"href\": path of a file in the "
                           "server's data folder}; at most 8 MB and 24 megapixels",
                  "schema": {"oneOf": [{"type": "string", "contentEncoding": "base64",
                                        "contentMediaType": "image/*"},
                                       {"type": "object", "required": ["href"],
                                        "properties": {"href": {"type": "string"}}}]},
                  "minOccurs": 0, "maxOccurs": 1},
        "modalities": {"title": "Modalities", "schema": {"type": "array", "items": {
            "type": "string", "enum": list(MODALITIES)}}, "minOccurs": 0, "maxOccurs": 1},
        "method": {"title": "Fusion", "schema": {"type": "string", "enum": list(METHODS)},
                   "minOccurs": 0, "maxOccurs": 1},
        "depth": {"title": "Results per modality",
                  "description": "How deep each modality's list is before fusion (default 1000). Fusing lists "
                                 "only as deep as the results loses to the best single modality on CrisisLexT26 "
                                 "(bench/RESULTS.md); 100 halves the latency at 1M posts.",
                  "schema": {"type": "integer", "minimum": 10, "maximum": 1000, "default": DEFAULT_DEPTH},
                  "minOccurs": 0, "maxOccurs": 1},
        "limit": {"title": "Fused results", "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                  "minOccurs": 0, "maxOccurs": 1},
    },
    "outputs": {"ranking": {"title": "Fused ranking", "schema": {"type": "object", "properties": {
        "results": {"type": "array", "items": _RESULT}}}, "contentMediaType": "application/json"}},
    "example": {"inputs": {"text": "flooding in Boulder", "datetime": "2013-09-12T12:00:00Z", "lon": -105.27,
                           "lat": 40.01}},
}

NEAR_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "tweets-near-patches",
    "title": {"en": "Posts near patches, patches near posts"},
    "description": {"en": "Spatial join of posts with image patches (ST_DWithin, with a time window around the "
                          "patch's acquisition): the posts about a patch or about the patches annotated with a "
                          "label (optionally only posts matching a text), or the patches near given posts."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["spatial join"], "links": [],
    "inputs": {
        "collection": {"title": "Patch collection", "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1},
        "item": {"title": "A patch item id", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
        "label": {"title": "Annotation or ground-truth label (catalogue path)", "schema": {"type": "string"},
                  "minOccurs": 0, "maxOccurs": 1},
        "tweets": {"title": "Post ids (patches near these posts)", "schema": {"type": "array",
                                                                             "items": {"type": "string"}},
                   "minOccurs": 0, "maxOccurs": 1},
        "tweet_collection": {"title": "Posts collection", "schema": {"type": "string"}, "minOccurs": 0,
                             "maxOccurs": 1},
        "text": {"title": "Only posts matching these words", "schema": {"type": "string"}, "minOccurs": 0,
                 "maxOccurs": 1},
        "distance_km": {"title": "Search radius (km)", "schema": {"type": "number", "minimum": 0, "maximum": 500},
                        "minOccurs": 0, "maxOccurs": 1},
        "days": {"title": "Time window around the acquisition (days; 0 = any time)",
                 "schema": {"type": "number", "minimum": 0}, "minOccurs": 0, "maxOccurs": 1},
        "limit": {"title": "Results", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}, "minOccurs": 0,
                  "maxOccurs": 1},
    },
    "outputs": {"join": {"title": "Joined posts or patches", "schema": {"type": "object"},
                         "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat", "label": "Water Bodies", "text": "flood", "distance_km": 25}},
}


def _num(data: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v = data.get(name)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise InputError(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _query_photo(value: Any, data_dir: Path) -> NDArray[np.uint8]:
    """Pixels of the ``image`` input: base64 (or a data: URL), or ``{"href": path under data_dir}``."""
    if isinstance(value, dict):
        href = value.get("href")
        if not isinstance(href, str) or not href:
            raise InputError("image.href must be a path (relative to the data folder) or a file:// URL")
        parsed = urlparse(href)
        if parsed.scheme not in ("", "file"):
            raise InputError("image.href must name a local file: nothing is downloaded")
        path = Path(unquote(parsed.path) if parsed.scheme else href)
        path = (path if path.is_absolute() else data_dir / path).resolve()
        if not path.is_relative_to(data_dir.resolve()):
            raise InputError("image.href must name a file inside the server's data folder")
        try:
            return read_image(path, REQUEST_IMAGE_LIMITS)
        except ImageError as e:
            raise InputError(f"image: {e.reason}: {href}") from None
    if not isinstance(value, str):
        raise InputError("image must be base64 text or an object with href")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    if len(text) > REQUEST_IMAGE_LIMITS.max_bytes * 4 // 3 + 4:
        raise InputError(f"image: image_too_large: over {REQUEST_IMAGE_LIMITS.max_bytes} bytes")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("image: not valid base64") from None
    try:
        return decode_image(raw, REQUEST_IMAGE_LIMITS)
    except ImageError as e:
        raise InputError(f"image: {e}") from None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"datetime must be RFC 3339, got {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=datetime.now().astimezone().tzinfo)


def _query_embedder(model: str) -> TextEmbedder:
    """The embedder a collection recorded: the float and int8 MiniLM give different vectors."""
    try:
        return get_embedder(model)
    except UnknownEmbedderError:
        raise ProcessorExecuteError(f"the collection is embedded with {model!r}, which this server cannot "
                                    f"load (known: {', '.join(embedder_names())})") from None


def _searches(collection: str, wanted: list[str], depth: int, text: str | None, qvec: NDArray[np.float32] | None,
              model: str | None, when: datetime | None, lon: float | None, lat: float | None,
              photo: tuple[NDArray[np.float32], NDArray[np.float32]] | None) -> list[tweet_search.Search]:
    """The searches of the modalities the query has and the caller wants, each bound to its query."""
    searches: list[tweet_search.Search] = []
    if text and "text" in wanted:
        searches.append(lambda c: tweet_search.text(c, collection, text, depth))
    if text and "embedding" in wanted and model:
        def embedding(c: Any) -> RankedList:
            # A free-text query is embedded here, beside the other modalities' queries.
            vec = qvec if qvec is not None else _query_embedder(model).embed([text])[0]
            return tweet_search.embedding(c, collection, vec, depth)
        searches.append(embedding)
    if when is not None and "time" in wanted:
        searches.append(lambda c: tweet_search.time(c, collection, when, depth))
    if lon is not None and lat is not None and "place" in wanted:
        searches.append(lambda c: tweet_search.place(c, collection, lon, lat, depth))
    if photo is not None and "image" in wanted:
        searches.append(lambda c: tweet_images.image(c, collection, photo[0], depth))
    if photo is not None and "concepts" in wanted:
        searches.append(lambda c: tweet_images.concepts(c, collection, photo[1], depth))
    return searches


class LateFusionSearchProcessor(EOFusionProcessor):
    """Per-modality top-N and a fused ranking."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, FUSION_METADATA)

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """Search every modality the query has and fuse."""
        collection = data.get("collection") or "tweets"
        depth = int(_num(data, "depth", 10, 1000) or DEFAULT_DEPTH)
        limit = int(_num(data, "limit", 1, 500) or 20)
        method = data.get("method") or "tensor"
        if method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        wanted = data.get("modalities") or list(MODALITIES)
        if not isinstance(wanted, list) or not set(wanted) <= set(MODALITIES):
            raise InputError(f"modalities are among {', '.join(MODALITIES)}; got {wanted!r}")
        text, when = data.get("text"), _time(data.get("datetime"))
        photo: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
        pixels = None
        if data.get("image") is not None and {"image", "concepts"} & set(wanted):
            pixels = _query_photo(data["image"], Settings.from_env().data_dir)
        lon, lat = _num(data, "lon", -180, 180), _num(data, "lat", -90, 90)
        if (lon is None) != (lat is None):
            raise InputError("give both lon and lat, or neither")
        # A pooled connection: opening one per call cost 30-80 ms of a ~150 ms search at 1M posts.
        with self.pooled() as conn:
            model = conn.execute("SELECT embedding_model FROM eofusion.tweet_collections WHERE collection = %s",
                                 (collection,)).fetchone()
            if model is None:
                raise InputError(f"unknown posts collection {collection!r}")
            if pixels is not None:
                out = _EXTRACTOR.extract([pixels])
                photo = out.features[0], concept_vectors(out.probabilities)[0]
            qvec = None
            if data.get("tweet"):
                # real[] arrives as a list of floats: no text parsing of the vector.
                row = conn.execute("SELECT text, datetime, ST_X(geometry), ST_Y(geometry), embedding::real[] "
                                   "FROM eofusion.tweets WHERE collection = %s AND id = %s",
                                   (collection, str(data["tweet"]))).fetchone()
                if row is None:
                    raise InputError(f"no post {data['tweet']!r} in {collection!r}")
                text = text or row[0]
                when = when or row[1]
                if lon is None and row[2] is not None:
                    lon, lat = float(row[2]), float(row[3])
                if row[4] is not None:
                    qvec = np.asarray(row[4], dtype=np.float32)
                if photo is None and {"image", "concepts"} & set(wanted):
                    photo = tweet_images.post_vectors(conn, collection, str(data["tweet"]))
        if not (text or when or lon is not None or photo is not None):
            raise InputError("give a post id, or at least one of text, datetime, lon/lat, image")
        searches = _searches(collection, wanted, depth, text, qvec, model[0], when, lon, lat, photo)
        # Each modality on its own pooled connection, all at once (no connection is held meanwhile).
        lists = [lst for lst in tweet_search.run_concurrently(searches, self.pooled) if len(lst.ids)]
        if not lists:
            return "application/json", {"collection": collection, "method": method, "modalities": [],
                                        "results": []}
        fused = fusers.create(method)(lists, limit)
        ids = list(fused.ids)
        with self.pooled() as conn:
            rows = {r[0]: r for r in conn.execute(
                "SELECT id, text, datetime, ST_X(geometry), ST_Y(geometry), event, location_source "
                "FROM eofusion.tweets WHERE collection = %s AND id = ANY(%s)", (collection, ids))}
            photos = tweet_images.post_images(conn, collection, ids)
        results = []
        for item, score, ranks in zip(ids, fused.scores.tolist(), fused.ranks, strict=True):
            r = rows.get(item)
            if r is None:  # deleted between the searches and this read
                continue
            results.append({"id": item, "score": float(score), "ranks": ranks, "text": r[1],
                            "datetime": r[2].isoformat() if r[2] else None, "lon": r[3], "lat": r[4],
                            "event": r[5], "location_source": r[6], "images": photos.get(item, [])})
        return "application/json", {"collection": collection, "method": method,
                                    "modalities": [lst.modality for lst in lists],
                                    "per_modality": {lst.modality: list(lst.ids[:limit]) for lst in lists},
                                    "results": results}


class TweetsNearPatchesProcessor(EOFusionProcessor):
    """Posts near patches, or patches near posts."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, NEAR_METADATA)

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """Run the spatial (and temporal) join."""
        collection = require(data, "collection", str)
        tweets = data.get("tweet_collection") or "tweets"
        radius = (_num(data, "distance_km", 0, 500) or 10.0) * 1000
        days = _num(data, "days", 0, 36500) or 0.0
        limit = int(_num(data, "limit", 1, 5000) or 100)
        text = data.get("text")
        words = "AND t.tsv @@ NULLIF(replace(plainto_tsquery('simple', %(text)s)::text, '&', '|'), '')::tsquery" \
            if text else ""
        args: dict[str, Any] = {"c": collection, "tc": tweets, "r": radius, "limit": limit, "text": text,
                                "days": timedelta(days=days), "anytime": days == 0}
        timing = ("AND (%(anytime)s OR t.datetime BETWEEN coalesce(i.datetime, i.end_datetime) - %(days)s "
                  "AND coalesce(i.end_datetime, i.datetime) + %(days)s)")
        with self.connect() as conn:
            if data.get("tweets"):
                ids = data["tweets"]
                if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                    raise InputError("tweets must be a list of post ids")
                args["ids"] = ids
                rows = conn.execute(
                    "SELECT i.id, t.id, ST_DistanceSphere(i.geometry, t.geometry) / 1000 AS km FROM eofusion.tweets t "
                    "JOIN pgstac.items i ON i.collection = %(c)s AND ST_DWithin(i.geometry::geography, "
                    f"t.geometry::geography, %(r)s) WHERE t.collection = %(tc)s AND t.id = ANY(%(ids)s) {timing} "
                    "AND i.content->'properties'->>'eofusion:kind' = 'patch' ORDER BY km, i.id LIMIT %(limit)s",
                    args).fetchall()
                return "application/json", {"mode": "patches-near-tweets", "results": [
                    {"patch": r[0], "tweet": r[1], "distance_km": float(r[2])} for r in rows]}
            if data.get("item"):
                args["item"] = str(data["item"])
                if conn.execute("SELECT 1 FROM pgstac.items WHERE collection = %(c)s AND id = %(item)s",
                                args).fetchone() is None:
                    raise InputError(f"no item {data['item']!r} in collection {collection!r}")
                patches = "i.id = %(item)s"
            elif data.get("label"):
                args["label"] = str(data["label"])
                if conn.execute("SELECT 1 FROM eofusion.labels WHERE lower(path) = lower(%(label)s)",
                                args).fetchone() is None:
                    raise InputError(f"label {data['label']!r} is not in the catalogue")
                patches = ("i.id IN (SELECT item_id FROM eofusion.annotations a JOIN eofusion.labels l ON "
                           "l.id = a.label_id LEFT JOIN eofusion.labels p ON p.id = l.parent_id WHERE a.collection = "
                           "%(c)s AND (lower(l.path) = lower(%(label)s) OR lower(p.path) = lower(%(label)s)) UNION "
                           "SELECT item_id FROM eofusion.ground_truth g JOIN eofusion.labels l ON l.id = g.label_id "
                           "LEFT JOIN eofusion.labels p ON p.id = l.parent_id WHERE g.collection = %(c)s AND "
                           "(lower(l.path) = lower(%(label)s) OR lower(p.path) = lower(%(label)s)))")
            else:
                raise InputError("give item (a patch), label (annotated patches) or tweets (post ids)")
            rows = conn.execute(
                "SELECT t.id, i.id, ST_DistanceSphere(i.geometry, t.geometry) / 1000 AS km, t.text, t.datetime, "
                "ST_X(t.geometry), ST_Y(t.geometry) FROM pgstac.items i JOIN eofusion.tweets t ON "
                "t.collection = %(tc)s AND ST_DWithin(i.geometry::geography, t.geometry::geography, %(r)s) "
                f"WHERE i.collection = %(c)s AND {patches} {timing} {words} ORDER BY km, t.id LIMIT %(limit)s",
                args).fetchall()
        return "application/json", {"mode": "tweets-near-patches", "results": [
            {"tweet": r[0], "patch": r[1], "distance_km": float(r[2]), "text": r[3],
             "datetime": r[4].isoformat() if r[4] else None, "lon": r[5], "lat": r[6]} for r in rows]}
