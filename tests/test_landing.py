"""The home page: every link it gives answers, it reports what is loaded, and its command lines run as printed."""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
from typing import Any

import httpx
from playwright.sync_api import expect

from server.security import PAGE_POLICY
from tests.browser import open_page
from tests.conftest import API_KEY, Server


def test_every_landing_page_link_answers(client: httpx.Client) -> None:
    links = client.get("/", params={"f": "json"}).json()["links"]
    assert {link["rel"] for link in links} >= {"stac", "ogc", "processes", "labels", "annotate", "viewer", "health"}
    for link in links:
        r = client.get(link["href"].split("#", 1)[0], follow_redirects=True)
        assert r.status_code == 200, (link["href"], r.status_code, r.text[:200])
        assert r.headers["content-type"].split(";")[0] == link["type"], (link["href"], r.headers["content-type"])


def _matched(client: httpx.Client, collection: str) -> int:
    """Items of a collection, counted by paging through them (the STAC search does not count)."""
    url: str | None = f"/stac/collections/{collection}/items?limit=1000"
    n = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        n += len(body["features"])
        url = next((link["href"] for link in body.get("links", []) if link["rel"] == "next"), None)
    return n


def test_home_reports_collections_counts_and_extents(client: httpx.Client, archives: dict) -> None:
    doc = client.get("/", params={"f": "json"}).json()
    by_id = {c["id"]: c for c in doc["collections"]}
    stac_ids = {c["id"] for c in client.get("/stac/collections", params={"limit": 1000}).json()["collections"]}
    assert set(by_id) == stac_ids
    for cid, c in by_id.items():
        assert c["items"] == _matched(client, cid), cid
    ben = by_id["ben"]
    assert ben["items"] == 6 and ben["descriptors"] == {"s1": 6, "s2": 6, "fused": 6} and ben["ground_truth"] == 6
    assert by_id["eurosat"]["ground_truth"] == by_id["eurosat"]["items"] > 0
    # The extent is the items' own (an archive collection declares the whole world).
    w, s, e, n = ben["bbox"]
    assert (e - w) < 60 and (n - s) < 40
    for f in client.get("/stac/collections/ben/items", params={"limit": 10}).json()["features"]:
        fw, fs, fe, fn = f["bbox"]
        assert w <= fw <= fe <= e and s <= fs <= fn <= n
    assert {p["id"] for p in doc["posts"]} >= {"tweets"}
    tweets = next(p for p in doc["posts"] if p["id"] == "tweets")
    assert tweets["posts"] >= tweets["located"] >= 12 and tweets["bbox"] is not None


def test_home_tasks_and_start_lines_work(client: httpx.Client, server: Server, archives: dict) -> None:
    doc = client.get("/", params={"f": "json"}).json()
    assert doc["base_url"] == server.url
    tasks = {t["id"]: t for t in doc["tasks"]}
    assert set(tasks) == {"label", "similar", "viewer", "qgis"}
    for t in tasks.values():
        r = client.get(t["href"])
        assert r.status_code == 200, (t, r.text[:300])
        assert r.headers["content-type"].split(";")[0] == t["type"], t
    similar = client.get(tasks["similar"]["href"]).json()
    assert similar["features"] and all("eofusion:distance" in f["properties"] for f in similar["features"])

    # Every curl line runs as printed (with -sSf added: fail on an HTTP error) and answers JSON.
    assert any(line.startswith("curl -X POST") for line in doc["start"]["curl"])
    for line in doc["start"]["curl"]:
        assert server.url in line
        args = shlex.split(line)
        out = subprocess.run([args[0], "-sSf", *args[1:]], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (line, out.stderr)
        assert out.stdout.lstrip().startswith("{"), (line, out.stdout[:200])

    # The pystac-client lines run as printed and list items of the example collection.
    code = doc["start"]["pystac_client"]
    assert f'Client.open("{server.url}/stac")' in code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "<home page>", "exec"), {})  # noqa: S102 - the page's own example, run as a user would
    lines = printed.getvalue().splitlines()
    assert 1 <= len(lines) <= 10 and all(len(line.split()) >= 2 for line in lines), lines
    assert doc["start"]["qgis"]["url"] == server.url + "/ogc"


def test_home_page_in_the_browser(client: httpx.Client, server: Server, archives: dict) -> None:
    r = client.get("/", headers={"Accept": "text/html"})
    assert r.headers["content-security-policy"] == PAGE_POLICY
    assert "<script>" not in r.text and all("src=" in tag for tag in r.text.split("<script")[1:])
    # Stored text shows as text: a collection whose title is markup.
    hostile = "home-markup-test"
    title = '<img src="x" id="injected"><b>bold</b>'
    created = client.post("/stac/collections", headers={"X-API-Key": API_KEY}, json={
        "type": "Collection", "stac_version": "1.0.0", "id": hostile, "title": title, "description": "markup",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}}})
    assert created.status_code in (200, 201), created.text
    try:
        doc: dict[str, Any] = client.get("/", params={"f": "json"}).json()
        with open_page(server.url + "/", 1400, 1000, 20_000, offline=True) as opened:
            page = opened.page
            for c in doc["collections"]:
                row = page.locator(f"#collections tr[data-collection='{c['id']}']")
                expect(row.locator("td").nth(1)).to_have_text(f"{c['items']:,}")
            extents = sum(1 for c in doc["collections"] if c["bbox"]) + sum(1 for p in doc["posts"] if p["bbox"])
            assert page.locator("#map path.extent").count() == extents
            expect(page.locator(f"#collections tr[data-collection='{hostile}']")).to_contain_text(title)
            assert page.locator("#injected").count() == 0 and page.locator("#collections b").count() == 0
            hrefs = page.eval_on_selector_all("#tasks a", "as => as.map((a) => a.href)")
            assert hrefs == [t["href"] for t in doc["tasks"]]
            expect(page.locator("#curl-lines")).to_have_text("\n".join(doc["start"]["curl"]))
            # Zooming to one collection keeps its extent on screen.
            page.locator("#collections tr[data-collection='ben'] button.show").click()
            extent = page.locator("#map path.extent[data-extent='ben']")
            expect(extent).to_be_visible()
            page.wait_for_timeout(500)  # the zoom animation
            frame, box = page.locator("#map").bounding_box(), extent.bounding_box()
            assert frame and box and box["width"] > 100 and box["height"] > 100, box
            assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"], (frame, box)
            assert frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"], (frame, box)
            assert opened.errors == [] and opened.page_errors == []
    finally:
        client.delete(f"/stac/collections/{hostile}", headers={"X-API-Key": API_KEY})


def test_no_demo_key_outside_the_demo(client: httpx.Client) -> None:
    # The test server is `eofusion serve`, not the demo: nothing to hand out, even to a loopback client.
    assert client.get("/annotate/demo-key").status_code == 404
    assert "data-demo-key" not in client.get("/annotate").text
