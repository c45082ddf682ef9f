"""catalog.load.upsert_items: pgstac's upsert semantics with the items dehydrated in Python.

Every row it writes must equal the row ``pgstac.upsert_items`` writes for the same item, on real items (the
EuroSAT-MS patches and the BigEarthNet pairs the archive ingest published).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from catalog.load import upsert_collection, upsert_items
from tests.conftest import EUROSAT_PATCHES

SQL_PATH, FAST_PATH = "scratch-load-sql", "scratch-load-fast"


def _items(conn: psycopg.Connection, collection: str, target: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT pgstac.get_item(id, collection) FROM pgstac.items WHERE collection = %s "
                        "ORDER BY id", (collection,)).fetchall()
    out = []
    for (item,) in rows:
        item = copy.deepcopy(item)
        item["collection"] = target
        item["links"] = [link for link in item.get("links", []) if link.get("rel") not in ("collection", "parent",
                                                                                          "root", "self")]
        out.append(item)
    return out


def _rows(conn: psycopg.Connection, collection: str) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute("SELECT id, datetime, end_datetime, geometry::text, content, private FROM pgstac.items "
                        "WHERE collection = %s", (collection,)).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.fixture()
def scratch(db_url: str, archives: dict) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as conn:
        base = conn.execute("SELECT content FROM pgstac.collections WHERE id = 'eurosat'").fetchone()[0]
        for cid in (SQL_PATH, FAST_PATH):
            upsert_collection(conn, {**base, "id": cid, "links": []})
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            for cid in (SQL_PATH, FAST_PATH):
                conn.execute("SELECT pgstac.delete_collection(%s)", (cid,))
            conn.commit()


def test_rows_equal_pgstacs_own_upsert(scratch: psycopg.Connection) -> None:
    conn = scratch
    items = {cid: _items(conn, "eurosat", cid) + _items(conn, "ben", cid) for cid in (SQL_PATH, FAST_PATH)}
    assert len(items[FAST_PATH]) >= EUROSAT_PATCHES  # 216 + 6, or the fixture's 50 + 6
    conn.execute("SELECT pgstac.upsert_items(%s)", (Jsonb(items[SQL_PATH]),))
    assert upsert_items(conn, items[FAST_PATH]) == len(items[FAST_PATH])
    conn.commit()
    reference, fast = _rows(conn, SQL_PATH), _rows(conn, FAST_PATH)
    assert fast.keys() == reference.keys() and len(fast) == len(items[FAST_PATH])
    for item_id, row in reference.items():
        assert fast[item_id] == row, item_id
    # Read back through pgstac, every item is the one given.
    for item in items[FAST_PATH][:50]:
        got = conn.execute("SELECT pgstac.get_item(%s, %s)", (item["id"], FAST_PATH)).fetchone()[0]
        got["links"] = [link for link in got.get("links", []) if link.get("rel") not in ("collection", "parent",
                                                                                        "root", "self")]
        assert got == item


def test_upsert_replaces_changed_items_and_moves_partitions(scratch: psycopg.Connection) -> None:
    conn = scratch
    conn.execute("UPDATE pgstac.collections SET partition_trunc = 'month' WHERE id = %s", (FAST_PATH,))
    conn.commit()
    items = _items(conn, "eurosat", FAST_PATH)[:20]
    upsert_items(conn, items)
    conn.commit()
    before = _rows(conn, FAST_PATH)
    changed = copy.deepcopy(items[:3])
    changed[0]["properties"]["eofusion:note"] = "edited"
    # Another month: another partition (EuroSAT items carry a range, which pgstac indexes by its start).
    changed[1]["properties"].update(start_datetime="2017-03-04T05:06:07Z", end_datetime="2017-03-05T00:00:00Z")
    upsert_items(conn, changed)  # the third is unchanged
    conn.commit()
    after = _rows(conn, FAST_PATH)
    assert len(after) == len(items)
    assert after[items[0]["id"]][3]["properties"]["eofusion:note"] == "edited"
    assert after[items[1]["id"]][0].isoformat() == "2017-03-04T05:06:07+00:00"
    assert after[items[2]["id"]] == before[items[2]["id"]]
    assert {k: v for k, v in after.items() if k not in (items[0]["id"], items[1]["id"])} == {
        k: v for k, v in before.items() if k not in (items[0]["id"], items[1]["id"])}
    partitions = conn.execute("SELECT count(DISTINCT tableoid) FROM pgstac.items WHERE collection = %s",
                              (FAST_PATH,)).fetchone()[0]
    assert partitions == 2
    hits = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s AND id = %s",
                        (FAST_PATH, items[1]["id"])).fetchone()[0]
    assert hits == 1


def test_a_bad_item_names_itself_and_writes_nothing(scratch: psycopg.Connection) -> None:
    conn = scratch
    items = _items(conn, "eurosat", FAST_PATH)[:5]
    bad = copy.deepcopy(items[3])
    for key in ("datetime", "start_datetime", "end_datetime"):
        bad["properties"].pop(key, None)
    with pytest.raises(ValueError, match=bad["id"]):
        upsert_items(conn, [*items[:3], bad])
    conn.rollback()
    assert _rows(conn, FAST_PATH) == {}
    with pytest.raises(ValueError, match="no-such-collection"):
        upsert_items(conn, [{**items[0], "collection": "no-such-collection"}])
    conn.rollback()
