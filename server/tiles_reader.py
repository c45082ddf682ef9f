"""A COG reader whose tiles and crops cost at most one read of the raster, however large the box.

rio-tiler reads a box through a warped VRT at the raster's own resolution over the whole box: a
20 km scene asked for at zoom 2, or as a bbox of the whole world, becomes a VRT a million pixels
wide, and the request held a worker for minutes (each zoom level out costs four times the one
before). When the box is much larger than the raster, this reader reads only the part of the
output grid the raster covers, at the output's resolution, and places it in an otherwise masked
image: the same picture, bounded work. Tiles, previews, bbox crops and features all read through
:meth:`BoundedReader.part`.
"""

from __future__ import annotations

import math
from typing import Any

import attr
import numpy
from rasterio._err import CPLE_BaseError  # what GDAL and PROJ errors are raised as
from rasterio.crs import CRS
from rasterio.transform import from_bounds
from rasterio.warp import calculate_default_transform, transform, transform_bounds
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import PointOutsideBounds, TileOutsideBounds
from rio_tiler.expression import parse_expression
from rio_tiler.io import Reader
from rio_tiler.models import ImageData, PointData
from rio_tiler.types import BBox, Indexes

from eofusion.errors import InvalidInput

#: A box up to this many times the raster's area is read as rio-tiler reads it (its VRT stays small).
DIRECT_AREA_RATIO = 4.0


def _finite(values: tuple[float, ...]) -> bool:
    return all(math.isfinite(v) for v in values)


@attr.s
class BoundedReader(Reader):
    """:class:`rio_tiler.io.Reader` that reads only the covered part of boxes much larger than the raster."""

    def _check_bands(self, indexes: Indexes | None, expression: str | None) -> None:
        """Refuse band indexes the raster does not have (rasterio would raise a bare IndexError).

        Raises:
            InvalidInput: a ``bidx`` or an expression's ``bN`` outside ``1..count``.
        """
        wanted: tuple[Any, ...] = parse_expression(expression) if expression else ()
        if indexes is not None:
            wanted += (indexes,) if isinstance(indexes, int) else tuple(indexes)
        count = len(self.dataset.indexes) if self.dataset is not None else 0
        bad = [b for b in wanted if not isinstance(b, int) or not 1 <= b <= count]
        if bad:
            raise InvalidInput(f"no band {bad[0]!r} in this raster: its bands are 1 to {count}")

    def _check_nodata(self, nodata: Any) -> None:
        """Refuse a ``nodata`` override the raster's data type cannot hold (numpy would fail on it later).

        Raises:
            InvalidInput: e.g. ``-inf``, ``nan`` or ``1e10`` for 16-bit integer bands.
        """
        if nodata is None or self.dataset is None:
            return
        dtype = numpy.dtype(self.dataset.dtypes[0])
        if dtype.kind in "iu":
            info = numpy.iinfo(dtype)
            value = float(nodata)
            if not math.isfinite(value) or value != int(value) or not info.min <= value <= info.max:
                raise InvalidInput(f"nodata={nodata} is not a value of this raster's {dtype} bands "
                                   f"(integers {info.min} to {info.max})")

    def read(self, indexes: Indexes | None = None, expression: str | None = None, **kwargs: Any) -> ImageData:
        """The whole raster (previews, statistics), with its band indexes checked."""
        self._check_bands(indexes, expression)
        self._check_nodata(kwargs.get("nodata"))
        return super().read(indexes=indexes, expression=expression, **kwargs)

    def _native_resolution(self, crs: CRS) -> tuple[float, float]:
        """The raster's pixel size in ``crs`` units."""
        if crs == self.crs and self.transform is not None:
            return abs(self.transform.a), abs(self.transform.e)
        transform, _, _ = calculate_default_transform(self.crs, crs, self.width, self.height, *self.bounds)
        return abs(transform.a), abs(transform.e)

    def part(  # noqa: C901 (one sizing rule per case, as rio-tiler's)
        self,
        bbox: BBox,
        dst_crs: CRS | None = None,
        bounds_crs: CRS = WGS84_CRS,
        indexes: Indexes | None = None,
        expression: str | None = None,
        max_size: int | None = None,
        height: int | None = None,
        width: int | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """Read a box; see the module docstring for boxes much larger than the raster."""
        self._check_bands(indexes, expression)
        self._check_nodata(kwargs.get("nodata"))

        def direct() -> ImageData:
            return super(BoundedReader, self).part(
                bbox, dst_crs=dst_crs, bounds_crs=bounds_crs, indexes=indexes, expression=expression,
                max_size=max_size, height=height, width=width, buffer=buffer, **kwargs)

        _check_coordinates({"coordinates": [[bbox[0], bbox[1]], [bbox[2], bbox[3]]]}, bounds_crs)
        crs = dst_crs or bounds_crs
        box = tuple(bbox) if bounds_crs == crs else transform_bounds(bounds_crs, crs, *bbox, densify_pts=21)
        covered = tuple(self.bounds) if crs == self.crs else transform_bounds(self.crs, crs, *self.bounds,
                                                                               densify_pts=21)
        if not _finite((*box, box[2] - box[0], box[3] - box[1])) or not _finite(covered):
            raise InvalidInput(f"the box {tuple(bbox)} has no finite extent in {crs}")
        left, bottom, right, top = box
        if right <= left or top <= bottom:
            raise InvalidInput(f"the box {tuple(bbox)} has no area (left < right and bottom < top are needed)")
        area = (right - left) * (top - bottom)
        if area <= DIRECT_AREA_RATIO * (covered[2] - covered[0]) * (covered[3] - covered[1]):
            return direct()

        # The output grid of the whole box, sized as rio-tiler sizes it.
        res_x, res_y = self._native_resolution(crs)
        native_w, native_h = max(1, round((right - left) / res_x)), max(1, round((top - bottom) / res_y))
        if width and height:
            out_w, out_h = width, height
        elif width or height:
            ratio = native_h / native_w
            out_w = width or math.ceil(height / ratio)  # type: ignore[operator]
            out_h = height or math.ceil(width * ratio)  # type: ignore[operator]
        elif max_size:
            scale = min(1.0, max_size / max(native_w, native_h))
            out_w, out_h = max(1, math.ceil(native_w * scale)), max(1, math.ceil(native_h * scale))
        else:
            return direct()  # full resolution was asked for explicitly (not reachable from /tiles)
        px_x, px_y = (right - left) / out_w, (top - bottom) / out_h
        if buffer:
            left, right = left - px_x * buffer, right + px_x * buffer
            bottom, top = bottom - px_y * buffer, top + px_y * buffer
            out_w, out_h = out_w + int(2 * buffer), out_h + int(2 * buffer)

        # The output pixels the raster covers, rounded outwards.
        col0 = max(0, math.floor((covered[0] - left) / px_x))
        col1 = min(out_w, math.ceil((covered[2] - left) / px_x))
        row0 = max(0, math.floor((top - covered[3]) / px_y))
        row1 = min(out_h, math.ceil((top - covered[1]) / px_y))
        if col1 <= col0 or row1 <= row0:
            raise TileOutsideBounds(f"the box {tuple(bbox)} does not meet the raster")
        # The VRT is pinned to the output grid: rio-tiler would warp at the raster's resolution over the
        # whole (rounded-out) box, which at coarse outputs is the unbounded read this class avoids.
        sub_box = (left + col0 * px_x, top - row1 * px_y, left + col1 * px_x, top - row0 * px_y)
        sub_w, sub_h = col1 - col0, row1 - row0
        kwargs.pop("padding", None)  # padding is about edges of reads at the raster's resolution
        vrt = {**(kwargs.pop("vrt_options", None) or {}), "transform": from_bounds(*sub_box, sub_w, sub_h),
               "width": sub_w, "height": sub_h}
        part = super().part(sub_box, dst_crs=crs, bounds_crs=crs, indexes=indexes, expression=expression,
                            max_size=None, width=sub_w, height=sub_h, vrt_options=vrt, **kwargs)
        data = numpy.ma.MaskedArray(numpy.zeros((part.count, out_h, out_w), dtype=part.array.dtype), mask=True)
        data[:, row0:row1, col0:col1] = part.array
        return ImageData(
            data, assets=part.assets, bounds=(left, bottom, right, top), crs=crs, metadata=part.metadata,
            nodata=part.nodata, scales=part.scales, offsets=part.offsets, band_names=part.band_names,
            band_descriptions=part.band_descriptions, dataset_statistics=part.dataset_statistics)

    def point(
        self,
        lon: float,
        lat: float,
        coord_crs: CRS = WGS84_CRS,
        indexes: Indexes | None = None,
        expression: str | None = None,
        **kwargs: Any,
    ) -> PointData:
        """A pixel's values; a point PROJ cannot place in the raster's CRS is outside the raster."""
        self._check_bands(indexes, expression)
        self._check_nodata(kwargs.get("nodata"))
        try:
            xs, ys = transform(coord_crs, self.crs, [lon], [lat])
        except CPLE_BaseError as exc:
            raise PointOutsideBounds(f"point ({lon}, {lat}) cannot be placed on the raster: {exc}") from None
        if not _finite((xs[0], ys[0])):
            raise PointOutsideBounds(f"point ({lon}, {lat}) cannot be placed on the raster")
        return super().point(lon, lat, coord_crs=coord_crs, indexes=indexes, expression=expression, **kwargs)

    def feature(
        self,
        shape: dict,
        dst_crs: CRS | None = None,
        shape_crs: CRS = WGS84_CRS,
        indexes: Indexes | None = None,
        expression: str | None = None,
        max_size: int | None = None,
        height: int | None = None,
        width: int | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """The pixels under a GeoJSON feature, whose coordinates must be places on Earth in ``shape_crs``."""
        _check_coordinates(shape.get("geometry", shape) if isinstance(shape, dict) else {}, shape_crs)
        return super().feature(shape, dst_crs=dst_crs, shape_crs=shape_crs, indexes=indexes, expression=expression,
                               max_size=max_size, height=height, width=width, buffer=buffer, **kwargs)


#: Largest projected coordinate accepted (metres or feet): far beyond any projection's extent.
_PROJECTED_LIMIT = 1e8


def _check_coordinates(geometry: Any, crs: CRS) -> None:
    """Refuse geometry coordinates that are no place: not finite, or off the globe in a geographic CRS.

    PROJ and the rasteriser fail on such numbers deep inside a read (a 500 before).

    Raises:
        InvalidInput: names the first bad position.
    """
    geographic = bool(crs.is_geographic)
    stack: list[Any] = [geometry.get("coordinates", []) if isinstance(geometry, dict) else []]
    if isinstance(geometry, dict) and geometry.get("geometries"):
        stack = [g.get("coordinates", []) for g in geometry["geometries"] if isinstance(g, dict)]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple) and item and all(isinstance(v, int | float) for v in item):
            x, y = float(item[0]), float(item[1]) if len(item) > 1 else math.nan
            ok = math.isfinite(x) and math.isfinite(y) and (
                (-180 <= x <= 180 and -90 <= y <= 90) if geographic
                else max(abs(x), abs(y)) <= _PROJECTED_LIMIT)
            if not ok:
                where = "longitude/latitude" if geographic else f"coordinates of {crs}"
                raise InvalidInput(f"position {list(item)} is not a place ({where})")
        elif isinstance(item, list | tuple):
            stack.extend(item)
