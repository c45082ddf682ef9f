"""Deep-hashing models in the catalogue: storage of a trained model and its codes, and Hamming search.

A model (``eofusion.hash_models``) is trained on one collection's labelled descriptors of one kind; the
codes of every item of that collection are stored in ``eofusion.hash_codes`` as ``bit varying`` with one
HNSW index per code length (``code::bit(K)``, ``bit_hamming_ops``). The collection's *active* model is the
one searches use; activating a new model drops the codes of the previous ones, so that the index holds
one model per collection and the Hamming scan is not diluted by stale codes (their model rows stay, for
the STAC items that describe them).

Search (:func:`hamming_nearest`) takes the Hamming top ``depth`` among the items passing pgstac's filter
(exactly for a selective filter, else through the HNSW index scanned iteratively), then re-ranks those
candidates with the full descriptor the model was trained on (L2, as the float search), in one SQL
statement.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from catalog.similarity import EXACT_BELOW, ranked_rows
from eofusion.hashing import DeepHasher

BITS = (32, 64, 128)
KINDS = ("fused", "s1", "s2")
#: Hamming candidates re-ranked together with the full descriptor (the block size of ``hamming_nearest``,
#: whose blocks keep pages consistent past it). At 1M descriptors
#: (bench/similarity.py) top 50 kept the float search's class mAP at a third of its time; top 200 cost as
#: much as the float search itself. A search can ask for another depth (``rerank_depth``).
RERANK_DEPTH = 50
LabelSource = Literal["ground_truth", "annotations", "both"]


class HashingError(ValueError):
    """A hashing request that cannot be answered (no model, bad input)."""


@dataclass(frozen=True)
class StoredModel:
    """A model row of ``eofusion.hash_models`` or ``eofusion.text2patch_models`` (without its bytes).

    Attributes:
        id: Model id.
        collection: Collection it was trained on and indexes.
        descriptor: Descriptor kind it reads (fused, s1, s2).
        size: Code length K (hashing) or shared-space dimension (text-to-patch).
        created: Creation time.
        active: Whether searches use it.
        metadata: Training facts and metrics.
        stac_item_id: Id of its STAC item (collection ``models``), once published.
    """

    id: uuid.UUID
    collection: str
    descriptor: str
    size: int
    created: datetime
    active: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    stac_item_id: str | None = None


MODEL_COLUMNS = "id, collection, descriptor, {size} AS size, created, active, metadata, stac_item_id"


def stored_model(row: Any) -> StoredModel:
    """A psycopg tuple or an asyncpg record of ``MODEL_COLUMNS``."""
    meta = row[6]
    if isinstance(meta, str):  # asyncpg returns jsonb as text unless a codec is set
        meta = json.loads(meta)
    return StoredModel(uuid.UUID(str(row[0])), row[1], row[2], int(row[3]), row[4], bool(row[5]), dict(meta or {}),
                       row[7])


# -- labels and descriptors for training ------------------------------------------------------------------------


def training_labels(conn: psycopg.Connection, collection: str, source: LabelSource = "ground_truth",
                    level: int = 2) -> dict[str, set[str]]:
    """Labels of the items of a collection, as catalogue paths (several per item where the data say so).

    Args:
        conn: Connection.
        collection: Collection id.
        source: Ground truth (``eofusion.ground_truth``), user annotations, or both (union per item).
        level: 1 for level-1 classes; 2 for the finest catalogue label of each entry (its level-2 path, or
            the level-1 class where the archive maps to level 1 only).

    Returns:
        item id -> set of label paths, for the items that have at least one.
    """
    name = "coalesce(p.name, l.name)" if level == 1 else "l.path"
    tables = {"ground_truth": ["eofusion.ground_truth"], "annotations": ["eofusion.annotations"],
              "both": ["eofusion.ground_truth", "eofusion.annotations"]}[source]
    out: dict[str, set[str]] = {}
    for table in tables:
        rows = conn.execute(f"SELECT g.item_id, {name} FROM {table} g JOIN eofusion.labels l ON l.id = g.label_id "
                            "LEFT JOIN eofusion.labels p ON p.id = l.parent_id WHERE g.collection = %s",
                            (collection,)).fetchall()
        for item_id, label in rows:
            out.setdefault(item_id, set()).add(label)
    return out


# -- storage ----------------------------------------------------------------------------------------------------


def store_hash_model(conn: psycopg.Connection, collection: str, model: DeepHasher, item_ids: Sequence[str],
                     codes: Sequence[str], *, activate: bool = True, model_id: uuid.UUID | None = None) -> uuid.UUID:
    """Store a trained model and the codes of a collection's items (inside the caller's transaction).

    Args:
        conn: Connection (commit is the caller's).
        collection: Collection the codes index.
        model: The trained hasher; ``model.metadata["descriptor"]`` names the descriptor kind it reads.
        item_ids: Items encoded.
        codes: Their ``bit(K)`` literals (``DeepHasher.encode_text``), aligned with ``item_ids``.
        activate: Make it the collection's active model (dropping the codes of the previous ones).
        model_id: Id to use (a new one by default).

    Returns:
        The model id.

    Raises:
        HashingError: Unknown descriptor kind, unsupported K, or codes not matching the items.
    """
    kind = str(model.metadata.get("descriptor"))
    if kind not in KINDS:
        raise HashingError(f"the model's descriptor {kind!r} is not one of {', '.join(KINDS)}")
    if model.n_bits not in BITS:
        raise HashingError(f"{model.n_bits}-bit codes cannot be indexed; use one of {BITS}")
    if len(item_ids) != len(codes):
        raise HashingError(f"{len(codes)} codes for {len(item_ids)} items")
    mid = model_id or uuid.uuid4()
    conn.execute("INSERT INTO eofusion.hash_models (id, collection, descriptor, bits, model, metadata) "
                 "VALUES (%s, %s, %s, %s, %s, %s)",
                 (mid, collection, kind, model.n_bits, model.to_bytes(), Jsonb(model.metadata)))
    # COPY: one round trip for a whole archive instead of one INSERT per item.
    with conn.cursor() as cur, cur.copy("COPY eofusion.hash_codes (model_id, collection, item_id, bits, code) "
                                        "FROM STDIN") as copy:
        for item_id, code in zip(item_ids, codes, strict=True):
            copy.write_row((mid, collection, item_id, model.n_bits, code))
    if activate:
        activate_model(conn, "hash", mid)
    return mid


def activate_model(conn: psycopg.Connection, family: Literal["hash", "text2patch"], model_id: uuid.UUID) -> None:
    """Make a model the active one of its collection; the other models of that collection lose their rows.

    Raises:
        HashingError: Unknown model.
    """
    models, rows = ("eofusion.hash_models", "eofusion.hash_codes") if family == "hash" else \
        ("eofusion.text2patch_models", "eofusion.text2patch_embeddings")
    found = conn.execute(f"SELECT collection FROM {models} WHERE id = %s", (model_id,)).fetchone()
    if found is None:
        raise HashingError(f"no {family} model {model_id}")
    conn.execute(f"UPDATE {models} SET active = false WHERE collection = %s AND active", (found[0],))
    conn.execute(f"DELETE FROM {rows} WHERE collection = %s AND model_id <> %s", (found[0], model_id))
    conn.execute(f"UPDATE {models} SET active = true WHERE id = %s", (model_id,))


def set_stac_item(conn: psycopg.Connection, family: Literal["hash", "text2patch"], model_id: uuid.UUID,
                  stac_collection: str, item_id: str) -> None:
    """Record the STAC item that publishes a model."""
    table = "eofusion.hash_models" if family == "hash" else "eofusion.text2patch_models"
    conn.execute(f"UPDATE {table} SET stac_collection = %s, stac_item_id = %s WHERE id = %s",
                 (stac_collection, item_id, model_id))


def active_hash_model(conn: psycopg.Connection, collection: str) -> StoredModel | None:
    """The active hashing model of a collection (``None`` if it has none)."""
    row = conn.execute(f"SELECT {MODEL_COLUMNS.format(size='bits')} FROM eofusion.hash_models "
                       "WHERE collection = %s AND active", (collection,)).fetchone()
    return stored_model(row) if row else None


def hash_codes(conn: psycopg.Connection, model_id: uuid.UUID) -> dict[str, str]:
    """item id -> ``bit(K)`` literal of a model's codes."""
    rows = conn.execute("SELECT item_id, code::text FROM eofusion.hash_codes WHERE model_id = %s", (model_id,))
    return {r[0]: r[1] for r in rows}


# -- models in memory ---------------------------------------------------------------------------------------------


class _ModelCache:
    """A few deserialised models keyed by id: a model never changes once stored, so no invalidation."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[uuid.UUID, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: uuid.UUID) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: uuid.UUID, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


MODELS = _ModelCache()


# -- search (asyncpg, as the STAC API uses) ---------------------------------------------------------------------


@dataclass(frozen=True)
class HashNeighbour:
    """A result of Hamming search + re-ranking.

    Attributes:
        collection: Collection of the item.
        item_id: Item id.
        distance: L2 distance of the full descriptors (the re-ranked order).
        hamming: Hamming distance of the codes.
    """

    collection: str
    item_id: str
    distance: float
    hamming: int


#: The table of each model family.
MODEL_TABLES: dict[str, tuple[str, str]] = {"hash": ("eofusion.hash_models", "bits"),
                                            "text2patch": ("eofusion.text2patch_models", "dim")}


async def active_model_async(conn: Any, family: Literal["hash", "text2patch"], collection: str
                             ) -> StoredModel | None:
    """The active model of a family for a collection, on an asyncpg connection (``None`` if it has none)."""
    table, size = MODEL_TABLES[family]
    row = await conn.fetchrow(f"SELECT {MODEL_COLUMNS.format(size=size)} FROM {table} "
                              "WHERE collection = $1 AND active", collection)
    return stored_model(row) if row else None


async def load_model(conn: Any, family: Literal["hash", "text2patch"], stored: StoredModel,
                     loader: Callable[[bytes], Any]) -> Any:
    """The network of a stored model, deserialised by ``loader`` once per process."""
    cached = MODELS.get(stored.id)
    if cached is None:
        blob = await conn.fetchval(f"SELECT model FROM {MODEL_TABLES[family][0]} WHERE id = $1", stored.id)
        if blob is None:
            raise HashingError(f"{family} model {stored.id} is gone")
        cached = loader(bytes(blob))
        MODELS.put(stored.id, cached)
    return cached


async def active_hash_model_async(conn: Any, collection: str) -> StoredModel | None:
    """:func:`active_hash_model` on an asyncpg connection."""
    return await active_model_async(conn, "hash", collection)


async def load_hasher(conn: Any, stored: StoredModel) -> DeepHasher:
    """The network of a stored model (deserialised once per process)."""
    model = await load_model(conn, "hash", stored, DeepHasher.load)
    assert isinstance(model, DeepHasher)
    return model


def vector_literal(vec: NDArray[np.floating]) -> str:
    return "[" + ",".join(f"{v:.9g}" for v in np.asarray(vec, dtype=np.float64).tolist()) + "]"


async def hamming_nearest(conn: Any, stored: StoredModel, code: str, query: NDArray[np.floating], where: str,
                          limit: int, offset: int = 0, depth: int = RERANK_DEPTH,
                          exact_below: int = EXACT_BELOW) -> list[HashNeighbour]:
    """Hamming neighbours under pgstac's WHERE clause, re-ranked with the full descriptor in blocks of ``depth``.

    The results are the Hamming order (distance, then collection and id) cut into blocks of ``depth``, each
    block re-ranked by the descriptor: the top ``depth`` Hamming candidates in descriptor order, then the next
    ``depth``, and so on. This order does not depend on the page, so paging past ``depth`` results returns each
    item once (up to the HNSW index's recall beyond the exact path).

    Args:
        conn: asyncpg connection (``search_path`` with pgstac).
        stored: The collection's hashing model.
        code: The query's ``bit(K)`` literal.
        query: The query's full descriptor (the model's kind), for re-ranking.
        where: pgstac WHERE clause over ``pgstac.items``.
        limit: Results wanted.
        offset: Results skipped (paging).
        depth: Hamming candidates re-ranked together (the block size).
        exact_below: Hamming-sort the filtered rows exactly when at most this many pass; else use HNSW.

    Returns:
        Neighbours by block, then increasing descriptor distance (then Hamming distance, then id).
    """
    bits, kind = int(stored.size), stored.descriptor
    if bits not in BITS or kind not in KINDS:
        raise HashingError(f"model {stored.id} has an unsupported shape ({kind}, {bits} bits)")
    if len(code) != bits:
        raise HashingError(f"the query code has {len(code)} bits, the model {bits}")
    if depth < 1:
        raise HashingError(f"the re-ranking depth must be at least 1, got {depth}")
    # Counts as literals (validated ints), so that the cached generic plan knows them (see ranked_rows).
    depth, limit, offset = int(depth), int(limit), int(offset)
    n = depth * -(-(limit + offset) // depth)  # the blocks the page reaches
    # $1 goes as text: asyncpg's own codec for bit wants a BitString, and the literal is what we have.
    ham = f"(h.code::bit({bits}) <~> $1::text::bit({bits}))"
    # Literals, not parameters: the planner must see the partial index predicate (bits = K) when it plans the
    # statement. Both are validated above (K) or typed (the model id is a uuid).
    base = (f"FROM (SELECT collection, id FROM pgstac.items WHERE {where}) i JOIN eofusion.hash_codes h "
            f"ON h.collection = i.collection AND h.item_id = i.id "
            f"WHERE h.model_id = '{stored.id}'::uuid AND h.bits = {bits}")
    exact_candidates = (f"SELECT i.collection, i.id, {ham} AS ham {base} "
                        f"ORDER BY {ham} + 0, i.collection, i.id LIMIT {n}")
    index_candidates = f"SELECT i.collection, i.id, {ham} AS ham {base} ORDER BY {ham} LIMIT {n}"
    # The index scan (relaxed order) is re-sorted by the window before the blocks are cut.
    rerank = (f"SELECT c.collection, c.id, c.ham, d.{kind} <-> $2::vector AS dist, "
              f"(row_number() OVER (ORDER BY c.ham, c.collection, c.id) - 1) / {depth} AS block FROM c "
              "JOIN eofusion.descriptors d ON d.collection = c.collection AND d.item_id = c.id "
              f"WHERE d.{kind} IS NOT NULL ORDER BY block, dist, c.ham, c.collection, c.id "
              f"LIMIT {limit} OFFSET {offset}")
    rows = await ranked_rows(conn, f"FROM pgstac.items WHERE {where}",
                             f"WITH c AS MATERIALIZED ({exact_candidates}) {rerank}",
                             f"WITH c AS MATERIALIZED ({index_candidates}) {rerank}",
                             (code, vector_literal(query)), limit, exact_below, min(1000, n))
    return [HashNeighbour(r["collection"], r["id"], float(r["dist"]), int(r["ham"])) for r in rows]
