"""Image encoding for /tiles: titiler's ``render_image`` with its 8-bit conversion done first, per pixel.

When an image's data type does not fit the output format (16-bit bands as JPEG, floats of an
expression as PNG), titiler rescales each band with ``mask[band]``, indexing the 2-D alpha mask by
the band number: a row of the mask stands for the band's mask, and an image with fewer rows than
bands fails (a 1-pixel tile of a 4-band scene answered 500). Converting with rio-tiler's masked
``ImageData.rescale`` before titiler sees the image gives the intended picture and leaves titiler
nothing to convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rio_tiler.models import ImageData
from rio_tiler.types import ColorMapType, IntervalTuple
from rio_tiler.utils import dtype_ranges
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

#: Data types each format encodes as they are (as titiler's ``render_image`` lists them); other formats take any.
FORMAT_DTYPES: dict[ImageType, tuple[str, ...]] = {
    ImageType.png: ("uint8", "uint16"),
    ImageType.jpeg: ("uint8",),
    ImageType.jpg: ("uint8",),
    ImageType.webp: ("uint8",),
    ImageType.jp2: ("uint8", "int16", "uint16"),
}


def render_tile(
    image: ImageData,
    colormap: ColorMapType | None = None,
    output_format: ImageType | None = None,
    add_mask: bool = True,
    rescale: Sequence[IntervalTuple] | None = None,
    color_formula: str | None = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """Encode ``image`` as titiler's ``render_image`` does (same arguments, same result, no row-for-band mask)."""
    if rescale:
        image.rescale(rescale)
    if color_formula:
        image.apply_color_formula(color_formula)
    dtype = str(image.array.dtype)
    # Without a format titiler picks PNG or JPEG and keeps only 8 bits for both.
    fits = FORMAT_DTYPES.get(output_format, ()) if output_format else ("uint8",)
    if not colormap and fits and dtype not in fits:
        image.rescale(in_range=image.dataset_statistics or (dtype_ranges[dtype],))
    return render_image(image, colormap=colormap, output_format=output_format, add_mask=add_mask, **kwargs)
