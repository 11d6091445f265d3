"""The isahit lab "mask" export layout: one 8-bit RGB PNG per item in one folder.

Conventions (see docs/isahit.md):
- Files: ``<folder>/<item>.png`` (the item's safe file name plus ``.png``: ``cat.jpg.png``), or
  ``<folder>/<dataset out_dir>/<item>.png`` when the project has several datasets (option
  ``dataset_folders``: ``"auto"`` (default), true, false). With ``replace_extension`` the
  extension of the item's own name is replaced (``cat.jpg`` -> ``cat.png``): the plan's unique
  mask stem, so two items ``cat.jpg`` and ``cat.png`` keep distinct files.
- ``<folder>`` is option ``name``, default ``lab_mask_<project>_<YYYY-MM-DD_HHMMSS>``, the time
  in UTC taken once when the layout is built (on the driver: every worker gets the same name).
- Instances: every label of the annotation is one instance, numbered in annotation order;
  later labels paint over earlier ones; background is (0, 0, 0).
- Pixel convention ``"documented"`` (default): R = id, G = id % 255, B = the label's channel,
  ids 1..N; an item with more than 255 labels fails (no silent wrap).
  ``"sdk"`` (the isahit SDK's own polygon-to-mask helper): ids 2..N+1, R = id % 256,
  G = id // 256, B = the label's channel, 1 for a class without one; at most 65534 labels.
- Label channel (B): the class value of option ``class_values`` (as in the supervisely and cvat
  layouts, ``common.class_values``): ``meta`` (default) the class index in meta order from 1 (a
  class beyond index 255 has no default: items using it fail), ``source`` the COCO category ids,
  or a mapping ``{class: 0..255}`` (inline or a JSON file); a value 0 needs
  ``class_value_zero=allow``. ``label_channels {class: 0..255}`` (older, either one) also sets B:
  0 allowed, and with the ``sdk`` convention unlisted classes get 1. No colour-map file states the
  values: the isahit export is the folder of PNGs alone (its consumers read every file in it).
- Drawing: :func:`maskcore.draw.coverages` with the OpenCV rule (``cv2.fillPoly``: boundary
  included, even-odd; float coordinates floored), lines and points at ``thickness``; an alpha
  mask covers its non-zero pixels.
- ``semantic_mapping {class: [r, g, b]}``: the pixels whose top-most label is of a listed class
  take that colour. The owner of each pixel is kept in an index canvas while drawing, so pixels
  are selected by label, once; never by colour.
Pure: no I/O; ``prepare(sink, n_items)`` is the one run-level check (existing folder, no items),
``for_plan(plan)`` decides ``dataset_folders`` once the items are listed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..codec.png import encode_png
from ..errors import AnnotationError, ConfigError, LimitError, RefusedError
from ..kernel.draw import coverage, coverages
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
    max_canvas_option,
    thickness_value,
)

CONVENTIONS = ("documented", "sdk")
MAX_IDS = {"documented": 255, "sdk": 65535}
FIRST_ID = {"documented": 1, "sdk": 2}
SDK_UNKNOWN_CHANNEL = 1
TIMESTAMP_FORMAT = "%Y-%m-%d_%H%M%S"

Output = tuple[str, bytes]
Colour = tuple[int, int, int]


def default_folder_name(project: str, now: datetime | None = None) -> str:
    """``lab_mask_<project>_<YYYY-MM-DD_HHMMSS>`` (UTC), the project name made a safe name."""
    now = now or datetime.now(timezone.utc)
    return f"lab_mask_{safe_component(project or 'project')}_{now.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)}"


def instance_colour(convention: str, instance_id: int, channel: int) -> Colour:
    """The (R, G, B) of instance ``instance_id`` with label channel ``channel``."""
    if convention == "documented":
        return instance_id, instance_id % 255, channel
    return instance_id % 256, instance_id // 256, channel


@dataclass(frozen=True)
class IsahitLayout(LayoutBase):
    takes_project_name = True   # run_export passes option ``project`` (the source's project name)
    mask_kinds = ("mask",)
    folder: str
    replace_extension: bool = False
    convention: str = "documented"
    label_channels: tuple[tuple[str, int], ...] | None = None   # None: class index from 1
    semantic_mapping: tuple[tuple[str, Colour], ...] = ()
    dataset_folders: bool | None = None                          # None: "auto", see for_plan
    thickness: int = 2
    max_canvas_pixels: int = MAX_PIXELS
    crop: str = "sdk"
    class_values: str | tuple = "meta"   # label channel (B) values: "meta", "source" or ((class, value), ...)
    class_value_zero: str = "refuse"

    OPTIONS = (
        Option("name", "the output folder's name", "lab_mask_<project>_<YYYY-MM-DD_HHMMSS>"),
        Option("project", "the project name in the default folder name", "the source's project name"),
        Option("convention", "documented | sdk (see docs/isahit.md)", "documented"),
        Option("label_channels", "{class: 0..255} channel values (or class_values)", "class index from 1"),
        CLASS_VALUES_OPTION, CLASS_ZERO_OPTION,
        Option("semantic_mapping", "{class: [r, g, b]} colours", "{}"),
        Option("dataset_folders", "true | false | auto (a folder per dataset)", "auto"),
        Option("replace_extension", "true | false (cat1.png instead of cat1.jpg.png)", "false"),
        Option("resume", "true | false (continue the folder given by name)", "false"),
        Option("thickness", "an integer 1..1000 (lines and points, pixels)", "2"),
        CANVAS_OPTION, CROP_OPTION)
    needs_image = False
    # Not a field: resuming changes no output byte, so it stays out of the run's configuration
    # fingerprint (dataclasses.asdict), and a resumed run reuses the killed run's partitions.
    resume = False

    @classmethod
    def from_options(cls, options: dict, *, now: datetime | None = None) -> IsahitLayout:
        """Build from job / command-line options (see docs/isahit.md); ``now`` is for tests."""
        opts = dict(options)
        project = opts.pop("project", None)
        if project is not None and not isinstance(project, str):
            raise ConfigError(f"project: expected a project name, got {project!r}")
        explicit = "name" in opts
        folder = opts.pop("name", None)
        folder = _check_folder(folder) if explicit else default_folder_name(project or "", now)
        convention = opts.pop("convention", "documented")
        if convention not in CONVENTIONS:
            raise ConfigError(f"convention: expected one of {list(CONVENTIONS)}, got {convention!r}")
        channels = opts.pop("label_channels", None)
        if channels is not None:
            channels = tuple((k, _byte(v, f"label_channels[{k!r}]")) for k, v in _mapping(channels, "label_channels"))
        mapping = tuple((k, _rgb(v, f"semantic_mapping[{k!r}]"))
                        for k, v in _mapping(opts.pop("semantic_mapping", None) or {}, "semantic_mapping"))
        resume = _flag(opts.pop("resume", False), "resume")
        if resume and not explicit:
            raise ConfigError("resume: the default folder name carries the time of the run, so there is "
                              "nothing to resume; give the folder's name with option 'name'")
        folders = opts.pop("dataset_folders", "auto")
        if folders != "auto":
            folders = _flag(folders, "dataset_folders (true, false or \"auto\")")
        thickness = thickness_value(opts.pop("thickness", 2))
        crop = crop_value(opts.pop("crop", "sdk"))
        max_pixels = max_canvas_option(opts)
        replace_ext = _flag(opts.pop("replace_extension", False), "replace_extension")
        values, zero = class_values_option(opts), class_zero_option(opts)
        if values != "meta" and channels is not None:
            raise ConfigError("label_channels and class_values both set the label channel (B); give one")
        if opts:
            raise ConfigError(f"unknown option(s) for layout 'isahit': {sorted(opts)}; expected some of "
                              "name, project, replace_extension, convention, label_channels, "
                              "semantic_mapping, resume, dataset_folders, thickness, max_canvas_pixels, crop, "
                              "class_values, class_value_zero")
        layout = cls(folder=folder, replace_extension=replace_ext, convention=convention,
                     label_channels=channels, semantic_mapping=mapping,
                     dataset_folders=None if folders == "auto" else folders, thickness=thickness,
                     max_canvas_pixels=max_pixels, crop=crop, class_values=values, class_value_zero=zero)
        return layout._resuming(resume)

    def fingerprint(self) -> dict:
        """The options deciding output bytes; ``class_values`` only when not its default, so runs
        made before the option existed stay incremental."""
        return class_values_fingerprint(super().fingerprint())

    def _resuming(self, resume: bool) -> IsahitLayout:
        object.__setattr__(self, "resume", resume)
        return self

    # -- run level (driver) ------------------------------------------------------------------

    def check_meta(self, meta: ProjectMeta) -> None:
        """Refuse options naming classes the project does not have, and (documented convention)
        an explicit ``label_channels`` that leaves classes without a channel, and ``class_values``
        the project cannot take (``common.class_values``)."""
        if self.class_values != "meta":
            class_values(self.class_values, meta, self.class_value_zero)
        titles = {c.title for c in meta.classes}
        for option, pairs in (("label_channels", self.label_channels or ()),
                              ("semantic_mapping", self.semantic_mapping)):
            unknown = sorted(k for k, _ in pairs if k not in titles)
            if unknown:
                raise ConfigError(f"{option}: class(es) {unknown} are not classes of the project; "
                                  f"expected some of {sorted(titles)}")
        if self.label_channels is not None and self.convention == "documented":
            listed = {k for k, _ in self.label_channels}
            missing = [c.title for c in meta.classes if c.title not in listed]
            if missing:
                raise ConfigError(f"label_channels: expected a channel for every class, got none for "
                                  f"{missing} (the 'sdk' convention writes B = 1 for those instead)")

    def for_plan(self, plan) -> IsahitLayout:
        """This layout with ``dataset_folders`` decided for the planned items (a pyarrow table
        with ``dataset``, ``out_name``, ``mask_stem``): "auto" becomes true when the items come
        from several datasets. Refuses ``dataset_folders: false`` when two items of different
        datasets would write the same file."""
        datasets = set(plan.column("dataset").to_pylist()) if plan.num_rows else set()
        if self.dataset_folders is None:
            return dataclasses.replace(self, dataset_folders=len(datasets) > 1)._resuming(self.resume)
        if self.dataset_folders is False and len(datasets) > 1:
            column = "mask_stem" if self.replace_extension else "out_name"
            files = [f"{n}.png".casefold() for n in plan.column(column).to_pylist()]
            clash = [f for f, k in Counter(files).items() if k > 1]
            if clash:
                rows = [r for r, f in zip(plan.select(["dataset", "item"]).to_pylist(), files) if f == clash[0]]
                raise ConfigError(f"dataset_folders: false puts the items of {len(datasets)} datasets in one "
                                  f"folder, but {rows[0]['dataset']}/{rows[0]['item']} and "
                                  f"{rows[1]['dataset']}/{rows[1]['item']} would both write "
                                  f"{self.folder}/{clash[0]}; use dataset_folders: true")
        return self

    def prepare(self, sink, n_items: int | None = None) -> list[str]:
        """Run-level checks before any item is written (call holding the run lock); returns
        warnings.

        ``n_items == 0``: nothing will be written (not even the folder): one warning, no check.
        Otherwise an existing ``<folder>`` in the destination is refused (``RefusedError``)
        unless ``resume``.
        """
        if n_items == 0:
            return [f"no items to export: the folder {self.folder!r} was not created"]
        if not self.resume and sink.exists(self.folder):
            raise RefusedError(f"the output folder {self.folder!r} already exists in the destination; "
                               f"expected a new folder (give another 'name', or 'resume: true' to "
                               f"continue that export)")
        return []

    @property
    def project_wide_stems(self) -> bool:
        """Asks the plan for mask stems unique across datasets when they share one folder."""
        return self.dataset_folders is False and self.replace_extension

    def project_files(self, meta: ProjectMeta, meta_bytes: bytes) -> list[Output]:
        """None: the export is the masks alone (and no folder at all when there are no items)."""
        return []

    # -- items (workers) ---------------------------------------------------------------------

    def item_path(self, item: ItemData) -> str:
        """Where the item's mask goes, relative to the destination."""
        file = f"{item.mask_stem if self.replace_extension else item.out_name}.png"
        if self.dataset_folders is False:
            return f"{self.folder}/{file}"
        return f"{self.folder}/{item.out_dir}/{file}"

    def coverage_job(self, item: ItemData):
        """What ``item_files`` rasterises, ``(geometries, thickness, rule)``, for the task to batch
        several items' polygon fills (see the supervisely layout's ``coverage_job``); None when the
        canvas is refused."""
        h, w = item.annotation.size_hw
        if h * w > self.max_canvas_pixels:
            return None
        return [lb.geometry for lb in item.annotation.labels], self.thickness, "opencv"

    def item_files(self, item: ItemData, clock=NO_CLOCK, warn=None, patches=None) -> list[Output]:
        """The item's mask, rendered in memory; ``patches``: the labels' coverages when drawn
        already (see ``coverage_job``).

        Raises ``LimitError`` (canvas above ``max_canvas_pixels``, more labels than the
        convention numbers, a class without an 8-bit channel) and ``AnnotationError`` (a geometry
        the kernel cannot draw), naming the item and object index.
        """
        canvas = self._canvas(item, clock, patches)
        with clock.step("encode.isahit"):
            return [(self.item_path(item), encode_png(canvas))]

    def render(self, item: ItemData, kinds=None, clock=NO_CLOCK, warn=None, patches=None):
        """``mask``: the (h, w, 3) uint8 RGB pixels ``item_files`` writes."""
        if kinds is None or "mask" in kinds:
            yield "mask", self._canvas(item, clock, patches)

    def _canvas(self, item: ItemData, clock, patches) -> np.ndarray:
        labels = item.annotation.labels
        colours = self._colours(item)
        with clock.step("rasterize"):
            if patches is None:
                patches = self._coverages(item)
        with clock.step("compose.isahit"):
            index_type = np.uint16 if len(labels) < 2**16 else np.uint32
            owner = np.zeros(item.annotation.size_hw, index_type)  # 0 = background, k = label k-1
            for k, patch in enumerate(patches, start=1):
                if patch.mask.size:
                    np.copyto(owner[patch.window()], k, where=patch.mask.astype(bool, copy=False))
            lut = np.zeros((len(labels) + 1, 3), np.uint8)
            lut[1:] = colours
            return np.take(lut, owner, axis=0, mode="clip")  # 3x faster than lut[owner]; clip: no bounds check

    def _colours(self, item: ItemData) -> np.ndarray:
        """Each label's colour (mapped or instance), after refusing what does not fit."""
        labels, where = item.annotation.labels, item.where
        h, w = item.annotation.size_hw
        if h * w > self.max_canvas_pixels:
            raise LimitError(f"canvas {w}x{h} (WxH) = {h * w} pixels is above the limit of "
                             f"{self.max_canvas_pixels} pixels (max_canvas_pixels)", where=where)
        first, top = FIRST_ID[self.convention], MAX_IDS[self.convention]
        channels = self._channels(item.meta)
        mapped = dict(self.semantic_mapping)
        out = np.empty((len(labels), 3), np.uint8)
        for k, lb in enumerate(labels):
            if lb.class_title in mapped:  # recoloured by label: needs neither an id nor a channel
                out[k] = mapped[lb.class_title]
                continue
            if first + k > top:
                hint = "; the 'sdk' convention numbers up to 65534 instances" if self.convention == "documented" else ""
                raise LimitError(
                    f"the {self.convention} convention numbers instances {first}..{top}, but this is "
                    f"label {k + 1} of {len(labels)} (no silent wrap){hint}",
                    where=f"{where}/object {lb.object_index}")
            channel = channels.get(lb.class_title)
            if channel is None or channel > 255:
                got = "none in label_channels" if channel is None else f"its index in meta.json, {channel}"
                raise LimitError(f"class {lb.class_title!r} needs an 8-bit label channel (0..255), got "
                                 f"{got}; set it with label_channels",
                                 where=f"{where}/object {lb.object_index}")
            out[k] = instance_colour(self.convention, first + k, channel)
        return out

    def _channels(self, meta: ProjectMeta) -> dict[str, int]:
        if self.label_channels is None:
            return class_values(self.class_values, meta, self.class_value_zero)
        given = dict(self.label_channels)
        if self.convention == "sdk":
            return {c.title: given.get(c.title, SDK_UNKNOWN_CHANNEL) for c in meta.classes}
        return given

    def _coverages(self, item: ItemData) -> list:
        size_hw, geoms = item.annotation.size_hw, [lb.geometry for lb in item.annotation.labels]
        try:
            return coverages(geoms, size_hw, self.thickness, rule="opencv")
        except ValueError:  # one by one, to name the object the kernel refuses
            out = []
            for lb in item.annotation.labels:
                try:
                    out.append(coverage(lb.geometry, size_hw, self.thickness, rule="opencv"))
                except ValueError as exc:
                    raise AnnotationError(f"cannot draw this {lb.geometry.geometry_type}: {exc}",
                                          where=f"{item.where}/object {lb.object_index}") from None
            return out


def _check_folder(folder) -> str:
    if (not isinstance(folder, str) or not folder or folder.startswith(".")
            or safe_component(folder) != folder):
        raise ConfigError(f"name: expected a folder name (one path component, no '/', '\\', control "
                          f"characters or leading '.'), got {folder!r}")
    return folder


def _mapping(value, option: str) -> list[tuple[str, object]]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{option}: expected a mapping {{class name: value}}, got {value!r}")
    return sorted(value.items())


def _byte(value, option: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
        raise ConfigError(f"{option}: expected an integer 0..255, got {value!r}")
    return value


def _rgb(value, option: str) -> Colour:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ConfigError(f"{option}: expected [r, g, b] with each 0..255, got {value!r}")
    r, g, b = (_byte(v, option) for v in value)
    return r, g, b


def _flag(value, option: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{option}: expected true or false, got {value!r}")
    return value
