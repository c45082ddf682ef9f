"""Item search throughput and latency: EOFusion's /stac against a plain stac-fastapi-pgstac app.

Both servers run in the same minute on the same database (100,000 items by default), answer
the same queries (bbox + CQL2 on a property), one after the other in interleaved rounds so
machine noise hits both alike. Prints p50/p95 latency, requests per second and the ratio.

    .venv/bin/python bench/stac_search.py [--items 100000] [--requests 400] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.db import connect, database_url, url_parts  # noqa: E402
from catalog.load import upsert_collection, upsert_items  # noqa: E402
from catalog.migrate import migrate  # noqa: E402
from eofusion.config import Settings  # noqa: E402

COLLECTION = "bench-stac-search"
# Items spread over Europe (synthetic metadata: this measures the API, not the imagery).
WEST, SOUTH, EAST, NORTH = -10.0, 36.0, 30.0, 60.0


def make_items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        x, y = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
        d = 0.011  # about 1.2 km, a 120 px patch at 10 m
        level = rng.choice((480, 240, 120, 120, 120))
        day = 1 + i % 28
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": f"p{i:07d}", "collection": COLLECTION,
            "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]},
            "bbox": [x, y, x + d, y + d],
            "properties": {"datetime": f"2021-06-{day:02d}T10:30:00Z", "eofusion:kind": "patch",
                           "eofusion:grid_level": level, "platform": rng.choice(("sentinel-2a", "sentinel-2b"))},
            "links": [], "assets": {},
        })
    return items


def load(url: str, n: int) -> None:
    with connect(url) as conn:
        have = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", (COLLECTION,)).fetchone()
        if have and have[0] == n:
            return
        conn.execute("DELETE FROM pgstac.items WHERE collection = %s", (COLLECTION,))
        upsert_collection(conn, {
            "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION, "description": "benchmark items",
            "license": "CC0-1.0", "links": [],
            "extent": {"spatial": {"bbox": [[WEST, SOUTH, EAST, NORTH]]},
                       "temporal": {"interval": [["2021-06-01T00:00:00Z", "2021-06-30T00:00:00Z"]]}}})
        conn.commit()
        items = make_items(n)
        t0 = time.perf_counter()
        for i in range(0, n, 10000):
            upsert_items(conn, items[i:i + 10000])
            conn.commit()
        print(f"loaded {n} items in {time.perf_counter() - t0:.1f} s")


def wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server at {url} exited")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server at {url} did not start")


def queries(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, y = rng.uniform(WEST, EAST - 2), rng.uniform(SOUTH, NORTH - 2)
        out.append({"collections": [COLLECTION], "bbox": [x, y, x + 2, y + 2], "limit": 10,
                    "filter-lang": "cql2-json",
                    "filter": {"op": "=", "args": [{"property": "eofusion:grid_level"}, 120]}})
    return out


def run(search_url: str, bodies: list[dict], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []

    def one(body: dict) -> float:
        t = time.perf_counter()
        r = client.post(search_url, json=body)
        r.raise_for_status()
        assert r.json()["type"] == "FeatureCollection"
        return time.perf_counter() - t

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(one, bodies))
        wall = time.perf_counter() - t0
    return latencies, len(bodies) / wall


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    settings = Settings.from_env()
    url = database_url(settings)
    migrate(url)
    load(url, args.items)
    p = url_parts(url)
    ports = {"eofusion": 18641, "plain": 18642}
    logs = Path(tempfile.mkdtemp(prefix="bench-stac-"))
    ours = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(ports["eofusion"])],
                            cwd=ROOT, stdout=(logs / "ours.log").open("w"), stderr=subprocess.STDOUT)
    plain_env = {**os.environ, "PGUSER": p["user"], "PGPASSWORD": p["password"], "PGHOST": p["host"],
                 "PGPORT": p["port"], "PGDATABASE": p["dbname"], "ENABLE_TRANSACTIONS_EXTENSIONS": "true"}
    plain = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "stac_fastapi.pgstac.app:create_app",
                              "--port", str(ports["plain"]), "--log-level", "warning"],
                             env=plain_env, stdout=(logs / "plain.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait(f"http://127.0.0.1:{ports['eofusion']}/healthz", ours)
        wait(f"http://127.0.0.1:{ports['plain']}/_mgmt/ping", plain)
        urls = {"eofusion": f"http://127.0.0.1:{ports['eofusion']}/stac/search",
                "plain": f"http://127.0.0.1:{ports['plain']}/search"}
        bodies = queries(args.requests)
        for u in urls.values():  # warm-up: pools, caches, plans
            run(u, bodies[:40], args.concurrency)
        lat: dict[str, list[float]] = {k: [] for k in urls}
        rps: dict[str, list[float]] = {k: [] for k in urls}
        for r in range(args.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for name in order:
                ls, throughput = run(urls[name], bodies, args.concurrency)
                lat[name] += ls
                rps[name].append(throughput)
        print(f"machine: {os.cpu_count()} cores; items {args.items}; {args.requests} requests x {args.rounds} rounds, "
              f"concurrency {args.concurrency}; query: bbox 2x2 deg + CQL2 eofusion:grid_level = 120, limit 10")
        print(f"{'server':10s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name in urls:
            print(f"{name:10s} {statistics.median(rps[name]):8.1f} {pct(lat[name], 50):8.1f} {pct(lat[name], 95):8.1f}")
        ratio = statistics.median(rps["eofusion"]) / statistics.median(rps["plain"])
        print(f"ratio eofusion/plain requests per second: {ratio:.3f} (goal >= 0.95)")
    finally:
        for proc in (ours, plain):
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
