"""0020: stored hrefs relative to the installation, and the projection members common readers need.

Catalogues before this stored root-relative routes (``/scenes/<c>/<f>.tif``, ``/tiles/stac/...``,
``/files/models/...``; links ``/stac/collections/...``), which lose a proxy's prefix and which GDAL's STACIT
and stac-asset cannot open. This step rewrites them to the stored form of :mod:`catalog.hrefs`
(``scenes/...``; links relative to the STAC API root), and brings EOFusion's own scene and patch items
(``eofusion:kind``) from projection v2.0.0 (``proj:code``) to v1.1.0 as :mod:`catalog.items` now writes them:
``proj:epsg``, ``proj:wkt2`` on items whose assets are whole COGs (computed by PROJ, one per CRS: SQL cannot),
and the scene COG's ``proj:shape`` / ``proj:transform`` / ``proj:bbox`` on the data assets of grid patches.
Nothing else of an item changes; items of other kinds keep their projection members as their writers gave them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from rasterio.crs import CRS

from catalog.items import PROJECTION_EXTENSION, crs_fields

PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
_ROUTES = "^/(scenes|tiles|files|stac|ogc)/"

_ASSET_HREFS = f"""
UPDATE pgstac.items SET content = jsonb_set(content, '{{assets}}', (
    SELECT jsonb_object_agg(k, CASE WHEN jsonb_typeof(v) = 'object' AND v->>'href' ~ '{_ROUTES}'
                                    THEN jsonb_set(v, '{{href}}', to_jsonb(substr(v->>'href', 2))) ELSE v END)
    FROM jsonb_each(content->'assets') AS a(k, v)))
WHERE jsonb_typeof(content->'assets') = 'object'
  AND EXISTS (SELECT 1 FROM jsonb_each(content->'assets') AS a(k, v)
              WHERE jsonb_typeof(v) = 'object' AND v->>'href' ~ '{_ROUTES}')
"""

# Links of stored items are relative to the STAC API root (stac-fastapi resolves them against it).
_LINK_HREFS = """
UPDATE pgstac.items SET content = jsonb_set(content, '{links}', (
    SELECT jsonb_agg(CASE WHEN jsonb_typeof(l) = 'object' AND l->>'href' LIKE '/stac/%'
                          THEN jsonb_set(l, '{href}', to_jsonb(substr(l->>'href', 7))) ELSE l END ORDER BY n)
    FROM jsonb_array_elements(content->'links') WITH ORDINALITY AS e(l, n)))
WHERE jsonb_typeof(content->'links') = 'array'
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(content->'links') AS e(l)
              WHERE jsonb_typeof(l) = 'object' AND l->>'href' LIKE '/stac/%')
"""

_OURS = "content->'properties'->>'eofusion:kind' IN ('scene', 'patch')"

_EPSG = f"""
UPDATE pgstac.items
SET content = jsonb_set(
    jsonb_set(content, '{{properties}}', ((content->'properties') - 'proj:code')
              || jsonb_build_object('proj:epsg', substr(content->'properties'->>'proj:code', 6)::integer)),
    '{{stac_extensions}}',
    (SELECT coalesce(jsonb_agg(CASE WHEN e = %(v2)s THEN %(v1)s ELSE e END ORDER BY n), '[]'::jsonb)
     FROM jsonb_array_elements_text(coalesce(content->'stac_extensions', '[]'::jsonb)) WITH ORDINALITY AS x(e, n))
    || CASE WHEN content->'stac_extensions' ? %(v1)s OR content->'stac_extensions' ? %(v2)s THEN '[]'::jsonb
            ELSE jsonb_build_array(%(v1)s) END)
WHERE {_OURS} AND content->'properties'->>'proj:code' ~ '^EPSG:[0-9]+$'
"""

# Grid patches (they name their scene) read the scene's whole COGs: the assets carry the COG's grid.
_PATCH_ASSET_GRID = """
UPDATE pgstac.items p SET content = jsonb_set(p.content, '{assets}', (
    SELECT jsonb_object_agg(k, CASE WHEN k IN ('s2', 's1') AND jsonb_typeof(v) = 'object'
        THEN v || jsonb_strip_nulls(jsonb_build_object(
            'proj:shape', s.content->'properties'->'proj:shape',
            'proj:transform', s.content->'properties'->'proj:transform',
            'proj:bbox', s.content->'properties'->'proj:bbox'))
        ELSE v END)
    FROM jsonb_each(p.content->'assets') AS a(k, v)))
FROM pgstac.items s
WHERE p.content->'properties'->>'eofusion:kind' = 'patch' AND jsonb_typeof(p.content->'assets') = 'object'
  AND s.collection = p.collection AND s.id = p.content->'properties'->>'eofusion:scene'
  AND s.content->'properties' ? 'proj:transform'
"""


# The scenes and patches layers show each feature's quicklook (stored form; the OGC answer makes it absolute).
_VIEWS = """
CREATE OR REPLACE VIEW eofusion.scene_features AS
SELECT i.collection || '.' || i.id AS fid,
       i.id AS item_id,
       i.collection,
       i.datetime,
       i.content -> 'properties' ->> 'platform' AS platform,
       i.content -> 'properties' ->> 'constellation' AS constellation,
       (i.content -> 'properties' ->> 'eofusion:patches')::integer AS patches,
       i.geometry,
       i.content -> 'assets' -> 'thumbnail' ->> 'href' AS quicklook
FROM pgstac.items i
WHERE i.content -> 'properties' ->> 'eofusion:kind' = 'scene';

CREATE OR REPLACE VIEW eofusion.patch_features AS
SELECT i.collection || '.' || i.id AS fid,
       i.id AS item_id,
       i.collection,
       i.datetime,
       i.content -> 'properties' ->> 'eofusion:scene' AS scene,
       (i.content -> 'properties' ->> 'eofusion:grid_level')::integer AS grid_level,
       i.content -> 'properties' ->> 'eofusion:parent' AS parent,
       i.content -> 'properties' ->> 'eofusion:sensors' AS sensors,
       (SELECT string_agg(l.path, '; ' ORDER BY l.path)
          FROM eofusion.ground_truth g JOIN eofusion.labels l ON l.id = g.label_id
         WHERE g.collection = i.collection AND g.item_id = i.id) AS ground_truth,
       i.geometry,
       i.content -> 'assets' -> 'thumbnail' ->> 'href' AS quicklook
FROM pgstac.items i
WHERE i.content -> 'properties' ->> 'eofusion:kind' = 'patch';
"""


def apply(conn: psycopg.Connection[Any]) -> None:
    """Rewrite the stored items (inside the migration's transaction)."""
    conn.execute(_VIEWS)
    conn.execute(_ASSET_HREFS)
    conn.execute(_LINK_HREFS)
    conn.execute(_EPSG, {"v1": PROJECTION_EXTENSION, "v2": PROJECTION_V2})
    conn.execute(_PATCH_ASSET_GRID)
    # proj:wkt2 on the items whose assets are whole COGs (scenes, archive patches): one PROJ call per CRS.
    whole = (f"{_OURS} AND NOT content->'properties' ? 'eofusion:scene' "
             "AND NOT content->'properties' ? 'proj:wkt2' AND content->'properties' ? 'proj:epsg'")
    codes = [r[0] for r in conn.execute(
        f"SELECT DISTINCT (content->'properties'->>'proj:epsg')::integer FROM pgstac.items WHERE {whole}")
        if r[0] is not None]
    for code in codes:
        wkt2 = crs_fields(CRS.from_epsg(code))["proj:wkt2"]
        conn.execute(f"UPDATE pgstac.items SET content = jsonb_set(content, '{{properties,proj:wkt2}}', "
                     f"to_jsonb(%s::text)) WHERE {whole} AND (content->'properties'->>'proj:epsg')::integer = %s",
                     (wkt2, code))
