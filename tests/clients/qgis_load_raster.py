"""Run by Debian's /usr/bin/python3 (where python3-qgis lives): load a raster layer headless, by GDAL's provider.

Usage: qgis_load_raster.py SOURCE X Y [X Y ...]
SOURCE is what a QGIS user types into "Add Raster Layer" (here ``/vsicurl/<asset href>``); each X, Y is a point
in the layer's CRS where band values are sampled.
Prints one JSON line: {"valid": bool, "error": str, "width": int, "height": int, "bands": int, "crs": str,
"extent": [xmin, ymin, xmax, ymax], "samples": [[value of each band at X, Y, or null] for each point]}.
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsPointXY, QgsRasterLayer  # noqa: E402

app = QgsApplication([], False)
app.initQgis()
source, coords = sys.argv[1], [float(v) for v in sys.argv[2:]]
points = [QgsPointXY(x, y) for x, y in zip(coords[::2], coords[1::2], strict=True)]
layer = QgsRasterLayer(source, "asset", "gdal")
out = {"valid": layer.isValid(), "error": "", "width": 0, "height": 0, "bands": 0, "crs": "",
       "extent": [], "samples": []}
if not layer.isValid():
    # Only here: error() of a valid raster layer segfaults in QGIS 3.22 (Debian bookworm).
    out["error"] = layer.error().summary()
else:
    provider = layer.dataProvider()
    extent = layer.extent()
    out.update(width=layer.width(), height=layer.height(), bands=layer.bandCount(), crs=layer.crs().authid(),
               extent=[extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()])
    for point in points:
        values = []
        for band in range(1, layer.bandCount() + 1):
            value, ok = provider.sample(point, band)
            values.append(value if ok else None)
        out["samples"].append(values)
print(json.dumps(out), flush=True)
# QGIS 3.22 may crash in its own teardown (exitQgis) once run headless: the result is out, leave now.
os._exit(0)
