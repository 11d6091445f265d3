"""What every layout shares: the canvas limit, naming a label the kernel refuses, fitting a photo.

Conventions: canvases are (h, w) from the annotation's ``size_hw``; an error about one label is
an ``AnnotationError`` located at ``<dataset>/<item>/object <i>``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np

from ..codec.image import decode_image
from ..codec.sly_json import annotation_json_bytes
from ..errors import AnnotationError, ConfigError, MissingImageError
from ..limits import MAX_PIXELS
from ..model.item import ItemData
from .base import Option

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


def supervisely_ann_bytes(item: ItemData, warn=None) -> bytes:
    """The item's annotation as Supervisely JSON: the source's bytes when they are that already.
    An object Supervisely JSON cannot hold (an empty bitmap, e.g. a CVAT ellipse off the image) is
    left out and ``warn`` hears about it."""
    if item.ann_format == "supervisely":
        return item.ann_bytes
    return annotation_json_bytes(item.annotation, warn)


# --- class values (option ``class_values``) ------------------------------------------------------

CLASS_VALUES_MODES = ("meta", "source")
CLASS_VALUES_OPTION = Option(
    "class_values", "meta | source | {class: 0..255} | a JSON file of that mapping: the value of each "
    "class in the class-index mask (meta: meta.json order from 1, the reference's; source: COCO "
    "category ids)", "meta")
CLASS_ZERO_OPTION = Option(
    "class_value_zero", "refuse | allow: a class whose class_values value is 0 (the background)", "refuse")
MAX_CLASS_VALUE = 255


def class_values_option(options: dict) -> str | tuple[tuple[str, int], ...]:
    """Pop and check option ``class_values``: ``"meta"`` (default), ``"source"``, or a mapping
    ``{class: 0..255}`` given inline or as the path of a JSON file holding it, returned as sorted
    ``(class, value)`` pairs (the file is read here, once: the layout holds and fingerprints the
    values, not the path)."""
    value = options.pop("class_values", "meta")
    if isinstance(value, str) and value not in CLASS_VALUES_MODES:
        try:
            with open(value, encoding="utf-8") as f:
                value = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"class_values: expected 'meta', 'source', a mapping {{class: value}} "
                              f"or a readable JSON file of one, got {value!r}: {exc}") from None
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or not value or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"class_values: expected 'meta', 'source' or a non-empty mapping "
                          f"{{class name: 0..{MAX_CLASS_VALUE}}}, got {value!r}")
    for k, v in value.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_CLASS_VALUE:
            raise ConfigError(f"class_values[{k!r}]: expected an integer 0..{MAX_CLASS_VALUE} (8-bit "
                              f"class-index masks), got {v!r}")
    return tuple(sorted(value.items()))


def class_zero_option(options: dict) -> str:
    """Pop and check option ``class_value_zero`` (``refuse``, default, or ``allow``)."""
    value = options.pop("class_value_zero", "refuse")
    if value not in ("refuse", "allow"):
        raise ConfigError(f"class_value_zero: expected 'refuse' or 'allow', got {value!r}")
    return value


def class_values(spec, meta, zero: str = "refuse") -> dict[str, int]:
    """Each class's value in the class-index mask under option ``class_values`` = ``spec`` (see
    ``class_values_option``). ``"meta"``: meta.json order from 1 (may exceed 255: the layout fails
    the items using such a class, as the reference does). ``"source"``: the class's source id
    (COCO category ``id``), refused for classes without exactly one integer id 0..255 (Supervisely
    and CVAT sources have none). A mapping must give every class a value. A value 0 (background)
    is refused unless ``zero`` is ``allow``. ``ConfigError`` naming the option and the classes."""
    if spec == "meta":
        return meta.class_index()
    if spec == "source":
        bad = [c.title for c in meta.classes if len(c.source_ids) != 1
               or not isinstance(c.source_ids[0], int) or isinstance(c.source_ids[0], bool)]
        if bad and all(not c.source_ids for c in meta.classes):
            raise ConfigError("class_values: 'source' needs the source's class ids (COCO category "
                              "ids); this source has none (Supervisely and CVAT sources do not "
                              "number their classes): use 'meta' or a mapping {class: value}")
        if bad:
            ids = {c.title: list(c.source_ids) for c in meta.classes if c.title in bad}
            raise ConfigError(f"class_values: 'source' needs one integer id per class, got {ids} "
                              f"(categories of one name are merged into one class): use a mapping")
        values = {c.title: c.source_ids[0] for c in meta.classes}
        high = {t: v for t, v in values.items() if not 0 <= v <= MAX_CLASS_VALUE}
        if high:
            raise ConfigError(f"class_values: 'source' category ids {high} are outside "
                              f"0..{MAX_CLASS_VALUE} (8-bit class-index masks): use a mapping")
    else:
        given = dict(spec)
        titles = [c.title for c in meta.classes]
        unknown = sorted(set(given) - set(titles))
        missing = [t for t in titles if t not in given]
        if unknown or missing:
            raise ConfigError(f"class_values: expected a value for every class of the project "
                              f"{titles}; " + "; ".join(
                                  ([f"not classes of the project: {unknown}"] if unknown else [])
                                  + ([f"no value for {missing}"] if missing else [])))
        values = {t: given[t] for t in titles}
    zeros = sorted(t for t, v in values.items() if v == 0)
    if zeros and zero != "allow":
        raise ConfigError(f"class_values: classes {zeros} would be written as 0, the background "
                          f"value; set class_value_zero=allow to draw them as background")
    return values


def class_values_fingerprint(fingerprint: dict) -> dict:
    """A layout fingerprint without the class-value options at their defaults, so that runs made
    before the options existed keep their fingerprint (and stay incremental)."""
    if fingerprint.get("class_values") == "meta":
        fingerprint.pop("class_values")
    if fingerprint.get("class_value_zero") == "refuse":
        fingerprint.pop("class_value_zero")
    return fingerprint
