"""The label catalogue: seeding from ``labels.json`` and typed queries."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import class_row

PATH_SEP = " / "


class LabelError(ValueError):
    """A label request that cannot be honoured (unknown parent, duplicate, bad name)."""


@dataclass(frozen=True)
class Label:
    """One entry of the catalogue."""

    id: int
    level: int
    name: str
    path: str
    parent: str | None
    description: str
    corine_codes: list[str]
    color: str | None
    user_defined: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def catalogue_data() -> dict[str, Any]:
    """The shipped catalogue (level 1 and CORINE-derived level 2)."""
    return json.loads((resources.files("catalog") / "labels.json").read_text())


def seed(conn: psycopg.Connection) -> int:
    """Insert the shipped labels that are missing; returns how many were added."""
    added = 0
    for cls in catalogue_data()["classes"]:
        cur = conn.execute(
            "INSERT INTO eofusion.labels (level, name, path, description, color) VALUES (1, %s, %s, %s, %s) "
            "ON CONFLICT (path) DO NOTHING RETURNING id",
            (cls["name"], cls["name"], cls["description"], cls["color"]),
        )
        added += cur.rowcount
        row = conn.execute("SELECT id FROM eofusion.labels WHERE path = %s", (cls["name"],)).fetchone()
        assert row is not None  # inserted just above or before
        parent_id = row[0]
        for child in cls["children"]:
            cur = conn.execute(
                "INSERT INTO eofusion.labels (level, parent_id, name, path, corine_codes, color) "
                "VALUES (2, %s, %s, %s, %s, %s) ON CONFLICT (path) DO NOTHING",
                (parent_id, child["name"], cls["name"] + PATH_SEP + child["name"], child["corine"], cls["color"]),
            )
            added += cur.rowcount
    return added


_SELECT = (
    "SELECT l.id, l.level, l.name, l.path, p.name AS parent, l.description, l.corine_codes, l.color, "
    "l.user_defined FROM eofusion.labels l LEFT JOIN eofusion.labels p ON p.id = l.parent_id"
)


def list_labels(conn: psycopg.Connection, level: int | None = None, parent: str | None = None) -> list[Label]:
    """List labels, level-1 classes first, optionally of one level or under one level-1 class."""
    where: list[str] = []
    args: list[int | str] = []
    if level is not None:
        where.append("l.level = %s")
        args.append(level)
    if parent is not None:
        where.append("p.name = %s")
        args.append(parent)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY l.level, l.path"
    with conn.cursor(row_factory=class_row(Label)) as cur:
        return cur.execute(sql, args).fetchall()  # type: ignore[arg-type]


def get_label(conn: psycopg.Connection, path: str) -> Label | None:
    """A label by its path ("Forest" or "Forest / Mixed forest"), case-insensitively."""
    with conn.cursor(row_factory=class_row(Label)) as cur:
        return cur.execute(_SELECT + " WHERE lower(l.path) = lower(%s)", (path.strip(),)).fetchone()


_NAME = re.compile(r"^[\w][\w ,.'()/+-]{0,79}$", re.UNICODE)


def create_label(
    conn: psycopg.Connection, parent: str, name: str, description: str = "", created_by: str | None = None
) -> Label:
    """Add a user-defined level-2 label under a level-1 class.

    Raises:
        LabelError: unknown parent, invalid name, or the label exists already.
    """
    name = " ".join(name.split())
    if not _NAME.match(name) or PATH_SEP.strip() in name:
        raise LabelError(f"invalid label name {name!r}: 1-80 letters, digits, spaces and ,.'()+- ; no '/'")
    parent_label = get_label(conn, parent)
    if parent_label is None or parent_label.level != 1:
        known = ", ".join(lab.name for lab in list_labels(conn, level=1))
        raise LabelError(f"unknown level-1 class {parent!r}; known: {known}")
    path = parent_label.name + PATH_SEP + name
    if get_label(conn, path) is not None:
        raise LabelError(f"label {path!r} exists already")
    conn.execute(
        "INSERT INTO eofusion.labels (level, parent_id, name, path, description, color, user_defined, created_by) "
        "VALUES (2, %s, %s, %s, %s, %s, true, %s)",
        (parent_label.id, name, path, description, parent_label.color, created_by),
    )
    label = get_label(conn, path)
    assert label is not None
    return label
