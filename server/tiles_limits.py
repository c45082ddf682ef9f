"""Bounds on the pixels one tile request may ask for, checked before any raster is opened.

A preview of ``width=height=20000`` once held a worker for a minute: every size a client can name
(``tilesize``, ``width``, ``height``, ``max_size``, a tile's ``buffer`` and ``padding``, the histogram's
``histogram_bins``) is compared with :attr:`eofusion.config.Limits.tile_px` first, in the query or in
the path (``/preview/{width}x{height}.png``, ``/bbox/.../{width}x{height}.tif``).
"""

# No `from __future__ import annotations`: FastAPI reads the dataclass annotations below at run time,
# and the one that names the bound is built inside a function.

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request
from pydantic import Field
from titiler.core.dependencies import DefaultDependency, PartFeatureParams

from eofusion.errors import InvalidInput, TooLarge

#: Parameters that are a number of output pixels along one side.
SIDE_PARAMS = ("tilesize", "width", "height", "max_size")
#: Parameters that add pixels on each side of a tile.
MARGIN_PARAMS = ("buffer", "padding")
#: The tile size titiler uses when a request names none (the largest of its defaults).
DEFAULT_TILESIZE = 512
#: Parameters that are a zoom level, and the deepest level served (a tile set lists every level up to
#: ``maxzoom``; morecantile's matrix sizes overflow far beyond).
ZOOM_PARAMS = ("z", "minzoom", "maxzoom")
MAX_ZOOM = 30


def _numbers(request: Request, name: str) -> Iterator[float]:
    """Every value of ``name`` in the path and the query that parses as a number (others fail validation later)."""
    values = request.query_params.getlist(name)
    if name in request.path_params:
        values.append(str(request.path_params[name]))
    for raw in values:
        try:
            yield float(raw)
        except ValueError:
            continue


def tile_size_guard(tile_px: int) -> Callable[[Request], None]:
    """A route dependency refusing (413) any request for more than ``tile_px`` pixels along a side.

    It also refuses (400) sizes below one pixel and zoom levels outside ``0..MAX_ZOOM``.

    Args:
        tile_px: The configured bound (``EOFUSION_LIMIT_TILE_PX``).
    """

    def guard(request: Request) -> None:
        for name in SIDE_PARAMS:
            for value in _numbers(request, name):
                if value < 1:
                    raise InvalidInput(f"{name} must be a positive number of pixels, got {value:g}")
                if value > tile_px:
                    raise TooLarge(f"{name}={value:g} is more than the {tile_px} px this server renders "
                                   f"(EOFUSION_LIMIT_TILE_PX)")
        sizes = list(_numbers(request, "tilesize")) or [float(DEFAULT_TILESIZE)]
        margin = sum(2 * max(_numbers(request, name), default=0.0) for name in MARGIN_PARAMS)
        if max(sizes) + margin > tile_px:
            raise TooLarge(f"a tile of {max(sizes):g} px with buffer and padding {margin:g} px is more than the "
                           f"{tile_px} px this server renders (EOFUSION_LIMIT_TILE_PX)")
        for name in ZOOM_PARAMS:
            for value in _numbers(request, name):
                if not 0 <= value <= MAX_ZOOM:
                    raise InvalidInput(f"{name} must be a zoom level from 0 to {MAX_ZOOM}, got {value:g}")
        check_statistics(request, tile_px)

    return guard


def _number_lists(request: Request, name: str) -> Iterator[list[float]]:
    """Every comma-separated value of ``name`` in the query that parses as numbers."""
    for raw in request.query_params.getlist(name):
        try:
            yield [float(v) for v in raw.split(",")]
        except ValueError:
            continue


def check_statistics(request: Request, max_bins: int) -> None:
    """Refuse statistics options numpy would fail on (400) or that ask for more than ``max_bins`` bins (413)."""
    for bins in _number_lists(request, "histogram_bins"):
        count = bins[0] if len(bins) == 1 else len(bins)
        if count < 1:
            raise InvalidInput(f"histogram_bins must ask for at least one bin, got {bins}")
        if count > max_bins:
            raise TooLarge(f"histogram_bins asks for {count:g} bins, more than {max_bins} (EOFUSION_LIMIT_TILE_PX)")
        if len(bins) > 1 and any(a > b for a, b in zip(bins, bins[1:], strict=False)):
            raise InvalidInput(f"histogram_bins edges must increase: {bins}")
    for span in _number_lists(request, "histogram_range"):
        if len(span) != 2 or not all(math.isfinite(v) for v in span) or span[0] > span[1]:
            raise InvalidInput(f"histogram_range must be 'min,max' with finite min <= max, got {span}")
    for values in _number_lists(request, "p"):
        if not all(0 <= v <= 100 for v in values):
            raise InvalidInput(f"percentiles (p) must lie in [0, 100], got {values}")


def bounded_part_params(tile_px: int) -> type[DefaultDependency]:
    """titiler's bbox/feature parameters with ``max_size`` defaulting to ``tile_px`` instead of none.

    Without a size, a bbox or feature is read at the raster's full resolution, however large the box:
    the default keeps such a crop within the bound (smaller crops keep their native size).
    """

    @dataclass
    class BoundedPartFeatureParams(PartFeatureParams):
        """Bbox/feature sizes; ``max_size`` defaults to the server's tile bound."""

        max_size: Annotated[int | None, Field(description="Maximum image size to read onto "
                                                          f"(default and largest: {tile_px}).")] = tile_px

    return BoundedPartFeatureParams
