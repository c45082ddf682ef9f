"""Stored data never runs as script in our pages, and every answer carries a Content-Security-Policy.

Posts whose text, id and event carry markup (an ``<img onerror>``, a ``<script>``, an ``alert``) are stored as a
located posts collection; a scene and a patch whose ids and labels carry markup are stored through STAC
transactions with the test key. Headless Chromium searches the posts in ``/viewer`` (every marker hovered and
clicked, every result clicked, the patch outline clicked) and shows the scene in its layer control, then shows
the patch, the collection and a user label in ``/annotate``. No script may run (a window flag stays undefined, no
dialog opens), the markup shows as text, and every page is served with the policy.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from catalog.tweets import ingest_tweets
from eofusion.readers.tweets import Tweet
from tests.browser import open_page
from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server

POSTS = "hostile-posts"
SCENES = "hostile-pages"
LON, LAT = -105.27, 40.01  # Boulder
# STAC ids cannot hold ``= / ( ) '``, so no handler: an element of our own shows whether an id became markup.
SCENE_MARKUP = "<eofusion-x>S2-hostile<eofusion-x>scene"
PATCH_MARKUP = "<eofusion-x>S2-hostile_L480"
LABEL_MARKUP = "<img src=x onerror=window.__xss=9>"
TITLE_MARKUP = "<script>window.__xss=10</script>"
EVENT_MARKUP = "<img src=x onerror=window.__xss=11>"
#: (id, text, lon, lat): every text holds "flood" so that the words modality finds it.
HOSTILE = [
    ("xss-img", "Flood water <img src=x onerror=window.__xss=1> on Broadway", LON, LAT),
    ("xss-script", "Flood <script>window.__xss=2</script> closes the road", LON + 0.02, LAT),
    ("xss-alert", "Flood <img src=x onerror=alert('xss')> near the creek", LON + 0.04, LAT),
    ("<svg onload=window.__xss=4>", "Flood <svg/onload=window.__xss=5> by the library", LON + 0.06, LAT + 0.01),
    ("xss-unplaced", "Flood <img src=x onerror=window.__xss=6> somewhere", None, None),
]
TEXTS = [text for _, text, _, _ in HOSTILE]
# What a page would hold if it had written data as HTML (our pages have no inline script at all).
INJECTED = "() => document.querySelectorAll('img[src=\"x\"], svg[onload], script:not([src]), eofusion-x').length"
NO_FLAG = "() => window.__xss === undefined"
PAGES = ("/", "/viewer", "/annotate")
#: Chromium's console message for a blocked inline script (worded "Refused to execute..." in older versions).
INLINE_BLOCKED = re.compile(r"(Refused to execute|Executing) inline script .*Content Security Policy", re.DOTALL)


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy value as {directive: sources}."""
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def assert_strict(policy: str, what: str) -> None:
    """The policy of our pages: scripts from this server only, nothing inline, no plugin, no framing."""
    d = directives(policy)
    assert d.get("script-src") == ["'self'"], (what, policy)
    assert d.get("object-src") == ["'none'"] and d.get("frame-ancestors") == ["'none'"], (what, policy)
    assert "'unsafe-inline'" not in d.get("style-src", ["?"]) and "'unsafe-eval'" not in policy, (what, policy)


class InlineCode(HTMLParser):
    """Collects what a strict policy would block in a document: inline scripts, event handlers, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        self.found += [f"{name}= on <{tag}>" for name in names if name.startswith("on") or name == "style"]
        self.found += [f"javascript: URL on <{tag}>" for _, value in attrs
                       if value and value.strip().lower().startswith("javascript:")]


@pytest.fixture(scope="module")
def hostile(server: Server, settings_env: dict[str, str], db_url: str) -> Iterator[dict[str, Any]]:
    """The hostile posts (a posts collection), and a scene and a patch with markup ids (STAC, with the key)."""
    when = datetime(2013, 9, 12, 18, 0, tzinfo=UTC)
    stored = ingest_tweets(db_url, [Tweet(id=i, text=t, datetime=when, lon=lon, lat=lat, lang="en",
                                                event=EVENT_MARKUP, location_source=None if lon is None else "geotag")
                                    for i, t, lon, lat in HOSTILE], collection=POSTS)
    assert stored.stored == len(HOSTILE)
    key = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=server.url, timeout=60, headers=key) as client:
        coll = client.get(f"/stac/collections/{DEMO_COLLECTION}").json()
        coll |= {"id": SCENES, "title": TITLE_MARKUP, "links": []}
        answer = client.post("/stac/collections", json=coll)
        assert answer.status_code in (200, 201), answer.text
        scene = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{SCENE_ID}").json()
        scene |= {"id": SCENE_MARKUP, "collection": SCENES, "links": []}
        answer = client.post(f"/stac/collections/{SCENES}/items", json=scene)
        assert answer.status_code in (200, 201), answer.text
        patches = client.post("/stac/search", json={"collections": [DEMO_COLLECTION], "limit": 1, "filter-lang":
                                                    "cql2-json", "filter": {"op": "=", "args": [
                                                        {"property": "eofusion:kind"}, "patch"]}}).json()
        patch = copy.deepcopy(patches["features"][0])
        # A small square south of the posts, alone in the view of the search's results.
        w, s, e, n = LON + 0.01, LAT - 0.07, LON + 0.03, LAT - 0.05
        patch |= {"id": PATCH_MARKUP, "collection": SCENES, "bbox": [w, s, e, n], "links": [],
                  "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
        patch["properties"] |= {"eofusion:scene": SCENE_MARKUP, "eofusion:grid_level": 480,
                                "eofusion:source_labels": [LABEL_MARKUP]}
        patch["properties"].pop("eofusion:ground_truth", None)
        answer = client.post(f"/stac/collections/{SCENES}/items", json=patch)
        assert answer.status_code in (200, 201), answer.text
        try:
            yield {"scene": scene, "patch": patch}
        finally:
            # Other modules of the session list scenes and collections: leave none of ours.
            for item in (PATCH_MARKUP, SCENE_MARKUP):
                client.delete(f"/stac/collections/{SCENES}/items/{item}")
            client.delete(f"/stac/collections/{SCENES}")


class InlineScripts(HTMLParser):
    """The text of each inline script of a document (parsed as a browser does, not with the server's regex)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and "src" not in {name for name, _ in attrs}:
            self._inside = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.scripts[-1] += data


def script_hashes(document: str) -> list[str]:
    """The CSP hash expressions a page's inline scripts need, distinct, in document order."""
    parser = InlineScripts()
    parser.feed(document)
    out = ["'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in parser.scripts]
    return list(dict.fromkeys(out))


def test_inline_script_hashes() -> None:
    from server.security import inline_script_hashes

    doc = b"<html><script src='/a.js'></script><script>\nconst ui = 1;\n</script><SCRIPT type=x>b()</SCRIPT></html>"
    want = ["'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
            for body in (b"\nconst ui = 1;\n", b"b()")]
    assert inline_script_hashes(doc) == want == script_hashes(doc.decode())
    assert inline_script_hashes(b"<p>no script</p>") == []


def test_every_answer_carries_the_policy_and_nosniff(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for path in PAGES:
            page = client.get(path, headers={"Accept": "text/html"})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            assert_strict(page.headers.get("content-security-policy", ""), path)
            assert page.headers.get("x-content-type-options") == "nosniff", path
            parser = InlineCode()
            parser.feed(page.text)
            assert parser.found == [], (path, parser.found)  # the strict policy would block them
        # pygeoapi's HTML writes stored data into inline scripts: it gets the strict policy too.
        for path in ("/ogc?f=html", "/ogc/collections?f=html", "/ogc/processes?f=html", "/ogc/jobs?f=html"):
            page = client.get(path)
            assert page.headers["content-type"].startswith("text/html"), path
            assert_strict(page.headers.get("content-security-policy", ""), path)
        # The Swagger UI pages (built from configuration): their CDN and their own inline scripts, by hash only.
        for path in ("/stac/api.html", "/ogc/openapi?f=html"):
            page = client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            d = directives(page.headers.get("content-security-policy", ""))
            hashes = [s for s in d.get("script-src", []) if s.startswith("'sha256-")]
            assert hashes and hashes == script_hashes(page.text), (path, d)
            assert "'unsafe-inline'" not in d["script-src"] and "'unsafe-eval'" not in d["script-src"], (path, d)
            assert d.get("object-src") == ["'none'"], (path, d)
        # Everything else: JSON, scripts, images, errors, refusals.
        answers = [client.get(p) for p in ("/stac", "/labels", "/healthz", "/viewer/static/viewer.js",
                                           "/static/common/eofusion.js", "/viewer/vendor/leaflet/leaflet.css",
                                           "/nowhere", "/stac/collections/none-such")]
        answers.append(client.post("/labels", json={"parent": "Forest", "name": "x"},
                                   headers={"X-API-Key": "not-the-key"}))
        nul = client.get("/viewer/vendor/leaflet/%00.js")  # a NUL byte in a file name is a missing file
        assert nul.status_code == 404, nul.text
        answers.append(nul)
        for answer in answers:
            url = answer.request.url.path
            assert answer.headers.get("x-content-type-options") == "nosniff", url
            assert directives(answer.headers.get("content-security-policy", "")).get("default-src") == ["'none'"], url


def _hover_and_click_markers(page: Page) -> tuple[list[str], list[str]]:
    """Hover then click every post marker; the tooltip and popup texts seen."""
    markers = page.locator(".leaflet-posts-pane path.post-marker")
    tooltips, popups = [], []
    for i in range(markers.count()):
        marker = markers.nth(i)
        marker.hover(force=True)
        tooltip = page.locator(".leaflet-tooltip")
        expect(tooltip).to_have_count(1)
        tooltips.append(tooltip.inner_text())
        marker.click(force=True)
        popup = page.locator(".leaflet-popup-content .post-popup")
        expect(popup).to_be_visible()
        popups.append(popup.inner_text())
        # An open popup could cover the next marker; its close button can lie under the layer control.
        page.dispatch_event(".leaflet-popup-close-button", "click")
        expect(popup).to_have_count(0)
    return tooltips, popups


def test_viewer_shows_hostile_posts_and_ids_as_text(hostile: dict[str, Any], server: Server) -> None:
    with open_page(server.url + "/viewer", 1400, 900, 30_000) as opened:
        page = opened.page
        # The scene with a markup id: the layer control names it as text.
        page.select_option("#scene-collection", SCENES)
        page.select_option("#scene-item", SCENE_MARKUP)
        page.click("#scene-show")
        overlays = page.locator(".leaflet-control-layers-overlays")
        expect(overlays).to_contain_text(f"Imagery: {SCENE_MARKUP}")
        assert page.evaluate(INJECTED) == 0

        page.select_option("#q-collection", POSTS)
        page.fill("#q-text", "flood")
        page.check("input[name=place][value=point]")
        page.fill("#q-lon", str(LON))
        page.fill("#q-lat", str(LAT))
        page.click("#q-run")
        expect(page.locator("#results-summary")).to_contain_text("fused with", timeout=90_000)
        expect(page.locator("#message")).to_be_hidden()
        markers = page.locator(".leaflet-posts-pane path.post-marker")
        assert markers.count() == sum(lon is not None for _, _, lon, _ in HOSTILE)

        tooltips, popups = _hover_and_click_markers(page)
        for text in TEXTS[:4]:
            assert any(text[:40] in t for t in tooltips), (text, tooltips)  # tooltips show 60 characters
            assert any(text in p for p in popups), (text, popups)
        assert any("<svg onload=window.__xss=4>" in p for p in popups)  # the post id
        assert all(EVENT_MARKUP in p for p in popups)

        # The results list: every placed post opens its popup; the unplaced one is listed as text.
        results = page.locator("#results li button")
        assert results.count() == markers.count()
        for i in range(results.count()):
            text = results.nth(i).inner_text()
            results.nth(i).click()
            expect(page.locator(".leaflet-popup-content .post-popup", has_text=text)).to_be_visible()
        listed = page.locator("#results").inner_text()
        assert all(text in listed for text in TEXTS), listed

        # The patch outline with a markup id and label, alone in the view: its popup shows both as text.
        page.wait_for_timeout(600)  # the outlines of the view load after the map settled
        outline = page.locator(".leaflet-overlay-pane path.leaflet-interactive")
        expect(outline).to_have_count(1)
        box = outline.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 0.5, box["y"] + box["height"] / 2)  # outlines are strokes, not fills
        popup = page.locator(".leaflet-popup-content .patch-popup")
        expect(popup).to_be_visible()
        assert PATCH_MARKUP in popup.inner_text() and LABEL_MARKUP in popup.inner_text()

        page.wait_for_timeout(300)  # an injected handler would have fired by now
        assert page.evaluate(NO_FLAG), page.evaluate("() => window.__xss")
        assert opened.dialogs == []
        assert page.evaluate(INJECTED) == 0
        assert opened.page_errors == []
        assert not [e for e in opened.errors if "Content Security Policy" in e["text"]], opened.errors


def test_annotation_page_shows_hostile_ids_and_labels_as_text(hostile: dict[str, Any], server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": API_KEY}) as client:
        refused = client.post("/labels", json={"parent": "Forest", "name": LABEL_MARKUP})
        assert refused.status_code == 400, refused.text  # a label name cannot hold markup at all
        label = "Pages' test (quote) + 1"
        made = client.post("/labels", json={"parent": "Forest", "name": label, "description": TITLE_MARKUP})
        assert made.status_code == 201, made.text

    with open_page(server.url + "/annotate", 1400, 1000, 30_000) as opened:
        page = opened.page
        labels = page.eval_on_selector_all("#label option", "os => os.map((o) => o.textContent)")
        assert f"Forest / {label}" in labels
        pools = page.eval_on_selector_all("#pool option", "os => os.map((o) => o.textContent)")
        assert f"{SCENES} — {TITLE_MARKUP}" in pools

        # The key stays in the page: nothing another script of the origin can read.
        page.fill("#api-key", API_KEY)
        stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
        assert API_KEY not in stored, stored

        page.select_option("#pool", SCENES)
        page.fill("#seed-query", "")
        page.click("#seed-search")
        tiles = page.locator("#seed-grid .tile")
        expect(tiles).to_have_count(1)
        assert tiles.first.get_attribute("data-item") == PATCH_MARKUP
        assert page.locator("#seed-grid .tile-id").inner_text() == PATCH_MARKUP
        tiles.first.click()
        expect(tiles.first).to_have_attribute("data-mark", "pos")
        title = page.eval_on_selector("#map rect.fp-pos title", "t => t.textContent")
        assert title.startswith(PATCH_MARKUP), title

        page.wait_for_timeout(300)
        assert page.evaluate(NO_FLAG), page.evaluate("() => window.__xss")
        assert opened.dialogs == []
        assert page.evaluate(INJECTED) == 0
        assert opened.page_errors == []
        assert not [e for e in opened.errors if "Content Security Policy" in e["text"]], opened.errors

        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        assert page.input_value("#api-key") == ""  # not kept anywhere a reload could find it


def test_policies_hold_in_the_browser(server: Server) -> None:
    # Swagger UI's own inline script is allowed by its hash: offline it runs and misses the CDN's bundle.
    with open_page(server.url + "/stac/api.html", 1000, 700, 20_000, ready=False, offline=True) as opened:
        opened.page.wait_for_load_state("load")
        opened.page.wait_for_timeout(300)
        assert any("SwaggerUIBundle" in e for e in opened.page_errors), (opened.page_errors, opened.errors)
        assert not [e for e in opened.errors if INLINE_BLOCKED.search(e["text"])], opened.errors
    # pygeoapi's inline scripts are blocked (it writes stored data into them).
    with open_page(server.url + "/ogc/collections?f=html", 1000, 700, 20_000, ready=False, offline=True) as opened:
        opened.page.wait_for_load_state("load")
        opened.page.wait_for_timeout(300)
        assert any(INLINE_BLOCKED.search(e["text"]) for e in opened.errors), opened.errors
