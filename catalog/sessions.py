"""Active-learning sessions in PostgreSQL: the pool, the feedback (with user and time), every round.

A restart loses nothing, and sessions never see each other's feedback: every query is keyed by
the session id.
"""

from __future__ import annotations

import json
import logging
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from catalog.descriptors import KINDS
from eofusion.active.round import Model, model_from_bytes, model_to_bytes
from eofusion.errors import Conflict

_LOG = logging.getLogger(__name__)


class SessionError(ValueError):
    """A session request that cannot be honoured (unknown session or item, wrong pool...)."""


@dataclass
class Session:
    """A session and its feedback so far."""

    id: uuid.UUID
    pool: str
    descriptor: str
    level: int | None
    parent_id: uuid.UUID | None
    state: str
    created_by: str | None
    feedback: dict[str, bool] = field(default_factory=dict)  # item id -> positive
    rounds: int = 0


def create_session(conn: psycopg.Connection, pool: str, descriptor: str, level: int | None = None,
                   parent_id: uuid.UUID | None = None, user: str | None = None) -> Session:
    """Open a session on a collection.

    Raises:
        SessionError: unknown collection or descriptor kind, or no item of the pool has that descriptor.
    """
    if descriptor not in KINDS:
        raise SessionError(f"unknown descriptor {descriptor!r}; known: {', '.join(KINDS)}")
    if conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (pool,)).fetchone() is None:
        raise SessionError(f"unknown collection {pool!r}")
    if conn.execute(f"SELECT 1 FROM eofusion.descriptors WHERE collection = %s AND {descriptor} IS NOT NULL LIMIT 1",
                    (pool,)).fetchone() is None:
        raise SessionError(f"no item of collection {pool!r} has a {descriptor!r} descriptor")
    if parent_id is not None:
        parent = get_session(conn, parent_id)
        if parent.pool != pool:
            raise SessionError(f"parent session {parent_id} works on {parent.pool!r}, not {pool!r}")
    sid = uuid.uuid4()
    conn.execute("INSERT INTO eofusion.sessions (id, pool, level, descriptor, parent_id, created_by) "
                 "VALUES (%s, %s, %s, %s, %s, %s)", (sid, pool, level, descriptor, parent_id, user))
    return get_session(conn, sid)


def get_session(conn: psycopg.Connection, session_id: uuid.UUID | str, lock: bool = False) -> Session:
    """A session with its feedback.

    Args:
        conn: Connection; with ``lock`` it must not be in autocommit mode.
        session_id: The session.
        lock: Lock the session's row until the caller's transaction ends, so that rounds of one session
            run one after another: a second round waits here, then sees the first one's round number
            and feedback (and numbers itself after them).

    Raises:
        SessionError: no such session.
    """
    try:
        sid = uuid.UUID(str(session_id))
    except ValueError:
        raise SessionError(f"not a session id: {session_id!r}") from None
    if lock:
        # A statement of its own: the read below then takes a snapshot after the lock was granted, so it
        # sees what the round that held the lock committed. NO KEY: rows that merely reference the session
        # (annotations, a child session) can still be written meanwhile.
        if conn.execute("SELECT 1 FROM eofusion.sessions WHERE id = %s FOR NO KEY UPDATE",
                        (sid,)).fetchone() is None:
            raise SessionError(f"unknown session {session_id}")
    # One round trip: the session, its feedback (two aligned arrays) and its last round number.
    row = conn.execute(
        "SELECT s.id, s.pool, s.descriptor, s.level, s.parent_id, s.state, s.created_by, "
        "(SELECT coalesce(max(r.round), 0) FROM eofusion.rounds r WHERE r.session_id = s.id), "
        "(SELECT coalesce(array_agg(f.item_id ORDER BY f.item_id), '{}') FROM eofusion.feedback f "
        " WHERE f.session_id = s.id), "
        "(SELECT coalesce(array_agg(f.positive ORDER BY f.item_id), '{}') FROM eofusion.feedback f "
        " WHERE f.session_id = s.id) "
        "FROM eofusion.sessions s WHERE s.id = %s", (sid,)).fetchone()
    if row is None:
        raise SessionError(f"unknown session {session_id}")
    s = Session(*row[:7])
    s.rounds = int(row[7])
    s.feedback = dict(zip(row[8], row[9], strict=True))
    return s


def add_feedback(conn: psycopg.Connection, session: Session, marks: Sequence[tuple[str, bool]], round_no: int,
                 user: str | None = None) -> None:
    """Record the user's marks (a later mark of the same item replaces the earlier one).

    Raises:
        SessionError: items that are not in the session's pool (all listed).
    """
    latest = {item: bool(pos) for item, pos in marks}  # one row per item: the last mark wins
    if not latest:
        return
    ids, values = list(latest), list(latest.values())
    # One statement: check the items against the pool and upsert the marks, only if all are known.
    known = {r[0] for r in conn.execute(
        "WITH m AS (SELECT * FROM unnest(%(ids)s::text[], %(pos)s::bool[]) AS m(item_id, positive)), "
        "known AS (SELECT m.item_id, m.positive FROM m JOIN eofusion.descriptors d "
        "          ON d.collection = %(pool)s AND d.item_id = m.item_id), "
        "ins AS (INSERT INTO eofusion.feedback (session_id, collection, item_id, positive, round, user_id) "
        "        SELECT %(sid)s, %(pool)s, item_id, positive, %(round)s, %(user)s FROM known "
        "        WHERE (SELECT count(*) FROM known) = %(n)s "
        "        ON CONFLICT (session_id, collection, item_id) DO UPDATE SET positive = EXCLUDED.positive, "
        "        round = EXCLUDED.round, user_id = EXCLUDED.user_id, created_at = now()) "
        "SELECT item_id FROM known",
        {"ids": ids, "pos": values, "pool": session.pool, "sid": session.id, "round": round_no, "user": user,
         "n": len(ids)})}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise SessionError(f"not in pool {session.pool!r} (or without descriptors): {', '.join(unknown[:20])}")
    session.feedback.update(latest)


def save_round(conn: psycopg.Connection, session: Session, round_no: int, model: Model | None,
               metrics: dict[str, Any]) -> None:
    """Store a round's model (arrays and parameters, :func:`eofusion.active.round.model_to_bytes`) and metrics.

    Raises:
        Conflict: that round of the session is already stored (a concurrent round of the same session took
            the number; rounds that lock their session, ``get_session(..., lock=True)``, never get here).
    """
    blob = model_to_bytes(model) if model is not None else None
    row = conn.execute("INSERT INTO eofusion.rounds (session_id, round, model, metrics) VALUES (%s, %s, %s, %s) "
                       "ON CONFLICT (session_id, round) DO NOTHING RETURNING round",
                       (session.id, round_no, blob, Jsonb(json.loads(json.dumps(metrics, default=float))))
                       ).fetchone()
    if row is None:
        raise Conflict(f"round {round_no} of session {session.id} was stored by another request meanwhile; "
                       "run the round again")
    session.rounds = max(session.rounds, round_no)


def mark_accepted(conn: psycopg.Connection, session: Session) -> None:
    """Record that the session's result was accepted as annotations."""
    conn.execute("UPDATE eofusion.sessions SET state = 'accepted' WHERE id = %s", (session.id,))


def latest_model(conn: psycopg.Connection, session: Session) -> tuple[int, Model | None]:
    """(round number, model) of the last round; (0, None) before the first.

    The model is None also when the stored one is not of the safe format (a pickle written by an older
    version, which is never loaded): the next round fits a new one from the session's feedback.
    """
    row = conn.execute("SELECT round, model FROM eofusion.rounds WHERE session_id = %s ORDER BY round DESC LIMIT 1",
                       (session.id,)).fetchone()
    if row is None:
        return 0, None
    if row[1] is None:
        return int(row[0]), None
    try:
        return int(row[0]), model_from_bytes(bytes(row[1]))
    except ValueError as err:
        _LOG.warning("session %s round %s: stored model ignored (%s)", session.id, row[0], err)
        return int(row[0]), None


def pool_version(conn: psycopg.Connection, pool: str, descriptor: str) -> tuple[int, str]:
    """A cache key that changes whenever the pool's descriptors do (kept by a trigger; one row read)."""
    row = conn.execute("SELECT version, updated_at::text FROM eofusion.pool_versions WHERE collection = %s",
                       (pool,)).fetchone()
    return (int(row[0]), f"{descriptor}@{row[1]}") if row else (0, descriptor)


def pool_descriptors(conn: psycopg.Connection, pool: str, descriptor: str, level: int | None = None,
                     ) -> tuple[list[str], NDArray[np.float32], list[str | None]]:
    """(item ids, descriptor matrix, parent cell ids) of a pool, optionally of one grid level.

    Read with one binary COPY whose bytes are parsed here (pgvector's binary format) rather than row
    by row through adapters: 340k rows take seconds, not the 20 s a per-row vector loader took.
    The items' JSON is joined only for a grid level (level and parent live there); a whole pool is
    read from the descriptor table alone.

    Raises:
        SessionError: an unknown descriptor kind.
        ValueError: vectors of different dimensions in one pool.
    """
    if descriptor not in KINDS:
        raise SessionError(f"unknown descriptor {descriptor!r}")
    if level is None:
        sql = (f"SELECT d.{descriptor}, d.item_id, NULL::text FROM eofusion.descriptors d "
               f"WHERE d.collection = %s AND d.{descriptor} IS NOT NULL ORDER BY d.item_id")
        args: list[Any] = [pool]
    else:
        sql = (f"SELECT d.{descriptor}, d.item_id, i.content->'properties'->>'eofusion:parent' "
               f"FROM eofusion.descriptors d JOIN pgstac.items i ON i.collection = d.collection AND i.id = d.item_id "
               f"WHERE d.collection = %s AND d.{descriptor} IS NOT NULL "
               f"AND (i.content->'properties'->>'eofusion:grid_level')::int = %s ORDER BY d.item_id")
        args = [pool, level]
    with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT BINARY)", args) as copy:
        data = b"".join(bytes(block) for block in copy)
    return parse_binary_copy(data)


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def parse_binary_copy(data: bytes) -> tuple[list[str], NDArray[np.float32], list[str | None]]:
    """Parse the binary COPY of rows ``(vector, text, text or NULL)``: (texts, matrix, optional texts).

    Raises:
        ValueError: not a binary COPY stream of that shape, or vectors of different dimensions.
    """
    if not data.startswith(_COPY_SIGNATURE):
        raise ValueError("not a PostgreSQL binary COPY stream")
    unpack_h, unpack_i = struct.Struct(">h").unpack_from, struct.Struct(">i").unpack_from
    pos = len(_COPY_SIGNATURE) + 4
    pos += 4 + unpack_i(data, pos)[0]  # header extension
    ids: list[str] = []
    parents: list[str | None] = []
    offsets: list[int] = []
    vec_size = -1
    while True:
        (n_fields,) = unpack_h(data, pos)
        if n_fields == -1:
            break
        if n_fields != 3:
            raise ValueError(f"expected 3 fields per row, got {n_fields}")
        (size,) = unpack_i(data, pos + 2)
        if size != vec_size:
            if vec_size >= 0:
                raise ValueError("vectors of different dimensions in one pool")
            vec_size = size
        offsets.append(pos + 6)
        pos += 6 + size
        (size,) = unpack_i(data, pos)
        ids.append(data[pos + 4 : pos + 4 + size].decode())
        pos += 4 + size
        (size,) = unpack_i(data, pos)
        if size < 0:
            parents.append(None)
            pos += 4
        else:
            parents.append(data[pos + 4 : pos + 4 + size].decode())
            pos += 4 + size
    if not ids:
        return ids, np.zeros((0, 0), dtype=np.float32), parents
    dim = unpack_h(data, offsets[0])[0]
    # pgvector's binary vector: int16 dim, int16 unused, dim big-endian float4. Gather every row's
    # floats at once through a strided byte view (one copy, no per-row Python object).
    raw = np.frombuffer(data, dtype=np.uint8)
    width = 4 * dim
    rows = as_strided(raw, shape=(raw.size - width + 1, width), strides=(1, 1), writeable=False)
    body = rows[np.asarray(offsets, dtype=np.int64) + 4]
    return ids, body.view(">f4").astype(np.float32), parents


def ground_truth_labels(conn: psycopg.Connection, collection: str, level: int = 1) -> dict[str, str]:
    """One ground-truth label per item at a catalogue level (level-1 class, or the level-2 label),
    for items whose ground truth has that level. Several labels of one item: the first by path."""
    sql = ("SELECT DISTINCT ON (g.item_id) g.item_id, "
           + ("coalesce(p.name, l.name)" if level == 1 else "l.path")
           + " FROM eofusion.ground_truth g JOIN eofusion.labels l ON l.id = g.label_id "
             "LEFT JOIN eofusion.labels p ON p.id = l.parent_id WHERE g.collection = %s"
           + ("" if level == 1 else " AND l.level = 2") + " ORDER BY g.item_id, l.path")
    return {r[0]: r[1] for r in conn.execute(sql, (collection,))}  # type: ignore[arg-type]


def annotated(conn: psycopg.Connection, collection: str) -> list[tuple[str, str]]:
    """(item id, label path) of every annotation of a collection."""
    rows = conn.execute("SELECT a.item_id, l.path FROM eofusion.annotations a JOIN eofusion.labels l "
                        "ON l.id = a.label_id WHERE a.collection = %s ORDER BY a.item_id, l.path", (collection,))
    return [(r[0], r[1]) for r in rows]
