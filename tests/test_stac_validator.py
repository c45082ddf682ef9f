"""stac-api-validator against /stac, offline, with the local schema copies (../shared/schemas or the fixture's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import DEMO_COLLECTION, ROOT, Server, data_path


def test_stac_api_validator_passes(server: Server, loaded: dict) -> None:
    schema_map = data_path("schemas") / "schema-map.json"
    assert schema_map.exists(), f"local STAC schemas expected at {schema_map}"
    geometry = {"type": "Polygon", "coordinates": [[[-75.65, 37.6], [-75.55, 37.6], [-75.55, 37.7],
                                                     [-75.65, 37.7], [-75.65, 37.6]]]}
    cmd = [sys.executable, str(ROOT / "tests" / "clients" / "stac_api_validator_offline.py"),
           "--root-url", f"{server.url}/stac/", "--collection", DEMO_COLLECTION,
           "--geometry", json.dumps(geometry)]
    for conf in ("core", "collections", "features", "item-search", "filter"):
        cmd += ["--conformance", conf]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "STAC_SCHEMA_MAP": str(schema_map)})
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-6000:]
    assert "Errors: none" in report or "errors: none" in report.lower(), report[-6000:]
