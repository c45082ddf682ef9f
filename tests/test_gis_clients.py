"""Real GIS clients against /ogc: GDAL's OAPIF driver, QGIS, and the OGC API Features test suite."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from tests.conftest import ROOT, Server


def _count(client: httpx.Client, layer: str) -> int:
    return int(client.get(f"/ogc/collections/{layer}/items", params={"f": "json", "limit": 1}).json()["numberMatched"])


def test_ogrinfo_lists_the_features(server: Server, client: httpx.Client) -> None:
    out = subprocess.run(["ogrinfo", "-ro", "-al", "-so", f"OAPIF:{server.url}/ogc", "scenes"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"Feature Count: {_count(client, 'scenes')}" in out.stdout
    full = subprocess.run(["ogrinfo", "-ro", f"OAPIF:{server.url}/ogc", "tweets"],
                          capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr
    assert full.stdout.count("OGRFeature(tweets)") == _count(client, "tweets")
    assert "POINT (-105." in full.stdout  # Boulder, Colorado


def test_qgis_loads_layers_with_the_right_count(server: Server, client: httpx.Client) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": ""}
    for layer in ("patches", "tweets", "annotations"):
        out = subprocess.run(["/usr/bin/python3", str(ROOT / "tests" / "clients" / "qgis_load_layer.py"),
                              f"{server.url}/ogc", layer], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["valid"], out.stderr[-2000:]
        assert result["count"] == _count(client, layer) > 0
        assert "collection" in result["fields"]


def test_ogc_api_features_core_suite(server: Server) -> None:
    python = ROOT / ".venv-ogctests" / "bin" / "python"
    assert python.exists(), "deploy/setup.sh test installs the ogctests suite into .venv-ogctests"
    code = ("import sys; from ogctests.main import run_ogctests; "
            f"sys.exit(run_ogctests('features/core', '{server.url}/ogc', ['-q', '-p', 'no:cacheprovider']))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=Path("/tmp"))
    assert out.returncode == 0, out.stdout[-4000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
