"""bench/load.py, run for a few seconds against the test server: its report parses and its verdict holds.

The figures (latencies, throughput, memory) are the bench's business and are never checked here; what is
checked is that the script runs the whole mix, reports every request it sent, and that the server gives every
valid request a 2xx, every malformed one a 4xx and never drops a connection (the issue's goal for the load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY, DEMO_COLLECTION, ROOT, Server, data_path

SCRIPT = ROOT / "bench" / "load.py"
VALID = {"stac-get", "stac-post", "similar", "al-round", "tile", "late-fusion", "ogc-items"}
MALFORMED = {"bad-bbox", "bad-json", "bad-tile-param", "oversize-preview", "bad-token", "process-not-object",
             "unknown-collection", "bad-sortby"}
POSTS = "load-posts"


@pytest.fixture(scope="module")
def posts(settings_env: dict[str, str], db_url: str) -> str:
    """The real Colorado-flood posts of CrisisLexT26, ingested (geoparsed, embedded) as the demo does."""
    event = data_path("crisislex") / "CrisisLexT26" / "2013_Colorado_floods"
    out = subprocess.run([sys.executable, "-m", "cli", "ingest", "tweets", "crisislex", str(event),
                          "--collection", POSTS, "--embedder", "static"],
                         cwd=ROOT, env={**os.environ, **settings_env}, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return POSTS


def test_short_load_reports_every_request_and_passes(server: Server, posts: str, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", server.url, "--api-key", API_KEY, "--pid", str(server.process.pid),
         "--clients", "3", "--baseline-seconds", "2", "--seconds", "4", "--rounds", "2", "--rest-seconds", "0",
         "--timeout", "30", "--collection", DEMO_COLLECTION, "--tweets", posts, "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode in (0, 1) and out.exists(), run.stdout[-2000:] + run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert set(summary["phases"]) == {"baseline", "mixed"}
    for name, phase in summary["phases"].items():
        assert phase["requests"] == sum(k["n"] for k in phase["kinds"].values()) > 0
        for kind, k in phase["kinds"].items():
            answered = sum(k["statuses"].values()) + sum(k["transport_errors"].values())
            assert answered == k["n"], (name, kind, k)
            assert (kind in MALFORMED if k["malformed"] else kind in VALID), (name, kind)
    assert not any(k["malformed"] for k in summary["phases"]["baseline"]["kinds"].values())
    # The sweep sent every malformed kind, and the table printed each of them.
    malformed = {kind for kind, k in summary["sweep"].items() if k["malformed"]}
    assert malformed == MALFORMED
    assert all(f"{kind} (bad)" in run.stdout for kind in malformed)
    assert summary["memory_bytes"]["before"] > 0
    # The warm-up sent every variant of each valid kind; memory growth is read from the warmed start on.
    assert {kind: k["n"] for kind, k in summary["warmup"].items()} == {kind: 5 for kind in VALID}
    readings = summary["memory_bytes"]
    assert {"before", "settled", "after warm-up", "after sweep", "after the phases"} <= set(readings)
    memory = summary["memory"]
    assert memory["warmed_start"] == readings["after warm-up"] and memory["end"] == list(readings.values())[-1]
    assert memory["growth"] == memory["end"] - memory["warmed_start"]
    assert memory["requests"] == sum(k["n"] for k in summary["sweep"].values()) + sum(
        p["requests"] for p in summary["phases"].values())
    assert "memory growth over the warmed start" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("verdict: ")
    # The goal: no valid request refused or failed, only 4xx for the malformed ones, no dropped connection.
    assert (run.returncode == 0) == summary["pass"]
    assert summary["pass"], run.stdout[run.stdout.find("failures by kind"):][-4000:]
