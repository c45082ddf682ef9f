"""Patch descriptors in pgvector columns, keyed by (collection, item id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
from numpy.typing import NDArray

from catalog.db import use_vectors

KINDS = ("fused", "s1", "s2")
#: The kinds, richest first: where none is named, the first one an item or a collection has is used.
PREFERENCE = ("fused", "s2", "s1")


def richest_kind(conn: psycopg.Connection, collection: str) -> str | None:
    """The richest descriptor kind some patch of ``collection`` has (:data:`PREFERENCE`); None when it has none."""
    row = conn.execute("SELECT " + ", ".join(f"bool_or({k} IS NOT NULL)" for k in PREFERENCE)
                       + " FROM eofusion.descriptors WHERE collection = %s", (collection,)).fetchone()
    return next((k for k, present in zip(PREFERENCE, row or (), strict=False) if present), None)


def upsert_descriptors(conn: psycopg.Connection, collection: str,
                       rows: Sequence[tuple[str, Mapping[str, NDArray[np.floating]]]]) -> int:
    """Insert or replace descriptors; each row is (item id, {kind: vector}).

    Kinds not given for a row keep their stored value.
    """
    use_vectors(conn)
    for kind in {k for _, vecs in rows for k in vecs}:
        if kind not in KINDS:
            raise ValueError(f"unknown descriptor kind {kind!r}; known: {', '.join(KINDS)}")
    with conn.cursor() as cur:
        for kind in KINDS:
            batch = [(collection, item_id, np.asarray(vecs[kind], dtype=np.float32))
                     for item_id, vecs in rows if kind in vecs]
            if batch:
                cur.executemany(
                    f"INSERT INTO eofusion.descriptors (collection, item_id, {kind}) VALUES (%s, %s, %s) "
                    f"ON CONFLICT (collection, item_id) DO UPDATE SET {kind} = EXCLUDED.{kind}, updated_at = now()",
                    batch)
    return len(rows)


def copy_descriptors(conn: psycopg.Connection, collection: str, item_ids: Sequence[str],
                     vectors: Mapping[str, NDArray[np.floating]]) -> int:
    """Bulk upsert of many items' descriptors: binary COPY into a temporary table, then one INSERT.

    Args:
        item_ids: One id per row of every array in ``vectors``.
        vectors: kind -> (n, dim) array; kinds absent keep their stored values.
    """
    kinds = [k for k in KINDS if k in vectors]
    for kind in vectors:
        if kind not in KINDS:
            raise ValueError(f"unknown descriptor kind {kind!r}; known: {', '.join(KINDS)}")
        if len(vectors[kind]) != len(item_ids):
            raise ValueError(f"{len(vectors[kind])} {kind} vectors for {len(item_ids)} items")
    use_vectors(conn)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _descriptors_in (item_id text, fused vector, s1 vector, "
                 "s2 vector) ON COMMIT DROP")
    conn.execute("TRUNCATE _descriptors_in")
    cols = ", ".join(["item_id", *kinds])
    arrays = [np.asarray(vectors[k], dtype=np.float32) for k in kinds]
    with conn.cursor().copy(f"COPY _descriptors_in ({cols}) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["text", *(["vector"] * len(kinds))])
        for i, item_id in enumerate(item_ids):
            copy.write_row([item_id, *(a[i] for a in arrays)])
    updates = ", ".join(f"{k} = EXCLUDED.{k}" for k in kinds)
    conn.execute(
        f"INSERT INTO eofusion.descriptors (collection, item_id, {', '.join(kinds)}) "
        f"SELECT %s, {cols} FROM _descriptors_in "
        f"ON CONFLICT (collection, item_id) DO UPDATE SET {updates}, updated_at = now()", (collection,))
    return len(item_ids)
