"""Patches a session's model is applied to, and the model's identity in the annotations it predicts.

The target of ``apply-model`` is a collection, optionally narrowed to one scene, a bbox (WGS84) and a time
window; its descriptors are read by the same binary COPY as a session's pool
(:func:`catalog.sessions.parse_binary_copy`), so scores are computed on the same float32 vectors.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from catalog.descriptors import KINDS
from catalog.sessions import SessionError, parse_binary_copy


@dataclass(frozen=True)
class Target:
    """Which patches a model is applied to.

    Attributes:
        collection: The patches' collection.
        descriptor: The descriptor kind (the session's).
        level: Grid level (patch size in px); ``None`` = every level.
        scene: Only patches cut from this scene (``eofusion:scene``).
        bbox: ``(west, south, east, north)`` in WGS84: patches that intersect it.
        start: Patches whose time range ends at or after it.
        end: Patches whose time range starts at or before it.
    """

    collection: str
    descriptor: str
    level: int | None = None
    scene: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None


def model_id(session_id: uuid.UUID, round_no: int) -> str:
    """The name of a session's model of one round, as predicted annotations record it."""
    return f"session:{session_id}/round:{round_no}"


def target_descriptors(conn: psycopg.Connection, target: Target) -> tuple[list[str], NDArray[np.float32]]:
    """(item ids, descriptor matrix) of the target's patches, in id order.

    Raises:
        SessionError: an unknown descriptor kind.
    """
    if target.descriptor not in KINDS:
        raise SessionError(f"unknown descriptor {target.descriptor!r}")
    where = ["d.collection = %(collection)s", f"d.{target.descriptor} IS NOT NULL"]
    args: dict[str, Any] = {"collection": target.collection}
    if target.level is not None:
        where.append("(i.content->'properties'->>'eofusion:grid_level')::int = %(level)s")
        args["level"] = target.level
    if target.scene is not None:
        where.append("i.content->'properties'->>'eofusion:scene' = %(scene)s")
        args["scene"] = target.scene
    if target.bbox is not None:
        where.append("ST_Intersects(i.geometry, ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))")
        args.update(zip("wsen", target.bbox, strict=True))
    if target.start is not None:
        where.append("i.end_datetime >= %(start)s")
        args["start"] = target.start
    if target.end is not None:
        where.append("i.datetime <= %(end)s")
        args["end"] = target.end
    sql = (f"SELECT d.{target.descriptor}, d.item_id, NULL::text FROM eofusion.descriptors d "
           "JOIN pgstac.items i ON i.collection = d.collection AND i.id = d.item_id "
           f"WHERE {' AND '.join(where)} ORDER BY d.item_id")
    with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT BINARY)", args) as copy:
        data = b"".join(bytes(block) for block in copy)
    ids, matrix, _ = parse_binary_copy(data)
    return ids, matrix
