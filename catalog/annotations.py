"""Semantic annotations: labels of the catalogue attached to patch items."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg

from catalog.labels import get_label


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


def add_annotations(conn: psycopg.Connection, annotations: list[NewAnnotation]) -> int:
    """Store annotations (a patch may carry several labels; the same label twice is updated).

    Raises:
        AnnotationError: an unknown label or item; nothing is stored then.
    """
    with conn.transaction():
        for a in annotations:
            label = get_label(conn, a.label)
            if label is None:
                raise AnnotationError(f"label {a.label!r} is not in the catalogue")
            cur = conn.execute(
                "INSERT INTO eofusion.annotations (collection, item_id, label_id, session_id, round, user_id, score, "
                "geometry) SELECT %s, %s, %s, %s, %s, %s, %s, i.geometry FROM pgstac.items i "
                "WHERE i.collection = %s AND i.id = %s "
                "ON CONFLICT (collection, item_id, label_id) DO UPDATE SET session_id = EXCLUDED.session_id, "
                "round = EXCLUDED.round, user_id = EXCLUDED.user_id, score = EXCLUDED.score, created_at = now()",
                (a.collection, a.item_id, label.id, a.session_id, a.round, a.user_id, a.score,
                 a.collection, a.item_id))
            if cur.rowcount != 1:
                raise AnnotationError(f"no item {a.item_id!r} in collection {a.collection!r}")
    return len(annotations)
