"""The landing page: every link it gives answers (a newcomer's first clicks)."""

from __future__ import annotations

import httpx


def test_every_landing_page_link_answers(client: httpx.Client) -> None:
    links = client.get("/", params={"f": "json"}).json()["links"]
    assert {link["rel"] for link in links} >= {"stac", "ogc", "processes", "labels", "annotate", "viewer", "health"}
    for link in links:
        r = client.get(link["href"].split("#", 1)[0], follow_redirects=True)
        assert r.status_code == 200, (link["href"], r.status_code, r.text[:200])
        assert r.headers["content-type"].split(";")[0] == link["type"], (link["href"], r.headers["content-type"])
