"""The server's memory under concurrent tile rendering returns near where it started (issue 13, bench/load.py).

A fresh server process renders previews of the real demo scene from many threads at once, at sizes up to the
tile limit. Buffers of a render are freed when it ends; what must not happen is that the process keeps them:
glibc's default sliding mmap threshold and one arena per thread (16 on two cores) kept about 270 MB of freed
tile buffers resident after a minute of tiles (bench/RESULTS.md). Memory figures only, no timing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import start_server

#: Concurrent clients, each with its own connection (the server renders each request in a pool thread).
CLIENTS = 16
#: Preview sizes in pixels (the long side), up to the default tile limit: buffers of 1 to 50 MB.
SIZES = (512, 1024, 1536, 2048)
#: Growth allowed over the reading after the first (sequential) render: thread stacks and GDAL's per-thread
#: state of 16 new threads, and the fragments two arenas may keep. The code before kept ~10x this much.
ALLOWED_GROWTH_MB = 96


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled_rss_mb(pid: int, timeout: float = 240.0) -> float:
    """RSS once it stops changing: a fresh server loads its text embedder in the background after it answers."""
    readings: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readings.append(rss_mb(pid))
        recent = readings[-6:]
        if len(recent) == 6 and max(recent) - min(recent) <= 2.0:
            return readings[-1]
        time.sleep(1.0)
    raise AssertionError(f"RSS did not settle in {timeout} s: {readings[-10:]}")


def test_concurrent_previews_leave_memory_near_the_start(loaded: dict, settings_env: dict[str, str],
                                                          data_dir: Path) -> None:
    server = start_server(settings_env, data_dir / "server-memory.log")
    try:
        pid = server.process.pid
        cog = str(loaded["scene"].cog)  # type: ignore[attr-defined]
        params: dict[str, str | int | list[int]] = {"url": cog, "bidx": [3, 2, 1], "rescale": "0,3000"}

        def preview(client: httpx.Client, size: int) -> None:
            r = client.get("/tiles/cog/preview.png", params={**params, "max_size": size})
            assert r.status_code == 200, r.text[:300]
            assert r.headers["content-type"] == "image/png"

        settled_rss_mb(pid)
        with httpx.Client(base_url=server.url, timeout=300) as one:
            for size in SIZES:  # GDAL, the PNG encoder and the reader's code paths loaded once
                preview(one, size)
        start = rss_mb(pid)

        clients = [httpx.Client(base_url=server.url, timeout=300) for _ in range(CLIENTS)]
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                for round_ in range(3):
                    jobs = [pool.submit(preview, c, SIZES[(i + round_) % len(SIZES)]) for i, c in enumerate(clients)]
                    for job in jobs:
                        job.result()
        finally:
            for c in clients:
                c.close()
        time.sleep(2.0)
        end = rss_mb(pid)
        assert end - start <= ALLOWED_GROWTH_MB, (
            f"RSS {start:.0f} MB after one render of each size, {end:.0f} MB after {3 * CLIENTS} concurrent "
            f"renders: {end - start:.0f} MB kept (allowed {ALLOWED_GROWTH_MB})")
    finally:
        server.stop()
