"""The per-modality searches over tweets, each answering "the top N tweets for this query, with scores".

Text (BM25-like ranking with PostgreSQL full text, any word of the query), text embedding (pgvector
HNSW, cosine), time (nearest in time, both sides) and place (nearest by PostGIS KNN). A modality the
query lacks (no time, no place, no text) is simply not run.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import psycopg
from numpy.typing import NDArray
from pgvector.psycopg import register_vector

from eofusion.fusion.base import RankedList


def text(conn: psycopg.Connection, collection: str, query: str, n: int) -> RankedList:
    """Tweets sharing words with the query, ranked by cover density (ts_rank_cd) — OR semantics."""
    rows = conn.execute(
        "WITH q AS (SELECT NULLIF(replace(plainto_tsquery('simple', %s)::text, '&', '|'), '')::tsquery AS q) "
        "SELECT t.id, ts_rank_cd(t.tsv, q.q, 32) AS s FROM eofusion.tweets t, q "
        "WHERE t.collection = %s AND q.q IS NOT NULL AND t.tsv @@ q.q ORDER BY s DESC, t.id LIMIT %s",
        (query, collection, n)).fetchall()
    return RankedList("text", [r[0] for r in rows], [float(r[1]) for r in rows])


def embedding(conn: psycopg.Connection, collection: str, vector: NDArray[np.float32], n: int,
              ef_search: int = 100) -> RankedList:
    """Nearest tweets by cosine similarity of the text embeddings (HNSW)."""
    register_vector(conn)
    with conn.transaction():
        conn.execute(f"SET LOCAL hnsw.ef_search = {max(ef_search, n)}")
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute(
            "WITH c AS MATERIALIZED (SELECT id, embedding <=> %s AS d FROM eofusion.tweets WHERE collection = %s "
            "AND embedding IS NOT NULL ORDER BY embedding <=> %s LIMIT %s) SELECT id, d FROM c ORDER BY d, id",
            (vector, collection, vector, n)).fetchall()
    return RankedList("embedding", [r[0] for r in rows], [1.0 - float(r[1]) for r in rows])


def time(conn: psycopg.Connection, collection: str, when: datetime, n: int) -> RankedList:
    """Nearest tweets in time (both sides of ``when``), score = minus the gap in hours."""
    rows = conn.execute(
        "SELECT id, abs(extract(epoch FROM datetime - %(t)s)) AS gap FROM ("
        "(SELECT id, datetime FROM eofusion.tweets WHERE collection = %(c)s AND datetime >= %(t)s "
        " ORDER BY datetime LIMIT %(n)s) UNION ALL "
        "(SELECT id, datetime FROM eofusion.tweets WHERE collection = %(c)s AND datetime < %(t)s "
        " ORDER BY datetime DESC LIMIT %(n)s)) s ORDER BY gap, id LIMIT %(n)s",
        {"t": when, "c": collection, "n": n}).fetchall()
    return RankedList("time", [r[0] for r in rows], [-float(r[1]) / 3600 for r in rows])


def place(conn: psycopg.Connection, collection: str, lon: float, lat: float, n: int) -> RankedList:
    """Nearest located tweets (PostGIS KNN), score = minus the great-circle distance in km."""
    rows = conn.execute(
        "SELECT id, ST_DistanceSphere(geometry, p) / 1000 FROM eofusion.tweets, "
        "ST_SetSRID(ST_MakePoint(%s, %s), 4326) p WHERE collection = %s AND geometry IS NOT NULL "
        "ORDER BY geometry <-> p, id LIMIT %s", (lon, lat, collection, n)).fetchall()
    ranked = sorted(rows, key=lambda r: (r[1], r[0]))  # KNN on degrees: re-sort by true distance
    return RankedList("place", [r[0] for r in ranked], [-float(r[1]) for r in ranked])


def store_embeddings(conn: psycopg.Connection, collection: str, ids: list[str], vectors: NDArray[np.float32],
                     model: str) -> None:
    """Write embeddings of stored tweets and record the collection's model."""
    register_vector(conn)
    with conn.cursor() as cur:
        cur.executemany("UPDATE eofusion.tweets SET embedding = %s WHERE collection = %s AND id = %s",
                        [(v, collection, i) for i, v in zip(ids, vectors, strict=True)])
    conn.execute("INSERT INTO eofusion.tweet_collections (collection, embedding_model) VALUES (%s, %s) "
                 "ON CONFLICT (collection) DO UPDATE SET embedding_model = EXCLUDED.embedding_model, "
                 "updated_at = now()", (collection, model))


def without_embedding(conn: psycopg.Connection, collection: str, limit: int) -> list[tuple[str, str]]:
    """(id, text) of tweets still to embed."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT id, text FROM eofusion.tweets WHERE collection = %s AND embedding IS NULL ORDER BY id LIMIT %s",
        (collection, limit))]
