"""Active-learning sessions in PostgreSQL: the pool, the feedback (with user and time), every round.

A restart loses nothing, and sessions never see each other's feedback: every query is keyed by
the session id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from catalog.descriptors import KINDS


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


def get_session(conn: psycopg.Connection, session_id: uuid.UUID | str) -> Session:
    """A session with its feedback.

    Raises:
        SessionError: no such session.
    """
    try:
        sid = uuid.UUID(str(session_id))
    except ValueError:
        raise SessionError(f"not a session id: {session_id!r}") from None
    row = conn.execute("SELECT id, pool, descriptor, level, parent_id, state, created_by FROM eofusion.sessions "
                       "WHERE id = %s", (sid,)).fetchone()
    if row is None:
        raise SessionError(f"unknown session {session_id}")
    s = Session(*row)
    s.feedback = {item: pos for item, pos in conn.execute(
        "SELECT item_id, positive FROM eofusion.feedback WHERE session_id = %s", (sid,))}
    s.rounds = conn.execute("SELECT coalesce(max(round), 0) FROM eofusion.rounds WHERE session_id = %s",
                            (sid,)).fetchone()[0]  # type: ignore[index]
    return s


def add_feedback(conn: psycopg.Connection, session: Session, marks: Sequence[tuple[str, bool]], round_no: int,
                 user: str | None = None) -> None:
    """Record the user's marks (a later mark of the same item replaces the earlier one).

    Raises:
        SessionError: items that are not in the session's pool (all listed).
    """
    ids = [item for item, _ in marks]
    known = {r[0] for r in conn.execute("SELECT item_id FROM eofusion.descriptors WHERE collection = %s AND "
                                        "item_id = ANY(%s)", (session.pool, ids))}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise SessionError(f"not in pool {session.pool!r} (or without descriptors): {', '.join(unknown[:20])}")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO eofusion.feedback (session_id, collection, item_id, positive, round, user_id) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, collection, item_id) DO UPDATE SET "
            "positive = EXCLUDED.positive, round = EXCLUDED.round, user_id = EXCLUDED.user_id, created_at = now()",
            [(session.id, session.pool, item, bool(pos), round_no, user) for item, pos in marks])
    for item, pos in marks:
        session.feedback[item] = bool(pos)


def save_round(conn: psycopg.Connection, session: Session, round_no: int, model: bytes | None,
               metrics: dict[str, Any]) -> None:
    """Store a round's model and metrics."""
    conn.execute("INSERT INTO eofusion.rounds (session_id, round, model, metrics) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (session_id, round) DO UPDATE SET model = EXCLUDED.model, metrics = EXCLUDED.metrics",
                 (session.id, round_no, model, Jsonb(json.loads(json.dumps(metrics, default=float)))))
    session.rounds = max(session.rounds, round_no)


def latest_model(conn: psycopg.Connection, session: Session) -> tuple[int, bytes | None]:
    """(round number, pickled model) of the last round; (0, None) before the first."""
    row = conn.execute("SELECT round, model FROM eofusion.rounds WHERE session_id = %s ORDER BY round DESC LIMIT 1",
                       (session.id,)).fetchone()
    return (int(row[0]), bytes(row[1]) if row[1] is not None else None) if row else (0, None)


def pool_version(conn: psycopg.Connection, pool: str, descriptor: str) -> tuple[int, str]:
    """A cache key that changes whenever the pool's descriptors do (kept by a trigger; one row read)."""
    row = conn.execute("SELECT version, updated_at::text FROM eofusion.pool_versions WHERE collection = %s",
                       (pool,)).fetchone()
    return (int(row[0]), f"{descriptor}@{row[1]}") if row else (0, descriptor)


def pool_descriptors(conn: psycopg.Connection, pool: str, descriptor: str, level: int | None = None,
                     ) -> tuple[list[str], NDArray[np.float32], list[str | None]]:
    """(item ids, descriptor matrix, parent cell ids) of a pool, optionally of one grid level.

    Read with a binary COPY (pgvector's binary format), fast enough for hundreds of thousands of rows.
    The items' JSON is joined only for a grid level (level and parent live there); a whole pool is
    read from the descriptor table alone.
    """
    if descriptor not in KINDS:
        raise SessionError(f"unknown descriptor {descriptor!r}")
    register_vector(conn)
    if level is None:
        sql = (f"SELECT d.item_id, NULL::text, d.{descriptor} FROM eofusion.descriptors d "
               f"WHERE d.collection = %s AND d.{descriptor} IS NOT NULL ORDER BY d.item_id")
        args: list[Any] = [pool]
    else:
        sql = (f"SELECT d.item_id, i.content->'properties'->>'eofusion:parent', d.{descriptor} "
               f"FROM eofusion.descriptors d JOIN pgstac.items i ON i.collection = d.collection AND i.id = d.item_id "
               f"WHERE d.collection = %s AND d.{descriptor} IS NOT NULL "
               f"AND (i.content->'properties'->>'eofusion:grid_level')::int = %s ORDER BY d.item_id")
        args = [pool, level]
    ids: list[str] = []
    parents: list[str | None] = []
    vecs: list[NDArray[np.float32]] = []
    with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT BINARY)", args) as copy:
        copy.set_types(["text", "text", "vector"])
        for item_id, parent, vec in copy.rows():
            ids.append(item_id)
            parents.append(parent)
            vecs.append(vec.to_numpy() if hasattr(vec, "to_numpy") else np.asarray(vec, dtype=np.float32))
    matrix = np.vstack(vecs).astype(np.float32) if vecs else np.zeros((0, 0), dtype=np.float32)
    return ids, matrix, parents


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
