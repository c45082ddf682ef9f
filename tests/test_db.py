"""The embedded cluster, migrations and the label catalogue, on the real database."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from catalog import labels
from catalog.db import connect, embedded_cluster
from catalog.migrate import migrate, project_migrations, schema_version
from eofusion.config import Settings


def _schema_snapshot(url: str) -> list[tuple]:
    with connect(url) as conn:
        cols = conn.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema IN ('eofusion', 'pgstac') ORDER BY 1, 2, 3").fetchall()
        counts = conn.execute("SELECT count(*), max(id) FROM eofusion.labels").fetchall()
    return cols + counts


def test_embedded_cluster_runs_on_loopback(settings: Settings, db_url: str) -> None:
    cluster = embedded_cluster(settings)
    assert cluster.running()
    info = cluster.info()
    assert db_url.startswith("postgresql://eofusion:") and f"@127.0.0.1:{info.port}/" in db_url
    with connect(db_url) as conn:
        exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
    assert exts["vector"].startswith("0.8") and exts["postgis"].startswith("3.")
    assert listen == "127.0.0.1"
    # Starting again is harmless and keeps the port.
    assert cluster.start().port == info.port


def test_wrong_password_is_refused(settings: Settings, db_url: str) -> None:
    info = embedded_cluster(settings).info()
    bad = db_url.replace(info.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad).close()


def test_migrate_twice_changes_nothing(db_url: str) -> None:
    before = _schema_snapshot(db_url)
    report = migrate(db_url)
    assert report.applied == [] and report.labels_added == 0
    assert _schema_snapshot(db_url) == before
    assert schema_version(db_url) == [name for name, _ in project_migrations()]


def test_pgvector_columns_and_hnsw_work(db_url: str) -> None:
    with connect(db_url) as conn:
        conn.execute("CREATE TEMP TABLE v (id int, e vector(3))")
        conn.execute("INSERT INTO v VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')")
        conn.execute("CREATE INDEX ON v USING hnsw (e vector_l2_ops)")
        ids = [r[0] for r in conn.execute("SELECT id FROM v ORDER BY e <-> '[1,0,0]' LIMIT 2")]
    assert ids == [1, 3]


def test_label_catalogue_has_two_levels(db_url: str) -> None:
    with connect(db_url) as conn:
        level1 = labels.list_labels(conn, level=1)
        forest = labels.list_labels(conn, parent="Forest")
    assert [lab.name for lab in level1] == ["Agriculture", "Bare Ground", "Forest", "Transportation",
                                             "Urban Area", "Water Bodies"]
    names = {lab.name for lab in forest}
    assert {"Broad-leaved forest", "Coniferous forest", "Mixed forest"} <= names
    assert all(lab.level == 2 and lab.parent == "Forest" and lab.corine_codes for lab in forest)


def test_user_label_under_level1_and_errors(db_url: str) -> None:
    with connect(db_url) as conn:
        made = labels.create_label(conn, "urban area", "Solar farms", "Ground-mounted photovoltaics")
        assert made.path == "Urban Area / Solar farms" and made.user_defined and made.level == 2
        with pytest.raises(labels.LabelError, match="exists already"):
            labels.create_label(conn, "Urban Area", "Solar farms")
        with pytest.raises(labels.LabelError, match="unknown level-1 class"):
            labels.create_label(conn, "Forest / Mixed forest", "Oak")
        with pytest.raises(labels.LabelError, match="invalid label name"):
            labels.create_label(conn, "Forest", "a/b")
        conn.rollback()


def test_descriptor_columns_are_typed_and_indexed(db_url: str) -> None:
    from eofusion.pipeline.scene import DESCRIPTOR_DIMS

    with connect(db_url) as conn:
        types = dict(conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'eofusion.descriptors'::regclass AND attname IN ('fused', 's1', 's2')").fetchall())
        indexes = {r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'eofusion' AND tablename = 'descriptors'")}
        with pytest.raises(psycopg.errors.DataException):
            conn.execute("INSERT INTO eofusion.descriptors (collection, item_id, s2) VALUES ('x', 'y', '[1,2,3]')")
    assert types == {k: f"vector({d})" for k, d in DESCRIPTOR_DIMS.items()}
    assert sum("USING hnsw" in i for i in indexes) == 3


def test_pool_version_changes_with_the_descriptors(db_url: str) -> None:
    from catalog.descriptors import copy_descriptors
    from catalog.sessions import pool_version

    with connect(db_url) as conn:
        before = pool_version(conn, "version-test", "s2")
        copy_descriptors(conn, "version-test", ["a", "b"], {"s2": np.full((2, 160), 1 / 160, dtype=np.float32)})
        after = pool_version(conn, "version-test", "s2")
        conn.execute("DELETE FROM eofusion.descriptors WHERE collection = 'version-test' AND item_id = 'a'")
        again = pool_version(conn, "version-test", "s2")
        conn.rollback()
    assert before != after != again and again[0] == after[0] + 1
