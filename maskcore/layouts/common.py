"""What every layout shares: the canvas limit, naming a label the kernel refuses, fitting a photo.

Conventions: canvases are (h, w) from the annotation's ``size_hw``; an error about one label is
an ``AnnotationError`` located at ``<dataset>/<item>/object <i>``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..codec.image import decode_image
from ..codec.sly_json import annotation_json_bytes
from ..errors import AnnotationError, ConfigError, MissingImageError
from ..limits import MAX_PIXELS
from ..model.item import ItemData

CROP_MODES = ("sdk", "none")
"""Option ``crop``: ``sdk`` (default) crops every Supervisely label to the image when the item is
loaded, exactly as the Supervisely SDK does (``maskcore.model.crop``), so that the masks are the
app's; ``none`` draws each label as annotated and clips while drawing."""


def crop_value(value, where: str = "crop") -> str:
    """Check a ``crop`` option value."""
    if value not in CROP_MODES:
        raise ConfigError(f"{where}: expected one of {list(CROP_MODES)}, got {value!r}")
    return value


def thickness_value(value, where: str = "thickness") -> int:
    """Check a line/point ``thickness`` option value: an integer 1..1000."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
        raise ConfigError(f"{where}: expected an integer 1..1000, got {value!r}")
    return value


def max_canvas_option(options: dict) -> int:
    """Pop and check option ``max_canvas_pixels`` (default ``MAX_PIXELS``)."""
    value = options.pop("max_canvas_pixels", MAX_PIXELS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"max_canvas_pixels: expected a positive integer, got {value!r}")
    return value


@contextmanager
def drawing(item: ItemData, label):
    """The kernel's own limits (coordinates beyond int32, ...) as the label's AnnotationError."""
    try:
        yield
    except ValueError as exc:
        raise AnnotationError(f"cannot draw this {label.geometry.geometry_type}: {exc}",
                              where=f"{item.where}/object {label.object_index}") from None


def fit_canvas(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """``image`` cropped at the right/bottom or padded with black to (h, w)."""
    out = np.zeros((h, w, 3), np.uint8)
    ch, cw = min(h, image.shape[0]), min(w, image.shape[1])
    out[:ch, :cw] = image[:ch, :cw]
    return out


def item_photo(item: ItemData, max_pixels: int, clock, warn, what: str, short: str | None = None
               ) -> np.ndarray:
    """The item's decoded photo on the annotation's canvas (cropped or padded, with a warning
    naming ``short`` (default ``what``), when its size differs); ``MissingImageError`` saying
    ``what`` needs it when there is none."""
    h, w = item.annotation.size_hw
    if item.image_bytes is None:
        raise MissingImageError(f"the image file is missing and {what} needs it", where=item.where)
    with clock.step("decode.image"):
        image = decode_image(item.image_bytes, max_pixels=max_pixels, name=item.where)
    if image.shape[:2] != (h, w):
        warn(f"image is {image.shape[1]}x{image.shape[0]} (WxH) but the annotation says {w}x{h}: "
             f"masks use the annotation's size; {short or what} crops or pads the image to it")
        image = fit_canvas(image, h, w)
    return image


def supervisely_ann_bytes(item: ItemData) -> bytes:
    """The item's annotation as Supervisely JSON: the source's bytes when they are that already."""
    if item.ann_format == "supervisely":
        return item.ann_bytes
    return annotation_json_bytes(item.annotation)
