"""Trained search models as STAC items (Machine Learning Model extension) in the ``models`` collection.

A model item describes the network with the ``mlm`` fields its class provides (``mlm_metadata()``), says
which collection and descriptor it was trained on and its metrics (``eofusion:*``), covers the footprint
of that collection, and links the weights as an ``mlm:model`` asset (a ``torch.save`` file served under
``/files/models``, stored as ``files/models/<file>``: see :mod:`catalog.hrefs`; the catalogue keeps the same
bytes in its model table).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

from catalog import hrefs
from catalog.load import upsert_collection, upsert_items

MODELS_COLLECTION = "models"
MLM_EXTENSION = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
STAC_VERSION = "1.1.0"


def models_collection() -> dict[str, Any]:
    """The STAC collection of trained models (global extent: a model covers the collection it indexes).

    No ``summaries``: the MLM v1.5.2 schema validates every summary of a collection that declares it as an
    object of MLM fields, so the usual array summaries (``"mlm:framework": ["pytorch"]``) fail validation.
    """
    return {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [MLM_EXTENSION], "id": MODELS_COLLECTION,
        "title": "Trained search models",
        "description": "Deep-hashing and text-to-patch models trained on the catalogue's labelled patches, "
                       "described with the STAC Machine Learning Model extension.",
        "license": "other",
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[None, None]]}},
        "links": [],
    }


def ensure_models_collection(conn: psycopg.Connection) -> None:
    """Create the ``models`` collection, or bring it to the current definition (it is the server's own)."""
    upsert_collection(conn, models_collection())


def collection_footprint(conn: psycopg.Connection, collection: str) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON geometry, bbox) of the envelope of a collection's items; the whole globe if it has none."""
    row = conn.execute("SELECT ST_AsGeoJSON(ST_Envelope(ST_Extent(geometry)))::text, ST_XMin(ST_Extent(geometry)), "
                       "ST_YMin(ST_Extent(geometry)), ST_XMax(ST_Extent(geometry)), ST_YMax(ST_Extent(geometry)) "
                       "FROM pgstac.items WHERE collection = %s", (collection,)).fetchone()
    if row is None or row[0] is None:
        bbox = [-180.0, -90.0, 180.0, 90.0]
    else:
        bbox = [float(v) for v in row[1:]]
        if bbox[0] < bbox[2] and bbox[1] < bbox[3]:
            return json.loads(row[0]), bbox
    w, s, e, n = bbox
    if w == e or s == n:  # a single point or line: widen so the footprint is a polygon
        w, s, e, n = w - 1e-6, s - 1e-6, e + 1e-6, n + 1e-6
        bbox = [w, s, e, n]
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}, bbox


def model_item(item_id: str, mlm: dict[str, Any], *, kind: str, trained_on: str, descriptor: str,
               model_id: str, created: datetime, geometry: dict[str, Any], bbox: list[float],
               properties: dict[str, Any] | None = None, file_name: str | None = None) -> dict[str, Any]:
    """A STAC item (``mlm`` extension) for a trained model.

    Args:
        item_id: Item id.
        mlm: ``mlm:*`` properties (``DeepHasher.mlm_metadata()`` or ``Text2PatchModel.mlm_metadata()``).
        kind: ``"hashing"`` or ``"text2patch"``.
        trained_on: Collection whose labelled patches trained it (and which it indexes).
        descriptor: Descriptor kind it reads.
        model_id: Id of the model row in the catalogue.
        created: Training time (the item's datetime).
        geometry: Footprint (of ``trained_on``).
        bbox: Its bounding box.
        properties: Further ``eofusion:*`` properties (code length, metrics...).
        file_name: Name of the weights file under ``/files/models`` (default ``<item_id>.pt``).

    Returns:
        The item as a dict.
    """
    props: dict[str, Any] = {
        "datetime": created.isoformat(), "created": created.isoformat(),
        "description": f"{kind} model of the {descriptor!r} descriptors of collection {trained_on!r}",
        **mlm,
        "eofusion:model_kind": kind, "eofusion:trained_on": trained_on, "eofusion:descriptor": descriptor,
        "eofusion:model_id": model_id, **(properties or {}),
    }
    return {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [MLM_EXTENSION], "id": item_id,
        "collection": MODELS_COLLECTION, "geometry": geometry, "bbox": bbox, "properties": props,
        "links": [{"rel": "derived_from", "href": hrefs.stac_collection_path(trained_on), "type": "application/json",
                   "title": "Collection the model was trained on"}],
        "assets": {"model": {
            "href": hrefs.model_file(file_name or item_id + ".pt"), "type": "application/octet-stream",
            "title": "PyTorch weights, configuration and metadata (torch.save, weights only)",
            "roles": ["mlm:model", "data"], "mlm:artifact_type": "torch.save"}},
    }


def publish_model_item(conn: psycopg.Connection, item: dict[str, Any]) -> None:
    """Upsert a model item into pgstac (creating the ``models`` collection first if needed)."""
    ensure_models_collection(conn)
    upsert_items(conn, [item])
