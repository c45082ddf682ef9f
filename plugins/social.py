"""Late fusion of social-media modalities, and the spatial join of posts with image patches."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import numpy as np
from numpy.typing import NDArray
from pydantic import BeforeValidator, Field, StringConstraints

from catalog import tweet_images, tweet_search
from catalog.tweets_near import NearQuery, patches_near_posts, posts_near_label, posts_near_patch
from eofusion.errors import Conflict, InvalidInput, NotFound, TooLarge
from eofusion.fusion import fusers
from eofusion.fusion.base import RankedList
from eofusion.paths import inside
from eofusion.social.embedding import (
    DEFAULT_MODEL,
    TextEmbedder,
    UnknownEmbedderError,
    embedder_names,
    get_embedder,
)
from eofusion.social.image import (
    NOT_FOUND,
    ImageError,
    ImageFeatureExtractor,
    ImageLimits,
    concept_vectors,
    decode_image,
    read_image,
)
from plugins.base import Bound, Cost, EOFusionProcessor, Ident, ProcessInputs, Weight

Modality = Literal["text", "embedding", "time", "place", "image", "concepts"]
MODALITIES: tuple[Modality, ...] = ("text", "embedding", "time", "place", "image", "concepts")
#: The fusers the process offers: the tensor method of the EOPEN papers and the usual baselines.
Method = Literal["tensor", "rrf", "combsum", "combmnz"]
METHODS: tuple[Method, ...] = ("tensor", "rrf", "combsum", "combmnz")
#: Each modality's list depth before fusion: the usual TREC fusion depth. The lists of four modalities barely
#: overlap at the depth of the results, and fusion then only interleaves them (bench/late_fusion_eval.py).
DEFAULT_DEPTH = 1000
#: A query photo in a request: smaller caps than at ingest, since anyone may send one.
#: Most pixels of a query photo (its bytes are bounded by ``limits.upload_bytes``).
QUERY_PHOTO_PIXELS = 24_000_000
_EXTRACTOR = ImageFeatureExtractor()  # the model loads on the first query photo, once per process
#: Where ``image.href`` paths point: the data folder's ``query-photos`` unless the server says otherwise.
PHOTOS_FOLDER = "query-photos"

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
    "outputs": {"join": {"title": "Joined posts or patches", "schema": {"type": "object"},
                         "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat", "label": "Water Bodies", "text": "flood", "distance_km": 25}},
}


def _instant(value: Any) -> Any:
    # Parsed here (strict validation takes no text for a datetime after a validator); a date alone
    # ("2013-09-12") was always accepted: its midnight.
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time such as 2013-09-12T12:00:00Z") from None


def _photo_shape(value: Any) -> Any:
    # One clear reason instead of one per member of the union.
    if value is not None and not isinstance(value, (str, dict)):
        raise ValueError("must be base64 text (or a data: URL) or an object with href")
    return value


class PhotoRef(ProcessInputs):
    """A query photo named by its path in the server's query-photo folder."""

    href: Annotated[str, StringConstraints(min_length=1, max_length=1024), Field(
        title="Path of the photo, relative to the server's query-photo folder (DATA_DIR/query-photos)")]


class LateFusionInputs(ProcessInputs):
    """Inputs of ``late-fusion-search``."""

    collection: Annotated[Ident, Field(title="Posts collection")] = "tweets"
    tweet: Annotated[Ident | None, Field(title="Id of a stored post used as the query")] = None
    text: Annotated[str | None, Bound("text_chars"), Field(title="Free text")] = None
    when: Annotated[datetime | None, BeforeValidator(_instant), Field(
        alias="datetime", title="Time (RFC 3339)", description="A date alone means its 00:00.")] = None
    lon: Annotated[float | None, Field(title="Longitude", ge=-180, le=180)] = None
    lat: Annotated[float | None, Field(title="Latitude", ge=-90, le=90)] = None
    image: Annotated[
        Annotated[str, Field(
            json_schema_extra={"contentEncoding": "base64", "contentMediaType": "image/*"})] | PhotoRef | None,
        BeforeValidator(_photo_shape),
        Field(title="Query photo: base64 PNG/JPEG (or a data: URL), or {\"href\": path of a file in the "
                    "server's query-photo folder}; at most EOFUSION_LIMIT_UPLOAD_BYTES bytes (inline, also within the "
                    "request body limit) and 24 megapixels")] = None
    modalities: Annotated[list[Modality] | None, Field(title="Modalities", max_length=len(MODALITIES),
                                                       description="All of them when absent or empty.")] = None
    method: Annotated[Method, Field(title="Fusion")] = "tensor"
    depth: Annotated[int, Field(
        title="Results per modality", ge=10,
        description="How deep each modality's list is before fusion (default 1000). Fusing lists only as deep as "
                    "the results loses to the best single modality on CrisisLexT26 (bench/RESULTS.md); 100 "
                    "halves the latency at 1M posts."), Bound("depth", cap=1000)] = DEFAULT_DEPTH
    limit: Annotated[int, Field(title="Fused results", ge=1, le=500)] = 20


class NearInputs(ProcessInputs):
    """Inputs of ``tweets-near-patches``."""

    collection: Annotated[Ident, Field(title="Patch collection")]
    item: Annotated[Ident | None, Field(title="A patch item id")] = None
    label: Annotated[Ident | None, Field(title="Annotation or ground-truth label (catalogue path)")] = None
    tweets: Annotated[list[Ident] | None, Bound("reference_items"),
                      Field(title="Post ids (patches near these posts)")] = None
    tweet_collection: Annotated[Ident, Field(title="Posts collection")] = "tweets"
    text: Annotated[str | None, Bound("text_chars"), Field(title="Only posts matching these words")] = None
    distance_km: Annotated[float | None, Field(title="Search radius (km); 10 when absent or 0", ge=0,
                                               le=500)] = None
    days: Annotated[float, Field(title="Time window around the acquisition (days; 0 = any time)", ge=0,
                                 le=36500)] = 0.0
    limit: Annotated[int, Field(title="Results", ge=1), Bound("page_limit", cap=5000)] = 100


def _query_photo(value: str | PhotoRef, folder: Path, limits: ImageLimits) -> NDArray[np.uint8]:
    """Pixels of the ``image`` input: base64 (or a data: URL), or ``{"href": path in the query-photo folder}``."""
    if isinstance(value, PhotoRef):
        href = value.href
        if urlparse(href).scheme or href.startswith("/vsi"):
            raise InvalidInput("image.href must be a path in the server's query-photo folder: nothing is downloaded "
                               "and no URL or GDAL virtual file is opened")
        # A path outside the folder answers exactly like a missing photo: probing shows nothing outside.
        missing = NotFound(f"image: {NOT_FOUND}: no photo {href!r} in the server's query-photo folder")
        try:
            path = inside(folder, href, "photo")
        except NotFound:
            raise missing from None
        if not path.is_file():
            raise missing
        try:
            return read_image(path, limits)
        except ImageError as e:
            if e.reason == NOT_FOUND:
                raise missing from None
            raise InvalidInput(f"image: {e.reason}: {href}") from None
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    if len(text) > limits.max_bytes * 4 // 3 + 4:
        raise TooLarge(f"image: image_too_large: over {limits.max_bytes} bytes (EOFUSION_LIMIT_UPLOAD_BYTES)")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image: not valid base64") from None
    try:
        return decode_image(raw, limits)
    except ImageError as e:
        raise InvalidInput(f"image: {e}") from None


_LOG = logging.getLogger(__name__)
_WARMING = threading.Event()


def warm_up_default_embedder() -> None:
    """Load the default text embedder in a background thread, once per process.

    Otherwise the first free-text query after a start loads it (3 s idle, over 10 s on a loaded machine: a
    client's read timeout). The server builds every process once at start (its OpenAPI document), so this
    runs then, without delaying the start.
    """
    if _WARMING.is_set():
        return
    _WARMING.set()
    # Imported by the model's libraries (joblib); it registers an exit hook, which fails in a thread that
    # is still loading when the interpreter shuts down: import it here first.
    import concurrent.futures.process  # noqa: F401

    def load() -> None:
        try:
            get_embedder(DEFAULT_MODEL).embed(["warm up"])
        except Exception:  # a missing model shows on the first query, with its own error
            if not threading.main_thread().is_alive():
                return  # the process stopped during the load: nothing to report
            _LOG.warning("could not load the text embedder %s in advance", DEFAULT_MODEL, exc_info=True)

    # Not a daemon: a server stopped during the load waits for it (seconds) instead of tearing torch down
    # mid-call, which aborts the interpreter.
    threading.Thread(target=load, name="embedder-warm-up", daemon=False).start()


def _aware(t: datetime | None) -> datetime | None:
    # A time without an offset is the server's local time, as before.
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=datetime.now().astimezone().tzinfo)


def _query_embedder(model: str) -> TextEmbedder:
    """The embedder a collection recorded: the float and int8 MiniLM give different vectors."""
    try:
        return get_embedder(model)
    except UnknownEmbedderError:
        raise Conflict(f"the collection is embedded with {model!r}, which this server cannot "
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


class LateFusionSearchProcessor(EOFusionProcessor[LateFusionInputs]):
    """Per-modality top-N and a fused ranking."""

    inputs_model = LateFusionInputs
    read_only = True  # it reads posts, their vectors and photo features
    cost = Cost(Weight.LIGHT, "one indexed query per modality (bounded depth), at most one photo through the CNN")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, FUSION_METADATA)
        # The query-photo folder is named by the server; a process built by hand (tests, bench) has none.
        given = processor_def.get("photos_dir")
        self.photos_dir: Path | None = Path(given) if given else None
        if given:  # built by the server (a process built by hand, in tests or bench, loads on demand)
            warm_up_default_embedder()

    def run(self, inputs: LateFusionInputs) -> tuple[str, Any]:
        """Search every modality the query has and fuse."""
        collection, depth, limit, method = inputs.collection, inputs.depth, inputs.limit, inputs.method
        wanted: list[str] = list(inputs.modalities or MODALITIES)
        text, when = inputs.text, _aware(inputs.when)
        photo: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
        pixels = None
        if inputs.image is not None and {"image", "concepts"} & set(wanted):
            if isinstance(inputs.image, PhotoRef) and self.photos_dir is None:
                raise InvalidInput("image.href: this server has no query-photo folder; send the photo as base64")
            pixels = _query_photo(inputs.image, self.photos_dir or Path("."),
                                  ImageLimits(max_bytes=self.limits.upload_bytes, max_pixels=QUERY_PHOTO_PIXELS))
        lon, lat = inputs.lon, inputs.lat
        if (lon is None) != (lat is None):
            raise InvalidInput("give both lon and lat, or neither")
        # A pooled connection: opening one per call cost 30-80 ms of a ~150 ms search at 1M posts.
        with self.pooled() as conn:
            model = conn.execute("SELECT embedding_model FROM eofusion.tweet_collections WHERE collection = %s",
                                 (collection,)).fetchone()
            if model is None:
                raise NotFound(f"unknown posts collection {collection!r}")
            if pixels is not None:
                out = _EXTRACTOR.extract([pixels])
                photo = out.features[0], concept_vectors(out.probabilities)[0]
            qvec = None
            if inputs.tweet:
                # real[] arrives as a list of floats: no text parsing of the vector.
                row = conn.execute("SELECT text, datetime, ST_X(geometry), ST_Y(geometry), embedding::real[] "
                                   "FROM eofusion.tweets WHERE collection = %s AND id = %s",
                                   (collection, inputs.tweet)).fetchone()
                if row is None:
                    raise NotFound(f"no post {inputs.tweet!r} in {collection!r}")
                text = text or row[0]
                when = when or row[1]
                if lon is None and row[2] is not None:
                    lon, lat = float(row[2]), float(row[3])
                if row[4] is not None:
                    qvec = np.asarray(row[4], dtype=np.float32)
                if photo is None and {"image", "concepts"} & set(wanted):
                    photo = tweet_images.post_vectors(conn, collection, inputs.tweet)
        if not (text or when or lon is not None or photo is not None):
            raise InvalidInput("give a post id, or at least one of text, datetime, lon/lat, image")
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


class TweetsNearPatchesProcessor(EOFusionProcessor[NearInputs]):
    """Posts near patches, or patches near posts."""

    inputs_model = NearInputs
    read_only = True  # one spatial join, nothing stored
    cost = Cost(Weight.LIGHT, "one indexed spatial join (ST_DWithin) with a bounded limit")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, NEAR_METADATA)

    def run(self, inputs: NearInputs) -> tuple[str, Any]:
        """Run the spatial (and temporal) join."""
        q = NearQuery(inputs.collection, inputs.tweet_collection, (inputs.distance_km or 10.0) * 1000, inputs.days,
                      inputs.limit, inputs.text or None)
        with self.connect() as conn:
            if inputs.tweets:
                pairs = patches_near_posts(conn, q, list(inputs.tweets))
                return "application/json", {"mode": "patches-near-tweets", "results": [
                    {"patch": p.patch, "tweet": p.tweet, "distance_km": p.distance_km} for p in pairs]}
            if inputs.item:
                posts = posts_near_patch(conn, q, inputs.item)
            elif inputs.label:
                posts = posts_near_label(conn, q, inputs.label)
            else:
                raise InvalidInput("give item (a patch), label (annotated patches) or tweets (post ids)")
        return "application/json", {"mode": "tweets-near-patches", "results": [
            {"tweet": p.tweet, "patch": p.patch, "distance_km": p.distance_km, "text": p.text,
             "datetime": p.datetime.isoformat() if p.datetime else None, "lon": p.lon, "lat": p.lat}
            for p in posts]}
