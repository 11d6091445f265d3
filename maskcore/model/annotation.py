"""Decoded project data: classes, labels, annotations. Frozen, picklable, no I/O.

``size_hw`` is (height, width) of the annotation canvas. Labels keep file order; ``object_index``
is the position of the object in the annotation's ``objects`` list (used in error messages).
``z_order`` (CVAT's drawing order; 0 for formats without one) and ``group`` (CVAT ``group_id``:
shapes with the same non-zero group form one instance; 0 = none) are kept for the layouts that
use them. Tags are dicts ``{"name": ..., "value": ...}`` (value may be None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .geometry import Geometry


@dataclass(frozen=True)
class ObjClass:
    title: str
    shape: str                        # a geometry type name or "any"
    color_rgb: tuple[int, int, int]
    geometry_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source_ids: tuple = field(default=(), hash=False, compare=False)
    """The source's own ids of this class (COCO category ``id``s; several when categories of one
    name were merged); empty for sources without ids (Supervisely, CVAT). Not in meta.json."""


@dataclass(frozen=True)
class ProjectMeta:
    classes: tuple[ObjClass, ...]
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def class_by_title(self) -> dict[str, ObjClass]:
        return {c.title: c for c in self.classes}

    def class_index(self) -> dict[str, int]:
        """Machine-mask index of each class: position in meta ``classes`` starting at 1."""
        return {c.title: i for i, c in enumerate(self.classes, start=1)}


@dataclass(frozen=True, eq=False)
class Label:
    class_title: str
    geometry: Geometry
    object_index: int
    tags: tuple[dict, ...] = ()
    z_order: int = 0
    group: int = 0


@dataclass(frozen=True, eq=False)
class Annotation:
    size_hw: tuple[int, int]
    labels: tuple[Label, ...]
    tags: tuple[dict, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
