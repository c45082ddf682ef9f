"""Posts: ingest of real CrisisLex tweets (geoparsed, embedded), late fusion, and the spatial join with patches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from catalog.db import connect
from tests.conftest import API_KEY, ROOT, data_path

EVENTS = ("2013_Colorado_floods", "2013_Sardinia_floods", "2012_Italy_earthquakes")
KEY = {"X-API-Key": API_KEY}


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def crisis(settings_env: dict[str, str], db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("crisislex")
    for event in EVENTS:  # a subset of CrisisLexT26, read in place through symlinks
        (root / event).symlink_to(data_path("crisislex") / "CrisisLexT26" / event)
    out = cli(["ingest", "tweets", "crisislex", str(root), "--collection", "crisis"], settings_env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _labelled_rows(event: str) -> int:
    path = next((data_path("crisislex") / "CrisisLexT26" / event).glob("*labeled.csv"))
    import csv

    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        return sum(1 for _ in csv.DictReader(f))


def test_ingest_stores_locates_and_embeds(crisis: dict, db_url: str) -> None:
    assert crisis["stored"] > 0.95 * sum(_labelled_rows(e) for e in EVENTS)
    assert crisis["embedded"] == crisis["stored"]
    with connect(db_url) as conn:
        rows = dict(conn.execute(
            "SELECT event, avg((ST_Y(geometry) BETWEEN 38.8 AND 41.3 AND ST_X(geometry) BETWEEN 8.0 AND 9.9)::int) "
            "FROM eofusion.tweets WHERE collection = 'crisis' AND geometry IS NOT NULL GROUP BY event").fetchall())
        located = dict(conn.execute("SELECT event, avg((geometry IS NOT NULL)::int) FROM eofusion.tweets "
                                    "WHERE collection = 'crisis' GROUP BY event").fetchall())
        users = conn.execute("SELECT count(*) FROM eofusion.tweets WHERE collection = 'crisis' AND user_hash ~ "
                             "'^[0-9]+$'").fetchone()[0]
    # Italian tweets about the Sardinia floods are placed in Sardinia (Olbia, Sardegna...), most of them.
    assert rows["2013_Sardinia_floods"] > 0.6
    assert all(v > 0.3 for v in located.values()), located
    assert users == 0


def test_bad_records_are_skipped_with_reasons(settings_env: dict, db_url: str, tmp_path: Path, crisis: dict) -> None:
    good = {"id_str": "1", "full_text": "Flooding on Main Street in Boulder #coflood", "created_at":
            "Thu Sep 12 14:00:00 +0000 2013", "lang": "en", "user": {"id_str": "42"},
            "coordinates": {"type": "Point", "coordinates": [-105.27, 40.01]}}
    lines = [json.dumps(good), "{not json", json.dumps({"id_str": "2", "created_at": good["created_at"]}),
             json.dumps({**good, "id_str": "3", "full_text": "x" * 1_000_000}),
             json.dumps({**good, "id_str": "4", "coordinates": {"type": "Point", "coordinates": [500, 95]}}),
             json.dumps({**good, "id_str": "5", "lang": "xx-unknown"})]
    path = tmp_path / "tweets.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with connect(db_url) as conn:
        before = conn.execute("SELECT count(*) FROM eofusion.tweets WHERE collection = 'crisis'").fetchone()[0]
    out = cli(["ingest", "tweets", "twitter", str(path), "--collection", "jsonl-test"], settings_env)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "skipped" in report["reader"] and report["stored"] >= 2
    with connect(db_url) as conn:
        stored = dict(conn.execute("SELECT id, location_source FROM eofusion.tweets WHERE collection = 'jsonl-test'"
                                   ).fetchall())
        after = conn.execute("SELECT count(*) FROM eofusion.tweets WHERE collection = 'crisis'").fetchone()[0]
    assert stored["1"] == "geotag" and "2" not in stored and "3" not in stored
    assert stored.get("4") != "geotag"  # invalid coordinates never become a location
    assert after == before


def fusion(client: httpx.Client, inputs: dict) -> httpx.Response:
    return client.post("/ogc/processes/late-fusion-search/execution", json={"inputs": inputs})


def test_late_fusion_finds_the_same_event(client: httpx.Client, crisis: dict, db_url: str) -> None:
    with connect(db_url) as conn:
        queries = conn.execute(
            "SELECT id, event FROM eofusion.tweets WHERE collection = 'crisis' AND geometry IS NOT NULL AND "
            "properties->>'informativeness' = 'Related and informative' ORDER BY id LIMIT 40").fetchall()
    assert queries
    hits = total = 0
    for tid, event in queries[::4]:
        r = fusion(client, {"collection": "crisis", "tweet": tid, "limit": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["modalities"]) == {"text", "embedding", "time", "place"}
        res = body["results"]
        assert res and all(set(x["ranks"]) <= set(body["modalities"]) for x in res)
        hits += sum(x["event"] == event for x in res)
        total += len(res)
    assert hits / total > 0.8


def test_late_fusion_free_text_methods_and_errors(client: httpx.Client, crisis: dict) -> None:
    q = {"collection": "crisis", "text": "alluvione Olbia", "datetime": "2013-11-19T12:00:00Z", "lon": 9.5,
         "lat": 40.9, "limit": 10}
    for method in ("tensor", "rrf", "combsum", "combmnz"):
        r = fusion(client, {**q, "method": method})
        assert r.status_code == 200, r.text
        events = [x["event"] for x in r.json()["results"]]
        assert events.count("2013_Sardinia_floods") >= 8
    only = fusion(client, {**q, "modalities": ["place"]}).json()
    assert only["modalities"] == ["place"]
    assert fusion(client, {"collection": "nope", "text": "x"}).status_code == 404
    assert fusion(client, {"collection": "crisis"}).status_code == 400
    assert fusion(client, {"collection": "crisis", "text": "x", "lon": 9.0}).status_code == 400
    assert fusion(client, {"collection": "crisis", "text": "x", "method": "magic"}).status_code == 400


def test_posts_near_patches_both_ways(client: httpx.Client, crisis: dict, archives: dict) -> None:
    near = client.post("/ogc/processes/tweets-near-patches/execution", json={"inputs": {
        "collection": "eurosat", "item": "Forest_872", "tweet_collection": "crisis", "distance_km": 100}}).json()
    assert near["results"] and all(r["distance_km"] <= 100 for r in near["results"])
    assert all(r["patch"] == "Forest_872" for r in near["results"])
    quake = client.post("/ogc/processes/tweets-near-patches/execution", json={"inputs": {
        "collection": "eurosat", "label": "Urban Area", "tweet_collection": "crisis", "distance_km": 100,
        "text": "terremoto"}}).json()
    assert all("terremoto" in r["text"].lower() for r in quake["results"])
    back = client.post("/ogc/processes/tweets-near-patches/execution", json={"inputs": {
        "collection": "eurosat", "tweet_collection": "crisis", "distance_km": 100,
        "tweets": [near["results"][0]["tweet"]]}}).json()
    assert "Forest_872" in {r["patch"] for r in back["results"]}
    bad = client.post("/ogc/processes/tweets-near-patches/execution", json={"inputs": {"collection": "eurosat"}})
    assert bad.status_code == 400 and "give item" in bad.text
