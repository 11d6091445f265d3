"""The Supervisely "Export as masks" layout.

Per dataset (``out_dir``): ``ann/<item>.json`` and ``img/<item>`` (copied byte for byte),
``masks_machine/<stem>.png`` (8-bit grey class index), ``masks_semantic_rgb/<stem>.png`` (RGB class
colours), ``masks_human/<stem>.png`` (original | 50 % overlay, RGB, width 2W),
``masks_instances/<stem>/<class>[_NN].png`` (0/255, one per object). At the root: ``meta.json``,
``obj_class_to_machine_color.json`` and, with semantic masks, ``obj_class_to_semantic_color.json``.
Drawing rules are in :mod:`maskcore.draw`; painting rules in :mod:`maskcore.compose`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..codec.image import decode_image
from ..codec.png import encode_png
from ..compose import overlay_half, paint
from ..draw import colour_layers, coverage, label_area
from ..errors import ConfigError, ImageDecodeError, MissingImageError
from ..item import ItemData
from ..model import ProjectMeta
from ..names import safe_component
from ..timing import NO_CLOCK
from ..raster.resize import resize_area

MASK_KINDS = ("machine", "semantic", "human", "instance")
MAX_MACHINE_CLASSES = 255

Output = tuple[str, bytes]


@dataclass(frozen=True)
class SuperviselyMasksLayout:
    masks: tuple[str, ...] = MASK_KINDS
    thickness: int = 2
    human_resize_percent: float | None = None
    copy_images: bool = True
    copy_annotations: bool = True

    name = "supervisely"

    @classmethod
    def from_options(cls, options: dict) -> "SuperviselyMasksLayout":
        opts = dict(options)
        masks = opts.pop("masks", MASK_KINDS)
        if isinstance(masks, str):
            masks = [m.strip() for m in masks.split(",") if m.strip()]
        unknown = sorted(set(masks) - set(MASK_KINDS))
        if unknown or not masks:
            raise ConfigError(f"masks: expected a non-empty subset of {list(MASK_KINDS)}, got {list(masks)}")
        thickness = opts.pop("thickness", 2)
        if not isinstance(thickness, int) or isinstance(thickness, bool) or not 1 <= thickness <= 1000:
            raise ConfigError(f"thickness: expected an integer 1..1000, got {thickness!r}")
        resize = opts.pop("human_resize_percent", None)
        if resize is not None and not (isinstance(resize, (int, float)) and 0 < resize <= 100):
            raise ConfigError(f"human_resize_percent: expected a number in (0, 100], got {resize!r}")
        layout = cls(masks=tuple(m for m in MASK_KINDS if m in masks), thickness=thickness,
                     human_resize_percent=resize,
                     copy_images=bool(opts.pop("copy_images", True)),
                     copy_annotations=bool(opts.pop("copy_annotations", True)))
        if opts:
            raise ConfigError(f"unknown option(s) for layout 'supervisely': {sorted(opts)}")
        return layout

    @property
    def needs_image(self) -> bool:
        """Whether items need their image bytes (to copy or to draw the preview)."""
        return self.copy_images or "human" in self.masks

    def check_meta(self, meta: ProjectMeta) -> None:
        """Refuse a project this layout cannot represent (before any work is done)."""
        if "machine" in self.masks and len(meta.classes) > MAX_MACHINE_CLASSES:
            raise ConfigError(
                f"machine masks are 8-bit: at most {MAX_MACHINE_CLASSES} classes, the project has "
                f"{len(meta.classes)}; export without 'machine' or reduce the classes")

    def project_files(self, meta: ProjectMeta, meta_bytes: bytes) -> list[Output]:
        out: list[Output] = [("meta.json", meta_bytes)]
        machine = {c.title: [i, i, i] for i, c in enumerate(meta.classes, start=1)}
        out.append(("obj_class_to_machine_color.json", _json_bytes(machine)))
        if "semantic" in self.masks:
            semantic = {c.title: list(c.color_rgb) for c in meta.classes}
            out.append(("obj_class_to_semantic_color.json", _json_bytes(semantic)))
        return out

    def item_files(self, item: ItemData, clock=NO_CLOCK) -> list[Output]:
        """Every file of one item, rendered in memory; ``clock`` times each step."""
        ann, meta = item.annotation, item.meta
        h, w = ann.size_hw
        d, stem = item.out_dir, item.mask_stem
        out: list[Output] = []
        if self.copy_annotations:
            out.append((f"{d}/ann/{item.out_name}.json", item.ann_bytes))
        if self.copy_images and item.image_bytes is not None:
            out.append((f"{d}/img/{item.out_name}", item.image_bytes))
        classes = meta.class_by_title()
        with clock.step("rasterize"):
            patches = [coverage(lb.geometry, ann.size_hw, self.thickness) for lb in ann.labels]
            if "semantic" in self.masks or "human" in self.masks:
                layers = [colour_layers(lb.geometry, cover, classes[lb.class_title].color_rgb,
                                        ann.size_hw, self.thickness, classes[lb.class_title].geometry_config)
                          for lb, cover in zip(ann.labels, patches)]
        if "machine" in self.masks:
            with clock.step("compose.machine"):
                index = meta.class_index()
                canvas = np.zeros((h, w), np.uint8)
                areas = [label_area(lb.geometry, p) for lb, p in zip(ann.labels, patches)]
                for i in sorted(range(len(areas)), key=lambda i: -areas[i]):  # stable: ties keep file order
                    paint(canvas, patches[i], index[ann.labels[i].class_title])
            with clock.step("encode.machine"):
                out.append((f"{d}/masks_machine/{stem}.png", encode_png(canvas)))
        if "semantic" in self.masks:
            with clock.step("compose.semantic"):
                canvas = np.zeros((h, w, 3), np.uint8)
                for label_layers in layers:
                    for colour, patch in label_layers:
                        paint(canvas, patch, colour)
            with clock.step("encode.semantic"):
                out.append((f"{d}/masks_semantic_rgb/{stem}.png", encode_png(canvas)))
        if "human" in self.masks:
            picture = self._human(item, layers, clock)
            with clock.step("encode.human"):
                out.append((f"{d}/masks_human/{stem}.png", encode_png(picture)))
        if "instance" in self.masks:
            out.extend(self._instances(item, patches, clock))
        return out

    def _human(self, item: ItemData, layers, clock) -> np.ndarray:
        h, w = item.annotation.size_hw
        if item.image_bytes is None:
            raise MissingImageError("the image file is missing and the human preview needs it",
                                    where=item.where)
        with clock.step("decode.image"):
            image = decode_image(item.image_bytes, name=item.where)
        if image.shape[:2] != (h, w):
            raise ImageDecodeError(
                f"image is {image.shape[1]}x{image.shape[0]} (WxH) but the annotation says {w}x{h}",
                where=item.where)
        with clock.step("compose.human"):
            both = np.empty((h, 2 * w, 3), np.uint8)
            both[:, :w] = image
            overlay = both[:, w:]
            overlay[...] = image
            for label_layers in layers:
                _overlay_label(overlay, label_layers)
            if self.human_resize_percent is not None and self.human_resize_percent != 100:
                both = resize_area(both, self.human_resize_percent)
        return both

    def _instances(self, item: ItemData, patches, clock) -> list[Output]:
        h, w = item.annotation.size_hw
        counts: dict[str, int] = {}
        out: list[Output] = []
        for label, patch in zip(item.annotation.labels, patches):
            title = safe_component(label.class_title)
            n = counts.get(title, 0)
            counts[title] = n + 1
            name = title if n == 0 else f"{title}_{n:02d}"
            with clock.step("compose.instance"):
                mask = np.zeros((h, w), np.uint8)
                paint(mask, patch, 255)
            with clock.step("encode.instance"):
                out.append((f"{item.out_dir}/masks_instances/{item.mask_stem}/{name}.png",
                            encode_png(mask)))
        return out


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

