"""The per-modality searches over tweets, each answering "the top N tweets for this query, with scores".

Text (BM25-like ranking with PostgreSQL full text, any word of the query), text embedding (pgvector
HNSW, cosine), time (nearest in time, both sides) and place (nearest by PostGIS KNN). A modality the
query lacks (no time, no place, no text) is simply not run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from catalog.db import use_vectors
from eofusion.fusion.base import RankedList


@dataclass(frozen=True)
class TextSearchConfig:
    """How the words modality bounds its work on large collections.

    Ranking every post that shares any word with the query costs a heap read and a ``ts_rank_cd`` per
    match: a tweet's "rt", "the", "in" match most of a million posts (10 s a query). Candidates are
    therefore selected by the query's rarest words (document frequencies from PostgreSQL's own
    statistics of the ``tsv`` column, gathered by ANALYZE), plus the posts holding all the words;
    every word still counts in the ranking of the candidates. When the candidates give fewer than
    the posts asked for, the budget grows and the query runs again.

    Attributes:
        candidate_budget: Estimated posts the selecting words may match together; words are taken
            rarest first until the next one would exceed it (the rarest one is always taken).
        max_candidates: Hard cap on the posts of each selecting query that are ranked.
        widen: Factor of the budget and cap for the next round, when a round found too few posts.
        rounds: Rounds at most.
    """

    candidate_budget: int = 2_500
    max_candidates: int = 5_000
    widen: int = 4
    rounds: int = 2


def _word_frequencies(conn: psycopg.Connection, query: str) -> list[tuple[str, float]]:
    """The query's distinct words with their estimated share of stored posts, rarest first.

    A word missing from the most-common list gets half the list's smallest frequency, as PostgreSQL's
    own selectivity estimate for ``@@`` does.
    """
    rows = conn.execute(
        "WITH w AS (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('simple', %s))) AS w), "
        "s AS (SELECT most_common_elems::text::text[] AS e, most_common_elem_freqs AS f FROM pg_stats "
        "WHERE schemaname = 'eofusion' AND tablename = 'tweets' AND attname = 'tsv'), "
        # The array holds one frequency per element, then the minimum, maximum and null frequency.
        "m AS (SELECT e, f, f[cardinality(e) + 1] / 2 AS rare FROM s) "
        "SELECT w.w, coalesce((SELECT m.f[array_position(m.e, w.w)] FROM m), (SELECT m.rare FROM m), 0) "
        "FROM w ORDER BY 2, 1", (query,)).fetchall()
    return [(r[0], float(r[1])) for r in rows]


def _any_word(words: list[str]) -> sql.Composable:
    """An OR tsquery of words, each parsed as the stored texts were ('simple' configuration)."""
    return sql.SQL(" || ").join(sql.SQL("plainto_tsquery('simple', {})").format(sql.Literal(w)) for w in words)


def _ranking_query(query: str) -> sql.Composable:
    """The query's words joined by OR, repeats kept: the ranking the words modality has always used."""
    return sql.SQL("replace(plainto_tsquery('simple', {})::text, '&', '|')::tsquery").format(sql.Literal(query))


def _rarest(words: list[tuple[str, float]], total: float, budget: float) -> list[str]:
    """Words rarest first while their estimated posts fit the budget (at least one word)."""
    chosen: list[str] = []
    expected = 0.0
    for word, share in words:
        if chosen and expected + share * total > budget:
            break
        chosen.append(word)
        expected += share * total
    return chosen


def text(conn: psycopg.Connection, collection: str, query: str, n: int,
         config: TextSearchConfig = TextSearchConfig()) -> RankedList:
    """Tweets sharing words with the query, ranked by cover density (ts_rank_cd) — OR semantics.

    Only candidates are ranked: posts holding the rarest query words (see :class:`TextSearchConfig`)
    and posts holding every word.
    """
    words = _word_frequencies(conn, query)
    if not words:
        return RankedList("text", [], [])
    total_row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'eofusion.tweets'::regclass").fetchone()
    total = max(float(total_row[0]) if total_row else 0.0, 1.0)  # -1 before the first ANALYZE
    every = sql.SQL(" && ").join(sql.SQL("plainto_tsquery('simple', {})").format(sql.Literal(w))
                                 for w, _ in words)
    budget, cap = float(config.candidate_budget), config.max_candidates
    for round_ in range(config.rounds):
        chosen = _rarest(words, total, budget)
        # UNION ALL + GROUP BY rather than UNION: tsvectors have no hash support, and re-reading the
        # rows by primary key would cost one index probe per candidate. A post holding every word holds
        # the rarest one, so the second branch can only add posts when the cap cut the first: otherwise
        # its one-time filter skips it (intersecting the posting lists of common words costs tens of ms).
        stmt = sql.SQL(
            "WITH a AS MATERIALIZED (SELECT id, tsv FROM eofusion.tweets WHERE collection = {c} AND "
            "tsv @@ ({rare}) LIMIT {cap}), c AS (SELECT id, tsv FROM a UNION ALL SELECT id, tsv FROM "
            "(SELECT id, tsv FROM eofusion.tweets WHERE collection = {c} AND tsv @@ ({every}) "
            "AND (SELECT count(*) FROM a) >= {cap} LIMIT {cap}) b) "
            "SELECT id, max(ts_rank_cd(tsv, {anyq}, 32)) AS s FROM c GROUP BY id ORDER BY s DESC, id LIMIT {n}"
        ).format(c=sql.Literal(collection), rare=_any_word(chosen), every=every, anyq=_ranking_query(query),
                 cap=sql.Literal(cap), n=sql.Literal(n))
        rows = conn.execute(stmt).fetchall()
        if len(rows) >= n or len(chosen) == len(words) or round_ == config.rounds - 1:
            break
        budget, cap = budget * config.widen, cap * config.widen
    return RankedList("text", [r[0] for r in rows], [float(r[1]) for r in rows])


def embedding(conn: psycopg.Connection, collection: str, vector: NDArray[np.float32], n: int,
              ef_search: int = 100) -> RankedList:
    """Nearest tweets by cosine similarity of the text embeddings (HNSW)."""
    use_vectors(conn)
    with conn.transaction():
        # pgvector caps ef_search at 1000; the iterative scan still returns deeper lists.
        conn.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(ef_search, n))}")
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute(
            "WITH c AS MATERIALIZED (SELECT id, embedding <=> %s AS d FROM eofusion.tweets WHERE collection = %s "
            "AND embedding IS NOT NULL ORDER BY embedding <=> %s LIMIT %s) SELECT id, d FROM c ORDER BY d, id",
            (vector, collection, vector, n)).fetchall()
    return RankedList("embedding", [r[0] for r in rows], [1.0 - float(r[1]) for r in rows])


#: Nearest posts in time on both sides, each side a range scan of (collection, datetime).
TIME_SQL = (
    "SELECT id, abs(extract(epoch FROM datetime - %(t)s)) AS gap FROM ("
    "(SELECT id, datetime FROM eofusion.tweets WHERE collection = %(c)s AND datetime >= %(t)s "
    " ORDER BY datetime LIMIT %(n)s) UNION ALL "
    "(SELECT id, datetime FROM eofusion.tweets WHERE collection = %(c)s AND datetime < %(t)s "
    " ORDER BY datetime DESC LIMIT %(n)s)) s ORDER BY gap, id LIMIT %(n)s")

#: Nearest located posts: a KNN walk of the (collection, geometry) GiST index finds the n-th distance, then
#: the posts within it are ordered with ties broken by id. ``ORDER BY distance, id`` alone cannot use the
#: index order (PostgreSQL 15 sorted every located post of the collection); neither can a point given
#: as a relation in FROM, hence the repeated expression.
_POINT = "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)"
PLACE_SQL = (
    f"WITH k AS (SELECT geometry <-> {_POINT} AS d FROM eofusion.tweets WHERE collection = %(c)s "
    f"AND geometry IS NOT NULL ORDER BY geometry <-> {_POINT} LIMIT %(n)s) "
    f"SELECT id, ST_DistanceSphere(geometry, {_POINT}) / 1000 FROM eofusion.tweets WHERE collection = %(c)s "
    # The radius is widened by a hair so that float rounding cannot drop the n-th post or its ties.
    f"AND ST_DWithin(geometry, {_POINT}, (SELECT max(d) * (1 + 1e-9) + 1e-12 FROM k)) "
    f"ORDER BY geometry <-> {_POINT}, id LIMIT %(n)s")


def time(conn: psycopg.Connection, collection: str, when: datetime, n: int) -> RankedList:
    """Nearest tweets in time (both sides of ``when``), score = minus the gap in hours."""
    rows = conn.execute(TIME_SQL, {"t": when, "c": collection, "n": n}).fetchall()
    return RankedList("time", [r[0] for r in rows], [-float(r[1]) / 3600 for r in rows])


def place(conn: psycopg.Connection, collection: str, lon: float, lat: float, n: int) -> RankedList:
    """Nearest located tweets (PostGIS KNN), score = minus the great-circle distance in km."""
    rows = conn.execute(PLACE_SQL, {"lon": lon, "lat": lat, "c": collection, "n": n}).fetchall()
    ranked = sorted(rows, key=lambda r: (r[1], r[0]))  # KNN on degrees: re-sort by true distance
    return RankedList("place", [r[0] for r in ranked], [-float(r[1]) for r in ranked])


class EmbedderMismatchError(RuntimeError):
    """Vectors of one embedder offered to a collection that another embedder has filled."""


def lock_collection(conn: psycopg.Connection, collection: str) -> str | None:
    """Lock a collection's row of ``eofusion.tweet_collections`` (created if missing) for the transaction.

    Returns:
        The embedding model it records, if any.
    """
    conn.execute("INSERT INTO eofusion.tweet_collections (collection) VALUES (%s) ON CONFLICT DO NOTHING",
                 (collection,))
    row = conn.execute("SELECT embedding_model FROM eofusion.tweet_collections WHERE collection = %s FOR UPDATE",
                       (collection,)).fetchone()
    return row[0] if row else None


def store_embeddings(conn: psycopg.Connection, collection: str, rows: Sequence[tuple[str, str]],
                     vectors: NDArray[np.float32], model: str) -> int:
    """Write embeddings of stored tweets and record the collection's model.

    Args:
        rows: (id, text) of each vector: the text it was computed from. A post whose stored text is no longer
            that text (re-ingested with a new text while it was embedded) keeps no vector: it is still to embed.

    Returns:
        The posts written.

    Raises:
        EmbedderMismatchError: The collection has embedded posts and records another model (e.g. it was
            re-embedded, or another ingest chose another embedder, since the caller looked); nothing is written.
    """
    # Locked first, so that a concurrent writer or re-embedding cannot slip another model's vectors in between
    # this check and the writes.
    recorded = lock_collection(conn, collection)
    if recorded is not None and recorded != model and conn.execute(
            "SELECT EXISTS (SELECT 1 FROM eofusion.tweets WHERE collection = %s AND embedding IS NOT NULL)",
            (collection,)).fetchone() == (True,):
        raise EmbedderMismatchError(f"collection {collection!r} is embedded by {recorded!r}, not {model!r}")
    use_vectors(conn)
    with conn.cursor() as cur:
        # The text guard: a vector of an old text would otherwise stand for the new one until a re-embedding.
        cur.executemany("UPDATE eofusion.tweets SET embedding = %s WHERE collection = %s AND id = %s AND text = %s",
                        [(v, collection, i, text) for (i, text), v in zip(rows, vectors, strict=True)])
        written = max(cur.rowcount, 0)  # psycopg sums the rows of every statement
    conn.execute("INSERT INTO eofusion.tweet_collections (collection, embedding_model) VALUES (%s, %s) "
                 "ON CONFLICT (collection) DO UPDATE SET embedding_model = EXCLUDED.embedding_model, "
                 "updated_at = now()", (collection, model))
    return written


def without_embedding(conn: psycopg.Connection, collection: str, limit: int) -> list[tuple[str, str]]:
    """(id, text) of tweets still to embed."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT id, text FROM eofusion.tweets WHERE collection = %s AND embedding IS NULL ORDER BY id LIMIT %s",
        (collection, limit))]


#: One modality's search, bound to its query: given a connection, its ranked list.
Search = Callable[[psycopg.Connection], RankedList]


def run_concurrently(searches: Sequence[Search],
                     connection: Callable[[], AbstractContextManager[psycopg.Connection]]) -> list[RankedList]:
    """Run the modalities' searches at once, each on a connection of its own.

    The modalities are independent queries. One after another on one connection, a fused search
    costs the sum of their times, and at a million posts the words modality alone is most of it.
    Here each search runs in a thread on its own connection from ``connection`` (a pool): psycopg
    releases the GIL while PostgreSQL works, so the searches overlap on the server's cores and the
    fused search costs about its slowest modality. The caller must not hold a connection of the same
    pool while it waits here, or a full pool could wait on itself.

    Args:
        searches: The searches, each taking a connection.
        connection: Returns a context manager that yields a connection (and gives it back).

    Returns:
        The ranked lists, in the order of ``searches``.

    Raises:
        Exception: The first search's error (in the order given), once every search has ended.
    """

    def run(search: Search) -> RankedList:
        with connection() as conn:
            return search(conn)

    if len(searches) < 2:
        return [run(s) for s in searches]
    with ThreadPoolExecutor(max_workers=len(searches), thread_name_prefix="eofusion-modality") as pool:
        futures = [pool.submit(run, s) for s in searches]
        return [f.result() for f in futures]
