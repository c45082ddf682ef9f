"""Text-to-patch models in the catalogue: storage of a trained projection and its patch embeddings, and
free-text search under pgstac's filters.

A model (``eofusion.text2patch_models``) maps a collection's descriptors of one kind and MiniLM sentence
embeddings into one 64-d space. The unit patch vectors of every item of the collection are stored in
``eofusion.text2patch_embeddings`` (``vector(64)``, cosine HNSW); a query text is embedded by the same
sentence encoder, projected by the model's text head and ranked by cosine distance, exactly or through
the index like :func:`catalog.similarity.nearest`.

Training texts per class (:func:`training_classes`): archive classes with a hand-written description
(EuroSAT's, :data:`eofusion.text2patch.EUROSAT_CLASS_TEXTS`) keep it; any other label is described by the
catalogue (``catalog/labels.json``): its level-2 name and its level-1 class with that class's description.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from catalog.hashing import (
    KINDS,
    MODEL_COLUMNS,
    HashingError,
    LabelSource,
    StoredModel,
    activate_model,
    active_model_async,
    load_model,
    stored_model,
    vector_literal,
)
from catalog.similarity import EXACT_BELOW, Neighbour, ef_search, ranked_rows, ranking_sql
from eofusion.text2patch import EUROSAT_CLASS_TEXTS, ClassText, Text2PatchModel, load_catalogue

#: Dimension of the shared space (the typed column ``vector(64)``).
SHARED_DIM = 64


def training_classes(conn: psycopg.Connection, collection: str, source: LabelSource = "ground_truth",
                     ) -> tuple[dict[str, set[str]], dict[str, ClassText]]:
    """The classes of a collection's labelled items and how each maps onto the catalogue's texts.

    Args:
        conn: Connection.
        collection: Collection id.
        source: Ground truth, annotations, or both.

    Returns:
        ``(item id -> classes, class -> ClassText)``. A ground-truth entry whose archive class has a
        hand-written description (EuroSAT) is that class; any other entry is its catalogue label path.
    """
    parts = {"ground_truth": ["g"], "annotations": ["a"], "both": ["g", "a"]}[source]
    sql = {
        "g": "SELECT g.item_id, g.source_label, l.path, l.name, coalesce(p.name, l.name) FROM eofusion.ground_truth g "
             "JOIN eofusion.labels l ON l.id = g.label_id LEFT JOIN eofusion.labels p ON p.id = l.parent_id "
             "WHERE g.collection = %s",
        "a": "SELECT a.item_id, NULL, l.path, l.name, coalesce(p.name, l.name) FROM eofusion.annotations a "
             "JOIN eofusion.labels l ON l.id = a.label_id LEFT JOIN eofusion.labels p ON p.id = l.parent_id "
             "WHERE a.collection = %s",
    }
    level1 = {c["name"]: c for c in load_catalogue()["classes"]}
    by_item: dict[str, set[str]] = {}
    texts: dict[str, ClassText] = {}
    for part in parts:
        for item_id, source_label, path, name, parent in conn.execute(sql[part], (collection,)).fetchall():
            if source_label in EUROSAT_CLASS_TEXTS:
                cls, ct = source_label, EUROSAT_CLASS_TEXTS[source_label]
            elif parent in level1:
                # A user-defined level-2 label is not in labels.json: describe it by its name only.
                known = {child["name"] for child in level1[parent]["children"]}
                level2 = (name,) if path != parent and name in known else ()
                cls = path
                ct = ClassText(parent, level2, name if path != parent else level1[parent]["description"])
            else:
                continue  # a label outside the catalogue file has no text to learn from
            by_item.setdefault(item_id, set()).add(cls)
            texts[cls] = ct
    return by_item, texts


def store_text2patch_model(conn: psycopg.Connection, collection: str, model: Text2PatchModel,
                           item_ids: Sequence[str], embeddings: NDArray[np.floating], *, activate: bool = True,
                           model_id: uuid.UUID | None = None) -> uuid.UUID:
    """Store a trained text-to-patch model and the patch embeddings of a collection (caller commits).

    Args:
        conn: Connection.
        collection: Collection the embeddings index.
        model: Trained model; ``model.metadata["descriptor"]`` names the descriptor kind it reads.
        item_ids: Items embedded.
        embeddings: ``(n, 64)`` unit vectors (``Text2PatchModel.embed_patches``).
        activate: Make it the collection's active text model.
        model_id: Id to use (new by default).

    Returns:
        The model id.

    Raises:
        HashingError: Unknown descriptor, wrong dimension or misaligned rows.
    """
    kind = str(model.metadata.get("descriptor"))
    emb = np.asarray(embeddings, dtype=np.float32)
    if kind not in KINDS:
        raise HashingError(f"the model's descriptor {kind!r} is not one of {', '.join(KINDS)}")
    if emb.ndim != 2 or emb.shape != (len(item_ids), SHARED_DIM):
        raise HashingError(f"expected ({len(item_ids)}, {SHARED_DIM}) embeddings, got {emb.shape}")
    mid = model_id or uuid.uuid4()
    conn.execute("INSERT INTO eofusion.text2patch_models (id, collection, descriptor, dim, model, metadata) "
                 "VALUES (%s, %s, %s, %s, %s, %s)",
                 (mid, collection, kind, SHARED_DIM, model.to_bytes(), Jsonb(model.metadata)))
    with conn.cursor() as cur, cur.copy("COPY eofusion.text2patch_embeddings (model_id, collection, item_id, "
                                        "embedding) FROM STDIN") as copy:
        for item_id, vec in zip(item_ids, emb, strict=True):
            copy.write_row((mid, collection, item_id, vector_literal(vec)))
    if activate:
        activate_model(conn, "text2patch", mid)
    return mid


def active_text2patch_model(conn: psycopg.Connection, collection: str) -> StoredModel | None:
    """The active text-to-patch model of a collection (``None`` if it has none)."""
    row = conn.execute(f"SELECT {MODEL_COLUMNS.format(size='dim')} FROM eofusion.text2patch_models "
                       "WHERE collection = %s AND active", (collection,)).fetchone()
    return stored_model(row) if row else None


async def active_text2patch_model_async(conn: Any, collection: str) -> StoredModel | None:
    """:func:`active_text2patch_model` on an asyncpg connection."""
    return await active_model_async(conn, "text2patch", collection)


async def load_text2patch(conn: Any, stored: StoredModel) -> Text2PatchModel:
    """The network of a stored model (deserialised once per process)."""
    model = await load_model(conn, "text2patch", stored, Text2PatchModel.load)
    assert isinstance(model, Text2PatchModel)
    return model


def embed_text(model: Text2PatchModel, text: str) -> NDArray[np.float32]:
    """A free-text query in the model's shared space (loads the MiniLM encoder once per process)."""
    from eofusion.text2patch.encoder import default_encoder

    return model.embed_queries(text, default_encoder())[0]


async def text_nearest(conn: Any, stored: StoredModel, query: NDArray[np.floating], where: str, limit: int,
                       offset: int = 0, exact_below: int = EXACT_BELOW) -> list[Neighbour]:
    """The items whose patch embedding is nearest (cosine) to a projected text, under pgstac's filter.

    Args:
        conn: asyncpg connection.
        stored: The collection's text-to-patch model.
        query: ``(64,)`` projected query text.
        where: pgstac WHERE clause over ``pgstac.items``.
        limit: Results wanted.
        offset: Results skipped.
        exact_below: Rank exactly when at most this many rows pass the filter; else use HNSW.

    Returns:
        Neighbours by increasing cosine distance (``1 - cosine similarity``).
    """
    base = (f"FROM (SELECT collection, id FROM pgstac.items WHERE {where}) i JOIN eofusion.text2patch_embeddings e "
            f"ON e.collection = i.collection AND e.item_id = i.id WHERE e.model_id = '{stored.id}'::uuid")
    rows = await ranked_rows(conn, f"FROM pgstac.items WHERE {where}",
                             *ranking_sql(base, "(e.embedding <=> $1::vector)", limit, offset),
                             (vector_literal(query),), limit, exact_below, ef_search(limit + offset))
    return [Neighbour(r["collection"], r["id"], float(r["dist"])) for r in rows]
