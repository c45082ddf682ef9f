"""Migration 0021 repairs catalogues damaged before 0018 (real database): the derived data of items deleted
through the STAC API is removed, and patches a STAC PUT stripped of their annotation labels list them again.

The damage is made as it was made then: with the triggers of 0018/0019 off (``session_replication_role``),
an item is deleted and a patch's ``eofusion:annotations`` dropped.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import httpx
import psycopg

from catalog.annotations import NewAnnotation, add_annotations, annotation_item_id
from catalog.db import connect, use_vectors
from catalog.load import upsert_items
from tests.conftest import DEMO_COLLECTION, SCENE_ID

MIGRATION = "0021_repair_derived_data.sql"
ANNOTATED = f"{SCENE_ID}_L480_r0000_c0003"  # annotated by the suite's ``loaded`` fixture
GONE = "repair-deleted-before-0018"
LABEL = "Water Bodies / Water courses"


def _item(conn: psycopg.Connection, item_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT content FROM pgstac.items WHERE collection = %s AND id = %s",
                       (DEMO_COLLECTION, item_id)).fetchone()
    return None if row is None else dict(row[0])


def _counts(conn: psycopg.Connection, item_id: str) -> dict[str, int]:
    out = {}
    for table in ("descriptors", "ground_truth", "annotations"):
        row = conn.execute(f"SELECT count(*) FROM eofusion.{table} WHERE collection = %s AND item_id = %s",
                           (DEMO_COLLECTION, item_id)).fetchone()
        out[table] = int(row[0]) if row else 0
    return out


def _annotation_items(conn: psycopg.Connection, item_id: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM pgstac.items WHERE collection = 'annotations' AND id LIKE %s",
                                       (f"{DEMO_COLLECTION}.{item_id}.L%",))]


def test_migration_0021_repairs_a_catalogue_damaged_before_0018(db_url: str, loaded: dict,
                                                                client: httpx.Client) -> None:
    sql = (resources.files("catalog") / "migrations" / MIGRATION).read_text()
    source = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{ANNOTATED}").json()
    listed = source["properties"]["eofusion:annotations"]
    with connect(db_url) as conn:
        use_vectors(conn)
        assert listed, "the suite's annotated patch lists its labels"
        vector = conn.execute("SELECT s2 FROM eofusion.descriptors WHERE collection = %s AND item_id = %s",
                              (DEMO_COLLECTION, ANNOTATED)).fetchone()[0]
        # A copy of a real patch, with its descriptor, ground truth and an annotation.
        upsert_items(conn, [{**source, "id": GONE, "properties": {**source["properties"],
                                                                   "eofusion:annotations": []}}])
        conn.execute("INSERT INTO eofusion.descriptors (collection, item_id, s2) VALUES (%s, %s, %s)",
                     (DEMO_COLLECTION, GONE, vector))
        conn.execute("INSERT INTO eofusion.ground_truth (collection, item_id, label_id, source_label) "
                     "SELECT %s, %s, id, 'River' FROM eofusion.labels WHERE path = %s", (DEMO_COLLECTION, GONE, LABEL))
        conn.commit()
        assert add_annotations(conn, [NewAnnotation(DEMO_COLLECTION, GONE, LABEL, user_id="repair-test")]) == 1
        conn.commit()
        label_id = conn.execute("SELECT id FROM eofusion.labels WHERE path = %s", (LABEL,)).fetchone()[0]
        assert _annotation_items(conn, GONE) == [annotation_item_id(DEMO_COLLECTION, GONE, label_id)]
        kept_before = _counts(conn, ANNOTATED), _annotation_items(conn, ANNOTATED)

        # The damage of the time: a delete that left the derived data, a PUT that dropped the labels.
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("DELETE FROM pgstac.items WHERE collection = %s AND id = %s", (DEMO_COLLECTION, GONE))
            conn.execute("UPDATE pgstac.items SET content = content #- '{properties,eofusion:annotations}' "
                         "WHERE collection = %s AND id = %s", (DEMO_COLLECTION, ANNOTATED))
        assert _counts(conn, GONE) == {"descriptors": 1, "ground_truth": 1, "annotations": 1}
        assert "eofusion:annotations" not in _item(conn, ANNOTATED)["properties"]  # type: ignore[index]

        with conn.transaction():
            conn.execute(sql)  # type: ignore[arg-type]  # the package's own migration file
        report = conn.execute("SELECT eofusion.repair_derived_data()").fetchone()[0]
        conn.commit()

        assert _counts(conn, GONE) == {"descriptors": 0, "ground_truth": 0, "annotations": 0}
        assert _annotation_items(conn, GONE) == []
        assert _item(conn, ANNOTATED)["properties"]["eofusion:annotations"] == listed  # type: ignore[index]
        assert (_counts(conn, ANNOTATED), _annotation_items(conn, ANNOTATED)) == kept_before
        # A second run finds nothing left to repair.
        assert all(n == 0 for n in json.loads(json.dumps(report)).values()), report
