"""maskcore from Python: export a project, render one item's masks in memory, rasterise polygons.

Three entry points, re-exported by ``maskcore``:

- :func:`export` runs a whole export (the command line's ``maskcore export``, same defaults, same
  bytes) and returns its exit code, report and manifest. Small jobs run in this process; larger
  ones on worker processes of this machine; ``cluster=`` names a profile, ``client=`` uses a Dask
  client you already have.
- :func:`open_project` opens any source the readers know (auto-detected) for a training data
  loader: ``project.masks(item)`` returns numpy arrays, the very pixels the Supervisely layout
  writes (the same parsing, load-time crop, kernel and composition code), with no file written.
- :func:`rasterize` fills polygons into an array by the OpenCV rule (what Supervisely draws) or
  the COCO rule (pycocotools, CVAT).

Conventions: arrays are ``(height, width)``; point lists are ``(N, 2)`` in **xy** order (x = column);
class indices follow the project meta's class order from 1 (0 = background).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .exec.plan import plan_partitions
from .exec.run import ExportConfig, RunResult, run_export
from .exec.task import TaskSpec, parse_item
from .kernel.compose import paint
from .kernel.draw import RULES, coverages
from .layouts import get_layout, get_layout_class
from .layouts.supervisely import SuperviselyMasksLayout
from .model import geometry as g
from .model.annotation import ProjectMeta
from .readers import detect_reader, open_source
from .readers.base import read_item_annotation

_log = logging.getLogger("maskcore")
KINDS = ("machine", "semantic", "human", "instance")


def export(source=None, destination=None, *, config: ExportConfig | None = None, layout: str = "supervisely",
           masks: Sequence[str] | str | None = None, reader: str = "auto", images: str | None = None,
           options: Mapping[str, Any] | None = None, filters: Mapping[str, Any] | None = None,
           storage_options: Mapping[str, Any] | None = None, cluster: str | None = None,
           cluster_file: str | None = None, client=None, workers: int | None = None,
           archive: bool | None = None, part_size: int | None = None, archive_name: str | None = None,
           archive_format: str | None = None, full: bool = False, items_per_partition: int | None = None,
           log=None) -> RunResult:
    """Export ``source`` (a Supervisely project folder or .tar, a COCO JSON, a CVAT XML or task zip, a
    Segmentation mask 1.1 zip or folder; a path or fsspec URL) into ``destination`` in ``layout``.

    ``masks`` (supervisely layout): e.g. ``["machine", "instance"]``; ``images``: the image folder of
    a COCO or CVAT source; ``options``: the layout's options (``-o KEY=VALUE`` on the command line);
    ``filters``: item selection (see README "Selecting items"). Defaults are the command line's:
    the reader is detected, the cvat layout writes a zip. ``cluster=None`` runs jobs of up to
    ``inprocess_below`` items (24, the built-in ``local`` profile's) in this process and larger ones on a local
    cluster; ``cluster="inprocess"`` never starts one; a profile name reads ``cluster.yaml``.
    ``log(line)`` receives the progress and summary lines (default: the ``maskcore`` logger).
    Or pass a ready ``config=ExportConfig(...)``. Returns ``RunResult(exit_code, report, manifest)``;
    raises ``ConfigError`` / ``ProjectError`` when nothing can run, ``LockedError`` when another
    run holds the destination.

    >>> result = maskcore.export("examples/sly_catsdogs/vector", str(tmp / "out"),
    ...                          masks=["machine", "instance"])
    >>> result.exit_code, result.report["items"]["written"], result.manifest.num_rows
    (0, 6, 6)
    """
    if config is None:
        layout_options = dict(options or {})
        if masks is not None:
            layout_options["masks"] = masks if isinstance(masks, str) else ",".join(masks)
        config = ExportConfig(source=source, destination=destination, layout=layout,
                              layout_options=layout_options, reader=reader,
                              reader_options={"images": os.fspath(images)} if images else {},
                              filters=dict(filters or {}), storage_options=dict(storage_options or {}),
                              cluster=cluster, cluster_file=cluster_file, workers=workers, archive=archive,
                              part_size=part_size, archive_name=archive_name, archive_format=archive_format,
                              full=full, items_per_partition=items_per_partition)
    elif source is not None or destination is not None:
        raise TypeError("export(config=...) takes its source and destination from the config")
    return run_export(config, log=log or _log.info, client=client)


@dataclasses.dataclass(frozen=True)
class Item:
    """One item of a project: its dataset (``top/child`` when nested) and name."""
    dataset: str
    name: str
    row: dict = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Masks:
    """One item's masks as arrays (the pixels the layout writes), kinds asked for only.

    Supervisely layout: ``machine`` (H, W) uint8 class indices (meta order from 1), largest label
    drawn first; ``semantic`` (H, W, 3) uint8 class colours; ``human`` (H, 2W, 3) the app's preview;
    ``instances`` (N, H, W) bool, one per label after the load-time crop, with ``classes[i]`` and
    ``object_ids[i]`` (the object's index in the annotation file). Every layout: ``arrays``, the
    kinds by name (``m["class"]`` for the cvat layout's SegmentationClass pixels; the layouts'
    ``mask_kinds``); ``warnings``: what the item's export would report (e.g. labels the crop dropped).
    """
    machine: np.ndarray | None = None
    semantic: np.ndarray | None = None
    human: np.ndarray | None = None
    instances: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    object_ids: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __getitem__(self, kind: str) -> np.ndarray:
        try:
            return self.arrays[kind]
        except KeyError:
            raise KeyError(f"no {kind!r} mask here; rendered: {sorted(self.arrays)}") from None


class Project:
    """A labelled project opened for reading (see :func:`open_project`). Picklable: a data loader's
    worker processes can each hold one."""

    def __init__(self, source, meta: ProjectMeta, rows: list[dict]) -> None:
        self.source, self.meta, self._rows = source, meta, rows

    @property
    def classes(self) -> tuple[str, ...]:
        """Class titles in machine-mask order: ``classes[k - 1]`` has index ``k``."""
        return tuple(c.title for c in self.meta.classes)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r["dataset"] for r in self._rows))

    def __len__(self) -> int:
        return len(self._rows)

    def items(self, dataset: str | None = None) -> Iterator[Item]:
        """The items, in the export's order (dataset, then name), of one dataset or all."""
        for row in self._rows:
            if dataset is None or row["dataset"] == dataset:
                yield Item(row["dataset"], row["item"], row)

    def masks(self, item: Item, kinds: Sequence[str] | str | None = None, *, layout: str = "supervisely",
              options: Mapping[str, Any] | None = None, thickness: int | None = None,
              crop: str | None = None) -> Masks:
        """``item``'s masks of ``kinds`` as arrays, exactly as ``export(..., layout=layout,
        options=options)`` writes them (``thickness`` and ``crop`` are shortcuts for those
        options). Kinds by layout: supervisely ``machine``, ``semantic``, ``human``, ``instance``
        (default ``machine`` and ``instance``); cvat ``class``, ``object`` (the RGB pixels of
        SegmentationClass/ and SegmentationObject/); isahit ``mask``; save-masks ``machine``,
        ``human`` (both RGB, per the layer's colour maps, given in ``options``). Raises the item's
        error (``ItemError`` naming the object) where the export would fail the item.

        >>> project = maskcore.open_project("examples/sly_catsdogs/vector")
        >>> first = next(project.items())
        >>> m = project.masks(first)
        >>> first.name, m.machine.shape, m.machine.dtype, m.instances.shape, m.classes
        ('cat1.jpg', (2000, 2000), dtype('uint8'), (1, 2000, 2000), ('cat',))
        >>> project.masks(first, layout="cvat")["class"].shape
        (2000, 2000, 3)
        """
        opts = dict(options or {})
        opts.update({k: v for k, v in (("thickness", thickness), ("crop", crop)) if v is not None})
        cls = get_layout_class(layout)
        if kinds is None:
            kinds = ("machine", "instance") if cls is SuperviselyMasksLayout else cls.mask_kinds
        asked = {"instance" if k == "instances" else k for k in ([kinds] if isinstance(kinds, str) else kinds)}
        wanted = tuple(k for k in cls.mask_kinds if k in asked)
        unknown = sorted(asked - set(cls.mask_kinds))
        if unknown or not wanted:
            raise ValueError(f"kinds: layout {layout!r} draws some of {list(cls.mask_kinds)}, got {list(kinds)}")
        if cls is SuperviselyMasksLayout:
            opts.update(masks=",".join(wanted), copy_images=False, copy_annotations=False)
        lay = get_layout(layout, opts)
        spec = TaskSpec(source=self.source, sink=None, layout=lay, meta=self.meta)
        row = item.row
        ann = read_item_annotation(self.source, row)
        needs_photo = bool(lay.image_kinds & set(wanted)) and row.get("img_path")
        image = self.source.read_bytes(row["img_path"]) if needs_photo else None
        warnings: list[str] = []
        data = parse_item(spec, row, ann.data, image, warn=warnings.append, decoded=ann.decoded)
        out: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for kind, value in lay.render(data, wanted, warn=warnings.append):
            if kind != "instances":
                arrays[kind] = np.array(value)  # a copy: a layout's canvases may be reused per item
                continue
            h, w = data.annotation.size_hw
            stack = np.zeros((len(value), h, w), bool)
            for i, patch in enumerate(value):
                stack[i, patch.top:patch.bottom, patch.left:patch.right] = patch.mask != 0
            arrays["instance"] = stack
            out.update(instances=stack, classes=tuple(lb.class_title for lb in data.annotation.labels),
                       object_ids=tuple(lb.object_index for lb in data.annotation.labels))
        if cls is SuperviselyMasksLayout:
            out.update({k: arrays[k] for k in ("machine", "semantic", "human") if k in arrays})
        return Masks(**out, arrays=arrays, warnings=tuple(warnings))


def open_project(source, *, images: str | None = None, reader: str = "auto",
                 storage_options: Mapping[str, Any] | None = None) -> Project:
    """Open a project for reading masks in memory: a Supervisely folder or .tar, a COCO JSON
    (``images=`` its image folder, default the JSON's folder), a CVAT XML or task zip, a
    Segmentation mask 1.1 zip or folder; a path or fsspec URL. Lists the items, reads nothing else.

    >>> project = maskcore.open_project("examples/sly_catsdogs/vector")
    >>> len(project), project.classes
    (6, ('cat', 'dog', 'cat2', 'dog2', 'test_point'))
    """
    storage_options = dict(storage_options or {})
    source = str(source)
    name = detect_reader(source, storage_options) if reader == "auto" else reader
    opened = open_source(name, source, storage_options, **({"images": os.fspath(images)} if images else {}))
    meta = opened.read_meta()
    plan = plan_partitions(opened.list_items(), workers=1, items_per_partition=1 << 30)
    return Project(opened, meta, plan.to_pylist())


def rasterize(polygons_xy: Sequence, size_hw: tuple[int, int], *, rule: str = "opencv",
              values: Sequence[int] | None = None, dtype=np.uint8) -> np.ndarray:
    """Fill polygons into a new ``size_hw`` array: polygon ``i`` paints ``values[i]`` (default
    ``i + 1``), later polygons over earlier ones; pixels no polygon covers are 0.

    ``polygons_xy``: each an (N, 2) array-like of xy vertices, or a list of rings (exterior first,
    then holes). ``rule="opencv"``: ``cv2.fillPoly`` on floored vertices (pixel indices; what the
    Supervisely SDK draws); ``rule="coco"``: pycocotools' ``frPyObjects``/``decode`` on the vertices as
    they are (pixel (c, r) is the square [c, c+1) x [r, r+1); what CVAT and COCO tools draw).

    >>> int(maskcore.rasterize([[(1, 1), (8, 1), (1, 8)]], (10, 10)).sum())
    36
    """
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {list(RULES)}, got {rule!r}")
    h, w = (int(v) for v in size_hw)
    geoms = []
    for i, poly in enumerate(polygons_xy):
        rings = [poly] if np.asarray(poly, dtype=object).ndim == 2 and _is_ring(poly) else list(poly)
        arrays = [np.asarray(r, np.float64).reshape(-1, 2) for r in rings]
        if any(a.shape[0] < 3 for a in arrays):
            raise ValueError(f"polygon {i}: expected rings of at least 3 points")
        if rule == "opencv":
            arrays = [np.floor(a).astype(np.int64) for a in arrays]
        geoms.append(g.Polygon(arrays[0], tuple(arrays[1:])))
    values = list(range(1, len(geoms) + 1)) if values is None else list(values)
    if len(values) != len(geoms):
        raise ValueError(f"values: expected {len(geoms)} values, got {len(values)}")
    out = np.zeros((h, w), dtype)
    for patch, value in zip(coverages(geoms, (h, w), rule=rule), values):
        paint(out, patch, value)
    return out


def _is_ring(poly) -> bool:
    """A ring is a sequence of (x, y) pairs; a polygon with holes is a sequence of rings."""
    try:
        first = poly[0]
        return len(first) == 2 and np.isscalar(first[0])
    except (TypeError, IndexError):
        return False
