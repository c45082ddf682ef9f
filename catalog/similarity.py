"""Nearest-neighbour search over patch descriptors, filtered exactly like a STAC item search.

The filters of the search (collections, ids, bbox, intersects, datetime, CQL2) become a SQL WHERE
clause through pgstac's own ``stac_search_to_where``, so similarity results honour every filter
the way a plain search would. With a selective filter the filtered rows are ranked exactly; else
the HNSW index is scanned iteratively (``hnsw.iterative_scan``) until ``limit`` rows pass the
filter, so a filter that keeps 1% of the archive still returns ``limit`` results.

The choice between both paths asks the planner first (``EXPLAIN``, about 2 ms, cached a minute per filter):
counting the rows that pass a broad filter cost 150 ms on a million-row archive, 30 times the HNSW search
itself. Only when the estimate is near the threshold are the filtered items counted (with a cap). A page the HNSW
scan cannot fill (it gives up after ``hnsw.max_scan_tuples``, e.g. under a filter the planner
overestimated) is ranked exactly instead of being returned short.

A search sets ``jit``, ``plan_cache_mode``, ``hnsw.iterative_scan`` and ``hnsw.ef_search`` for its statements.
On a plain connection that costs a transaction (``BEGIN; SET LOCAL ...``, the query, ``COMMIT``: three round
trips). A :class:`TunedConnection` (:func:`connect_tuned`, :func:`tuned_pool`; the STAC API's similarity pool)
holds those settings for its whole session, so the HNSW path sends its ranking query alone: one round trip,
plus a ``SET hnsw.ef_search`` only when a search needs another value than the session's.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from catalog.descriptors import PREFERENCE
from eofusion.errors import InvalidInput
from eofusion.pipeline.scene import DESCRIPTOR_DIMS

#: Below this many rows passing the filter, rank them exactly (recall 1). On 1M descriptors (bench/similarity.py)
#: ranking 10,000 filtered rows exactly took ~150 ms and the filtered HNSW scan ~60 ms at recall 1; below a few
#: thousand rows the exact ranking wins, and the HNSW scan would have to skip most tuples it visits.
EXACT_BELOW = 5_000
#: A planner estimate above ``ESTIMATE_MARGIN * exact_below`` rows picks HNSW without counting. pgstac's
#: estimates were off by 7x on a datetime filter; a wrong guess only costs speed (see the module docstring).
ESTIMATE_MARGIN = 4
#: Seconds a planner estimate of one filter is reused: repeated searches (pages, many queries on a collection)
#: skip the EXPLAIN, and the estimate only picks the faster path, never the results.
ESTIMATE_TTL = 60.0
#: ``hnsw.ef_search`` of a search for the first results. On 1M real S2 descriptors recall@10 was 0.999 at 40
#: and 1.000 at 64 (p50 6.0 ms); 64 leaves a margin for archives less redundant than overlapping windows.
#: Deeper pages raise it to twice ``limit + offset``.
EF_SEARCH = 64
#: Joins of a counted, small filtered set are done by primary-key lookups: misled by pgstac's row estimate, the
#: planner otherwise hashed the whole descriptor table (0.9 s for 10,000 of 1M rows, against 0.15 s).
NESTED_LOOP_BELOW = 50_000
#: Weight of the negative examples in the Rocchio query (positives weigh 1).
NEGATIVE_WEIGHT = 0.25
#: ``application_name`` of tuned connections (see :func:`tuned_settings`).
TUNED_APPLICATION = "eofusion-similarity"


class SimilarityError(InvalidInput):
    """A similarity request that cannot be answered (bad vector, unknown item, no descriptor)."""


class UnknownItem(SimilarityError):
    """A reference item that does not exist (the ``/similar`` route of an item answers it with 404)."""


@dataclass(frozen=True)
class Neighbour:
    """One result: an item and its distance to the query."""

    collection: str
    item_id: str
    distance: float


def _literal(vec: np.ndarray) -> str:
    return "[" + ",".join(f"{v:.9g}" for v in vec.tolist()) + "]"


async def _missing(conn: Any, collection: str, item_id: str) -> SimilarityError:
    exists = await conn.fetchval("SELECT 1 FROM pgstac.items WHERE collection = $1 AND id = $2", collection, item_id)
    if not exists:
        return UnknownItem(f"item {item_id!r} of collection {collection!r} does not exist")
    return SimilarityError(f"item {item_id!r} of collection {collection!r} has no descriptors")


async def _item_vector(conn: Any, kind: str, collection: str, item_id: str) -> np.ndarray:
    row = await conn.fetchrow(f"SELECT {kind}::text AS v FROM eofusion.descriptors WHERE collection = $1 "
                              "AND item_id = $2", collection, item_id)
    if row is None:
        raise await _missing(conn, collection, item_id)
    if row["v"] is None:
        raise SimilarityError(f"item {item_id!r} of collection {collection!r} has no {kind!r} descriptor")
    return np.asarray(json.loads(row["v"]), dtype=np.float64)


async def item_vectors(conn: Any, kind: str, refs: list[tuple[str, str]]) -> list[np.ndarray]:
    """The ``kind`` descriptors of items, in the order of ``refs``, fetched in one query.

    Args:
        conn: asyncpg connection.
        kind: ``fused``, ``s1`` or ``s2``.
        refs: ``(collection, item id)`` pairs; repeated pairs get the same vector.

    Raises:
        SimilarityError: an item that does not exist (:class:`UnknownItem`), has no descriptors or not this one
            (the first such item of ``refs`` is named).
    """
    if not refs:
        return []
    unique = list(dict.fromkeys(refs))
    rows = await conn.fetch(f"SELECT d.collection, d.item_id, d.{kind}::text AS v FROM eofusion.descriptors d "
                            "JOIN unnest($1::text[], $2::text[]) AS r(collection, item_id) "
                            "ON d.collection = r.collection AND d.item_id = r.item_id",
                            [c for c, _ in unique], [i for _, i in unique])
    found = {(r["collection"], r["item_id"]): r["v"] for r in rows}
    for ref in refs:
        if ref not in found:
            raise await _missing(conn, *ref)
        if found[ref] is None:
            raise SimilarityError(f"item {ref[1]!r} of collection {ref[0]!r} has no {kind!r} descriptor")
    vectors = {ref: np.asarray(json.loads(v), dtype=np.float64) for ref, v in found.items()}
    return [vectors[ref] for ref in refs]


def check_vector(kind: str, vector: list[float]) -> np.ndarray:
    """A raw query vector as an array, if it has the dimension of ``kind`` and finite values.

    Raises:
        SimilarityError: wrong dimension or a non-finite value.
    """
    dim = DESCRIPTOR_DIMS[kind]
    vec = np.asarray(vector, dtype=np.float64)
    if vec.ndim != 1 or vec.size != dim:
        raise SimilarityError(f"a {kind!r} vector has {dim} values, got {vec.size}")
    if not np.all(np.isfinite(vec)):
        raise SimilarityError("the vector holds non-finite values")
    return vec


async def default_kind(conn: Any, collection: str, item_id: str) -> str:
    """The richest descriptor an item has (:data:`catalog.descriptors.PREFERENCE`)."""
    row = await conn.fetchrow("SELECT fused IS NOT NULL AS fused, s2 IS NOT NULL AS s2, s1 IS NOT NULL AS s1 "
                              "FROM eofusion.descriptors WHERE collection = $1 AND item_id = $2", collection, item_id)
    if row is None:
        raise await _missing(conn, collection, item_id)
    return next(k for k in PREFERENCE if row[k])


async def query_vector(conn: Any, kind: str, spec: dict[str, Any]) -> np.ndarray:
    """The query point: an item's descriptor, a raw vector, or the Rocchio point of positives/negatives.

    Raises:
        SimilarityError: wrong dimension, unknown item, or an item without that descriptor.
    """
    if spec.get("vector") is not None:
        return check_vector(kind, spec["vector"])
    if spec.get("item") is not None:
        return await _item_vector(conn, kind, spec["collection"], spec["item"])
    positive = [(r["collection"], r["item"]) for r in spec.get("positive") or []]
    negative = [(r["collection"], r["item"]) for r in spec.get("negative") or []]
    if not positive:
        raise SimilarityError("similar_to needs an item, a vector or at least one positive item")
    vectors = await item_vectors(conn, kind, positive + negative)  # one query for both lists
    pos, neg = vectors[:len(positive)], vectors[len(positive):]
    q = np.mean(pos, axis=0)
    if neg:
        q = q - NEGATIVE_WEIGHT * np.mean(neg, axis=0)
    return q


async def where_clause(conn: Any, search: dict[str, Any]) -> str:
    """pgstac's WHERE clause (over ``pgstac.items``) for the filters of a search body."""
    keys = ("collections", "ids", "bbox", "intersects", "datetime", "filter", "filter-lang", "query")
    body = {k: v for k, v in search.items() if k in keys and v is not None}
    where: str = await conn.fetchval("SELECT pgstac.stac_search_to_where($1::text::jsonb)", json.dumps(body))
    return where or "TRUE"


def ef_search(depth: int, floor: int | None = None) -> int:
    """``hnsw.ef_search`` for ``depth`` results: at least ``floor`` (default :data:`EF_SEARCH`, read at call time
    so a benchmark can sweep it), twice the depth, at most 1000 (pgvector's cap)."""
    return max(EF_SEARCH if floor is None else floor, min(1000, 2 * depth))


_ESTIMATES: dict[str, tuple[float, float]] = {}  # FROM clause -> (time, planner's row estimate)


def search_settings(ef: int) -> dict[str, str | int]:
    """The settings a search's statements run with.

    Short queries: compiling them (JIT, 95 ms here) costs more than running them. Generic plans: asyncpg prepares
    every statement, and planning it anew took 0.4 ms, as long as the Hamming search itself; the statements carry
    LIMIT and OFFSET as literals (see :func:`ranking_sql`), so the generic plan is the custom one (with LIMIT as a
    parameter it sorted the whole table: p95 1 s). Relaxed order: the index query re-sorts its candidates.

    Args:
        ef: ``hnsw.ef_search``.
    """
    return {"jit": "off", "plan_cache_mode": "force_generic_plan", "hnsw.ef_search": int(ef),
            "hnsw.iterative_scan": "relaxed_order"}


def tuned_settings(ef: int | None = None) -> dict[str, str]:
    """Startup parameters of a :class:`TunedConnection`: :func:`search_settings` as session defaults.

    Startup parameters are the session's reset values, so even a ``RESET ALL`` keeps them; PostgreSQL accepts
    ``hnsw.*`` before pgvector's library is loaded (as placeholders that the library then adopts).

    Args:
        ef: Initial ``hnsw.ef_search`` (default :data:`EF_SEARCH`, the value of a first page).
    """
    out = {k: str(v) for k, v in search_settings(EF_SEARCH if ef is None else ef).items()}
    return {**out, "search_path": "pgstac,public", "application_name": TUNED_APPLICATION}


class TunedConnection(asyncpg.Connection):
    """An asyncpg connection whose session holds the settings of similarity searches (:func:`tuned_settings`).

    :func:`ranked_rows` runs the HNSW query on it without a transaction. Create it with :func:`connect_tuned` or
    :func:`tuned_pool` (``connection_class``), which set the startup parameters and :attr:`ef_search` to match.
    Only this code may change its session settings: the tracker must stay true.

    Attributes:
        ef_search: The session's ``hnsw.ef_search``; ``None`` when unknown (the next search sets it).
    """

    __slots__ = ("ef_search",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ef_search: int | None = None

    def tuned(self) -> TunedConnection:
        """This connection: a pool hands out a proxy, which passes this method on but hides the class."""
        return self

    async def use_ef_search(self, ef: int) -> None:
        """Set the session's ``hnsw.ef_search`` to ``ef`` unless it has that value already (no round trip).

        Args:
            ef: The value the next index scan needs.

        Raises:
            RuntimeError: Inside a transaction, whose rollback would undo the setting behind the tracker's back.
        """
        ef = int(ef)
        if self.ef_search == ef:
            return
        if self.is_in_transaction():
            raise RuntimeError("hnsw.ef_search of a tuned connection is set outside transactions only")
        self.ef_search = None  # an interrupted SET may or may not have run
        await self.execute(f"SET hnsw.ef_search = {ef}")
        self.ef_search = ef


def tuned_connection(conn: Any) -> TunedConnection | None:
    """The :class:`TunedConnection` behind a connection, if it is one.

    Args:
        conn: An asyncpg connection, a pool's proxy of one, or a wrapper passing attributes on.

    Returns:
        The tuned connection, or ``None`` for any other connection (searches then set their settings locally).
    """
    tuned = getattr(conn, "tuned", None)
    found = tuned() if callable(tuned) else None
    return found if isinstance(found, TunedConnection) else None


def _track_startup_ef(settings: Mapping[str, str]) -> Callable[[TunedConnection], Awaitable[None]]:
    """An ``init`` for new connections: their tracker starts at the ``hnsw.ef_search`` of their startup."""
    async def init(conn: TunedConnection) -> None:
        conn.ef_search = int(settings["hnsw.ef_search"])
    return init


async def _keep_session(conn: Any) -> None:
    """Pool reset of tuned connections: asyncpg has rolled back an open transaction before calling this; the
    default reset's ``RESET ALL`` (an extra round trip at every release) is left out, so the session's
    ``hnsw.ef_search`` stays what :attr:`TunedConnection.ef_search` says. The pool only reads."""


async def connect_tuned(dsn: str, ef: int | None = None, **kwargs: Any) -> TunedConnection:
    """One :class:`TunedConnection` (``search_path`` with pgstac), e.g. for a benchmark of the API's path.

    Args:
        dsn: libpq URL.
        ef: Initial ``hnsw.ef_search`` (see :func:`tuned_settings`).
        kwargs: More arguments of ``asyncpg.connect``.
    """
    settings = tuned_settings(ef)
    conn: TunedConnection = await asyncpg.connect(dsn, connection_class=TunedConnection, server_settings=settings,
                                                  **kwargs)
    await _track_startup_ef(settings)(conn)
    return conn


async def tuned_pool(dsn: str, ef: int | None = None, **kwargs: Any) -> asyncpg.Pool:
    """A pool of :class:`TunedConnection` for similarity searches (read-only work: its reset keeps the session).

    Args:
        dsn: libpq URL.
        ef: Initial ``hnsw.ef_search`` (see :func:`tuned_settings`).
        kwargs: More arguments of ``asyncpg.create_pool`` (sizes, lifetimes).
    """
    settings = tuned_settings(ef)
    return await asyncpg.create_pool(dsn, connection_class=TunedConnection, server_settings=settings,
                                     init=_track_startup_ef(settings), reset=_keep_session, **kwargs)


async def ranked_rows(conn: Any, from_sql: str, exact_sql: str, index_sql: str, args: tuple[Any, ...], limit: int,
                      exact_below: int, ef: int) -> list[Any]:
    """Run a ranking by the exact query or the index query, in one transaction or, on a tuned connection, alone.

    On a :class:`TunedConnection` outside a transaction, a search the planner's estimate sends to the index (or
    ``exact_below`` 0) runs its index query alone, with the session's settings (``hnsw.ef_search`` set first if it
    differs). A filter near the threshold (rows to count) or a page the index scan cannot fill takes the
    transaction as on any other connection. Both give the same rows.

    Args:
        conn: asyncpg connection.
        from_sql: ``FROM pgstac.items WHERE ...``: the items passing the filter, for :func:`use_exact`. Counting
            items, not their join with the descriptors, halves the cost of a count; items without descriptors
            only make the count an upper bound.
        exact_sql: Query ranking every candidate (its ORDER BY must not use the index).
        index_sql: Query ranking through an HNSW index (iterative scan).
        args: Parameters of both queries.
        limit: Rows the page needs: an index scan returning fewer falls back to the exact query.
        exact_below: See :func:`use_exact`; 0 forces the index (no fallback).
        ef: ``hnsw.ef_search``.

    Returns:
        The rows of whichever query ran last.
    """
    settings = search_settings(ef)
    tuned = tuned_connection(conn)
    rows: list[Any] = []
    if tuned is not None and not conn.is_in_transaction() and (
            exact_below <= 0 or await _estimate(conn, from_sql) > ESTIMATE_MARGIN * exact_below):
        await tuned.use_ef_search(ef)
        rows = await conn.fetch(index_sql, *args)
        if exact_below <= 0 or len(rows) >= limit:
            return list(rows)
        # The iterative scan gave up after hnsw.max_scan_tuples: rank the page exactly, as below.
        async with local_settings(conn, settings):
            await _small_set_joins(conn, exact_below)
            return list(await conn.fetch(exact_sql, *args))
    async with local_settings(conn, settings):
        exact = await use_exact(conn, from_sql, exact_below)
        if not exact:
            rows = await conn.fetch(index_sql, *args)
            # The iterative scan gives up after hnsw.max_scan_tuples: rank a page it could not fill exactly.
            exact = exact_below > 0 and len(rows) < limit
        if exact:
            await _small_set_joins(conn, exact_below)
            rows = await conn.fetch(exact_sql, *args)
    return list(rows)


@asynccontextmanager
async def local_settings(conn: Any, settings: Mapping[str, str | int]) -> AsyncIterator[None]:
    """Read-only work with ``settings`` set locally, sent in the same round trip as its ``BEGIN``.

    A search is a handful of sub-millisecond statements, so each round trip counts (a Hamming search takes
    ~0.3 ms in PostgreSQL). Inside a caller's transaction it runs in a savepoint that is rolled back at the end,
    which undoes every ``SET LOCAL`` made inside (releasing it would keep them for the rest of the caller's
    transaction); so the block must only read.

    Args:
        conn: asyncpg connection.
        settings: Configuration parameter names and values (names are trusted: they come from this code).
    """
    sets = "; ".join(f"SET LOCAL {name} = '{value}'" for name, value in settings.items())
    if conn.is_in_transaction():
        begin = "SAVEPOINT eofusion_local"
        end = fail = "ROLLBACK TO SAVEPOINT eofusion_local; RELEASE SAVEPOINT eofusion_local"
    else:
        begin, end, fail = "BEGIN", "COMMIT", "ROLLBACK"
    await conn.execute(f"{begin}; {sets}")
    try:
        yield
    except BaseException:
        if not conn.is_closed():
            await conn.execute(fail)
        raise
    await conn.execute(end)


async def _small_set_joins(conn: Any, exact_below: int) -> None:
    """Join at most ``exact_below`` filtered rows by primary-key lookups (see :data:`NESTED_LOOP_BELOW`)."""
    if exact_below <= NESTED_LOOP_BELOW and conn.is_in_transaction():
        await conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")


async def use_exact(conn: Any, from_sql: str, exact_below: int, *args: Any) -> bool:
    """Whether at most ``exact_below`` rows pass ``from_sql`` (a ``FROM ... WHERE ...`` clause).

    The planner's estimate settles clear cases (a broad filter over a large archive) in about a
    millisecond; otherwise the passing rows are counted, stopping at ``exact_below + 1``.

    Args:
        conn: asyncpg connection.
        from_sql: The ``FROM`` clause of the candidate rows, with its ``WHERE``.
        exact_below: Threshold; 0 or less always answers False (HNSW).
        args: Values of the ``$n`` parameters of ``from_sql``, if any.
    """
    if exact_below <= 0:
        return False
    if await _estimate(conn, from_sql, *args) > ESTIMATE_MARGIN * exact_below:
        return False
    await _small_set_joins(conn, exact_below)
    count = await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 {from_sql} LIMIT {exact_below + 1}) s", *args)
    return bool(count <= exact_below)


async def _estimate(conn: Any, from_sql: str, *args: Any) -> float:
    """The planner's estimate of the rows passing ``from_sql`` (cached :data:`ESTIMATE_TTL` seconds)."""
    key = from_sql + repr(args)
    now = time.monotonic()
    cached = _ESTIMATES.get(key)
    if cached is not None and now - cached[0] < ESTIMATE_TTL:
        return cached[1]
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT 1 {from_sql}", *args)
    estimate = float((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
    _ESTIMATES.pop(key, None)
    _ESTIMATES[key] = (now, estimate)
    while len(_ESTIMATES) > 512:
        _ESTIMATES.pop(next(iter(_ESTIMATES)))
    return estimate


def ranking_sql(base: str, dist: str, limit: int, offset: int) -> tuple[str, str]:
    """The exact and the index query ranking ``base``'s rows by ``dist``.

    Args:
        base: ``FROM ... WHERE ...`` naming the items ``i`` (columns collection, id).
        dist: The distance expression, which an HNSW index over ``base`` can order by.
        limit: Rows wanted; a literal in the SQL, so that a cached generic plan knows it.
        offset: Rows skipped (a literal too).

    Returns:
        ``(exact_sql, index_sql)`` for :func:`ranked_rows`.
    """
    limit, offset = int(limit), int(offset)
    # "+ 0" keeps the planner off the index: the filtered rows are ranked exactly.
    exact_sql = (f"SELECT i.collection, i.id, {dist} AS dist {base} "
                 f"ORDER BY {dist} + 0, i.collection, i.id LIMIT {limit} OFFSET {offset}")
    # relaxed_order may return slightly out of order: re-sort the materialised candidates.
    index_sql = (f"WITH c AS MATERIALIZED (SELECT i.collection, i.id, {dist} AS dist {base} "
                 f"ORDER BY {dist} LIMIT {limit + offset}) SELECT * FROM c ORDER BY dist, collection, id "
                 f"LIMIT {limit} OFFSET {offset}")
    return exact_sql, index_sql


async def nearest(conn: Any, kind: str, query: np.ndarray, where: str, limit: int, offset: int = 0,
                  exact_below: int = EXACT_BELOW) -> list[Neighbour]:
    """The ``limit`` items nearest to ``query`` (after ``offset``) among those passing ``where``.

    Args:
        exact_below: Rank exactly when at most this many rows pass the filter; else use HNSW.
    """
    col = f"d.{kind}"
    # pgstac's clause names items' columns bare (collection, id...): keep it inside its own scope.
    base = (f"FROM (SELECT collection, id FROM pgstac.items WHERE {where}) i JOIN eofusion.descriptors d "
            f"ON d.collection = i.collection AND d.item_id = i.id WHERE {col} IS NOT NULL")
    rows = await ranked_rows(conn, f"FROM pgstac.items WHERE {where}",
                             *ranking_sql(base, f"({col} <-> $1::vector)", limit, offset),
                             (_literal(query),), limit, exact_below, ef_search(limit + offset))
    return [Neighbour(r["collection"], r["id"], float(r["dist"])) for r in rows]
