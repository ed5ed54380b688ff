"""Image features of a CoreML model (``ct.ImageType``): colour spaces and sizes as the spec records
them (fixed, a size range, or enumerated sizes). How the runner feeds and returns them is described
in :mod:`styleport.runtime.coreml.runner`.
"""

from __future__ import annotations

IMAGE_CHANNELS = {"RGB": 3, "BGR": 3, "GRAYSCALE": 1, "GRAYSCALE_FLOAT16": 1}
IMAGE_OUTPUT_MODES = ("float", "pixels")


def color_space(feature) -> str:
    img = feature.type.imageType
    return type(img).ColorSpace.Name(img.colorSpace)


def image_hw(feature) -> tuple[list, list | None]:
    """([H, W] with None for a free side, [(lo, hi) H, (lo, hi) W] or None) of an image feature."""
    img = feature.type.imageType
    flex = img.WhichOneof("SizeFlexibility")
    if flex == "imageSizeRange":
        r = img.imageSizeRange
        ranges = [(r.heightRange.lowerBound, r.heightRange.upperBound),
                  (r.widthRange.lowerBound, r.widthRange.upperBound)]
        return [lo if lo == hi else None for lo, hi in ranges], ranges
    if flex == "enumeratedSizes":
        sizes = [(s.height, s.width) for s in img.enumeratedSizes.sizes]
        return [col[0] if len(set(col)) == 1 else None for col in zip(*sizes)], None
    return [int(img.height), int(img.width)], None


