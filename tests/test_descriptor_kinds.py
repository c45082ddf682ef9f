"""One order of preference for the stored descriptor kinds (real database): where no kind is named, a
collection's or an item's richest one is used, by rounds, hashing and similarity alike."""

from __future__ import annotations

import httpx

from catalog.db import connect
from catalog.descriptors import KINDS, PREFERENCE, richest_kind
from tests.conftest import API_KEY, DEMO_COLLECTION


def test_the_preference_orders_every_kind() -> None:
    assert sorted(PREFERENCE) == sorted(KINDS) and PREFERENCE[0] == "fused"


def test_the_richest_kind_of_a_collection(db_url: str, archives: dict, loaded: dict) -> None:
    with connect(db_url) as conn:
        assert richest_kind(conn, "ben") == "fused"  # S1 + S2 pairs
        assert richest_kind(conn, "eurosat") == "s2"  # Sentinel-2 only
        assert richest_kind(conn, DEMO_COLLECTION) == "s2"
        assert richest_kind(conn, "no-such-collection") is None


def test_a_round_without_a_descriptor_uses_the_richest(client: httpx.Client, archives: dict) -> None:
    item = client.get("/stac/collections/ben/items", params={"limit": 1}).json()["features"][0]["id"]
    r = client.post("/ogc/processes/active-learning-round/execution", headers={"X-API-Key": API_KEY},
                    json={"inputs": {"pool": "ben", "feedback": [{"item": item, "positive": True}]}})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["descriptor"] == "fused"
