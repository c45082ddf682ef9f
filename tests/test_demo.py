"""The demo as a newcomer runs it: ``eofusion demo`` in its own data folder, then the pages in headless Chromium.

The demo prepares its data (``--no-serve``) and prints its key; a second run serves, as a user restarts it, and
must load nothing twice and keep the key. The browser opens the home page, follows "Label patches", finds the
key already filled in by the loopback demo, labels the BigEarthNet pairs, runs a round and accepts; the test reads
the annotations back through STAC and OGC API Features. Screenshots of each step go to ``test-artifacts/demo/``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from catalog.db import embedded_cluster
from deploy.demo_data import DEMO_ARCHIVE_COLLECTION, DEMO_COLLECTION, DEMO_KEY_FILE
from eofusion.config import Settings
from tests.browser import PNG_SIGNATURE, open_page
from tests.conftest import ROOT, Server, free_port, start_server

ARTIFACTS = ROOT / "test-artifacts" / "demo"
#: A key the operator configured: it must keep working beside the demo's own.
OPERATOR_KEY = "operator-key-51c2"
KEY_LINE = re.compile(r"^API key: (\S+)$", re.MULTILINE)


@dataclass
class Demo:
    """A prepared demo folder, its first run's output and the environment that runs it."""

    data_dir: Path
    env: dict[str, str]
    first_output: str
    key: str


def _env(data_dir: Path) -> dict[str, str]:
    env = {"EOFUSION_DATA_DIR": str(data_dir), "EOFUSION_API_KEYS": OPERATOR_KEY}
    if os.environ.get("EOFUSION_TEST_DATABASE_URL"):
        env["EOFUSION_DATABASE_URL"] = os.environ["EOFUSION_TEST_DATABASE_URL"]
    return env


def _run_demo(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "cli", "demo", *args], env={**os.environ, **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """``eofusion demo --no-serve`` in a fresh data folder (its own embedded cluster)."""
    d = Path(tempfile.mkdtemp(prefix="eofusion-demo-"))
    d.chmod(0o755)  # the cluster may run as the postgres user, which must enter this folder
    env = _env(d)
    try:
        out = _run_demo(env, "--no-serve", "--port", str(free_port()))
        match = KEY_LINE.search(out)
        assert match, out
        yield Demo(d, env, out, match.group(1))
    finally:
        embedded_cluster(Settings(data_dir=d)).stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def demo_server(demo: Demo) -> Iterator[Server]:
    """The demo served as a user starts it again: ``eofusion demo --port P`` on the prepared folder."""
    srv = start_server(demo.env, demo.data_dir / "demo-serve.log", command=("demo",))
    yield srv
    srv.stop()


def test_first_run_makes_a_private_key_and_loads_the_archive(demo: Demo) -> None:
    out = demo.first_output
    key_file = demo.data_dir / DEMO_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == demo.key and len(demo.key) >= 32
    assert "new, kept in" in out and "fills it in itself" in out
    for path in ("/", "/annotate", "/stac", "/ogc"):
        assert re.search(rf"http://127\.0\.0\.1:\d+{re.escape(path)}$", out, re.MULTILINE), (path, out)
    report = re.search(r'^\{"collection": "demo-bigearthnet".*\}$', out, re.MULTILINE)
    assert report and '"patches": 6' in report.group(0) and '"with_ground_truth": 6' in report.group(0), out


def test_rerun_keeps_the_key_and_loads_nothing_twice(demo: Demo, demo_server: Server) -> None:
    log = demo_server.log.read_text()
    assert KEY_LINE.findall(log) == [demo.key], log[-2000:]
    assert "already loaded" in log and "new, kept in" not in log
    with httpx.Client(base_url=demo_server.url, timeout=60) as client:
        home = client.get("/", params={"f": "json"}).json()
        counts = {c["id"]: c for c in home["collections"]}
        assert counts[DEMO_ARCHIVE_COLLECTION]["items"] == 6
        assert counts[DEMO_ARCHIVE_COLLECTION]["descriptors"] == {"s1": 6, "s2": 6, "fused": 6}
        assert counts[DEMO_ARCHIVE_COLLECTION]["ground_truth"] == 6
        scene_items = client.get(f"/stac/collections/{DEMO_COLLECTION}/items", params={"limit": 1000}).json()
        assert counts[DEMO_COLLECTION]["items"] == len(scene_items["features"]) > 300


def test_demo_key_and_operator_key_both_write(demo: Demo, demo_server: Server) -> None:
    with httpx.Client(base_url=demo_server.url, timeout=60) as client:
        for key, name in ((demo.key, "Demo-key label"), (OPERATOR_KEY, "Operator-key label")):
            r = client.post("/labels", json={"parent": "Forest", "name": name}, headers={"X-API-Key": key})
            assert r.status_code == 201, r.text
        assert client.post("/labels", json={"parent": "Forest", "name": "No key"}).status_code == 401
        wrong = client.post("/labels", json={"parent": "Forest", "name": "Wrong"}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403


def test_demo_key_only_for_loopback_requests(demo: Demo, demo_server: Server) -> None:
    with httpx.Client(base_url=demo_server.url, timeout=60) as client:
        r = client.get("/annotate/demo-key")
        assert r.status_code == 200 and r.json() == {"api_key": demo.key}
        assert r.headers["cache-control"] == "no-store"
        assert 'data-demo-key="available"' in client.get("/annotate").text
        port = demo_server.url.rsplit(":", 1)[1]
        refused = [
            {"X-Forwarded-For": "203.0.113.7"},  # a client behind a proxy (uvicorn takes its address from it)
            {"Forwarded": "for=203.0.113.7"},
            {"X-Real-IP": "203.0.113.7"},
            {"Host": f"demo.example.org:{port}"},  # a page of another site whose name resolves to 127.0.0.1
        ]
        for headers in refused:
            r = client.get("/annotate/demo-key", headers=headers)
            assert r.status_code == 404, (headers, r.status_code, r.text)
            assert demo.key not in r.text
            page = client.get("/annotate", headers=headers)
            assert page.status_code == 200 and "data-demo-key" not in page.text and demo.key not in page.text


def test_demo_on_all_interfaces_does_not_hand_out_its_key(demo: Demo) -> None:
    srv = start_server(demo.env, demo.data_dir / "demo-any.log", command=("demo", "--host", "0.0.0.0"))
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            assert client.get("/annotate/demo-key").status_code == 404
            assert "data-demo-key" not in client.get("/annotate").text
            # The printed key still authorises writes: the user types it into the page.
            r = client.post("/labels", json={"parent": "Forest", "name": "Any-interface label"},
                            headers={"X-API-Key": demo.key})
            assert r.status_code == 201, r.text
    finally:
        srv.stop()
    log = srv.log.read_text()
    assert KEY_LINE.findall(log) == [demo.key] and "not served on a loopback address only" in log


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name


def _loaded_images(page: Page, grid: str) -> list[int]:
    page.wait_for_function(f"() => {{ const imgs = [...document.querySelectorAll('#{grid} img')];"
                           " return imgs.length > 0 && imgs.every((i) => i.complete); }", timeout=60_000)
    return list(page.evaluate(f"[...document.querySelectorAll('#{grid} img')].map((i) => i.naturalWidth)"))


def _mark(page: Page, grid: str, item: str, positive: bool) -> None:
    target = page.locator(f"#{grid} .tile[data-item='{item}']").first
    want = "pos" if positive else "neg"
    for _ in range(3):
        if target.get_attribute("data-mark") == want:
            return
        target.click()
    expect(target).to_have_attribute("data-mark", want)


def test_newcomer_labels_the_bigearthnet_pairs(demo: Demo, demo_server: Server) -> None:
    with httpx.Client(base_url=demo_server.url, timeout=60) as client:
        feats = client.get(f"/stac/collections/{DEMO_ARCHIVE_COLLECTION}/items", params={"limit": 100}).json()
        truth = {f["id"]: set(f["properties"]["eofusion:ground_truth"]) for f in feats["features"]}
        forest = sorted(i for i, labels in truth.items() if "Forest" in labels)
        other = sorted(i for i, labels in truth.items() if "Forest" not in labels)
        assert len(truth) == 6 and len(forest) >= 2 and other

        with open_page(demo_server.url + "/", 1400, 1000, 30_000) as opened:
            page = opened.page
            # Home: what is loaded, on a map, and where to start.
            row = page.locator(f"#collections tr[data-collection='{DEMO_ARCHIVE_COLLECTION}']")
            expect(row.locator("td").nth(1)).to_have_text("6")
            expect(row).to_contain_text("fused 6")
            scene_row = page.locator(f"#collections tr[data-collection='{DEMO_COLLECTION}']")
            expect(scene_row).to_be_visible()
            assert page.locator("#map path.extent").count() == 2  # one extent per collection with items
            expect(page.locator("#curl-lines")).to_contain_text(demo_server.url + "/stac/search")
            expect(page.locator("#pystac-lines")).to_contain_text(f'Client.open("{demo_server.url}/stac")')
            expect(page.locator("#qgis-url")).to_have_text(demo_server.url + "/ogc")
            _shot(page, "01-home.png")

            # "Label patches": the annotation page, with the demo's key already in the (password) field.
            page.click("li[data-task='label'] a")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(page.locator("#api-key")).to_have_value(demo.key)
            assert page.evaluate("sessionStorage.length + localStorage.length") == 0
            assert demo.key not in page.evaluate("document.cookie")
            pools = page.eval_on_selector_all("#pool option", "os => os.map((o) => o.value)")
            assert DEMO_ARCHIVE_COLLECTION in pools and DEMO_COLLECTION in pools
            _shot(page, "02-annotate-key-filled.png")

            page.select_option("#pool", DEMO_ARCHIVE_COLLECTION)
            page.select_option("#descriptor", "fused")
            page.click("#seed-search")
            expect(page.locator("#seed-grid .tile")).to_have_count(6)
            assert all(w > 0 for w in _loaded_images(page, "seed-grid"))
            _mark(page, "seed-grid", forest[0], True)
            _mark(page, "seed-grid", forest[1], True)
            _mark(page, "seed-grid", other[0], False)
            expect(page.locator("#mark-counts")).to_contain_text("2 positive, 1 negative")
            _shot(page, "03-marked.png")

            page.click("#run-round")
            expect(page.locator("#round-no")).to_have_text("1", timeout=60_000)
            expect(page.locator("#message")).to_be_hidden()
            queries = page.eval_on_selector_all("#query-grid .tile", "els => els.map((e) => e.dataset.item)")
            top = page.eval_on_selector_all("#top-grid .tile", "els => els.map((e) => e.dataset.item)")
            assert queries and not {forest[0], forest[1], other[0]} & set(queries)
            assert set(top) <= set(truth) and len(top) >= 3
            query_widths, top_widths = _loaded_images(page, "query-grid"), _loaded_images(page, "top-grid")
            assert all(w > 0 for w in query_widths) and len(query_widths) == len(queries), query_widths
            assert all(w > 0 for w in top_widths) and len(top_widths) == len(top), top_widths
            session = page.locator("#session-id").inner_text()
            _shot(page, "04-round-1.png")

            page.select_option("#label", "Forest")
            page.click("#accept")
            result = page.locator("#accept-result")
            expect(result).to_contain_text("annotations written", timeout=60_000)
            written = int(result.get_attribute("data-annotated") or "0")
            expect(page.locator("#message")).to_be_hidden()
            _shot(page, "05-accepted.png")
            assert opened.errors == [] and opened.page_errors == []

        # Stored: STAC annotation items of this session, the patches' own property, and the OGC layer.
        stac = client.post("/stac/search", json={
            "collections": ["annotations"], "limit": 100, "filter-lang": "cql2-json",
            "filter": {"op": "=", "args": [{"property": "eofusion:session"}, session]}}).json()
        annotated = {f["properties"]["eofusion:annotated_item"] for f in stac["features"]}
        assert len(annotated) == written >= 2 and {forest[0], forest[1]} <= annotated and other[0] not in annotated
        assert all(f["properties"]["eofusion:label"] == "Forest" for f in stac["features"])
        patches = client.post("/stac/search", json={
            "collections": [DEMO_ARCHIVE_COLLECTION], "limit": 100, "filter-lang": "cql2-json",
            "filter": {"op": "a_contains", "args": [{"property": "eofusion:annotations"}, ["Forest"]]}})
        assert patches.status_code == 200, patches.text
        assert {f["id"] for f in patches.json()["features"]} == annotated
        ogc = client.get("/ogc/collections/annotations/items", params={"f": "json", "limit": 1000}).json()
        layer = {(p["collection"], p["item_id"], p["label"]) for f in ogc["features"]
                 if (p := f["properties"])["session_id"] == session}
        assert layer == {(DEMO_ARCHIVE_COLLECTION, i, "Forest") for i in annotated}
