"""The map viewer end to end: Debian's headless Chromium drives ``/viewer`` on a real server.

The browser shows the real demo scene's imagery through ``/tiles``, outlines its patches from STAC
search, and runs a late-fusion search over real CrisisLexT26 Colorado-flood posts (ingested here
with the CLI: geoparsed and embedded), then opens a post's popup with its per-modality ranks.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from server import viewer
from tests.browser import PNG_SIGNATURE, open_page
from tests.conftest import DEMO_COLLECTION, ROOT, SCENE_ID, Server, data_path

FUSION_URL = "/ogc/processes/late-fusion-search/execution"
POSTS = "viewer-posts"
EVENT = "2013_Colorado_floods"
QUERY: dict[str, Any] = {"text": "flooding in Boulder", "datetime": "2013-09-12T12:00:00Z", "lon": -105.27,
                         "lat": 40.01}
RANK = re.compile(r"\b(text|embedding|time|place): rank (\d+)\b")


@dataclass
class Ingest:
    """A CLI ingest running in the background while the server starts and the first tests run."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    report: dict[str, Any] | None = None

    def wait(self) -> dict[str, Any]:
        """Wait for the ingest to finish.

        Returns:
            The CLI's JSON report (stored, located, embedded...).
        """
        if self.report is None:
            assert self.process.wait(timeout=600) == 0, self.err.read_text(errors="replace")[-3000:]
            self.report = json.loads(self.out.read_text().strip().splitlines()[-1])
        return self.report


@pytest.fixture(scope="module")
def posts(settings_env: dict[str, str], db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    """The Colorado-flood posts of CrisisLexT26 as the collection ``viewer-posts`` (CLI ingest, embedded).

    The ingest starts at once and runs beside the server's start; tests call ``wait()`` before they need it.
    """
    root = tmp_path_factory.mktemp("viewer-crisislex")
    (root / "events").mkdir()
    (root / "events" / EVENT).symlink_to(data_path("crisislex") / "CrisisLexT26" / EVENT)  # read in place
    out, err = root / "ingest.out", root / "ingest.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "ingest", "tweets", "crisislex",
                                 str(root / "events"), "--collection", POSTS], cwd=ROOT,
                                env={**os.environ, **settings_env}, stdout=stdout, stderr=stderr)
    job = Ingest(proc, out, err)
    yield job
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_viewer_answers_503_without_leaflet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert viewer.missing_vendor_files() == []  # deploy/setup.sh bundled Leaflet for this checkout
    assert viewer.missing_vendor_files(tmp_path) == list(viewer.VENDOR_FILES)
    monkeypatch.setattr(viewer, "missing_vendor_files", lambda: ["leaflet.js"])
    page = asyncio.run(viewer.viewer_page())
    assert page.status_code == 503
    assert b"run <code>deploy/setup.sh" in page.body and b"leaflet.js" in page.body


def test_viewer_files_and_links(posts: Ingest, server: Server) -> None:
    # ``posts`` first: its ingest runs while the server starts.
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/viewer")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        html = page.text
        assert "/viewer/vendor/leaflet/leaflet.js" in html and "//unpkg" not in html and "cdn" not in html.lower()
        for path in ("/viewer/static/viewer.js", "/viewer/static/viewer.css", "/static/common/eofusion.js",
                     "/viewer/vendor/leaflet/leaflet.js",
                     "/viewer/vendor/leaflet/leaflet.css", "/viewer/vendor/leaflet/images/layers.png"):
            assert client.get(path).status_code == 200, path
        assert client.get("/viewer/vendor/leaflet/images/layers.png").content.startswith(PNG_SIGNATURE)
        for path in ("/viewer/static/package.json", "/static/common/..%2Fviewer%2Fviewer.html",
                     "/viewer/vendor/leaflet/..%2F..%2Fviewer.html",
                     "/viewer/vendor/leaflet/.package.json", "/viewer/vendor/leaflet/nope.js"):
            assert client.get(path).status_code == 404, path
        links = client.get("/", params={"f": "json"}).json()["links"]
        assert any(link["href"].endswith("/viewer") and link["type"] == "text/html" for link in links)


def _ignored(error: dict[str, str]) -> bool:
    """Console errors the test provokes or tolerates: its own bad query and tile 404s outside the scene."""
    if "status of 400" in error["text"] and error["url"].endswith(FUSION_URL):
        return True
    return "status of 404" in error["text"] and "/tiles/stac/tiles/" in error["url"]


def _imagery_loaded(page: Page) -> int:
    """How many imagery tiles of the demo scene have been decoded."""
    return int(page.evaluate(
        "() => [...document.querySelectorAll('.leaflet-tile-pane img.leaflet-tile')].filter((i) => "
        f"i.src.includes('/tiles/stac/tiles/') && i.src.includes('item={SCENE_ID}') && i.complete "
        "&& i.naturalWidth > 0).length"))


def test_viewer_map_imagery_patches_and_fused_posts(posts: Ingest, server: Server, tmp_path: Path) -> None:
    report = posts.wait()
    # Half the event's labelled posts at least (1,000 in ../shared, 423 in the fixture) are stored, 30% located.
    with next((data_path("crisislex") / "CrisisLexT26" / EVENT).glob("*-tweets_labeled.csv")).open(
            newline="", encoding="utf-8", errors="replace") as f:
        n = sum(1 for _ in csv.reader(f)) - 1
    assert report["stored"] > n / 2 and report["located"] > 0.3 * n and report["embedded"] == report["stored"]
    started = time.monotonic()
    shot = tmp_path / "viewer.png"
    with open_page(server.url + "/viewer", 1400, 900, 30_000) as opened:
        page, errors, page_errors = opened.page, opened.errors, opened.page_errors
        assert page.title().startswith("EOFusion")
        expect(page.locator("#map.leaflet-container")).to_have_count(1)
        expect(page.locator("#message")).to_be_hidden()
        overlays = page.locator(".leaflet-control-layers-overlays").inner_text()
        assert "Patch outlines" in overlays and "Fused posts" in overlays

        # Imagery of the demo scene: true colour tiles from /tiles, zoomed to the scene's bbox.
        page.select_option("#scene-collection", DEMO_COLLECTION)
        page.select_option("#scene-item", SCENE_ID)
        page.click("#scene-show")
        expect(page.locator(".leaflet-control-layers-overlays")).to_contain_text(f"Imagery: {SCENE_ID}")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.leaflet-tile-pane img.leaflet-tile')].some((i) => "
            "i.src.includes('/tiles/stac/tiles/') && i.complete && i.naturalWidth > 0)")
        assert _imagery_loaded(page) > 0
        src = page.eval_on_selector(".leaflet-tile-pane img.leaflet-tile", "i => i.src")
        assert "assets=s2%7Cbidx%3D3%2C2%2C1" in src and "rescale=0%2C3000" in src, src
        tile = httpx.get(src, timeout=30)
        assert tile.status_code == 200 and tile.content.startswith(PNG_SIGNATURE)
        alts = page.eval_on_selector_all(".leaflet-tile-pane img", "imgs => imgs.map((i) => i.getAttribute('alt'))")
        assert alts and all(a is not None for a in alts)  # tiles are marked decorative

        # Patch outlines of the view, from STAC search with the map's bbox.
        expect(page.locator("#patch-note")).to_contain_text("patch outline")
        assert page.locator(".leaflet-overlay-pane path").count() > 10
        page.screenshot(path=str(tmp_path / "viewer-scene.png"))

        # A bad query: the server's 400 description is shown, not swallowed.
        page.select_option("#q-collection", POSTS)
        page.fill("#q-text", QUERY["text"])
        page.fill("#q-datetime", "yesterday")
        n = len(errors)
        page.click("#q-run")
        expect(page.locator("#message")).to_be_visible()
        expect(page.locator("#message")).to_contain_text("RFC 3339")
        for _ in range(20):  # the browser logs the failed request; wait for it
            if any(_ignored(e) for e in errors[n:]):
                break
            page.wait_for_timeout(50)

        # The query: free text, time and a typed point near Boulder, fused with tensor fusion.
        page.fill("#q-datetime", QUERY["datetime"])
        page.check("input[name=place][value=point]")
        page.fill("#q-lon", str(QUERY["lon"]))
        page.fill("#q-lat", str(QUERY["lat"]))
        page.select_option("#q-method", "tensor")
        page.focus("#q-limit")
        page.keyboard.press("Enter")  # the form submits from the keyboard
        expect(page.locator("#results-summary")).to_contain_text("fused with tensor", timeout=90_000)
        expect(page.locator("#message")).to_be_hidden()
        markers = page.locator(".leaflet-posts-pane path.post-marker")
        assert markers.count() > 0
        assert page.locator("#results li").count() >= markers.count()

        # The marker drawn last is the best post of its place: its popup shows its ranks.
        markers.last.click()
        popup = page.locator(".leaflet-popup-content .post-popup")
        expect(popup).to_be_visible()
        text = popup.inner_text()
        found = RANK.findall(text)
        assert found, text
        post_id = popup.get_attribute("data-post-id")
        assert "Fused score" in text and "Time" in text
        page.wait_for_function("() => getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
        page.wait_for_timeout(400)  # the popup's pan into view
        page.screenshot(path=str(shot))

    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    answer = httpx.post(server.url + FUSION_URL, json={"inputs": {**QUERY, "collection": POSTS, "method": "tensor",
                                                                  "limit": 50}}, timeout=120).json()
    result = next(r for r in answer["results"] if r["id"] == post_id)
    assert all(int(rank) == result["ranks"][modality] for modality, rank in found)
    assert result["event"] == EVENT
    assert [e for e in errors if not _ignored(e)] == [] and page_errors == []
    assert time.monotonic() - started < 150
