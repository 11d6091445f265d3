"""The CVAT "Segmentation mask 1.1" layout (Pascal VOC segmentation, colour masks).

Files (relative to the export root; the run layer zips them, ``default_archive_format``)::

    labelmap.txt                          # label:color_rgb:parts:actions
    ImageSets/Segmentation/<subset>.txt   one item id per line (collected by the run layer)
    SegmentationClass/<item_id>.png       8-bit RGB, the class colour of each pixel
    SegmentationObject/<item_id>.png      8-bit RGB, the VOC colormap of each pixel's instance
    JPEGImages/<item_id><ext>             the image bytes as they are (``with_images``)

Conventions (what CVAT's exporter, ``formats/mask.py``, does through its Datumaro fork's
``voc_segmentation`` converter, except where said):
- ``item_id`` is the item's ``mask_stem`` (the plan keeps stems safe and unique); ``<subset>`` is
  the item's dataset made one safe name without ``_``, which the VOC importers of CVAT and
  Datumaro skip (``top/child`` -> ``top-child``, ``dataset_01`` -> ``dataset-01``; see
  ``subset_name``), ``default`` when empty.
  A list line is returned as ``("@list/ImageSets/Segmentation/<subset>.txt", b"<item_id>")``
  among the item's files: the run layer collects, sorts and writes these lines, no file is made.
- labelmap.txt: a header line, then every class of the project meta sorted by name in code-point
  order (uppercase first), ``name:r,g,b::``, with ``background:0,0,0::`` added (at its sorted
  place, as the fork writes it) when no class is called ``background``. More than 255 classes
  are fine: class masks are RGB. Names that cannot be written as one 4-field line (``:``, a line
  break, a leading ``#`` or blank, lone surrogates, duplicates) refuse the project.
- Background is the class named ``background`` (its colour, else black), never the label that
  happens to sort first: upstream Datumaro paints background with the first sorted label's
  colour and drops that label's objects from the instance mask when a name such as ``Zebra`` or
  ``apple`` sorts before ``background``; the fork and this layout do not. (The fork takes the
  first label coloured 0,0,0 as background, so a black ``Asphalt`` would lose its instances;
  here it keeps them, and the item gets a shared-colour warning.)
- Coordinates: float polygon and box coordinates are rounded to 2 decimals first, as the fork
  stores them (``cvat_shape``); then pycocotools' rule.
- Area shapes are drawn: polygon, multipolygon, rectangle, box, bitmap, alpha mask (pixels with
  alpha > 0), oriented bbox, cuboid_2d and legacy cuboid (their filled faces). Lines, points and
  graphs are not (CVAT's exporter ignores them too). Rule ``"coco"`` (default: pycocotools, as
  CVAT) or ``"opencv"`` (the Supervisely SDK's), see :mod:`maskcore.draw`; a Supervisely
  rectangle keeps its inclusive pixels under both.
- Instances: shapes with the same non-zero ``group`` are one instance (union of their pixels;
  class and z_order of the member with most pixels, the first such in file order). Order:
  ungrouped shapes in file order, then groups by group id (Datumaro sorts by group, stably); then
  a stable sort by ``z_order``. Instance ``k`` (1-based) is the k-th in that order and paints over
  the earlier ones. An instance of class ``background`` keeps its number but paints 0 (erases),
  as in the fork. The class mask is the colour of each pixel's instance's class, the background
  colour where the instance mask is 0: the two masks always agree.
- Instance colours depend on annotation order (as in CVAT; re-ordering shapes recolours them).
- How (same bytes either way): with rule ``coco``, an item whose area shapes are all polygons or
  multipolygons without holes or rotated boxes, without groups or background shapes (COCO's
  usual item), is encoded from the kernel's runs down the columns: no mask or canvas is painted,
  only row 0 and the pixels differing from the one above are looked up (``_encoded_from_runs``).
  Any other item paints its index canvas from the shapes' masks (``_indexed``).
- Items: no annotation at all (no shape, no tag) -> listed, no PNGs; shapes or tags but no area
  shape (only points, lines, graphs, or tags) -> neither listed nor masked. With
  ``with_images`` every item's image is copied (as CVAT saves every image).

Bad items (each fails alone, with a message naming the item and, when known, the object):
- a canvas above ``max_canvas_pixels`` (LimitError, before anything is allocated);
- a painted instance numbered above 255 (after merging groups and sorting; background-class
  instances take a number but paint 0): the VOC instance colormap has 256 entries (0 =
  background) and CVAT's instance 256 wraps to look like background. ``instance_overflow=
  "fail"`` (default) fails the item naming the count, before painting; ``"extend"`` goes on with
  the same bit-spreading formula past 255 (``maskcore.palette.voc_color``, unique colours up to
  2**24 - 1 instances): exact for maskcore's importer and any reader applying the formula,
  refused as unknown colours by CVAT's.
Warnings: classes used in the item that share a colour (with each other or with background)
cannot be told apart in the class mask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from ..codec.png import encode_pngs_changes, encode_pngs_lut
from ..errors import AnnotationError, ConfigError, LimitError, ProjectError
from ..kernel.coco_rule import coco_ring_spans
from ..kernel.compose import spans_index_changes
from ..kernel.draw import RULES, coverage, coverages
from ..kernel.palette import voc_colormap
from ..kernel.patch import Patch, empty_patch, union
from ..limits import MAX_PIXELS
from ..model import geometry as g
from ..model.annotation import ProjectMeta
from ..model.item import ItemData
from ..paths import safe_component
from ..timing import NO_CLOCK
from .base import CANVAS_OPTION, CROP_OPTION, LIST_PREFIX, LayoutBase, Option
from .common import (
    CLASS_VALUES_OPTION,
    CLASS_ZERO_OPTION,
    class_values,
    class_values_fingerprint,
    class_values_option,
    class_zero_option,
    crop_value,
    drawing,
    max_canvas_option,
)

BACKGROUND = "background"
BACKGROUND_COLOUR = (0, 0, 0)
LABELMAP_HEADER = "# label:color_rgb:parts:actions"
SEGMENTATION_LISTS = f"{LIST_PREFIX}ImageSets/Segmentation/"
MAX_VOC_INSTANCES = 255
MAX_EXTENDED_INSTANCES = 2**24 - 1
OVERFLOW_MODES = ("fail", "extend")
AREA_TYPES = (g.Polygon, g.MultiPolygon, g.Rectangle, g.Box, g.Bitmap, g.AlphaMask,
              g.OrientedBBox, g.Cuboid2d, g.Cuboid)

Output = tuple[str, bytes]


@dataclass(frozen=True)
class CvatMasksLayout(LayoutBase):
    with_images: bool = False
    rule: str = "coco"
    max_canvas_pixels: int = MAX_PIXELS
    instance_overflow: str = "fail"
    crop: str = "sdk"   # applies to Supervisely sources only (COCO/CVAT geometry is never cropped)
    class_values: str | tuple = "meta"   # "meta": class colours; else grey (v, v, v) class values
    class_value_zero: str = "refuse"
    subset_names: str = "cvat"   # "importable": '_' in subset names becomes '-' (see SUBSET_UNDERSCORE)

    OPTIONS = (
        Option("with_images", "true | false (copy images to JPEGImages/; --with-images)", "false"),
        Option("rule", "coco | opencv (pixel rule: pycocotools as CVAT, or OpenCV as Supervisely)", "coco"),
        Option("instance_overflow", "fail | extend (more than 255 instances in an item)", "fail"),
        dataclasses.replace(CLASS_VALUES_OPTION, values=
            "meta | source | {class: 0..255} | a JSON file of that mapping: meta keeps the class "
            "colours; otherwise each class is the grey (v, v, v) of its value in SegmentationClass "
            "and labelmap.txt (source: COCO category ids)"),
        Option("subset_names", "cvat | importable (cvat: list files named as CVAT's export names them; "
               "importable: '_' becomes '-', since the VOC importers of CVAT and Datumaro skip list "
               "files whose name holds '_')", "cvat"),
        CLASS_ZERO_OPTION, CANVAS_OPTION, CROP_OPTION)
    default_archive_format = "zip"
    mask_kinds = ("class", "object")
    project_wide_stems = True   # every dataset's masks share SegmentationClass/: stems unique project-wide

    @classmethod
    def from_options(cls, options: dict) -> CvatMasksLayout:
        opts = dict(options)
        with_images = opts.pop("with_images", False)
        if not isinstance(with_images, bool):
            raise ConfigError(f"with_images: expected true or false, got {with_images!r}")
        rule = opts.pop("rule", "coco")
        if rule not in RULES:
            raise ConfigError(f"rule: expected one of {list(RULES)}, got {rule!r}")
        max_pixels = max_canvas_option(opts)
        overflow = opts.pop("instance_overflow", "fail")
        if overflow not in OVERFLOW_MODES:
            raise ConfigError(f"instance_overflow: expected one of {list(OVERFLOW_MODES)}, "
                              f"got {overflow!r}")
        crop = crop_value(opts.pop("crop", "sdk"))
        subsets = opts.pop("subset_names", "cvat")
        if subsets not in SUBSET_NAMES:
            raise ConfigError(f"subset_names: expected one of {list(SUBSET_NAMES)}, got {subsets!r}")
        values, zero = class_values_option(opts), class_zero_option(opts)
        if opts:
            raise ConfigError(f"unknown option(s) for layout 'cvat': {sorted(opts)}")
        return cls(with_images=with_images, rule=rule, max_canvas_pixels=max_pixels,
                   instance_overflow=overflow, crop=crop, class_values=values, class_value_zero=zero,
                   subset_names=subsets)

    def fingerprint(self) -> dict:
        fp = class_values_fingerprint(super().fingerprint())
        if fp.get("subset_names") == "cvat":  # the default: earlier runs' fingerprints stay valid
            del fp["subset_names"]
        return fp

    def class_colours(self, meta: ProjectMeta) -> dict[str, tuple[int, int, int]]:
        """Each class's colour in SegmentationClass/ and labelmap.txt: its meta colour, or with
        ``class_values`` the grey ``(v, v, v)`` of its value (ConfigError for values the project
        cannot take, see ``common.class_values``)."""
        if self.class_values == "meta":
            return {c.title: tuple(int(v) for v in c.color_rgb) for c in meta.classes}
        values = class_values(self.class_values, meta, self.class_value_zero)
        return {c.title: (values[c.title],) * 3 for c in meta.classes}

    @property
    def needs_image(self) -> bool:
        """Images are read only to be copied to JPEGImages/."""
        return self.with_images

    def check_meta(self, meta: ProjectMeta) -> None:
        """Refuse class names labelmap.txt cannot hold (see the module docstring)."""
        seen: set[str] = set()
        for cls in meta.classes:
            name = cls.title
            problem = _labelmap_name_problem(name)
            if problem is None and name in seen:
                problem = "it is defined twice"
            if problem:
                raise ProjectError(f"class {name!r} cannot be written to labelmap.txt: {problem}")
            seen.add(name)
        self.class_colours(meta)

    def project_files(self, meta: ProjectMeta, meta_bytes: bytes) -> list[Output]:
        """``labelmap.txt``: header, then ``name:r,g,b::`` per label in code-point order."""
        self.check_meta(meta)
        colours = self.class_colours(meta)
        colours.setdefault(BACKGROUND, BACKGROUND_COLOUR)
        lines = [LABELMAP_HEADER]
        lines += [f"{name}:{','.join(map(str, colours[name]))}::" for name in sorted(colours)]
        return [("labelmap.txt", ("\n".join(lines) + "\n").encode("utf-8"))]

    def coverage_job(self, item: ItemData):
        """What ``item_files`` rasterises, ``(geometries, thickness, rule)``, for the task to batch
        several items' polygon fills (see the supervisely layout's ``coverage_job``); None when
        nothing is drawn, the canvas is refused, or the item is encoded from runs (no masks drawn:
        ``_paints_runs``)."""
        h, w = item.annotation.size_hw
        labels = _area_labels(item)
        if not labels or h * w > self.max_canvas_pixels or self._paints_runs(labels):
            return None
        return self._drawn_shapes(labels), 1, self.rule

    def item_files(self, item: ItemData, clock=NO_CLOCK, warn=None, patches=None) -> list[Output]:
        """One item's files, rendered in memory (see the module docstring for which);
        ``patches``: the area labels' coverages when drawn already (see ``coverage_job``).

        Raises ``LimitError`` (canvas above ``max_canvas_pixels``, more than 255 instances with
        ``instance_overflow="fail"``) and ``AnnotationError`` (a class missing from the meta, a
        geometry the kernel cannot draw), naming the item and object.
        """
        warn = warn or (lambda text: None)
        ann = item.annotation
        out: list[Output] = []
        if self.with_images:
            if item.image_bytes is None:
                warn("the image file is missing: no copy in JPEGImages/")
            else:
                out.append((f"JPEGImages/{item.mask_stem}{_extension(item.name)}",
                            item.image_bytes))
        labels = _area_labels(item)
        list_line = (f"{SEGMENTATION_LISTS}{subset_name(item.dataset, self.subset_names)}.txt",
                     item.mask_stem.encode("utf-8"))
        if not labels:
            if ann.labels:
                kinds = sorted({lb.geometry.geometry_type for lb in ann.labels})
                warn(f"only {', '.join(kinds)} shapes, which have no area: as CVAT's exporter does, the "
                     "item gets no mask and is not listed in ImageSets/Segmentation")
            return [list_line, *out] if not ann.labels and not ann.tags else out
        pngs = self._encoded_from_runs(item, labels, clock, warn) if patches is None else None
        if pngs is None:
            index, class_lut, n_instances = self._indexed(item, labels, clock, warn, patches)
            with clock.step("encode.cvat"):  # colours looked up while filtering (no RGB image built)
                pngs = encode_pngs_lut(index, [class_lut, voc_colormap(n_instances + 1)])
        class_png, object_png = pngs
        out += [(f"SegmentationClass/{item.mask_stem}.png", class_png),
                (f"SegmentationObject/{item.mask_stem}.png", object_png)]
        return [list_line, *out]

    def _paints_runs(self, labels) -> bool:
        """Whether the item's masks are encoded from the polygons' runs (``_encoded_from_runs``):
        rule ``coco``, every area shape a polygon or multipolygon without holes or a rotated box
        (a polygon for CVAT), no groups, no shape of class ``background`` (which erases)."""
        return self.rule == "coco" and all(
            not lb.group and lb.class_title != BACKGROUND and _run_shape(lb.geometry) for lb in labels)

    def _encoded_from_runs(self, item: ItemData, labels, clock, warn) -> list[bytes] | None:
        """The two PNGs of an item ``_paints_runs`` accepts, without painting a canvas: the
        kernel's runs down the columns (``coco_ring_spans``), each pixel the highest instance
        number over it, and only the pixels that differ from the one above looked up
        (``spans_index_changes``, ``encode_pngs_changes``): the same bytes as painting the index
        and encoding it (``_indexed``, ``encode_pngs_lut``). None when the item is not such an
        item, or the kernel refuses a ring (the canvas way then names the object)."""
        if not self._paints_runs(labels):
            return None
        self._check_item(item, labels)
        size_hw = item.annotation.size_hw
        with clock.step("rasterize"):
            try:
                polygon, col, row0, row1 = coco_ring_spans(*_run_rings(labels), size_hw)
            except ValueError:
                return None
        with clock.step("compose.cvat"):
            order = sorted(range(len(labels)), key=lambda i: labels[i].z_order)   # stable, as _merge_instances
            instances = [(labels[i].class_title, labels[i].z_order, None) for i in order]
            self._check_instances(item, instances)
            number = np.empty(len(labels), np.int64)
            number[order] = np.arange(1, len(labels) + 1)
            changes = spans_index_changes(number[polygon], col, row0, row1, size_hw)
            colours = self.class_colours(item.meta)
            bg = colours.get(BACKGROUND, BACKGROUND_COLOUR)
            class_lut = np.array([bg] + [colours[title] for title, _, _ in instances], dtype=np.uint8)
        self._warn_shared_colours(colours, instances, bg, warn)
        with clock.step("encode.cvat"):
            return encode_pngs_changes(size_hw, *changes, [class_lut, voc_colormap(len(instances) + 1)])

    def render(self, item: ItemData, kinds=None, clock=NO_CLOCK, warn=None, patches=None):
        """``class`` and ``object`` (h, w, 3) uint8: the RGB pixels of SegmentationClass/ and
        SegmentationObject/ (all zeros, the background, where the item has no area shapes, which
        the export leaves without masks)."""
        warn = warn or (lambda text: None)
        kinds = self.mask_kinds if kinds is None else kinds
        labels = _area_labels(item)
        if labels:
            index, class_lut, n_instances = self._indexed(item, labels, clock, warn, patches)
        else:
            index = np.zeros(item.annotation.size_hw, np.uint8)
            class_lut, n_instances = np.array([self._background_colour(item.meta)], np.uint8), 0
        if "class" in kinds:
            yield "class", np.take(class_lut, index, axis=0)
        if "object" in kinds:
            yield "object", np.take(voc_colormap(n_instances + 1), index, axis=0)

    def _indexed(self, item: ItemData, labels, clock, warn, patches):
        """``(index, class_lut, n_instances)``: each pixel's instance number (0 = background) and
        the class colour of each number, after refusing what the layout cannot write."""
        ann = item.annotation
        self._check_item(item, labels)
        with clock.step("rasterize"):
            patches = self._coverages(item, labels) if patches is None else _coverage_masks(patches)
        with clock.step("compose.cvat"):
            instances = _merge_instances(labels, patches, instance_members(labels))
            self._check_instances(item, instances)
            index = _paint_index(instances, ann.size_hw)
            colours = self.class_colours(item.meta)
            bg = colours.get(BACKGROUND, BACKGROUND_COLOUR)
            class_lut = np.array([bg] + [colours[title] for title, _, _ in instances], dtype=np.uint8)
        self._warn_shared_colours(colours, instances, bg, warn)
        return index, class_lut, len(instances)

    def _check_item(self, item: ItemData, labels) -> None:
        """Refuse a canvas above the limit and classes missing from the meta."""
        h, w = item.annotation.size_hw
        if h * w > self.max_canvas_pixels:
            raise LimitError(f"canvas {w}x{h} (WxH) = {h * w} pixels is above the limit of "
                             f"{self.max_canvas_pixels} pixels (max_canvas_pixels)", where=item.where)
        classes = item.meta.class_by_title()
        for lb in labels:
            if lb.class_title not in classes:
                raise AnnotationError(f"class {lb.class_title!r} is not in the project meta",
                                      where=f"{item.where}/object {lb.object_index}")

    def _check_instances(self, item: ItemData, instances) -> None:
        """Refuse, before painting, instance numbers the chosen colormap cannot encode."""
        top = max((k for k, (title, _, _) in enumerate(instances, start=1) if title != BACKGROUND),
                  default=0)
        limit = MAX_VOC_INSTANCES if self.instance_overflow == "fail" else MAX_EXTENDED_INSTANCES
        if top > limit:
            hint = ("; set the layout option instance_overflow: extend to colour them past 255"
                    if self.instance_overflow == "fail" else "")
            raise LimitError(
                f"{len(instances)} instances (shapes after merging groups) need instance numbers "
                f"up to {top}, but SegmentationObject colours encode at most {limit} (the VOC "
                f"colormap; 0 is background){hint}", where=item.where)

    def _drawn_shapes(self, labels) -> list:
        """The labels' geometries as the rule draws them: with ``coco`` as CVAT stores them
        (``cvat_shapes``), else as they are."""
        geoms = [lb.geometry for lb in labels]
        return cvat_shapes(geoms) if self.rule == "coco" else geoms

    def _coverages(self, item: ItemData, labels) -> list[Patch]:
        """Each label's pixels (bool), all polygon fills in one kernel call."""
        size_hw = item.annotation.size_hw
        shapes = self._drawn_shapes(labels)
        try:
            patches = coverages(shapes, size_hw, 1, self.rule)
        except ValueError:  # draw one by one: names the object the kernel refuses
            patches = []
            for lb, shape in zip(labels, shapes):
                with drawing(item, lb):
                    patches.append(coverage(shape, size_hw, 1, self.rule))
        return _coverage_masks(patches)

    def _background_colour(self, meta: ProjectMeta) -> tuple[int, int, int]:
        return self.class_colours(meta).get(BACKGROUND, BACKGROUND_COLOUR)

    def _warn_shared_colours(self, colours, instances, bg, warn) -> None:
        used = sorted({title for title, _, _ in instances if title != BACKGROUND})
        by_colour: dict[tuple, list[str]] = {}
        for title in used:
            by_colour.setdefault(tuple(colours[title]), []).append(title)
        for colour, titles in sorted(by_colour.items()):
            if tuple(colour) == tuple(bg):
                titles = [BACKGROUND, *titles]
            if len(titles) > 1:
                warn(f"classes {titles} share the colour {list(colour)}: SegmentationClass "
                     f"cannot tell them apart")


COORDINATE_DIGITS = 2
"""CVAT's Datumaro fork stores every shape's points rounded to 2 decimals (``np.around``, half to
even) before pycocotools draws them; float coordinates are rounded the same way here."""


def _round(xy: np.ndarray) -> np.ndarray:
    return np.around(xy, COORDINATE_DIGITS) if xy.dtype.kind == "f" else xy


def cvat_shape(geom):
    """The geometry as CVAT's exporter rasterises it: float polygon points rounded to
    ``COORDINATE_DIGITS``; a box as the fork's ``Bbox`` (corners rounded, the far side computed as
    ``x + w`` from the rounded ``x`` and ``w``); a rotated box as the polygon of its corners,
    rounded (CVAT turns rotated boxes into polygons first). Integer geometry is unchanged."""
    if isinstance(geom, g.Polygon):
        return g.Polygon(_round(geom.exterior_xy), tuple(_round(r) for r in geom.interiors_xy))
    if isinstance(geom, g.MultiPolygon):
        return g.MultiPolygon(tuple(cvat_shape(p) for p in geom.parts))
    if isinstance(geom, g.Box):
        if geom.angle:
            return g.Polygon(np.around(geom.corners_xy(), COORDINATE_DIGITS))
        x0, y0, x1, y1 = (float(np.around(v, COORDINATE_DIGITS)) for v in (geom.x0, geom.y0, geom.x1, geom.y1))
        return g.Box(x0, y0, x0 + (x1 - x0), y0 + (y1 - y0))
    return geom


def cvat_shapes(geoms) -> list:
    """``[cvat_shape(geom) for geom in geoms]`` (equal geometries): the float64 points of all
    one-ring polygons rounded in one numpy call rather than one per polygon."""
    simple = [type(geom) is g.Polygon and not geom.interiors_xy and geom.exterior_xy.dtype == np.float64
              for geom in geoms]
    if sum(simple) < 2:
        return [cvat_shape(geom) for geom in geoms]
    rings = [geom.exterior_xy for geom, one in zip(geoms, simple) if one]
    ends = np.cumsum([len(ring) for ring in rings]).tolist()
    rounded = _round(np.concatenate(rings))
    pieces = iter([rounded[start:end] for start, end in zip([0, *ends], ends)])
    return [g.Polygon(next(pieces)) if one else cvat_shape(geom) for geom, one in zip(geoms, simple)]


SUBSET_NAMES = ("cvat", "importable")
SUBSET_UNDERSCORE = "-"
"""What ``_`` becomes in a subset name with ``subset_names: importable``. The VOC importers of
Datumaro and of CVAT's fork skip every list file whose name holds ``_`` (``VocImporter.find_sources``:
``file_filter``; in VOC ``Main/`` that marks ``<class>_<subset>.txt``), so
``ImageSets/Segmentation/dataset_01.txt`` is ignored: its items vanish on re-import into CVAT or
Datumaro. CVAT's own export writes the task's subset name as it is (its fork's
``VocConverter.save_segm_lists``) and has that defect; the default (``cvat``) writes what CVAT writes,
so that outputs diff equal; ``importable`` is the documented way out."""


def subset_name(dataset: str, mode: str = "cvat") -> str:
    """The subset (list file) of a dataset: one safe name, ``default`` when empty; with ``mode``
    ``importable`` without ``_`` (``dataset_01`` -> ``dataset-01``, see ``SUBSET_UNDERSCORE``; two
    datasets differing only by ``_`` / ``-`` then share a list file: their item ids are unique
    project-wide, so no item is lost)."""
    if not dataset:
        return "default"
    name = safe_component(dataset)
    return name.replace("_", SUBSET_UNDERSCORE) if mode == "importable" else name


def instance_members(labels) -> list[list[int]]:
    """Indexes into ``labels`` of each instance, before the z_order sort: labels sorted stably by
    group; group 0 gives one instance per label, every other group one instance (Datumaro's
    ``find_instances``: ungrouped first, then groups in group order)."""
    order = sorted(range(len(labels)), key=lambda i: labels[i].group)
    out: list[list[int]] = []
    for group, run in groupby(order, key=lambda i: labels[i].group):
        if group == 0:
            out.extend([i] for i in run)
        else:
            out.append(list(run))
    return out


def _merge_instances(labels, patches, members) -> list[tuple[str, int, Patch]]:
    """(class, z_order, pixels) of each instance, in painting order (stable by z_order)."""
    out = []
    for m in members:
        if len(m) == 1:
            lb = labels[m[0]]
            out.append((lb.class_title, lb.z_order, patches[m[0]]))
            continue
        areas = [patches[i].area() for i in m]
        leader = labels[m[areas.index(max(areas))]]
        merged = empty_patch()
        for i in m:
            merged = union(merged, patches[i])
        out.append((leader.class_title, leader.z_order, merged))
    return sorted(out, key=lambda inst: inst[1])


def _paint_index(instances, size_hw) -> np.ndarray:
    """Instance numbers 1..N painted in order onto zeros; background instances paint 0. Returned
    column-major (the ``.T`` of a C-contiguous (W, H) canvas).

    Painted column by column into a transposed canvas: the COCO kernel's masks are column-major
    views, so both sides are then walked contiguously (painting them into a row-major canvas
    measured ~3x slower). The index stays column-major: ``codec.png.encode_pngs_lut`` reads it as
    it lies (a row-major copy, even cache-blocked, cost ~0.5-0.9 ms per 1024x1024 item). Numbers
    grow in painting order, so "later paints over earlier" is a running maximum, except for
    background instances, which erase."""
    n = len(instances)
    dtype = np.uint8 if n <= 255 else (np.uint16 if n <= 65535 else np.uint32)
    height, width = size_hw
    canvas_t = np.zeros((width, height), dtype=dtype)
    for k, (title, _, patch) in enumerate(instances, start=1):
        if not patch.mask.size:
            continue
        mask_t = patch.mask.T
        window = canvas_t[patch.left:patch.right, patch.top:patch.bottom]
        if title == BACKGROUND:
            np.copyto(window, dtype(0), where=mask_t)
        else:
            np.maximum(window, np.multiply(mask_t.view(np.uint8), dtype(k), dtype=dtype), out=window)
    return canvas_t.T


def _extension(name: str) -> str:
    """The item name's last extension with its dot (``a.b.JPG`` -> ``.JPG``), made safe, or
    ``""`` when there is none."""
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return safe_component(base[dot:]) if 0 < dot < len(base) - 1 else ""


def _labelmap_name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if ":" in name:
        return "':' separates the fields of a line"
    if "\n" in name or "\r" in name:
        return "it holds a line break"
    if name.startswith("#"):
        return "a line starting with '#' is a comment"
    if name[0].isspace():
        return "readers strip leading blanks"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode (lone surrogate)"
    return None




def _area_labels(item: ItemData) -> list:
    """The labels this layout paints (areas: no lines or points), in CVAT's order: its
    ``RotatedBoxesToPolygons`` (cvat/apps/dataset_manager/formats/transformations.py) removes every
    rotated box and appends its polygon after all other shapes of the item, so a rotated box gets a
    later instance number and is painted over shapes of the same z_order."""
    area = [lb for lb in item.annotation.labels if isinstance(lb.geometry, AREA_TYPES)]
    return sorted(area, key=lambda lb: isinstance(lb.geometry, g.Box) and lb.geometry.angle != 0)


def _run_shape(geom) -> bool:
    """A shape the COCO rule draws as the union of its rings' runs, no hole cut out (see
    ``_paints_runs``): a polygon or multipolygon without holes (float64 or integer points), or a
    rotated box."""
    if type(geom) is g.Polygon:
        return not geom.interiors_xy and (geom.exterior_xy.dtype == np.float64 or geom.exterior_xy.dtype.kind in "iu")
    if type(geom) is g.MultiPolygon:
        return all(type(p) is g.Polygon and _run_shape(p) for p in geom.parts)
    return type(geom) is g.Box and geom.angle != 0


def _run_rings(labels) -> tuple[np.ndarray, list[int], list[int]]:
    """The rings of ``_run_shape`` labels as ``cvat_shape`` rounds them, in one (V, 2) float64
    array (one ``np.around``), with each ring's size and label index (see ``coco_ring_spans``)."""
    rings, sizes, owners = [], [], []
    for i, lb in enumerate(labels):
        geom = lb.geometry
        parts = (geom.corners_xy(),) if type(geom) is g.Box else \
            tuple(p.exterior_xy for p in geom.parts) if type(geom) is g.MultiPolygon else (geom.exterior_xy,)
        for ring in parts:
            rings.append(ring)
            sizes.append(len(ring))
            owners.append(i)
    points = np.concatenate(rings).astype(np.float64, copy=False)   # integer points: exact, unrounded
    return _round(points), sizes, owners


def _coverage_masks(patches) -> list[Patch]:
    """Coverage as bool masks (an alpha mask covers where it is non-zero)."""
    return [p if p.mask.dtype == bool else Patch(p.top, p.left, p.mask != 0) for p in patches]
