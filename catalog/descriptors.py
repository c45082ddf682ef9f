"""Patch descriptors in pgvector columns, keyed by (collection, item id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
from numpy.typing import NDArray
from pgvector.psycopg import register_vector

KINDS = ("fused", "s1", "s2")


def upsert_descriptors(conn: psycopg.Connection, collection: str,
                       rows: Sequence[tuple[str, Mapping[str, NDArray[np.floating]]]]) -> int:
    """Insert or replace descriptors; each row is (item id, {kind: vector}).

    Kinds not given for a row keep their stored value.
    """
    register_vector(conn)
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
