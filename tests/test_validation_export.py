"""Validation, label cleaning and export processes, on real patches; exported files opened with GDAL tools."""

from __future__ import annotations

import csv
import json
from collections import Counter

import geopandas as gpd
import httpx
import jsonschema
import rasterio

from catalog.annotations import NewAnnotation, add_annotations
from catalog.db import connect
from tests.conftest import API_KEY, DEMO_COLLECTION, ROOT, SCENE_ID, data_path

KEY = {"X-API-Key": API_KEY}


def execute(client: httpx.Client, process: str, inputs: dict) -> httpx.Response:
    return client.post(f"/ogc/processes/{process}/execution", json={"inputs": inputs}, headers=KEY, timeout=600)


def test_validation_reports_accuracy_per_round_against_random(client: httpx.Client, archives: dict) -> None:
    r = execute(client, "validate", {"collection": "eurosat", "descriptors": ["s2"], "rounds": 3, "seeds": 2})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["items"] == archives["eurosat"].patches
    # The level-1 classes with the 5 starting positives (+1) the protocol needs: all five in the full sample;
    # Transportation (Highway only) has 5 patches in the fixture.
    mapping = json.loads((ROOT / "catalog" / "ground_truth.json").read_text())["EuroSAT"]
    with (data_path("eurosat-ms") / "labels.csv").open(newline="") as f:
        level1 = Counter(mapping[r["label"]].split(" / ")[0] for r in csv.DictReader(f))
    assert set(rep["classes"]) == {c for c, n in level1.items() if n >= 6}
    assert {"Agriculture", "Forest", "Urban Area", "Water Bodies"} <= set(rep["classes"])
    curve = rep["balanced_accuracy_per_round"]["s2"]
    assert len(curve["active"]) == 4 and curve["active"][-1] > curve["active"][0]
    last = rep["after_last_round"]["s2"]
    assert 0.5 < last["active"]["balanced_accuracy"] <= 1 and 0 <= last["active"]["f1"] <= 1
    png = client.get(rep["plot"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    report = client.get(rep["report"]).json()
    assert "s2" in json.dumps(report)


def test_validation_needs_enough_ground_truth(client: httpx.Client, archives: dict, loaded: dict) -> None:
    r = execute(client, "validate", {"collection": "ben", "descriptors": ["fused", "s1", "s2"]})
    assert r.status_code == 400 and "positives and negatives" in r.text
    r = execute(client, "validate", {"collection": DEMO_COLLECTION})
    assert r.status_code == 400 and "no ground truth" in r.text


def test_label_cleaning_lists_disagreeing_labels(client: httpx.Client, archives: dict) -> None:
    r = execute(client, "label-cleaning", {"collection": "eurosat", "source": "ground_truth", "k": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["checked"] == archives["eurosat"].patches
    truth = {f["id"]: f["properties"]["eofusion:ground_truth"] for f in client.get(
        "/stac/collections/eurosat/items", params={"limit": 1000}).json()["features"]}
    assert out["suspects"]
    for s in out["suspects"]:
        assert s["disagreement"] > 0.5 and len(s["neighbours"]) == 5 and s["item"] not in s["neighbours"]
        # The disagreement is real: most neighbours' ground truth lacks this item's level-1 class.
        others = sum(s["label"] not in truth[n] for n in s["neighbours"])
        assert others / 5 == s["disagreement"]


def test_export_files_open_in_gdal_and_geopandas(client: httpx.Client, db_url: str, loaded: dict) -> None:
    water, land = f"{SCENE_ID}_L240_r0000_c0006", f"{SCENE_ID}_L240_r0005_c0001"
    with connect(db_url) as conn:
        add_annotations(conn, [NewAnnotation(DEMO_COLLECTION, water, "Water Bodies / Sea and ocean", "t", score=2.0),
                               NewAnnotation(DEMO_COLLECTION, land, "Agriculture", "t", score=1.0)])
        conn.commit()
    r = execute(client, "export", {"collection": DEMO_COLLECTION})
    assert r.status_code == 200, r.text
    out = r.json()
    codes = {lab: n for n, lab in enumerate(sorted(out["labels"]), start=1)}
    gpkg = client.get(out["files"]["geopackage"])
    tif = client.get(out["files"][f"label_map:{SCENE_ID}"])
    assert gpkg.status_code == tif.status_code == 200
    frame = gpd.read_file(gpkg.content)
    assert {water, land} <= set(frame["item_id"]) and frame.crs.to_epsg() == 4326
    with rasterio.MemoryFile(tif.content) as mem, mem.open() as src:
        grid = src.read(1)
        cmap = src.colormap(1)
        tags = src.tags(1)
        scene = client.get(f"/stac/collections/{DEMO_COLLECTION}/items/{water}").json()
        x = (scene["properties"]["proj:bbox"][0] + scene["properties"]["proj:bbox"][2]) / 2
        y = (scene["properties"]["proj:bbox"][1] + scene["properties"]["proj:bbox"][3]) / 2
        r_, c_ = src.index(x, y)
        assert grid[r_, c_] == codes["Water Bodies / Sea and ocean"]
        assert tags[f"LABEL_{codes['Agriculture']}"] == "Agriculture"
        assert cmap[codes["Water Bodies / Sea and ocean"]][:3] == (0x15, 0x65, 0xc0)
        assert src.crs.to_epsg() == 32618 and (grid == 0).mean() > 0.5
    item = client.get(out["files"]["stac:label-item"]).json()
    schema_map = json.loads((data_path("schemas") / "schema-map.json").read_text())
    label_schema = json.loads((data_path("schemas") / schema_map[item["stac_extensions"][0]]).read_text())
    jsonschema.Draft7Validator(label_schema).validate(item)
    assert set(item["properties"]["label:classes"][0]["classes"]) == set(codes)
    missing = execute(client, "export", {"collection": DEMO_COLLECTION, "label": "Forest / Oak"})
    assert missing.status_code == 400 and "not in the catalogue" in missing.text
    assert client.post("/ogc/processes/export/execution", json={"inputs": {"collection": DEMO_COLLECTION}}
                       ).status_code == 401
    scores = dict(zip(frame["item_id"], frame["score"], strict=True))
    assert scores[water] == 2.0 and scores[land] == 1.0


def test_validation_is_held_out_and_names_the_held_out_items(client: httpx.Client, archives: dict) -> None:
    r = execute(client, "validate", {"collection": "eurosat", "descriptors": ["s2"], "rounds": 2, "seeds": 1})
    assert r.status_code == 200, r.text
    rep = r.json()
    evaluation = rep["evaluation"]
    assert evaluation["folds"] == 5 and evaluation["protocol"].startswith("held out")
    folds = evaluation["items_per_fold"]
    assert len(folds) == 5 and all(folds)
    every = [i for f in folds for i in f]
    assert len(every) == len(set(every)) == rep["items"]  # disjoint, and together the whole collection
    report = client.get(rep["report"]).json()
    assert report["items"] == sorted(every)
    split = report["reports"]["s2"]["folds"][0]
    assert [sorted(report["items"][n] for n, f in enumerate(split) if f == k) for k in range(5)] == \
        [sorted(f) for f in folds]
    in_pool = execute(client, "validate", {"collection": "eurosat", "descriptors": ["s2"], "rounds": 2, "seeds": 1,
                                           "folds": 0}).json()
    assert in_pool["evaluation"]["protocol"].startswith("in pool") and "items_per_fold" not in in_pool["evaluation"]
    assert execute(client, "validate", {"collection": "eurosat", "folds": 1}).status_code == 400
