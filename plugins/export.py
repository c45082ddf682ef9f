"""Export annotations as files GIS tools open as they are: a GeoPackage of annotated patches, a GeoTIFF
label map per scene (codes, colour table, legend), and STAC label items."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from pydantic import Field
from rasterio.transform import Affine

from catalog import hrefs
from eofusion.errors import InvalidInput
from eofusion.paths import inside, safe_name
from plugins.base import Cost, EOFusionProcessor, Ident, ProcessInputs, Weight

EXPORT_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "export",
    "title": {"en": "Export annotations"},
    "description": {"en": "Writes the annotations of a collection (optionally one label) as a GeoPackage of "
                          "annotated patch polygons, a GeoTIFF label map per scene (one code per label, colour "
                          "table, legend in the band metadata and a JSON sidecar) and STAC label items."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["export", "GeoTIFF", "GeoPackage"],
    "links": [],
    "outputs": {"files": {"title": "Exported files", "schema": {"type": "object"},
                          "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat"}},
}


def _scene_crs(props: dict[str, Any]) -> str:
    """The CRS of a scene item's grid: its EPSG code, else its WKT2 (``proj:code`` in items before 0020)."""
    if props.get("proj:epsg") is not None:
        return f"EPSG:{props['proj:epsg']}"
    return str(props.get("proj:wkt2") or props["proj:code"])


def _hex_rgb(color: str | None) -> tuple[int, int, int, int]:
    c = (color or "#808080").lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255


class ExportInputs(ProcessInputs):
    """Inputs of ``export``."""

    collection: Annotated[Ident, Field(title="Annotated collection")]
    label: Annotated[Ident | None, Field(title="Only this label (and its level-2 children)")] = None


class ExportProcessor(EOFusionProcessor[ExportInputs]):
    """Annotations to GeoPackage, GeoTIFF label maps and STAC label items."""

    inputs_model = ExportInputs
    read_only = False  # it writes files under files/exports
    cost = Cost(Weight.HEAVY, "writes a GeoPackage and one GeoTIFF per annotated scene")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, EXPORT_METADATA)
        self.files_dir = Path(processor_def["files_dir"])

    def run(self, inputs: ExportInputs) -> tuple[str, Any]:
        """Write the files and return their hrefs (stored form ``files/...``: the OGC answer makes them absolute)."""
        collection, label = inputs.collection, inputs.label
        with self.connect() as conn:
            if label is not None and conn.execute("SELECT 1 FROM eofusion.labels WHERE lower(path) = lower(%s)",
                                                  (label,)).fetchone() is None:
                raise InvalidInput(f"label {label!r} is not in the catalogue")
            rows = conn.execute(
                "SELECT a.item_id, l.id, l.path, l.color, a.score, a.session_id::text, a.user_id, "
                "ST_AsBinary(a.geometry), i.content->'properties'->>'eofusion:scene', "
                "(i.content->'properties'->>'eofusion:grid_level')::int, "
                "i.content->'properties'->'proj:transform', i.content->'properties'->>'proj:code' "
                "FROM eofusion.annotations a JOIN eofusion.labels l ON l.id = a.label_id "
                "LEFT JOIN eofusion.labels p ON p.id = l.parent_id "
                "JOIN pgstac.items i ON i.collection = a.collection AND i.id = a.item_id "
                "WHERE a.collection = %s AND (%s::text IS NULL OR lower(l.path) = lower(%s) "
                "OR lower(p.path) = lower(%s)) "
                "ORDER BY a.item_id, l.path", (collection, label, label, label)).fetchall()
            scenes = {r[0]: r[1] for r in conn.execute(
                "SELECT id, content->'properties' FROM pgstac.items WHERE collection = %s AND "
                "content->'properties'->>'eofusion:kind' = 'scene'", (collection,))}
        if not rows:
            which = f" with label {label!r}" if label else ""
            raise InvalidInput(f"no annotations in collection {collection!r}{which}")
        # Scene ids name label-map files: check them all before writing anything.
        for r in rows:
            if r[8] and r[8] in scenes:
                safe_name(r[8], "scene id")
        out = self.files_dir / "exports" / uuid.uuid4().hex
        out.mkdir(parents=True)
        codes = {path: n for n, path in enumerate(sorted({r[2] for r in rows}), start=1)}
        colors = {r[2]: r[3] for r in rows}
        frame = gpd.GeoDataFrame({
            "item_id": [r[0] for r in rows], "label": [r[2] for r in rows], "code": [codes[r[2]] for r in rows],
            "score": [r[4] for r in rows], "session": [r[5] for r in rows], "user": [r[6] for r in rows]},
            geometry=[shapely.from_wkb(bytes(r[7])) for r in rows], crs="EPSG:4326")
        gpkg = out / "annotations.gpkg"
        frame.to_file(gpkg, layer="annotations", driver="GPKG")
        legend = {str(code): {"label": path, "color": colors[path]} for path, code in codes.items()}
        (out / "legend.json").write_text(json.dumps(legend, indent=1))
        files = {"geopackage": gpkg, "legend": out / "legend.json"}
        rasters = self._label_maps(rows, scenes, codes, colors, out)
        files.update({f"label_map:{sid}": p for sid, p in rasters.items()})
        stac = self._label_items(collection, rows, codes, scenes, out, gpkg)
        files.update({f"stac:{p.stem}": p for p in stac})
        rel = {k: hrefs.file_href(p.relative_to(self.files_dir).as_posix()) for k, p in files.items()}
        return "application/json", {"collection": collection, "annotations": len(rows), "labels": list(codes),
                                    "files": rel}

    @staticmethod
    def _label_maps(rows: list[Any], scenes: dict[str, Any], codes: dict[str, int], colors: dict[str, Any],
                    out: Path) -> dict[str, Path]:
        """One GeoTIFF per scene on its patch grid (one pixel per finest annotated patch)."""
        maps: dict[str, Path] = {}
        by_scene: dict[str, list[Any]] = {}
        for r in rows:
            if r[8] and r[8] in scenes and r[9]:
                by_scene.setdefault(r[8], []).append(r)
        for sid, srows in by_scene.items():
            props = scenes[sid]
            fine = min(r[9] for r in srows)
            t = Affine(*props["proj:transform"][:6])
            h, w = props["proj:shape"]
            grid = np.zeros((h // fine, w // fine), dtype=np.uint8)
            best = np.full(grid.shape, -np.inf)
            for r in sorted(srows, key=lambda r: -r[9]):  # coarse first, finer patches overwrite
                pt = Affine(*r[10][:6])
                row0 = round((pt.f - t.f) / t.e) // fine
                col0 = round((pt.c - t.c) / t.a) // fine
                n = r[9] // fine
                window = np.s_[row0:row0 + n, col0:col0 + n]
                score = r[4] if r[4] is not None else 0.0
                # Several labels on one patch: the most confident wins the pixel.
                take = best[window] <= score if r[9] == fine else np.ones_like(grid[window], dtype=bool)
                grid[window] = np.where(take, codes[r[2]], grid[window])
                best[window] = np.where(take, score, best[window])
            path = inside(out, f"{safe_name(sid, 'scene id')}_labels.tif", "label map")
            profile = {"driver": "GTiff", "width": grid.shape[1], "height": grid.shape[0], "count": 1,
                       "dtype": "uint8", "crs": _scene_crs(props), "nodata": 0, "compress": "DEFLATE",
                       "transform": t * Affine.scale(fine)}
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(grid, 1)
                dst.write_colormap(1, {0: (0, 0, 0, 0), **{c: _hex_rgb(colors[p]) for p, c in codes.items()}})
                dst.update_tags(1, **{f"LABEL_{c}": p for p, c in codes.items()})
                dst.set_band_description(1, "EOFusion annotation label code (see LABEL_n tags / legend.json)")
            maps[sid] = path
        return maps

    @staticmethod
    def _label_items(collection: str, rows: list[Any], codes: dict[str, int], scenes: dict[str, Any], out: Path,
                     gpkg: Path) -> list[Path]:
        """A STAC label item (label extension) for the annotated patches of the collection."""
        geoms = [shapely.from_wkb(bytes(r[7])) for r in rows]
        hull = shapely.union_all(geoms).envelope
        item = {
            "type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": ["https://stac-extensions.github.io/label/v1.0.1/schema.json"],
            "id": f"{collection}-annotations", "geometry": shapely.geometry.mapping(hull),
            "bbox": list(hull.bounds),
            "properties": {
                "datetime": None, "start_datetime": "1970-01-01T00:00:00Z", "end_datetime": "2100-01-01T00:00:00Z",
                "label:description": f"Semantic annotations of {collection} accepted in EOFusion",
                "label:type": "vector", "label:properties": ["label"],
                "label:classes": [{"name": "label", "classes": sorted(codes)}],
                "label:tasks": ["classification"], "label:methods": ["manual"]},
            "assets": {"labels": {"href": gpkg.name, "type": "application/geopackage+sqlite3", "roles": ["labels"],
                                  "title": "Annotated patch polygons"}},
            # Relative to this file (files/exports/<id>/label-item.json), so it holds behind any proxy or prefix.
            "links": [{"rel": "source", "href": f"../../../{hrefs.STAC}/{hrefs.stac_collection_path(collection)}",
                       "type": "application/json",
                       "title": "Annotated collection"}],
        }
        path = out / "label-item.json"
        path.write_text(json.dumps(item, indent=1))
        return [path]
