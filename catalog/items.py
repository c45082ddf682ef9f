"""STAC collections and items for EOFusion's scenes (pystac, validated shapes)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.crs import CRS
from rasterio.transform import Affine, array_bounds
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping

from eofusion.readers.sentinel2 import S2_BAND_INFO

KIND = "eofusion:kind"


def footprint(crs: CRS, transform: Affine, shape: tuple[int, int]) -> tuple[dict[str, Any], list[float]]:
    """WGS84 geometry and bbox of a grid (densified so the reprojected outline stays true)."""
    h, w = shape
    west, south, east, north = array_bounds(h, w, transform)
    geom = transform_geom(crs, "EPSG:4326", mapping(box(west, south, east, north)), precision=7,
                          antimeridian_cutting=True)
    bbox = [round(v, 7) for v in transform_bounds(crs, "EPSG:4326", west, south, east, north, densify_pts=21)]
    return geom, bbox


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


SCENES_PREFIX = "/scenes"


def scene_href(collection_id: str, cog: Path) -> str:
    """The server-relative URL of a scene COG (served with HTTP range requests under /scenes)."""
    return f"{SCENES_PREFIX}/{collection_id}/{cog.name}"


def quicklook_href(collection_id: str, item_id: str, asset: str, rescale: str = "0,3000",
                   bidx: tuple[int, ...] = (3, 2, 1), bbox: tuple[float, ...] | None = None) -> str:
    """A ``/tiles`` URL (relative to the server root) that renders the item on demand."""
    params: list[tuple[str, str]] = [("collection", collection_id), ("item", item_id),
                                     ("assets", f"{asset}|bidx={','.join(str(b) for b in bidx)}"),
                                     ("rescale", rescale)]
    if bbox is None:
        return "/tiles/stac/preview.png?" + urlencode(params) + "&max_size=512"
    minx, miny, maxx, maxy = bbox
    return f"/tiles/stac/bbox/{minx},{miny},{maxx},{maxy}.png?" + urlencode(params)


def s2_scene_item(collection_id: str, scene_id: str, cog: Path, crs: CRS, transform: Affine,
                  shape: tuple[int, int], start: datetime, end: datetime | None,
                  properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """The STAC item of a Sentinel-2 scene whose 10 m bands are in one COG.

    Args:
        start: Acquisition time, or the start of the interval when only that is known.
        end: End of the interval (None for a single acquisition time).
    """
    geom, bbox = footprint(crs, transform, shape)
    props = {KIND: "scene", "platform": "sentinel-2", "constellation": "sentinel-2", "instruments": ["msi"],
             "gsd": 10, **(properties or {})}
    item = pystac.Item(id=scene_id, geometry=geom, bbox=bbox, datetime=None if end else start,
                       start_datetime=start if end else None, end_datetime=end, properties=props,
                       collection=collection_id)
    names = list(S2_BAND_INFO)
    asset = pystac.Asset(href=scene_href(collection_id, cog), media_type=pystac.MediaType.COG, roles=["data"],
                         title="Sentinel-2 10 m bands (B02, B03, B04, B08), digital numbers")
    item.add_asset("data", asset)
    eo = EOExtension.ext(asset, add_if_missing=True)
    eo.bands = [Band.create(name=b, common_name=S2_BAND_INFO[b][0], center_wavelength=S2_BAND_INFO[b][1],
                            full_width_half_max=S2_BAND_INFO[b][2]) for b in names]
    raster = RasterExtension.ext(asset, add_if_missing=True)
    raster.bands = [RasterBand.create(nodata=0, data_type=DataType.UINT16, spatial_resolution=10, scale=1e-4)
                    for _ in names]
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.epsg = crs.to_epsg()
    if proj.epsg is None:
        proj.wkt2 = crs.to_wkt()
    proj.transform = list(transform)[:6]
    proj.shape = list(shape)
    proj.bbox = list(array_bounds(shape[0], shape[1], transform))
    item.add_asset("thumbnail", pystac.Asset(href=quicklook_href(collection_id, scene_id, "data"),
                                             media_type=pystac.MediaType.PNG, roles=["thumbnail", "overview"],
                                             title="True-colour preview rendered by /tiles"))
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    out["links"] = []
    return out


def s2_patch_item(collection_id: str, scene_item: dict[str, Any], patch_item_id: str, cog: Path, crs: CRS,
                  window_transform: Affine, level: int, row: int, col: int, parent_id: str | None,
                  valid_fraction: float) -> dict[str, Any]:
    """The STAC item of one grid patch: a window of the scene COG, rendered on demand by ``/tiles``."""
    shape = (level, level)
    geom, bbox = footprint(crs, window_transform, shape)
    sp = scene_item["properties"]
    times = {k: sp[k] for k in ("datetime", "start_datetime", "end_datetime") if sp.get(k)}
    props: dict[str, Any] = {
        KIND: "patch", "eofusion:scene": scene_item["id"], "eofusion:grid_level": level,
        "eofusion:row": row, "eofusion:col": col, "eofusion:parent": parent_id, "eofusion:sensors": "s2",
        "eofusion:valid_fraction": round(valid_fraction, 4),
        "platform": sp.get("platform"), "constellation": sp.get("constellation"), "gsd": sp.get("gsd"),
        "datetime": times.get("datetime"),
        **{k: v for k, v in times.items() if k != "datetime"},
        "proj:code": f"EPSG:{crs.to_epsg()}", "proj:transform": list(window_transform)[:6], "proj:shape": list(shape),
    }
    native = array_bounds(level, level, window_transform)
    proj_bbox = [round(v, 3) for v in (native[0], native[1], native[2], native[3])]
    props["proj:bbox"] = proj_bbox
    data_asset = dict(scene_item["assets"]["data"])
    data_asset["title"] = "Scene COG (this patch is the window given by proj:transform and proj:shape)"
    ql = quicklook_href(collection_id, patch_item_id, "data", bbox=tuple(proj_bbox))
    ql += f"&coord_crs=epsg:{crs.to_epsg()}&width={level}&height={level}"
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": list(scene_item.get("stac_extensions", [])),
        "id": patch_item_id, "collection": collection_id, "geometry": geom, "bbox": bbox,
        "properties": props,
        "assets": {"data": data_asset,
                   "thumbnail": {"href": ql, "type": pystac.MediaType.PNG, "roles": ["thumbnail", "overview"],
                                 "title": "Quicklook of the patch rendered by /tiles"}},
        "links": [{"rel": "parent-scene", "href": f"/stac/collections/{collection_id}/items/{scene_item['id']}",
                   "type": "application/geo+json", "title": "Scene this patch was cut from"}],
    }
