"""Load with hostile input: N clients for T seconds against a running EOFusion server (loopback only).

Each client is one keep-alive connection, as a real client's would be, and loops until its phase ends over a mix
of valid requests: STAC item search (GET and POST, with bbox, datetime and CQL2 filters), similarity search
(``similar_to`` an item or positive/negative items, paging tokens included), active-learning rounds (each client
runs its own session, marking the previous round's queries), tiles and previews of the demo scene, late-fusion
search of posts, and OGC API Features items. In the mixed phase about 10 % of the requests are malformed: a bad
bbox, bad JSON, a tile parameter the tiler does not support, an oversize preview, a bad paging token, a process
body that is not an object, an unknown collection, an empty ``sortby``. Each of them must get a 4xx.

After a warm-up and a sweep (every malformed variant once, each followed by a valid request on the same
connection), a baseline phase of valid requests only and the mixed phase run in the same process and the same
minutes, in alternating slices (so a burst of the machine's other work falls on both), and the mixed phase is read
as ratios against the baseline (p50 per kind and throughput). Printed: per kind the count, p50/p95, status counts
and transport errors (``httpx.TransportError``, e.g. a ``ReadError`` when the server drops a keep-alive
connection), requests per second, and the server's memory (RSS of its process and children, from ``/proc``):
at the start, once settled (a fresh server still loads its text embedder in the background after it answers),
after the warm-up (the warmed start), between and after the phases, with the growth over the warmed start, per
1000 requests, and whether it ends back near the warmed start (at most ``--memory-tolerance``, 10 %, over it).

Exit status 1 when a valid request was not answered 2xx, any transport error occurred, or a malformed request got
anything but a 4xx (or, with ``--memory-gate``, memory did not end back near the warmed start); 2 when the server
or its demo data cannot be found.

    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --api-key KEY [--clients 20] [--seconds 60]
        [--baseline-seconds 20] [--rounds 4] [--malformed 0.1] [--pid PID] [--exclude KIND,...] [--only KIND,...]
        [--settle-seconds 60] [--memory-tolerance 0.1] [--memory-gate] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

VALID_WEIGHTS: dict[str, int] = {"stac-get": 2, "stac-post": 2, "similar": 2, "al-round": 1, "tile": 2,
                                 "late-fusion": 1, "ogc-items": 2}
MALFORMED_KINDS: tuple[str, ...] = ("bad-bbox", "bad-json", "bad-tile-param", "oversize-preview", "bad-token",
                                    "process-not-object", "unknown-collection", "bad-sortby")
#: Free-text late-fusion queries: what a user searching the Colorado flood posts would type.
FUSION_TEXTS: tuple[str, ...] = ("flooding in Boulder", "road closed by the flood", "evacuation creek rising",
                                 "heavy rain and flash flood warning", "volunteers help flood victims",
                                 "bridge washed out", "shelter for evacuees")
POSTS_LAYER = "tweets"  # the OGC API Features layer of every posts collection (filtered by its "collection")
DATETIME_RANGE = "2015-01-01T00:00:00Z/2018-12-31T23:59:59Z"
FAILURE_EXAMPLES = 3  # kept per kind, to say what failed
#: Variant picks of the warm-up: each valid kind once per pick, so every variant of every kind runs once before
#: the "after warm-up" reading (the thresholds of ``valid_call`` lie between them).
WARM_ROLLS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Memory is "back near where it started" when the last reading is at most this share over the warmed start.
MEMORY_TOLERANCE = 0.10


@dataclass(frozen=True)
class Call:
    """One HTTP request of the mix.

    Attributes:
        kind: Its row in the report.
        malformed: Whether it must be refused with a 4xx (else it must succeed with a 2xx).
        method: HTTP method.
        path: Path and query, relative to the server's root.
        body: A JSON body (sent as JSON), or raw bytes sent as ``application/json``.
        keyed: Whether to send the API key.
        on_response: Called with a 2xx response (the active-learning session keeps its state this way).
    """

    kind: str
    malformed: bool
    method: str
    path: str
    body: Any = None
    keyed: bool = False
    on_response: Callable[[httpx.Response], None] | None = None


@dataclass(frozen=True)
class Outcome:
    """What one request got: a status, or the name of the transport error."""

    phase: str
    kind: str
    malformed: bool
    seconds: float
    status: int | None
    error: str | None
    detail: str
    after: str = ""  # the request before it on the same connection ("kind status"), for transport errors

    @property
    def failed(self) -> bool:
        """A valid request not answered 2xx, a malformed one not answered 4xx, or no answer at all."""
        if self.status is None:
            return True
        return not (400 <= self.status < 500) if self.malformed else not (200 <= self.status < 300)


@dataclass(frozen=True)
class Patch:
    """A patch of the demo scene the mix refers to."""

    id: str
    thumbnail: str
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class Post:
    """A stored post: its id, and its time and place when known."""

    id: str
    datetime: str | None
    lon: float | None
    lat: float | None


@dataclass(frozen=True)
class Targets:
    """What the valid requests point at, read from the server before the phases.

    Attributes:
        collection: The demo scene's patch collection.
        scene: The scene item (tiles and previews).
        level: The grid level whose patches the searches and rounds use.
        patches: Patches of that level.
        extent: Bounding box of those patches (lon/lat).
        tiles: ``(z, x, y)`` WebMercator tiles over the scene.
        outside: A WebMercator tile away from the scene.
        tweets: The posts collection.
        posts: Some of its posts.
    """

    collection: str
    scene: str
    level: int
    patches: list[Patch]
    extent: tuple[float, float, float, float]
    tiles: list[tuple[int, int, int]]
    outside: tuple[int, int, int]
    tweets: str
    posts: list[Post]


@dataclass
class Session:
    """One client's active-learning session and connection state.

    Attributes:
        id: The session, once a round started it.
        queries: The queries of its last round (the next round marks them).
        last: The last outcome on the client's connection (a transport error names it).
    """

    id: str | None = None
    queries: list[str] = field(default_factory=list)
    last: Outcome | None = None

    def update(self, response: httpx.Response) -> None:
        """Keep the session and the next questions from a round's answer."""
        body = response.json()
        self.id = body["session"]
        self.queries = [q["item"] for q in body.get("queries", [])]


# -- the mix -------------------------------------------------------------------------------------------------------
def _sub_bbox(rng: random.Random, extent: tuple[float, float, float, float]) -> list[float]:
    """A random box covering 20-70 % of the extent's width and height."""
    west, south, east, north = extent
    w, h = (east - west) * rng.uniform(0.2, 0.7), (north - south) * rng.uniform(0.2, 0.7)
    x, y = rng.uniform(west, east - w), rng.uniform(south, north - h)
    return [round(x, 6), round(y, 6), round(x + w, 6), round(y + h, 6)]


def _grid_filter(level: int) -> dict[str, Any]:
    return {"op": "=", "args": [{"property": "eofusion:grid_level"}, level]}


def _query(params: dict[str, Any]) -> str:
    return str(httpx.QueryParams(params))


def _rgb(t: Targets) -> dict[str, str]:
    return {"collection": t.collection, "item": t.scene, "assets": "s2|bidx=3,2,1", "rescale": "0,3000"}


def valid_call(kind: str, rng: random.Random, t: Targets, session: Session, roll: float | None = None) -> Call:
    """A valid request of one kind, drawn at random (``roll`` in [0, 1) picks the variant instead)."""
    c, patch = t.collection, rng.choice(t.patches)
    if roll is None:
        roll = rng.random()
    if kind == "stac-get":
        if roll < 0.5:
            params: dict[str, Any] = {"collections": c, "bbox": ",".join(map(str, _sub_bbox(rng, t.extent))),
                                      "datetime": DATETIME_RANGE, "filter-lang": "cql2-text",
                                      "filter": f"eofusion:grid_level = {t.level}", "limit": rng.randint(5, 50)}
            return Call(kind, False, "GET", "/stac/search?" + _query(params))
        params = {"bbox": ",".join(map(str, _sub_bbox(rng, t.extent))), "limit": rng.randint(5, 30)}
        return Call(kind, False, "GET", f"/stac/collections/{c}/items?" + _query(params))
    if kind == "stac-post":
        body: dict[str, Any] = {"collections": [c], "bbox": _sub_bbox(rng, t.extent), "datetime": DATETIME_RANGE,
                                "filter-lang": "cql2-json", "filter": _grid_filter(t.level),
                                "limit": rng.randint(5, 50)}
        if roll < 0.5:
            body["sortby"] = [{"field": "id", "direction": rng.choice(("asc", "desc"))}]
        return Call(kind, False, "POST", "/stac/search", body)
    if kind == "similar":
        if roll < 0.25:
            return Call(kind, False, "GET", f"/stac/collections/{c}/items/{patch.id}/similar?limit=10")
        body = {"collections": [c], "similar_to": {"collection": c, "item": patch.id}, "limit": 10}
        if roll < 0.45:
            body["filter-lang"], body["filter"] = "cql2-json", _grid_filter(t.level)
            body["bbox"] = _sub_bbox(rng, t.extent)
        elif roll < 0.65:
            body["token"] = f"similar:{rng.choice((10, 20, 50))}"  # the next pages, as a client follows them
        elif roll < 0.8:
            pos, neg = rng.sample(t.patches, 3), rng.sample(t.patches, 2)
            body["similar_to"] = {"positive": [{"collection": c, "item": p.id} for p in pos],
                                  "negative": [{"collection": c, "item": p.id} for p in neg]}
        return Call(kind, False, "POST", "/stac/search", body)
    if kind == "al-round":
        if session.id is None or not session.queries:
            marked = rng.sample(t.patches, 4)
            inputs: dict[str, Any] = {"pool": c, "level": t.level, "n_top": 20, "n_queries": 10, "user": "load",
                                      "feedback": [{"item": p.id, "positive": i < 2} for i, p in enumerate(marked)]}
        else:
            inputs = {"session": session.id, "n_top": 20, "n_queries": 10,
                      "feedback": [{"item": q, "positive": rng.random() < 0.3} for q in session.queries[:5]]}
        return Call(kind, False, "POST", "/ogc/processes/active-learning-round/execution", {"inputs": inputs},
                    keyed=True, on_response=session.update)
    if kind == "tile":
        if roll < 0.4:
            return Call(kind, False, "GET", patch.thumbnail)
        if roll < 0.6:
            return Call(kind, False, "GET", "/tiles/stac/preview.png?" + _query({**_rgb(t), "max_size": 256}))
        z, x, y = rng.choice(t.tiles)
        return Call(kind, False, "GET", f"/tiles/stac/tiles/WebMercatorQuad/{z}/{x}/{y}.png?" + _query(_rgb(t)))
    if kind == "late-fusion":
        post = rng.choice(t.posts)
        if roll < 0.5:
            inputs = {"collection": t.tweets, "tweet": post.id, "limit": 10}
        else:
            inputs = {"collection": t.tweets, "text": rng.choice(FUSION_TEXTS), "limit": 10}
            if post.datetime:
                inputs["datetime"] = post.datetime
            if post.lon is not None and post.lat is not None:
                inputs["lon"], inputs["lat"] = post.lon, post.lat
        return Call(kind, False, "POST", "/ogc/processes/late-fusion-search/execution", {"inputs": inputs})
    if kind == "ogc-items":
        if roll < 0.4:
            params = {"f": "json", "limit": 10, "offset": rng.randint(0, 200)}
            return Call(kind, False, "GET", "/ogc/collections/patches/items?" + _query(params))
        if roll < 0.7:
            params = {"f": "json", "limit": 20, "bbox": ",".join(map(str, _sub_bbox(rng, t.extent)))}
            return Call(kind, False, "GET", "/ogc/collections/patches/items?" + _query(params))
        params = {"f": "json", "limit": 10, "collection": t.tweets, "offset": rng.randint(0, 100)}
        return Call(kind, False, "GET", f"/ogc/collections/{POSTS_LAYER}/items?" + _query(params))
    raise ValueError(f"unknown kind {kind!r}")


def malformed_variants(kind: str, rng: random.Random, t: Targets) -> list[Call]:
    """The variants of one malformed kind (each must be refused with a 4xx), about a random patch."""
    c, patch = t.collection, rng.choice(t.patches)
    variants: list[Call]
    if kind == "bad-bbox":
        variants = [Call(kind, True, "GET", "/stac/search?bbox=1,2,3"),
                    Call(kind, True, "GET", "/stac/search?bbox=a,b,c,d"),
                    Call(kind, True, "POST", "/stac/search", {"collections": [c], "bbox": [10, 20]}),
                    Call(kind, True, "GET", "/ogc/collections/patches/items?f=json&bbox=1,2")]
    elif kind == "bad-json":
        variants = [Call(kind, True, "POST", "/stac/search", b'{"collections": ['),
                    Call(kind, True, "POST", "/stac/search", [None, None]),
                    Call(kind, True, "POST", "/ogc/processes/late-fusion-search/execution", b'{"inputs": {')]
    elif kind == "bad-tile-param":
        bad = {**_rgb(t), "assets": "s2", "asset_bidx": "s2|3,2,1"}
        variants = [Call(kind, True, "GET", "/tiles/stac/preview.png?" + _query(bad)),
                    Call(kind, True, "GET", "/tiles/stac/preview.png?" + _query({**_rgb(t), "rescale": "x,y"})),
                    Call(kind, True, "GET", "/tiles/stac/tiles/WebMercatorQuad/40/0/0.png?" + _query(_rgb(t))),
                    Call(kind, True, "GET", "/tiles/stac/tiles/WebMercatorQuad/{}/{}/{}.png?".format(*t.outside)
                         + _query(_rgb(t)))]
    elif kind == "oversize-preview":
        variants = [Call(kind, True, "GET", "/tiles/stac/preview.png?" + _query(
                        {**_rgb(t), "width": 20000, "height": 20000})),
                    Call(kind, True, "GET", "/tiles/stac/preview.png?" + _query({**_rgb(t), "max_size": 20000}))]
    elif kind == "bad-token":
        similar = {"collections": [c], "similar_to": {"collection": c, "item": patch.id}, "limit": 10}
        variants = [Call(kind, True, "POST", "/stac/search", {**similar, "token": "similar:²"}),
                    Call(kind, True, "POST", "/stac/search", {**similar, "token": "similar:" + "9" * 5000}),
                    Call(kind, True, "GET", f"/stac/collections/{c}/items/{patch.id}/similar?token=similar:%C2%B2")]
    elif kind == "process-not-object":
        variants = [Call(kind, True, "POST", "/ogc/processes/late-fusion-search/execution", [None, None]),
                    Call(kind, True, "POST", "/ogc/processes/late-fusion-search/execution", "inputs"),
                    Call(kind, True, "POST", "/ogc/processes/late-fusion-search/execution", {"inputs": [1, 2]}),
                    Call(kind, True, "POST", "/ogc/processes/active-learning-round/execution", {"inputs": "x"},
                         keyed=True)]
    elif kind == "unknown-collection":
        variants = [Call(kind, True, "GET", "/stac/collections/0/items/0"),
                    Call(kind, True, "GET", "/stac/collections/no-such-collection/items"),
                    Call(kind, True, "GET", "/ogc/collections/no-such-collection/items?f=json"),
                    Call(kind, True, "POST", "/stac/search",
                         {"similar_to": {"collection": "no-such-collection", "item": "x"}, "limit": 5})]
    elif kind == "bad-sortby":
        variants = [Call(kind, True, "GET", "/ogc/collections/patches/items?f=json&sortby="),
                    Call(kind, True, "GET", "/stac/search?limit=-1")]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return variants


def malformed_call(kind: str, rng: random.Random, t: Targets) -> Call:
    """A malformed request of one kind, drawn among the kind's variants."""
    return rng.choice(malformed_variants(kind, rng, t))


# -- the server's memory ----------------------------------------------------------------------------------------------
def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (from /proc/net/tcp* and the processes' sockets), if visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def _parents() -> dict[int, int]:
    """pid -> parent pid of every visible process."""
    out: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            out[int(proc.name)] = int(stat[stat.rindex(")") + 2:].split()[1])  # after "(comm)": state, ppid
    return out


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    parents = _parents()
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def rss_bytes(pid: int) -> tuple[int, int]:
    """(RSS of the process and its descendants in bytes, number of descendants)."""
    tree = process_tree(pid)
    total = 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total, len(tree) - 1


def settle(pid: int, timeout: float, window: float = 5.0, step: float = 1.0) -> tuple[int, float]:
    """Wait until the server's RSS stops changing, at most ``timeout`` seconds.

    A fresh server answers ``/healthz`` while it still loads what it loads in the background at start-up (the
    text embedder, about 200 MB): that is its start, not growth under load. Settled means the readings of the
    last ``window`` seconds lie within max(2 MB, 0.5 %) of each other; on a busy machine a load can pause that
    long, but the warm-up's free-text late-fusion queries wait for the embedder, so the warmed start (the
    reading after the warm-up) always includes it.

    Returns:
        (the last RSS reading in bytes, seconds waited).
    """
    t0 = time.monotonic()
    readings: list[int] = []
    span = int(window / step) + 1
    while True:
        readings.append(rss_bytes(pid)[0])
        recent = readings[-span:]
        if len(recent) == span and max(recent) - min(recent) <= max(2 * 2**20, 0.005 * max(recent)):
            break
        if time.monotonic() - t0 >= timeout:
            break
        time.sleep(step)
    return readings[-1], time.monotonic() - t0


def memory_summary(memory: dict[str, int], requests: int, tolerance: float) -> dict[str, Any]:
    """Growth from the warmed start (the reading after the warm-up) to the last reading.

    Args:
        memory: Readings in bytes, in the order taken ("before", "settled", "after warm-up", ...).
        requests: Requests sent after the warm-up (sweep and phases).
        tolerance: The share over the warmed start still counted as "back near where it started".
    """
    start = memory.get("after warm-up", memory.get("settled", memory["before"]))
    end = list(memory.values())[-1]
    growth = end - start
    return {"warmed_start": start, "end": end, "growth": growth, "growth_share": round(growth / start, 4),
            "growth_per_1000_requests": round(growth * 1000 / requests) if requests else None,
            "requests": requests, "tolerance": tolerance, "near_start": end <= start * (1 + tolerance),
            "start_up_growth": memory.get("settled", memory["before"]) - memory["before"]}


# -- discovery ------------------------------------------------------------------------------------------------------
def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The WebMercator tile holding a point (the usual slippy-map formula)."""
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


class MissingData(Exception):
    """The server lacks what the mix needs (the demo scene's patches, its scene item, posts)."""


def discover(client: httpx.Client, collection: str, level: int, tweets: str) -> Targets:
    """Read what the mix points at: patches of one level, the scene item, tiles over it and some posts.

    Raises:
        MissingData: the collection, its patches, its scene or the posts are missing.
    """
    found = client.post("/stac/search", json={"collections": [collection], "filter-lang": "cql2-json",
                                              "filter": _grid_filter(level), "limit": 500})
    if found.status_code != 200:
        raise MissingData(f"cannot search {collection!r}: {found.status_code} {found.text[:300]}")
    features = found.json()["features"]
    patches = [Patch(f["id"], f["assets"]["thumbnail"]["href"], tuple(f["bbox"]))  # type: ignore[arg-type]
               for f in features if "thumbnail" in f.get("assets", {})]
    if len(patches) < 5:
        raise MissingData(f"{collection!r} has {len(patches)} patches at level {level}: is the demo loaded?")
    parents = {f["properties"].get("eofusion:parent") for f in features}
    scene = next((f["properties"].get("eofusion:scene") for f in features
                  if f["properties"].get("eofusion:scene")), None)
    if scene is None:
        # The scene is the root of the patches' parent chain.
        items = client.get(f"/stac/collections/{collection}/items", params={"limit": 200}).json()["features"]
        scene = next((f["id"] for f in items if f["properties"].get("eofusion:kind") == "scene"), None)
    if scene is None:
        raise MissingData(f"no scene item in {collection!r} (patches' parents: {sorted(map(str, parents))[:3]})")
    west = min(p.bbox[0] for p in patches)
    south = min(p.bbox[1] for p in patches)
    east = max(p.bbox[2] for p in patches)
    north = max(p.bbox[3] for p in patches)
    tiles: list[tuple[int, int, int]] = []
    for z in (12, 13, 14):  # tiles that overlap the scene: a tile outside it is a 404 (a malformed kind)
        (x0, y0), (x1, y1) = _tile_of(west, north, z), _tile_of(east, south, z)
        tiles += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    lon, lat = (west + east) / 2, (south + north) / 2
    outside = (11, *_tile_of(lon + 2.0, lat, 11))  # 2 degrees east: open sea, no scene there
    got = client.get(f"/ogc/collections/{POSTS_LAYER}/items", params={"f": "json", "limit": 200, "collection": tweets})
    if got.status_code != 200 or not got.json().get("features"):
        raise MissingData(f"no posts in the {tweets!r} collection ({got.status_code}): start the demo with --tweets")
    posts = []
    for f in got.json()["features"]:
        props, geom = f.get("properties") or {}, f.get("geometry") or {}
        point = geom.get("coordinates") if geom.get("type") == "Point" else None
        when = props.get("datetime") or props.get("created_at")
        # OGC ids are "<collection>.<post id>"; late-fusion-search takes the post id.
        post_id = props.get("tweet_id") or str(f["id"]).split(".", 1)[-1]
        posts.append(Post(str(post_id), str(when) if when else None,
                          float(point[0]) if point else None, float(point[1]) if point else None))
    return Targets(collection, str(scene), level, patches, (west, south, east, north), tiles, outside, tweets, posts)


# -- running --------------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """One phase's settings and outcomes."""

    name: str
    seconds: float
    malformed_share: float
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed: float = 0.0


async def one_request(http: httpx.AsyncClient, call: Call, api_key: str, phase: str,
                      previous: Outcome | None = None) -> Outcome:
    """Send one request and time it to the last byte of the answer.

    Args:
        http: The client's connection.
        call: The request.
        api_key: Sent when the call is keyed.
        phase: Recorded in the outcome.
        previous: The last outcome on this connection: a transport error names it (a server that drops the
            connection after answering a request shows up on the request that follows).
    """
    headers = {"X-API-Key": api_key} if call.keyed else {}
    kwargs: dict[str, Any] = {}
    if isinstance(call.body, bytes):
        kwargs["content"], headers["Content-Type"] = call.body, "application/json"
    elif call.body is not None:
        kwargs["json"] = call.body
    what = f"{call.method} {call.path[:160]}"
    if call.body is not None:
        shown = call.body.decode(errors="replace") if isinstance(call.body, bytes) else json.dumps(call.body)
        what += f" {shown[:120]}"
    t0 = time.perf_counter()
    try:
        response = await http.request(call.method, call.path, headers=headers, **kwargs)
    except httpx.TransportError as err:
        after = f"{previous.kind} {previous.status or previous.error}" if previous is not None else "nothing"
        return Outcome(phase, call.kind, call.malformed, time.perf_counter() - t0, None, type(err).__name__,
                       f"{what}: {err!r}, after {after} on this connection"[:400], after)
    seconds = time.perf_counter() - t0
    if call.on_response is not None and 200 <= response.status_code < 300:
        call.on_response(response)
    return Outcome(phase, call.kind, call.malformed, seconds, response.status_code, None,
                   f"{what} -> {response.status_code} {response.text[:200]!r}")


@dataclass(frozen=True)
class Timeline:
    """When each phase runs: consecutive windows ``(end, phase)`` from a start time."""

    start: float
    windows: list[tuple[float, Phase]]

    @classmethod
    def alternating(cls, start: float, phases: list[Phase], rounds: int) -> Timeline:
        """Each phase cut into ``rounds`` windows, the phases taking turns (baseline, mixed, baseline...)."""
        windows, t = [], start
        for _ in range(rounds):
            for phase in phases:
                t += phase.seconds / rounds
                windows.append((t, phase))
        return cls(start, windows)

    @property
    def end(self) -> float:
        """When the last window closes."""
        return self.windows[-1][0]

    def phase_at(self, t: float) -> Phase | None:
        """The phase whose window holds time ``t`` (None after the last one)."""
        return next((phase for end, phase in self.windows if t < end), None)


async def client_loop(http: httpx.AsyncClient, rng: random.Random, targets: Targets, session: Session,
                      timeline: Timeline, valid_kinds: list[str], weights: list[int], malformed_kinds: list[str],
                      api_key: str) -> None:
    """One client: request after request on its connection until the timeline ends.

    A request belongs to the phase of the window it starts in: the clients never wait for each other between
    windows, so every window runs at full concurrency (no tail of the last requests in each window).
    """
    while (phase := timeline.phase_at(time.monotonic())) is not None:
        if malformed_kinds and rng.random() < phase.malformed_share:
            call = malformed_call(rng.choice(malformed_kinds), rng, targets)
        else:
            call = valid_call(rng.choices(valid_kinds, weights)[0], rng, targets, session)
        outcome = await one_request(http, call, api_key, phase.name, session.last)
        session.last = outcome
        if call.kind == "al-round" and outcome.failed:
            session.id, session.queries = None, []  # start a new session rather than repeat a refused round
        phase.outcomes.append(outcome)


async def run_phases(url: str, api_key: str, clients: int, phases: list[Phase], targets: Targets,
                     valid_kinds: list[str], malformed_kinds: list[str], timeout: float, seed: int,
                     between: Callable[[str], None], warmup: list[Outcome], rounds: int = 1) -> float:
    """Warm the server up and sweep the malformed variants, then run the phases with the same clients.

    The warm-up sends every variant of each valid kind once from one client (:data:`WARM_ROLLS`), so models,
    pools and libraries the server loads on first use (the active-learning pool, the CQL2 validator, GDAL's
    drivers) are neither timed in the baseline nor counted as growth under load. The sweep then sends every
    variant of every malformed kind once, each followed by a valid request on the same connection (which a
    server that drops the connection after its answer fails): every variant is checked even in a short run.
    Each phase is then cut into ``rounds`` windows, run alternately (baseline, mixed, baseline, mixed...).

    Returns:
        Seconds the last requests took to end after the last window closed.
    """
    weights = [VALID_WEIGHTS[k] for k in valid_kinds]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)  # one connection per client
    https = [httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) for _ in range(clients)]
    rngs = [random.Random(seed * 1000 + i) for i in range(clients)]
    sessions = [Session() for _ in range(clients)]
    try:
        warm_rng, warm_session = random.Random(seed - 1), Session()
        for roll in WARM_ROLLS:
            for kind in valid_kinds:
                warmup.append(await one_request(https[0], valid_call(kind, warm_rng, targets, warm_session, roll),
                                                api_key, "warm-up"))
        between("warm-up")
        for kind in malformed_kinds:
            for bad in malformed_variants(kind, warm_rng, targets):
                warmup.append(await one_request(https[0], bad, api_key, "sweep", warmup[-1]))
                good = valid_call(warm_rng.choice(valid_kinds), warm_rng, targets, warm_session)
                warmup.append(await one_request(https[0], good, api_key, "sweep", warmup[-1]))
        between("sweep")
        sessions[0].last = warmup[-1] if warmup else None  # the warm-up and sweep ran on the first connection
        # Windows of the phases alternate, so a burst of the machine's other work falls on both alike.
        timeline = Timeline.alternating(time.monotonic(), phases, rounds)
        await asyncio.gather(*(client_loop(h, r, targets, s, timeline, valid_kinds, weights, malformed_kinds,
                                           api_key) for h, r, s in zip(https, rngs, sessions, strict=True)))
        for phase in phases:
            phase.elapsed = phase.seconds  # requests are counted by the window they started in
        between("the phases")
        return time.monotonic() - timeline.end
    finally:
        await asyncio.gather(*(h.aclose() for h in https))


# -- the report -----------------------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def kind_stats(outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    """Per kind: count, p50/p95 in ms (of the answered requests), status counts, transport errors, failures."""
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_kind[o.kind].append(o)
    stats: dict[str, dict[str, Any]] = {}
    for kind, rows in by_kind.items():
        answered = [o.seconds * 1000 for o in rows if o.status is not None]
        stats[kind] = {
            "malformed": rows[0].malformed, "n": len(rows),
            "p50_ms": round(_pct(answered, 0.5), 1), "p95_ms": round(_pct(answered, 0.95), 1),
            "statuses": dict(sorted(Counter(str(o.status) for o in rows if o.status is not None).items())),
            "transport_errors": dict(Counter(o.error for o in rows if o.error)),
            "failures": sum(o.failed for o in rows),
            "failure_examples": [o.detail for o in rows if o.failed][:FAILURE_EXAMPLES],
        }
    return stats


def phase_summary(phase: Phase) -> dict[str, Any]:
    """A phase's totals and per-kind figures."""
    valid = [o for o in phase.outcomes if not o.malformed]
    bad = [o for o in phase.outcomes if o.malformed]
    elapsed = phase.elapsed or phase.seconds
    return {
        "seconds": round(elapsed, 1), "requests": len(phase.outcomes),
        "requests_per_s": round(len(phase.outcomes) / elapsed, 1),
        "valid_requests_per_s": round(len(valid) / elapsed, 1),
        "malformed_share": round(len(bad) / len(phase.outcomes), 3) if phase.outcomes else 0.0,
        "valid_not_2xx": sum(o.failed for o in valid if o.status is not None),
        "malformed_not_4xx": sum(o.failed for o in bad if o.status is not None),
        "transport_errors": sum(o.error is not None for o in phase.outcomes),
        "valid_p50_ms": round(_pct([o.seconds * 1000 for o in valid if o.status is not None], 0.5), 1),
        "kinds": kind_stats(phase.outcomes),
    }


def print_phase(name: str, s: dict[str, Any]) -> None:
    """The phase's table."""
    print(f"\nphase {name}: {s['seconds']} s, {s['requests']} requests, {s['requests_per_s']} req/s "
          f"(valid {s['valid_requests_per_s']} req/s), malformed share {s['malformed_share']:.1%}")
    print_kinds(s["kinds"])


def print_kinds(kinds: dict[str, dict[str, Any]]) -> None:
    """One row per kind: count, p50/p95, status counts, transport errors."""
    print(f"  {'kind':<26} {'n':>6} {'p50 ms':>9} {'p95 ms':>9}  {'statuses':<28} transport errors")
    order = list(VALID_WEIGHTS) + list(MALFORMED_KINDS)
    for kind in sorted(kinds, key=order.index):
        k = kinds[kind]
        statuses = " ".join(f"{code}:{n}" for code, n in k["statuses"].items()) or "-"
        errors = " ".join(f"{e}:{n}" for e, n in k["transport_errors"].items()) or "0"
        label = kind + (" (bad)" if k["malformed"] else "")
        print(f"  {label:<26} {k['n']:>6} {k['p50_ms']:>9.1f} {k['p95_ms']:>9.1f}  {statuses:<28} {errors}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Parse the options, find the server and its data, run both phases and report. Returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (loopback only)")
    ap.add_argument("--api-key", default=os.environ.get("EOFUSION_LOAD_API_KEY", ""),
                    help="a key of EOFUSION_API_KEYS (active-learning rounds need one); or EOFUSION_LOAD_API_KEY")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the mixed phase")
    ap.add_argument("--baseline-seconds", type=float, default=20.0, help="length of the valid-only phase first")
    ap.add_argument("--rounds", type=int, default=4,
                    help="each phase is cut into this many slices, run alternately (baseline, mixed, ...)")
    ap.add_argument("--malformed", type=float, default=0.1, help="share of malformed requests in the mixed phase")
    ap.add_argument("--rest-seconds", type=float, default=10.0, help="idle time before the last memory reading")
    ap.add_argument("--settle-seconds", type=float, default=60.0,
                    help="at most this long, wait for the server's RSS to settle before the warm-up (0: do not)")
    ap.add_argument("--memory-tolerance", type=float, default=MEMORY_TOLERANCE,
                    help="memory is back near the start when the last reading is at most this share over the "
                         "reading after the warm-up")
    ap.add_argument("--memory-gate", action="store_true",
                    help="also fail (exit status 1) when memory is not back near the start")
    ap.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    ap.add_argument("--collection", default="demo-sentinel-2", help="the demo scene's patch collection")
    ap.add_argument("--level", type=int, default=120, help="grid level of the patches searched and marked")
    ap.add_argument("--tweets", default="tweets", help="the posts collection (demo --tweets)")
    ap.add_argument("--pid", type=int, default=None, help="server process (default: the one listening on the port)")
    ap.add_argument("--exclude", default="", help="comma-separated kinds to leave out of the mix")
    ap.add_argument("--only", default="",
                    help="comma-separated kinds to keep (all others left out): one kind's memory and latency alone")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the summary as JSON to this file")
    args = ap.parse_args(argv)

    if not _loopback(args.url):
        ap.error(f"--url must be a loopback address, got {args.url}")
    if args.clients < 1 or args.seconds <= 0 or args.baseline_seconds < 0 or not 0 <= args.malformed < 1 \
            or args.rounds < 1:
        ap.error("--clients >= 1, --seconds > 0, --baseline-seconds >= 0, 0 <= --malformed < 1, --rounds >= 1")
    excluded = {k for k in args.exclude.split(",") if k}
    only = {k for k in args.only.split(",") if k}
    unknown = (excluded | only) - set(VALID_WEIGHTS) - set(MALFORMED_KINDS)
    if unknown:
        ap.error(f"unknown kinds in --exclude/--only: {', '.join(sorted(unknown))}")
    if only:
        excluded |= (set(VALID_WEIGHTS) | set(MALFORMED_KINDS)) - only
    valid_kinds = [k for k in VALID_WEIGHTS if k not in excluded]
    malformed_kinds = [k for k in MALFORMED_KINDS if k not in excluded]
    if not valid_kinds:
        ap.error("--exclude leaves no valid kind")
    if "al-round" in valid_kinds and not args.api_key:
        ap.error("active-learning rounds need --api-key (or --exclude al-round)")

    port = urlparse(args.url).port or 80
    pid = args.pid or listening_pid(port)
    with httpx.Client(base_url=args.url, timeout=args.timeout) as client:
        try:
            health = client.get("/healthz")
        except httpx.TransportError as err:
            print(f"no server at {args.url}: {err!r}", file=sys.stderr)
            return 2
        if health.status_code != 200:
            print(f"{args.url}/healthz answered {health.status_code}", file=sys.stderr)
            return 2
        try:
            targets = discover(client, args.collection, args.level, args.tweets)
        except MissingData as err:
            print(err, file=sys.stderr)
            return 2

    memory: dict[str, int] = {}

    def read_memory(when: str) -> None:
        if pid is not None:
            memory[when], _ = rss_bytes(pid)

    load_before = os.getloadavg()
    children = rss_bytes(pid)[1] if pid is not None else 0
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"machine: nproc {os.cpu_count()}, memory {mem_total / 2**30:.1f} GB, load average "
          f"{' '.join(f'{x:.1f}' for x in load_before)}")
    print(f"server: {args.url}, pid {pid if pid is not None else 'not found'} ({children} child processes); "
          f"{args.clients} clients, one keep-alive connection each; baseline {args.baseline_seconds:g} s of valid "
          f"requests and mixed {args.seconds:g} s with {args.malformed:.0%} malformed, alternating in "
          f"{args.rounds} windows each")
    print(f"targets: {targets.collection} scene {targets.scene}, {len(targets.patches)} patches at level "
          f"{targets.level}, {len(targets.posts)} posts of {targets.tweets!r}; kinds left out: "
          f"{', '.join(sorted(excluded)) or 'none'}")
    read_memory("before")
    if pid is not None and args.settle_seconds > 0:
        memory["settled"], waited = settle(pid, args.settle_seconds)
        print(f"settled: RSS {_mb(memory['settled'])} after {waited:.0f} s (at the start {_mb(memory['before'])})")
    warmup: list[Outcome] = []
    phases = ([Phase("baseline", args.baseline_seconds, 0.0)] if args.baseline_seconds > 0 else []) + \
        [Phase("mixed", args.seconds, args.malformed)]
    drained = asyncio.run(run_phases(args.url, args.api_key, args.clients, phases, targets, valid_kinds,
                                     malformed_kinds, args.timeout, args.seed,
                                     lambda name: read_memory(f"after {name}"), warmup, args.rounds))
    time.sleep(args.rest_seconds)
    read_memory(f"after {args.rest_seconds:g} s idle")

    summaries = {p.name: phase_summary(p) for p in phases}
    print(f"\n(requests count in the window they started in; the last ones ended {drained:.1f} s after the last "
          "window closed)")
    warm = [o for o in warmup if o.phase == "warm-up"]
    sweep = [o for o in warmup if o.phase == "sweep"]
    print(f"\nwarm-up (not in the phases): every variant of each valid kind once, {len(warm)} requests: " + ", ".join(
        f"{kind} {' '.join(f'{c}:{n}' for c, n in k['statuses'].items())}"
        + (f" {' '.join(f'{e}:{n}' for e, n in k['transport_errors'].items())}" if k["transport_errors"] else "")
        + f" (p50 {k['p50_ms']:.0f} ms)" for kind, k in kind_stats(warm).items()))
    if sweep:
        print(f"\nsweep: each of {sum(o.malformed for o in sweep)} malformed variants once, each followed by a valid "
              "request on the same connection")
        print_kinds(kind_stats(sweep))
    for name, s in summaries.items():
        print_phase(name, s)
    mixed = summaries["mixed"]
    ratios: dict[str, Any] = {}
    if "baseline" in summaries:
        base = summaries["baseline"]
        ratios = {"valid_requests_per_s": round(mixed["valid_requests_per_s"] / base["valid_requests_per_s"], 3)
                  if base["valid_requests_per_s"] else None,
                  "valid_p50": round(mixed["valid_p50_ms"] / base["valid_p50_ms"], 3) if base["valid_p50_ms"] else None,
                  "p50_per_kind": {k: round(mixed["kinds"][k]["p50_ms"] / base["kinds"][k]["p50_ms"], 2)
                                   for k in valid_kinds if k in mixed["kinds"] and k in base["kinds"]
                                   and base["kinds"][k]["p50_ms"] > 0}}
        print(f"\nratio mixed/baseline: valid req/s {ratios['valid_requests_per_s']}, valid p50 "
              f"{ratios['valid_p50']}; p50 per kind: "
              + ", ".join(f"{k} {v}" for k, v in ratios["p50_per_kind"].items()))
    mem: dict[str, Any] = {}
    if memory:
        first = memory["before"]
        print("server memory (RSS, process + children): " + ", ".join(
            f"{when} {_mb(v)}" for when, v in memory.items())
            + f"; last/first {list(memory.values())[-1] / first:.2f}")
        after_warm = len(warmup) - sum(o.phase == "warm-up" for o in warmup) + sum(len(p.outcomes) for p in phases)
        mem = memory_summary(memory, after_warm, args.memory_tolerance)
        per_1000 = mem["growth_per_1000_requests"]
        print(f"memory growth over the warmed start (after warm-up -> last reading): {mem['growth'] / 2**20:+.1f} MB "
              f"({mem['growth_share']:+.1%}), "
              + (f"{per_1000 / 2**20:+.2f} MB per 1000 requests ({mem['requests']} requests)" if per_1000 is not None
                 else "no requests")
              + f"; back near the start (at most {mem['tolerance']:.0%} over it): "
              f"{'yes' if mem['near_start'] else 'NO'}")
    else:
        print("server memory: process not found (give --pid)")
    load_after = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.1f}' for x in load_after)}")

    all_outcomes = warmup + [o for p in phases for o in p.outcomes]
    valid_not_2xx = sum(o.failed for o in all_outcomes if not o.malformed and o.status is not None)
    malformed_not_4xx = sum(o.failed for o in all_outcomes if o.malformed and o.status is not None)
    transport = [o for o in all_outcomes if o.error is not None]
    failed_kinds = kind_stats([o for o in all_outcomes if o.failed])
    if failed_kinds:
        print("\nfailures by kind (warm-up, sweep and phases):")
        order = list(VALID_WEIGHTS) + list(MALFORMED_KINDS)
        for kind in sorted(failed_kinds, key=order.index):
            k = failed_kinds[kind]
            what = " ".join(f"{c}:{n}" for c, n in k["statuses"].items())
            errors = " ".join(f"{e}:{n}" for e, n in k["transport_errors"].items())
            print(f"  {kind}{' (bad)' if k['malformed'] else ''}: {k['n']} "
                  f"({' '.join(x for x in (what, errors) if x)})")
            for example in k["failure_examples"]:
                print(f"      e.g. {example}")
    if transport:
        print("transport errors by the request before them on the same connection: " + ", ".join(
            f"{after} x{n}" for after, n in Counter(o.after for o in transport).most_common()))
    ok = valid_not_2xx == 0 and malformed_not_4xx == 0 and not transport
    memory_note = ""
    if args.memory_gate:
        ok = ok and bool(mem.get("near_start"))
        memory_note = (f", memory {'back near' if mem.get('near_start') else 'NOT back near'} the warmed start"
                       if mem else ", memory not read")
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}: {valid_not_2xx} valid requests answered other than 2xx, "
          f"{len(transport)} transport errors, {malformed_not_4xx} malformed requests answered other than 4xx"
          + memory_note)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "url": args.url, "clients": args.clients, "pid": pid, "excluded": sorted(excluded),
            "phases": summaries, "ratios": ratios, "memory_bytes": memory, "memory": mem,
            "load_average": {"before": load_before, "after": load_after},
            "warmup": kind_stats(warm), "sweep": kind_stats(sweep), "valid_not_2xx": valid_not_2xx,
            "malformed_not_4xx": malformed_not_4xx,
            "transport_errors": len(transport), "pass": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
