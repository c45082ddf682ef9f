"""Semantic annotations: labels of the catalogue attached to patch items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import psycopg

from catalog.hrefs import stac_item_path
from catalog.labels import PATH_SEP, get_label
from catalog.load import collection_exists, refresh_annotation_labels, upsert_collection, upsert_items

#: ``accepted``: a user accepted it (a mark or a session's result); ``predicted``: a model applied to patches
#: outside its session's pool wrote it. A prediction never replaces an accepted annotation.
AnnotationKind = Literal["accepted", "predicted"]


class AnnotationError(ValueError):
    """An annotation that cannot be stored (unknown item or label)."""


@dataclass(frozen=True)
class NewAnnotation:
    """One label for one patch, with its provenance."""

    collection: str
    item_id: str
    label: str  # catalogue path, e.g. "Forest / Mixed forest"
    user_id: str | None = None
    session_id: UUID | None = None
    round: int | None = None
    score: float | None = None
    kind: AnnotationKind = "accepted"
    model: str | None = None  # the model that predicted it (catalog.predictions.model_id)


ANNOTATIONS_COLLECTION = "annotations"


def _annotations_collection() -> dict[str, Any]:
    return {"type": "Collection", "stac_version": "1.0.0", "id": ANNOTATIONS_COLLECTION,
            "title": "Semantic annotations",
            "description": "Labels of the catalogue attached to patches, accepted from active-learning sessions, "
                           "with provenance (session, round, user, score). One item per (patch, label).",
            "license": "other", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}}


def annotation_item_id(collection: str, item_id: str, label_id: int) -> str:
    """Stable id of the annotation item of (patch, label)."""
    return f"{collection}.{item_id}.L{label_id}"


def add_annotations(conn: psycopg.Connection, annotations: list[NewAnnotation]) -> int:
    """Store annotations (a patch may carry several labels; the same label twice is updated), both in
    ``eofusion.annotations`` and as STAC items of the ``annotations`` collection, and list each patch's
    labels in its item (``eofusion:annotations``, paths and level-1 classes).

    A predicted annotation of a (patch, label) that already has an accepted one is not stored: what a user
    accepted stays.

    Returns:
        The annotations stored.

    Raises:
        AnnotationError: an unknown label or item; nothing is stored then.
    """
    items: list[dict[str, Any]] = []
    with conn.transaction():
        if not collection_exists(conn, ANNOTATIONS_COLLECTION):
            upsert_collection(conn, _annotations_collection())
        for a in annotations:
            label = get_label(conn, a.label)
            if label is None:
                raise AnnotationError(f"label {a.label!r} is not in the catalogue")
            cur = conn.execute(
                "INSERT INTO eofusion.annotations (collection, item_id, label_id, session_id, round, user_id, score, "
                "kind, model, geometry) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, i.geometry FROM pgstac.items i "
                "WHERE i.collection = %s AND i.id = %s "
                "ON CONFLICT (collection, item_id, label_id) DO UPDATE SET session_id = EXCLUDED.session_id, "
                "round = EXCLUDED.round, user_id = EXCLUDED.user_id, score = EXCLUDED.score, kind = EXCLUDED.kind, "
                "model = EXCLUDED.model, created_at = now() "
                "WHERE EXCLUDED.kind = 'accepted' OR eofusion.annotations.kind = 'predicted'",
                (a.collection, a.item_id, label.id, a.session_id, a.round, a.user_id, a.score, a.kind, a.model,
                 a.collection, a.item_id))
            if cur.rowcount != 1:
                if a.kind == "predicted" and _is_accepted(conn, a, label.id):
                    continue
                raise AnnotationError(f"no item {a.item_id!r} in collection {a.collection!r}")
            items.append(_item(conn, a, label.id, label.path))
        upsert_items(conn, items)
        # The patches list their labels too (eofusion:annotations), for CQL2 filters beside similarity.
        refresh_annotation_labels(conn, "SELECT DISTINCT * FROM unnest(%s::text[], %s::text[]) AS k(collection, id)",
                                  ([a.collection for a in annotations], [a.item_id for a in annotations]))
    return len(items)


def _is_accepted(conn: psycopg.Connection, a: NewAnnotation, label_id: int) -> bool:
    row = conn.execute("SELECT kind = 'accepted' FROM eofusion.annotations WHERE collection = %s AND item_id = %s "
                       "AND label_id = %s", (a.collection, a.item_id, label_id)).fetchone()
    return bool(row and row[0])


def _item(conn: psycopg.Connection, a: NewAnnotation, label_id: int, path: str) -> dict[str, Any]:
    row = conn.execute("SELECT ST_AsGeoJSON(geometry)::jsonb, ARRAY[ST_XMin(geometry), ST_YMin(geometry), "
                       "ST_XMax(geometry), ST_YMax(geometry)], created_at FROM eofusion.annotations "
                       "WHERE collection = %s AND item_id = %s AND label_id = %s", (a.collection, a.item_id, label_id)
                       ).fetchone()
    assert row is not None
    geometry, bbox, created = row
    return {
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [],
        "id": annotation_item_id(a.collection, a.item_id, label_id), "collection": ANNOTATIONS_COLLECTION,
        "geometry": geometry, "bbox": [float(v) for v in bbox],
        "properties": {
            "datetime": created.isoformat(), "eofusion:kind": "annotation", "eofusion:label": path,
            "eofusion:label_level1": path.split(PATH_SEP)[0], "eofusion:label_level": 1 + path.count(PATH_SEP),
            "eofusion:annotated_collection": a.collection, "eofusion:annotated_item": a.item_id,
            "eofusion:session": str(a.session_id) if a.session_id else None, "eofusion:round": a.round,
            "eofusion:user": a.user_id, "eofusion:score": a.score,
            "eofusion:annotation_kind": a.kind, "eofusion:model": a.model,
        },
        "assets": {},
        "links": [{"rel": "source", "type": "application/geo+json", "title": "Annotated patch",
                   "href": stac_item_path(a.collection, a.item_id)}],
    }
