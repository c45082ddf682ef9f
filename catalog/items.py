"""STAC collections and items for EOFusion's scenes (pystac, validated shapes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
from pystac.extensions.sar import FrequencyBand, Polarization, SarExtension
from rasterio.crs import CRS
from rasterio.transform import Affine, array_bounds
from rasterio.warp import transform as reproject_points
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping

from catalog import hrefs
from eofusion.readers.sentinel2 import S2_BAND_INFO

KIND = "eofusion:kind"
#: Labels users gave a patch (annotation paths and their level-1 classes; empty until annotated), as
#: ``eofusion:ground_truth`` lists the ground truth, so CQL2 can filter on them, negated too.
ANNOTATIONS = "eofusion:annotations"
_DENSIFY = 21  # points added along each edge when reprojecting a bounding box
#: The projection extension the items declare. v1.1.0, not v2.0.0: GDAL's STACIT driver before 3.10 (Debian's
#: 3.6) reads only ``proj:epsg`` (an asset whose item lacks that member is skipped: "No compatible asset found"),
#: and v2.0.0 forbids it (``proj:code`` replaced it); pystac and rio-tiler read v1.1.0 items (pystac migrates them).
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


def footprint(crs: CRS, transform: Affine, shape: tuple[int, int]) -> tuple[dict[str, Any], list[float]]:
    """WGS84 geometry and bbox of a grid (densified so the reprojected outline stays true)."""
    h, w = shape
    west, south, east, north = array_bounds(h, w, transform)
    geom = transform_geom(crs, "EPSG:4326", mapping(box(west, south, east, north)), precision=7,
                          antimeridian_cutting=True)
    bbox = [round(v, 7) for v in transform_bounds(crs, "EPSG:4326", west, south, east, north,
                                                  densify_pts=_DENSIFY)]
    return geom, bbox


def footprints(crs: CRS, transforms: Sequence[Affine], shapes: Sequence[tuple[int, int]],
               ) -> list[tuple[dict[str, Any], list[float]]]:
    """:func:`footprint` of many grids of one CRS with one coordinate transformation call.

    The corners and the densified edges of every grid go through rasterio's ``transform`` (the
    PROJ transformation that ``transform_geom`` and ``transform_bounds`` use), so the results are
    the same numbers; creating that transformation once instead of twice per patch is what makes
    this ~100x faster. Grids that cross the antimeridian or hold a pole take the per-grid path.
    """
    n = len(transforms)
    if n == 0:
        return []
    bounds = np.array([array_bounds(h, w, t) for t, (h, w) in zip(transforms, shapes, strict=True)])
    west, south, east, north = bounds.T
    # The ring as shapely's box() orders it (counter-clockwise from the south-east corner).
    ring_x = np.stack([east, east, west, west, east], axis=1)
    ring_y = np.stack([south, north, north, south, south], axis=1)
    # The edges densified as GDAL's OCTTransformBounds does with densify_pts=21.
    side = _DENSIFY + 1
    i = np.arange(side)
    dx, dy = ((east - west) / side)[:, None], ((north - south) / side)[:, None]
    edge_x = np.concatenate([np.repeat(west[:, None], side, 1), west[:, None] + i * dx,
                             np.repeat(east[:, None], side, 1), east[:, None] - i * dx], axis=1)
    edge_y = np.concatenate([north[:, None] - i * dy, np.repeat(south[:, None], side, 1),
                             south[:, None] + i * dy, np.repeat(north[:, None], side, 1)], axis=1)
    xs = np.concatenate([ring_x, edge_x], axis=1)
    ys = np.concatenate([ring_y, edge_y], axis=1)
    lon, lat = reproject_points(crs, "EPSG:4326", xs.ravel().tolist(), ys.ravel().tolist())
    lon_a, lat_a = np.asarray(lon).reshape(xs.shape), np.asarray(lat).reshape(xs.shape)
    safe = np.isfinite(lon_a).all(axis=1) & np.isfinite(lat_a).all(axis=1)
    safe &= (lon_a.max(axis=1) - lon_a.min(axis=1)) < 180.0
    pole_x, pole_y = reproject_points("EPSG:4326", crs, [0.0, 0.0], [90.0, -90.0])
    for px, py in zip(pole_x, pole_y, strict=True):
        if np.isfinite(px) and np.isfinite(py):
            safe &= ~((west <= px) & (px <= east) & (south <= py) & (py <= north))
    out: list[tuple[dict[str, Any], list[float]]] = []
    for k in range(n):
        if not safe[k]:
            out.append(footprint(crs, transforms[k], shapes[k]))
            continue
        ring = [[round(float(x), 7), round(float(y), 7)] for x, y in zip(lon_a[k, :5], lat_a[k, :5], strict=True)]
        el, ea = lon_a[k, 5:], lat_a[k, 5:]
        bbox = [round(float(v), 7) for v in (el.min(), ea.min(), el.max(), ea.max())]
        out.append(({"type": "Polygon", "coordinates": [ring]}, bbox))
    return out


def collection(collection_id: str, description: str, bbox: list[float], start: datetime | None,
               end: datetime | None, title: str | None = None) -> dict[str, Any]:
    """A STAC collection dictionary."""
    coll = pystac.Collection(
        id=collection_id,
        description=description,
        title=title or collection_id,
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, end]])),
        license="other",
        providers=[pystac.Provider("ESA / Copernicus", roles=[pystac.ProviderRole.PRODUCER,
                                                               pystac.ProviderRole.LICENSOR],
                                   url="https://sentinels.copernicus.eu")],
    )
    coll.summaries = pystac.Summaries({"constellation": ["sentinel-2"]})
    out = coll.to_dict(include_self_link=False, transform_hrefs=False)
    out["links"] = []
    return out


def scene_href(collection_id: str, cog: Path) -> str:
    """The stored href of a scene COG (``scenes/<collection>/<file>``, see :mod:`catalog.hrefs`)."""
    return hrefs.scene_asset(collection_id, cog.name)


def crs_fields(crs: CRS, *, wkt2: bool = True) -> dict[str, Any]:
    """The projection extension's CRS members: ``proj:epsg`` (null without an EPSG code) and ``proj:wkt2``.

    Args:
        wkt2: Whether to add ``proj:wkt2`` when there is an EPSG code (without one it is always added: it is
            then the only description of the CRS). Grid patches leave it out (1.6 kB each, the scene has it).
    """
    epsg = crs.to_epsg()
    out: dict[str, Any] = {"proj:epsg": epsg}
    if wkt2 or epsg is None:
        # The EPSG definition when there is one: a file's own CRS description varies with its driver, and the
        # 0020 migration derives the same text from the code alone.
        out["proj:wkt2"] = (CRS.from_epsg(epsg) if epsg is not None else crs).to_wkt(version="WKT2_2019")
    return out


def grid_fields(transform: Affine, shape: tuple[int, int], digits: int | None = None) -> dict[str, Any]:
    """``proj:shape``, ``proj:transform`` and ``proj:bbox`` (native CRS) of a pixel grid."""
    native = array_bounds(shape[0], shape[1], transform)
    return {"proj:shape": list(shape), "proj:transform": list(transform)[:6],
            "proj:bbox": [round(v, digits) for v in native] if digits is not None else list(native)}


@dataclass(frozen=True)
class SceneAssets:
    """The aligned COGs of a scene and what they hold."""

    s2_cog: Path | None = None
    s1_cog: Path | None = None
    s1_polarisations: tuple[str, ...] = ()
    s1_datetime: datetime | None = None
    s1_source_scale: str | None = None


def _add_s2_asset(item: pystac.Item, collection_id: str, cog: Path) -> None:
    asset = pystac.Asset(href=scene_href(collection_id, cog), media_type=pystac.MediaType.COG, roles=["data"],
                         title="Sentinel-2 10 m bands (B02, B03, B04, B08), digital numbers")
    item.add_asset("s2", asset)
    names = list(S2_BAND_INFO)
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(name=b, common_name=S2_BAND_INFO[b][0], center_wavelength=S2_BAND_INFO[b][1],
                    full_width_half_max=S2_BAND_INFO[b][2]) for b in names]
    RasterExtension.ext(asset, add_if_missing=True).bands = [
        RasterBand.create(nodata=0, data_type=DataType.UINT16, spatial_resolution=10, scale=1e-4) for _ in names]


def _add_s1_asset(item: pystac.Item, collection_id: str, cog: Path, pols: tuple[str, ...]) -> None:
    asset = pystac.Asset(href=scene_href(collection_id, cog), media_type=pystac.MediaType.COG, roles=["data"],
                         title=f"Sentinel-1 GRD backscatter ({', '.join(pols)}), linear intensity, "
                               "co-registered onto the Sentinel-2 grid")
    item.add_asset("s1", asset)
    RasterExtension.ext(asset, add_if_missing=True).bands = [
        RasterBand.create(nodata=NoDataStrings.NAN, data_type=DataType.FLOAT32, spatial_resolution=10) for _ in pols]


def scene_item(collection_id: str, scene_id: str, crs: CRS, transform: Affine, shape: tuple[int, int],
               start: datetime, end: datetime | None, assets: SceneAssets,
               properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """The STAC item of a scene: S2 and/or S1 on one grid, each in one COG.

    Args:
        start: Acquisition time, or the start of the interval when only that is known.
        end: End of the interval (None for a single acquisition time).
    """
    geom, bbox = footprint(crs, transform, shape)
    sensors = [s for s, cog in (("s1", assets.s1_cog), ("s2", assets.s2_cog)) if cog]
    props: dict[str, Any] = {KIND: "scene", "eofusion:sensors": "+".join(sensors), "gsd": 10, **(properties or {})}
    if assets.s2_cog:
        props.update({"platform": "sentinel-2", "constellation": "sentinel-2", "instruments": ["msi"]})
    else:
        props.update({"platform": "sentinel-1", "constellation": "sentinel-1", "instruments": ["c-sar"]})
    if assets.s1_datetime:
        props["eofusion:s1_datetime"] = assets.s1_datetime.isoformat()
    item = pystac.Item(id=scene_id, geometry=geom, bbox=bbox, datetime=None if end else start,
                       start_datetime=start if end else None, end_datetime=end, properties=props,
                       collection=collection_id)
    quicklook = ""
    if assets.s2_cog:
        _add_s2_asset(item, collection_id, assets.s2_cog)
        quicklook = hrefs.quicklook(collection_id, scene_id, "s2")
    if assets.s1_cog:
        _add_s1_asset(item, collection_id, assets.s1_cog, assets.s1_polarisations)
        sar = SarExtension.ext(item, add_if_missing=True)
        sar.apply(instrument_mode="IW", frequency_band=FrequencyBand.C, center_frequency=5.405,
                  polarizations=[Polarization(p) for p in assets.s1_polarisations], product_type="GRD")
        quicklook = quicklook or hrefs.quicklook(collection_id, scene_id, "s1", rescale="0,0.3", bidx=(1,))
    # The data assets share the scene's grid: the projection members are the item's.
    item.properties.update({**crs_fields(crs), **grid_fields(transform, shape)})
    item.stac_extensions.append(PROJECTION_EXTENSION)
    item.add_asset("thumbnail", pystac.Asset(href=quicklook, media_type=pystac.MediaType.PNG,
                                             roles=["thumbnail", "overview"], title="Preview rendered by /tiles"))
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    out["links"] = []
    return out


def patch_item(collection_id: str, scene: dict[str, Any], patch_item_id: str, crs: CRS,
               window_transform: Affine, level: int, row: int, col: int, parent_id: str | None,
               valid_fraction: float, where: tuple[dict[str, Any], list[float]] | None = None) -> dict[str, Any]:
    """The STAC item of one grid patch: a window of the scene COGs, rendered on demand by ``/tiles``.

    Args:
        where: The patch's ``footprint`` when already computed (see :func:`footprints`).
    """
    shape = (level, level)
    geom, bbox = where or footprint(crs, window_transform, shape)
    sp = scene["properties"]
    inherited = ("datetime", "start_datetime", "end_datetime", "platform", "constellation", "instruments", "gsd",
                 "eofusion:sensors", "eofusion:s1_datetime", "sar:instrument_mode", "sar:frequency_band",
                 "sar:center_frequency", "sar:polarizations", "sar:product_type")
    props: dict[str, Any] = {k: sp[k] for k in inherited if k in sp}
    props["datetime"] = sp.get("datetime")
    window = grid_fields(window_transform, shape, digits=3)
    proj_bbox = window["proj:bbox"]
    props.update({
        KIND: "patch", ANNOTATIONS: [], "eofusion:scene": scene["id"], "eofusion:grid_level": level,
        "eofusion:row": row, "eofusion:col": col, "eofusion:parent": parent_id,
        "eofusion:valid_fraction": round(valid_fraction, 4), **crs_fields(crs, wkt2=False), **window,
    })
    # The data assets are the scene's whole COGs: their own grid (the scene's) overrides the item's window
    # on the asset, so readers that open the file (GDAL's STACIT) place its pixels where they are.
    scene_grid = {k: sp[k] for k in ("proj:shape", "proj:transform", "proj:bbox") if k in sp}
    assets: dict[str, Any] = {}
    for key in ("s2", "s1"):
        if key in scene["assets"]:
            assets[key] = {**scene["assets"][key], **scene_grid,
                           "title": scene["assets"][key]["title"] + " (this patch: the window of proj:transform)"}
    if "s2" in assets:
        ql = hrefs.quicklook(collection_id, patch_item_id, "s2", bbox=tuple(proj_bbox))
    else:
        ql = hrefs.quicklook(collection_id, patch_item_id, "s1", rescale="0,0.3", bidx=(1,), bbox=tuple(proj_bbox))
    ql += f"&coord_crs=epsg:{crs.to_epsg()}&width={level}&height={level}"
    assets["thumbnail"] = {"href": ql, "type": pystac.MediaType.PNG, "roles": ["thumbnail", "overview"],
                           "title": "Quicklook of the patch rendered by /tiles"}
    return {
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": list(scene.get("stac_extensions", [])),
        "id": patch_item_id, "collection": collection_id, "geometry": geom, "bbox": bbox, "properties": props,
        "assets": assets,
        "links": [{"rel": "parent-scene", "href": hrefs.stac_item_path(collection_id, scene["id"]),
                   "type": "application/geo+json", "title": "Scene this patch was cut from"}],
    }
