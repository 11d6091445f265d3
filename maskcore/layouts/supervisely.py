"""The Supervisely "Export as masks" layout.

Per dataset (``out_dir``): ``ann/<item>.json`` and ``img/<item>`` (copied byte for byte),
``masks_machine/<stem>.png`` (8-bit grey class index: meta.json order from 1, or option
``class_values``: ``source`` = COCO category ids, or a mapping {class: value}; the values written
are stated in ``obj_class_to_machine_color.json``), ``masks_semantic_rgb/<stem>.png`` (RGB class
colours), ``masks_human/<stem>.png`` (original | 50 % overlay, RGB, width 2W),
``masks_instances/<stem>/<class>[_NN].png`` (0/255, one per object). At the root: ``meta.json``,
``obj_class_to_machine_color.json`` and, with semantic masks, ``obj_class_to_semantic_color.json``.
Drawing rules are in :mod:`maskcore.draw`; painting rules in :mod:`maskcore.compose`.

Bad items (each fails alone, named with its object index where there is one):
- a canvas (annotation ``size``) above ``max_canvas_pixels`` (default 2**28) is refused before
  anything is allocated; images and bitmaps are held to the same limit;
- machine masks are 8-bit: an item with an object of a class whose index is above 255 fails
  (items using only the first 255 classes of ``meta.json`` are exported);
- a geometry the raster kernel cannot draw (coordinates beyond int32 after rotation) fails.
Warnings (``warn(message)``, recorded per item in the manifest):
- **image size differs from the annotation's size**: every mask uses the annotation's size, and
  the human preview is drawn on that canvas too: the decoded image is cropped at the right and
  bottom, or padded with black, to the annotation's width and height, so that the preview lines
  up with the other masks. (The reference draws the preview on the image's size instead, where
  it does not line up with its own masks.)
- the image file is missing and only its copy to ``img/`` was asked for (without the human
  preview the masks need only the annotation): the masks are written, the copy is not.
Instance file names follow the reference's free-name rule (``cat.png``, ``cat_01.png``, ...,
skipping names already taken in the item, so a class named ``cat_01`` never overwrites the
second ``cat``), comparing names ignoring case so that no two files differ only by case.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np

from ..codec.image import encode_jpeg
from ..codec.png import encode_png, encode_png_photo, encode_png_window
from ..errors import ConfigError, LimitError
from ..kernel.compose import overlay_half, paint
from ..kernel.draw import colour_layers, coverage, coverages, label_area
from ..kernel.resize import resize_area_to, resized_hw
from ..limits import MAX_PIXELS
from ..model.annotation import ProjectMeta
from ..model.item import ItemData
from ..paths import safe_component
from ..timing import NO_CLOCK
from .base import CANVAS_OPTION, CROP_OPTION, LayoutBase, Option
from .common import (
    CLASS_VALUES_OPTION,
    CLASS_ZERO_OPTION,
    class_values,
    class_values_fingerprint,
    class_values_option,
    class_zero_option,
    crop_value,
    drawing,
    item_photo,
    max_canvas_option,
    supervisely_ann_bytes,
    thickness_value,
)

MASK_KINDS = ("machine", "semantic", "human", "instance")
MAX_MACHINE_CLASSES = 255
HUMAN_FORMATS = ("png", "jpg")
"""Option ``human_format``: ``png`` (the app's, default) or ``jpg`` (``human_quality``, 4:2:0
chroma, libjpeg-turbo's accurate DCT: the same bytes every run) for previews only people look at."""
MAX_RESIZE_PERCENT = 1000
"""Largest ``human_resize_percent`` (the app offers 1..100; above 100 the preview is enlarged)."""

Output = tuple[str, bytes]


@dataclass(frozen=True)
class SuperviselyMasksLayout(LayoutBase):
    masks: tuple[str, ...] = MASK_KINDS
    thickness: int = 2
    human_resize_percent: float | None = None
    copy_images: bool = True
    copy_annotations: bool = True
    max_canvas_pixels: int = MAX_PIXELS
    crop: str = "sdk"
    human_format: str = "png"       # "jpg": smaller previews for people who only look at them
    human_quality: int = 90         # JPEG quality of jpg previews
    class_values: str | tuple = "meta"   # machine-mask values: "meta", "source" or ((class, value), ...)
    class_value_zero: str = "refuse"     # "allow": a class may be given the background value 0

    OPTIONS = (
        Option("masks", "machine,semantic,human,instance: a non-empty subset (--masks)",
               "machine,semantic,human,instance"),
        Option("thickness", "an integer 1..1000: lines and points, pixels, in every mask and the previews "
               "(--thickness; raise it for previews of large photos)", "2"),
        Option("human_resize_percent", f"a number in (0, {MAX_RESIZE_PERCENT}]: scale the human previews "
               "(--human-resize)", "none (full size)"),
        Option("human_format", "png | jpg (previews only people look at: jpg is 6-8x smaller)", "png"),
        Option("human_quality", "an integer 1..100: JPEG quality of jpg previews", "90"),
        Option("copy_images", "true | false (copy images to img/; --no-images)", "true"),
        Option("copy_annotations", "true | false (write ann/<item>.json)", "true"),
        CLASS_VALUES_OPTION, CLASS_ZERO_OPTION, CANVAS_OPTION, CROP_OPTION)

    mask_kinds = MASK_KINDS
    image_kinds = frozenset({"human"})

    @classmethod
    def project_from_options(cls, options: dict) -> SuperviselyMasksLayout:
        """The ``supervisely-project`` layout: a plain Supervisely project (meta.json, ann/, img/),
        no masks; what ``maskcore import`` writes."""
        if "masks" in options:
            raise ConfigError("layout 'supervisely-project' writes no masks; use layout 'supervisely' for masks")
        return cls.from_options({**options, "masks": ()}, allow_no_masks=True)

    @classmethod
    def from_options(cls, options: dict, allow_no_masks: bool = False) -> SuperviselyMasksLayout:
        opts = dict(options)
        masks = opts.pop("masks", MASK_KINDS)
        if isinstance(masks, str):
            masks = [m.strip() for m in masks.split(",") if m.strip()]
        if not isinstance(masks, (list, tuple)) or not all(isinstance(m, str) for m in masks):
            raise ConfigError(f"masks: expected a non-empty subset of {list(MASK_KINDS)}, got {masks!r}")
        unknown = sorted(set(masks) - set(MASK_KINDS))
        if unknown or not (masks or allow_no_masks):
            raise ConfigError(f"masks: expected a non-empty subset of {list(MASK_KINDS)}, got {list(masks)}")
        thickness = thickness_value(opts.pop("thickness", 2))
        resize = opts.pop("human_resize_percent", None)
        if resize is not None and not (isinstance(resize, (int, float)) and not isinstance(resize, bool)
                                       and 0 < resize <= MAX_RESIZE_PERCENT):
            raise ConfigError(f"human_resize_percent: expected a number in (0, {MAX_RESIZE_PERCENT}], got {resize!r}")
        max_pixels = max_canvas_option(opts)
        human_format = opts.pop("human_format", "png")
        if human_format not in HUMAN_FORMATS:
            raise ConfigError(f"human_format: expected one of {list(HUMAN_FORMATS)}, got {human_format!r}")
        quality = opts.pop("human_quality", 90)
        if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
            raise ConfigError(f"human_quality: expected an integer 1..100, got {quality!r}")
        layout = cls(masks=tuple(m for m in MASK_KINDS if m in masks), thickness=thickness,
                     human_resize_percent=resize, human_format=human_format, human_quality=quality,
                     copy_images=bool(opts.pop("copy_images", True)),
                     copy_annotations=bool(opts.pop("copy_annotations", True)),
                     max_canvas_pixels=max_pixels, crop=crop_value(opts.pop("crop", "sdk")),
                     class_values=class_values_option(opts), class_value_zero=class_zero_option(opts))
        if opts:
            raise ConfigError(f"unknown option(s) for layout 'supervisely': {sorted(opts)}")
        return layout

    @property
    def needs_image(self) -> bool:
        """Whether items need their image bytes (to copy or to draw the preview)."""
        return self.copy_images or "human" in self.masks

    def fingerprint(self) -> dict:
        return class_values_fingerprint(super().fingerprint())

    def check_meta(self, meta: ProjectMeta) -> None:
        """Refuse ``class_values`` the project cannot take (ConfigError, see
        ``common.class_values``); a class the default cannot encode (machine index above 255)
        fails the items that use it, see ``item_files``."""
        if "machine" in self.masks:
            class_values(self.class_values, meta, self.class_value_zero)

    def project_files(self, meta: ProjectMeta, meta_bytes: bytes) -> list[Output]:
        out: list[Output] = [("meta.json", meta_bytes)]
        if not self.masks:  # supervisely-project: a plain project
            return out
        values = (class_values(self.class_values, meta, self.class_value_zero) if "machine" in self.masks
                  else meta.class_index())
        machine = {c.title: [values[c.title]] * 3 for c in meta.classes}
        out.append(("obj_class_to_machine_color.json", _json_bytes(machine)))
        if "semantic" in self.masks:
            semantic = {c.title: list(c.color_rgb) for c in meta.classes}
            out.append(("obj_class_to_semantic_color.json", _json_bytes(semantic)))
        return out

    def coverage_job(self, item: ItemData):
        """What ``item_files`` rasterises, ``(geometries, thickness, rule)``, for the task to draw
        several items' polygon fills in one kernel call (``draw.coverages_many``) and hand the
        patches back as ``item_files(..., patches=)``; None when nothing is drawn or the canvas is
        refused (``item_files`` then says why)."""
        h, w = item.annotation.size_hw
        if not self.masks or h * w > self.max_canvas_pixels:
            return None
        return [lb.geometry for lb in item.annotation.labels], self.thickness, "opencv"

    def item_files(self, item: ItemData, clock=NO_CLOCK, warn=None, patches=None) -> list[Output]:
        """Every file of one item, rendered in memory; ``clock`` times each step, ``warn(text)``
        receives the item's warnings (see the module docstring); ``patches``: the labels'
        coverages when drawn already (see ``coverage_job``).

        Raises ``LimitError`` (canvas too large, class not encodable), ``AnnotationError``
        (a geometry the kernel cannot draw), ``MissingImageError`` / ``ImageDecodeError``
        (human preview) with the item and object index in the message.
        """
        warn = warn or (lambda text: None)
        self._check_item(item)
        d, stem = item.out_dir, item.mask_stem
        out: list[Output] = []
        if self.copy_annotations:
            out.append((f"{d}/ann/{item.out_name}.json", supervisely_ann_bytes(item, warn)))
        if self.copy_images and item.image_bytes is not None:
            out.append((f"{d}/img/{item.out_name}", item.image_bytes))
        elif self.copy_images and "human" not in self.masks:
            warn("the image file is missing: masks written, no copy in img/")
        if not self.masks:  # supervisely-project: the annotation and image only
            return out
        for kind, value in self._render(item, self.masks, clock, warn, patches):
            if kind == "instances":
                out.extend(self._instances(item, value, clock))
                continue
            folder = {"machine": "masks_machine", "semantic": "masks_semantic_rgb", "human": "masks_human"}[kind]
            with clock.step(f"encode.{kind}"):
                if kind == "human" and self.human_format == "jpg":
                    out.append((f"{d}/{folder}/{stem}.jpg", encode_jpeg(value, self.human_quality)))
                else:  # the preview is a photo: fpng when installed (codec.png.encode_png_photo)
                    encode = encode_png_photo if kind == "human" else encode_png
                    out.append((f"{d}/{folder}/{stem}.png", encode(value)))
            del value  # may be this thread's scratch canvas: no reference outlives the encoding
        return out

    def render(self, item: ItemData, kinds=None, clock=NO_CLOCK, warn=None, patches=None):
        """The masks of ``kinds`` as arrays, in ``MASK_KINDS`` order, one ``(kind, value)`` at a time:
        ``machine`` (h, w) uint8 class indices, ``semantic`` (h, w, 3) and ``human`` (h, 2w, 3) RGB,
        ``instance`` -> ``("instances", patches)``: one coverage patch per label, in file order.
        The arrays may be this thread's scratch canvases, valid until the next item: copy to keep.
        This is what ``item_files`` encodes; ``maskcore.open_project(...).masks`` hands it out."""
        self._check_item(item)
        return self._render(item, MASK_KINDS if kinds is None else kinds, clock, warn, patches)

    def _render(self, item: ItemData, kinds, clock, warn, patches):
        """``render`` for an item ``_check_item`` has passed already."""
        warn = warn or (lambda text: None)
        ann, meta = item.annotation, item.meta
        h, w = ann.size_hw
        classes = meta.class_by_title()
        with clock.step("rasterize"):
            if patches is None:
                patches = self._coverages(item, ann.labels)
            if "semantic" in kinds or "human" in kinds:
                layers = []
                for lb, cover in zip(ann.labels, patches):
                    cls = classes[lb.class_title]
                    with drawing(item, lb):
                        layers.append(colour_layers(lb.geometry, cover, cls.color_rgb, ann.size_hw,
                                                    self.thickness, cls.geometry_config))
        if "machine" in kinds:
            with clock.step("compose.machine"):
                index = class_values(self.class_values, meta, self.class_value_zero)
                canvas = _zeros("machine", (h, w))
                areas = [label_area(lb.geometry, p) for lb, p in zip(ann.labels, patches)]
                for i in sorted(range(len(areas)), key=lambda i: -areas[i]):  # stable: ties keep file order
                    paint(canvas, patches[i], index[ann.labels[i].class_title])
            yield "machine", canvas
        if "semantic" in kinds:
            with clock.step("compose.semantic"):
                canvas = _zeros("semantic", (h, w, 3))
                for label_layers in layers:
                    for colour, patch in label_layers:
                        paint(canvas, patch, colour)
            yield "semantic", canvas
        if "human" in kinds:
            yield "human", self._human(item, layers, clock, warn)
        if "instance" in kinds:
            yield "instances", patches

    def _coverages(self, item: ItemData, labels) -> list:
        """Every label's coverage, the polygon fills of all labels in one kernel call."""
        try:
            return coverages([lb.geometry for lb in labels], item.annotation.size_hw, self.thickness)
        except ValueError:  # draw one by one: names the object the kernel refuses
            out = []
            for lb in labels:
                with drawing(item, lb):
                    out.append(coverage(lb.geometry, item.annotation.size_hw, self.thickness))
            return out

    def _check_item(self, item: ItemData) -> None:
        """Refuse, before allocating anything, what this layout cannot write."""
        h, w = item.annotation.size_hw
        if h * w > self.max_canvas_pixels:
            raise LimitError(f"canvas {w}x{h} (WxH) = {h * w} pixels is above the limit of "
                             f"{self.max_canvas_pixels} pixels (max_canvas_pixels)", where=item.where)
        if "machine" in self.masks:
            index = class_values(self.class_values, item.meta, self.class_value_zero)
            for lb in item.annotation.labels:
                if index[lb.class_title] > MAX_MACHINE_CLASSES:
                    raise LimitError(
                        f"class {lb.class_title!r} is class {index[lb.class_title]} of meta.json, but "
                        f"8-bit machine masks encode at most {MAX_MACHINE_CLASSES} classes; export "
                        f"without 'machine' or reduce the classes",
                        where=f"{item.where}/object {lb.object_index}")

    def _human(self, item: ItemData, layers, clock, warn) -> np.ndarray:
        h, w = item.annotation.size_hw
        image = item_photo(item, self.max_canvas_pixels, clock, warn, "the human preview", "the preview")
        with clock.step("compose.human"):
            both = _preview_canvas(h, w)
            # the photo into both halves in one copy that reads it once (0.75 -> 0.48 ms per
            # 1024x1024 facade photo against two copies: BENCHMARKS.md "Issue 18 (session 9)")
            np.copyto(both.reshape(h, 2, w * 3), image.reshape(h, 1, w * 3))
            overlay = both[:, w:]
            for label_layers in layers:
                _overlay_label(overlay, label_layers)
            if self.human_resize_percent is not None and self.human_resize_percent != 100:
                both = _resized(both, self.human_resize_percent, item)
        return both

    def _instances(self, item: ItemData, patches, clock) -> list[Output]:
        h, w = item.annotation.size_hw
        names = _InstanceNames()
        out: list[Output] = []
        for label, patch in zip(item.annotation.labels, patches):
            name = names.take(safe_component(label.class_title))
            with clock.step("compose.instance"):
                window = _instance_window(patch)
            with clock.step("encode.instance"):
                # the PNG of a canvas that is 0 outside the patch, without building the canvas
                out.append((f"{item.out_dir}/masks_instances/{item.mask_stem}/{name}.png",
                            encode_png_window(window, patch.top, patch.left, (h, w))))
        return out


class _InstanceNames:
    """The reference's ``generate_free_name``: ``t``, then ``t_01``, ``t_02``, ... skipping names
    taken (ignoring case). Resuming each title's search where it stopped gives the same names
    as searching from 1, in linear time."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.next: dict[str, int] = {}

    def take(self, title: str) -> str:
        k = self.next.get(title, 0)
        name = title if k == 0 else f"{title}_{k:02d}"
        while name.casefold() in self.used:
            k += 1
            name = f"{title}_{k:02d}"
        self.next[title] = k + 1
        self.used.add(name.casefold())
        return name


def _instance_window(patch) -> np.ndarray:
    """A patch's window of the 0/255 instance mask: ``paint(zeros, patch, 255)`` in the window; a
    bool mask as it is (``encode_png_window`` writes True as 255)."""
    if patch.mask.dtype == bool:
        return patch.mask
    window = np.zeros(patch.mask.shape, np.uint8)
    paint(window, type(patch)(0, 0, patch.mask), 255)
    return window


_SCRATCH_MAX_BYTES = 2**26
_scratch_buffers = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array of ``shape``: up to 64 MiB, this thread's buffer ``name``
    reused from item to item (a fresh 6 MB array per 1024x1024 item measured ~5 ms of page
    faults here; in Dask workers, whose glibc maps every array above 128 KiB afresh, a fresh
    1 MB machine canvas faults 256 pages per item). Valid until the next call with ``name``
    in the same thread."""
    size = int(np.prod(shape))
    if size > _SCRATCH_MAX_BYTES:
        return np.empty(shape, np.uint8)
    buf = getattr(_scratch_buffers, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, np.uint8)
        setattr(_scratch_buffers, name, buf)
    return buf[:size].reshape(shape)


def _zeros(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``np.zeros(shape, np.uint8)`` in this thread's scratch buffer ``name`` (see ``_scratch``)."""
    canvas = _scratch(name, shape)
    canvas.fill(0)
    return canvas


def _preview_canvas(h: int, w: int) -> np.ndarray:
    """An uninitialised (h, 2w, 3) uint8 canvas for the preview (see ``_scratch``)."""
    return _scratch("preview", (h, 2 * w, 3))


def _overlay_label(overlay: np.ndarray, label_layers) -> None:
    """One label's step of the preview, for labels drawn in one or several colours."""
    if len(label_layers) == 1:
        colour, patch = label_layers[0]
        overlay_half(overlay, patch, colour)
        return
    drawn = overlay.copy()
    for colour, patch in label_layers:
        paint(drawn, patch, colour)
    overlay[...] = ((overlay.astype(np.uint16) + drawn) // 2).astype(np.uint8)


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=2).encode("utf-8")




def _resized(preview: np.ndarray, percent: float, item: ItemData) -> np.ndarray:
    """The preview resized as the app does it (``cv2.resize`` to ``int(side * (P / 100))``, INTER_AREA);
    a side that would become 0 fails the item, where the app's ``cv2.resize`` raises."""
    h, w = preview.shape[:2]
    size_hw = resized_hw((h, w), percent)
    if min(size_hw) < 1:
        raise LimitError(f"human_resize_percent {percent}: the {w}x{h} preview would become "
                         f"{size_hw[1]}x{size_hw[0]} pixels; expected at least 1x1", where=item.where)
    return resize_area_to(preview, size_hw)
