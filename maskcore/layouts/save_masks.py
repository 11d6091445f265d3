"""The Supervisely DTL ``save_masks`` layer as a layout: colour masks from per-class colour maps.

Output (a Supervisely project structure): ``meta.json`` at the root; per dataset (``out_dir``)
``ann/<item>.json`` and ``img/<item>`` (copied), and, for each enabled kind,
- ``masks_machine/<stem>.png``: RGB (3 channels), black background, each label drawn in its
  class's ``gt_machine_color``;
- ``masks_human/<stem>.png``: RGB, width ``2W + 1``: ``original | one green column [0, 255, 0] |
  overlay``. The overlay is ``uint8(0.5 * colour + 0.5 * original)`` (truncated) where ``colour``
  is the label drawing in ``gt_human_color`` on black; pixels left black by the drawing keep the
  original. A class mapped to ``[0, 0, 0]`` is drawn as ``[1, 1, 1]`` so that it still shows.

Drawing (the layer calls the SDK's ``Label.draw(canvas, colour)``, measured on supervisely 6.74.51):
- labels in annotation order, each in the colour its class maps to; classes missing from the
  map are not drawn; later labels overwrite earlier ones (a class mapped to black erases);
- ``thickness`` defaults to 1 (``Label.draw``'s default): lines are 1-pixel 8-connected
  polylines, points and graph nodes single pixels (disc radius ``round(thickness / 2)``);
- polygons, rectangles, bitmaps, alpha masks, oriented boxes, multipolygons and legacy cuboids
  as in :mod:`maskcore.draw` (alpha masks blend: ``trunc(canvas * (1 - a) + a * colour)``);
- graphs: template edges, then nodes, in the template's colours where it gives one, else in the
  mapped colour (:func:`maskcore.draw.colour_layers`);
- cuboid_2d: the SDK gives every cuboid_2d class a template of 12 edges and 8 vertices all in
  the **class colour of meta.json** (``Cuboid2dTemplate``), so a cuboid_2d is a wireframe in its
  class colour whatever the map says (only whether it is drawn depends on the map). We draw it
  the same way; the reference crashes on a cuboid_2d of an ``any``-shape class, we draw that
  wireframe too.
Deliberate differences, as in the "supervisely" layout: no load-time crop of labels, bitmaps
crossing the border are clipped, an image whose size differs from the annotation's is cropped or
padded to the annotation's size with a warning (the reference fails on it), a missing image fails
the item when human masks are on (else the masks are written without the ``img/`` copy).
No ``class_values`` option (the supervisely, cvat and isahit layouts have one): both kinds are
colour masks, each class in the colour of the layer's required map, so a class-index mask is
already ``gt_machine_color: {class: [v, v, v]}``, and the layer's schema takes no other key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codec.png import encode_png, encode_png_photo
from ..errors import ConfigError, LimitError
from ..kernel.compose import paint
from ..kernel.draw import colour_layers, coverages
from ..limits import MAX_PIXELS
from ..model import geometry as g
from ..model.annotation import ObjClass, ProjectMeta
from ..model.item import ItemData
from ..timing import NO_CLOCK
from .base import CANVAS_OPTION, CROP_OPTION, LayoutBase, Option
from .common import (
    crop_value,
    drawing,
    item_photo,
    supervisely_ann_bytes,
    thickness_value,
)

Color = tuple[int, int, int]
ColorMap = tuple[tuple[str, Color], ...]     # (class title, [r, g, b]) sorted by title
Output = tuple[str, bytes]

SEPARATOR_RGB = (0, 255, 0)
KINDS = (("machine", "masks_machine", "gt_machine_color"), ("human", "masks_human", "gt_human_color"))
OPTION_KEYS = ("masks_machine", "masks_human", "gt_machine_color", "gt_human_color", "thickness",
               "max_canvas_pixels", "crop")

# The SDK's Cuboid2dTemplate edges: front face, back face, then the four connectors.
CUBOID_2D_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                   (0, 4), (1, 5), (2, 6), (3, 7))


def check_color_map(value, where: str) -> ColorMap:
    """``{class: [r, g, b]}`` with integer components 0..255, as a sorted tuple of pairs."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object {{class: [r, g, b]}}, got {_kind(value)}")
    out = []
    for title, colour in value.items():
        if (not isinstance(colour, (list, tuple)) or len(colour) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) for c in colour)):
            raise ConfigError(f"{where}.{title}: expected [r, g, b], three integers, got {colour!r}")
        if not all(0 <= c <= 255 for c in colour):
            raise ConfigError(f"{where}.{title}: colour components must be 0..255, got {list(colour)}")
        out.append((str(title), (int(colour[0]), int(colour[1]), int(colour[2]))))
    return tuple(sorted(out))


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class SaveMasksLayout(LayoutBase):
    machine_colors: ColorMap | None = None     # None: no machine masks
    human_colors: ColorMap | None = None       # None: no human masks
    thickness: int = 1
    max_canvas_pixels: int = MAX_PIXELS
    crop: str = "sdk"

    mask_kinds = ("machine", "human")
    image_kinds = frozenset({"human"})

    OPTIONS = (
        Option("masks_machine", "true | false (required; --machine-colors FILE sets it)", "false"),
        Option("masks_human", "true | false (required; --human-colors FILE sets it)", "false"),
        Option("gt_machine_color", "{class: [r, g, b]} (required with masks_machine)", "none"),
        Option("gt_human_color", "{class: [r, g, b]} (required with masks_human)", "none"),
        Option("thickness", "an integer 1..1000 (lines and points, pixels)", "1"),
        CANVAS_OPTION, CROP_OPTION)

    @classmethod
    def from_options(cls, options: dict) -> SaveMasksLayout:
        """Options of the layer's ``settings``: ``masks_machine``, ``masks_human`` (required
        booleans, at least one true), ``gt_machine_color`` / ``gt_human_color`` (required for
        the enabled kinds), plus ``thickness`` (default 1) and ``max_canvas_pixels``."""
        return parse_options(options, where="layout 'save_masks'")

    @property
    def needs_image(self) -> bool:
        """Always: the layer copies every image to ``img/`` (and draws the human preview on it)."""
        return True

    def check_meta(self, meta: ProjectMeta) -> None:
        """Nothing to refuse: mapped classes that the project lacks are ignored, as the layer
        does (one colour map can serve several projects)."""

    def project_files(self, meta: ProjectMeta, meta_bytes: bytes) -> list[Output]:
        return [("meta.json", meta_bytes)]

    def item_files(self, item: ItemData, clock=NO_CLOCK, warn=None) -> list[Output]:
        """``ann/``, ``img/`` and the enabled masks of one item (see the module docstring).

        Raises ``LimitError`` (canvas above ``max_canvas_pixels``), ``AnnotationError`` (a
        geometry the kernel cannot draw), ``MissingImageError`` / ``ImageDecodeError`` (human
        masks) naming the item and object.
        """
        warn = warn or (lambda text: None)
        d, stem = item.out_dir, item.mask_stem
        out: list[Output] = [(f"{d}/ann/{item.out_name}.json", supervisely_ann_bytes(item, warn))]
        if item.image_bytes is not None:
            out.append((f"{d}/img/{item.out_name}", item.image_bytes))
        elif self.human_colors is None:
            warn("the image file is missing: masks written, no copy in img/")
        arrays = dict(self.render(item, None, clock, warn))  # refuses the item before any file
        for kind, folder, _ in KINDS:
            if kind in arrays:
                with clock.step(f"encode.{kind}"):
                    encode = encode_png_photo if kind == "human" else encode_png  # a photo preview
                    out.append((f"{d}/{folder}/{stem}.png", encode(arrays[kind])))
        return out

    def render(self, item: ItemData, kinds=None, clock=NO_CLOCK, warn=None, patches=None):
        """``machine`` (h, w, 3) and ``human`` (h, 2w + 1, 3) uint8 RGB, the enabled ones of
        ``kinds``: the pixels of masks_machine/ and masks_human/."""
        warn = warn or (lambda text: None)
        kinds = self.mask_kinds if kinds is None else kinds
        want_machine = self.machine_colors is not None and "machine" in kinds
        want_human = self.human_colors is not None and "human" in kinds
        h, w = item.annotation.size_hw
        if h * w > self.max_canvas_pixels:
            raise LimitError(f"canvas {w}x{h} (WxH) = {h * w} pixels is above the limit of "
                             f"{self.max_canvas_pixels} pixels (max_canvas_pixels)", where=item.where)
        with clock.step("rasterize"):
            drawings = self._label_drawings(item)
        if want_machine:
            with clock.step("compose.machine"):
                yield "machine", colour_mask(drawings, dict(self.machine_colors), (h, w))
        if want_human:
            yield "human", self._human(item, drawings, clock, warn)

    def _label_drawings(self, item: ItemData) -> list:
        """``[(class title, layers(colour) -> [(colour, patch), ...]), ...]`` for the labels some
        enabled map draws, in annotation order; polygon fills in one kernel call."""
        maps = [dict(m) for m in (self.machine_colors, self.human_colors) if m is not None]
        classes = item.meta.class_by_title()
        size_hw = item.annotation.size_hw
        labels = [lb for lb in item.annotation.labels if any(lb.class_title in m for m in maps)]
        filled = [lb for lb in labels if not isinstance(lb.geometry, g.Cuboid2d)]
        try:
            batch = coverages([lb.geometry for lb in filled], size_hw, self.thickness)
        except ValueError:  # drawn one by one below, which names the object the kernel refuses
            batch = None
        covers = dict(zip(map(id, filled), batch)) if batch is not None else {}
        out = []
        for lb in labels:
            with drawing(item, lb):
                cover = covers.get(id(lb))
                if cover is None and not isinstance(lb.geometry, g.Cuboid2d):
                    cover = coverages([lb.geometry], size_hw, self.thickness)[0]
                layers = _layers_of(lb.geometry, cover, classes[lb.class_title], size_hw, self.thickness)
            out.append((lb.class_title, layers))
        return out

    def _human(self, item: ItemData, drawings, clock, warn) -> np.ndarray:
        h, w = item.annotation.size_hw
        image = item_photo(item, self.max_canvas_pixels, clock, warn, "the human mask")
        with clock.step("compose.human"):
            colours = {title: human_colour(c) for title, c in self.human_colors}
            return human_picture(image, colour_mask(drawings, colours, (h, w)))


def parse_options(options: dict, *, where: str) -> SaveMasksLayout:
    """Validate the layer's settings (see ``SaveMasksLayout.from_options``); errors name
    ``where`` and the key."""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected an object of settings, got {_kind(options)}")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {list(OPTION_KEYS)}")
    flags = {}
    for kind, flag, _mapping in KINDS:
        if flag not in options:
            raise ConfigError(f"{where}: '{flag}' is required (true or false)")
        if not isinstance(options[flag], bool):
            raise ConfigError(f"{where}.{flag}: expected true or false, got {options[flag]!r}")
        flags[kind] = options[flag]
    if not any(flags.values()):
        raise ConfigError(f"{where}: at least one of 'masks_machine', 'masks_human' must be true")
    maps: dict[str, ColorMap | None] = {}
    for kind, flag, mapping in KINDS:
        if mapping in options:  # validated even when its kind is off
            maps[kind] = check_color_map(options[mapping], f"{where}.{mapping}")
        elif flags[kind]:
            raise ConfigError(f"{where}: '{mapping}' is required when '{flag}' is true")
        if not flags[kind]:
            maps[kind] = None
    thickness = thickness_value(options.get("thickness", 1), f"{where}.thickness")
    crop = crop_value(options.get("crop", "sdk"), f"{where}.crop")
    max_pixels = options.get("max_canvas_pixels", MAX_PIXELS)
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise ConfigError(f"{where}.max_canvas_pixels: expected a positive integer, got {max_pixels!r}")
    return SaveMasksLayout(machine_colors=maps["machine"], human_colors=maps["human"],
                           thickness=thickness, max_canvas_pixels=max_pixels, crop=crop)


def human_colour(colour: Color) -> Color:
    """The layer's human-mask colour: black becomes [1, 1, 1] so that the label still shows."""
    return (1, 1, 1) if max(colour) == 0 else colour


def colour_mask(drawings, colours: dict[str, Color], size_hw) -> np.ndarray:
    """(H, W, 3) uint8: black, then each drawing whose class ``colours`` maps, in order."""
    canvas = np.zeros((*size_hw, 3), np.uint8)
    for title, layers in drawings:
        colour = colours.get(title)
        if colour is None:
            continue
        for layer_colour, patch in layers(colour):
            paint(canvas, patch, layer_colour)
    return canvas


def human_picture(image_rgb: np.ndarray, colour_rgb: np.ndarray) -> np.ndarray:
    """``original | green column | overlay``, (H, 2W + 1, 3) uint8; ``overlay = (colour +
    original) // 2`` (equal to the layer's ``uint8(0.5 * colour + 0.5 * original)``: halves of
    integers are exact in float64), the original where ``colour_rgb`` is black."""
    h, w = image_rgb.shape[:2]
    out = np.empty((h, 2 * w + 1, 3), np.uint8)
    out[:, :w] = image_rgb
    out[:, w] = SEPARATOR_RGB
    overlay = out[:, w + 1:]
    overlay[...] = ((image_rgb.astype(np.uint16) + colour_rgb) >> 1).astype(np.uint8)
    black = ~colour_rgb.any(axis=2)
    overlay[black] = image_rgb[black]
    return out


def _layers_of(geom, cover, cls: ObjClass, size_hw, thickness: int):
    """A function colour -> [(colour, patch), ...]: the label as ``Label.draw`` paints it."""
    if isinstance(geom, g.Cuboid2d):
        graph, template = _cuboid_2d_wireframe(geom, cls.color_rgb)
        layers = colour_layers(graph, None, cls.color_rgb, size_hw, thickness, template)
        return lambda colour: layers
    config = cls.geometry_config
    if isinstance(geom, g.Graph) and config and config.get("nodes"):
        cache: dict[Color, list] = {}

        def graph_layers(colour):  # template colours win; the mapped colour fills the gaps
            if colour not in cache:
                cache[colour] = colour_layers(geom, cover, colour, size_hw, thickness, config)
            return cache[colour]
        return graph_layers
    return lambda colour: [(colour, cover)]


def _cuboid_2d_wireframe(geom: g.Cuboid2d, colour: Color):
    """The cuboid as the SDK draws it: a graph of its 8 vertices and the template's 12 edges,
    every one in the class colour."""
    hex_colour = "#{:02X}{:02X}{:02X}".format(*colour)
    nodes = tuple(g.GraphNode(name, x, y) for name, (x, y) in zip(g.CUBOID_2D_VERTICES, geom.vertices_xy))
    template = {"nodes": {name: {"color": hex_colour} for name in g.CUBOID_2D_VERTICES},
                "edges": [{"src": g.CUBOID_2D_VERTICES[a], "dst": g.CUBOID_2D_VERTICES[b],
                           "color": hex_colour} for a, b in CUBOID_2D_EDGES]}
    return g.Graph(nodes=nodes), template
