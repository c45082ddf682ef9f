"""Run by Debian's /usr/bin/python3 (where python3-qgis lives): load an OAPIF layer headless.

Usage: qgis_load_layer.py BASE_URL TYPENAME
Prints one JSON line: {"valid": bool, "count": int, "fields": [...], "crs": str}.
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsVectorLayer  # noqa: E402

app = QgsApplication([], False)
app.initQgis()
base, typename = sys.argv[1], sys.argv[2]
layer = QgsVectorLayer(f"url='{base}' typename='{typename}'", typename, "OAPIF")
out = {"valid": layer.isValid(), "count": 0, "fields": [], "crs": ""}
if layer.isValid():
    out["count"] = sum(1 for _ in layer.getFeatures())
    out["fields"] = [f.name() for f in layer.fields()]
    out["crs"] = layer.crs().authid()
print(json.dumps(out), flush=True)
# QGIS 3.22 may crash in its own teardown (exitQgis) once run headless: the result is out, leave now.
os._exit(0)
