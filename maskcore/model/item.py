"""What a layout receives for one item: decoded annotation plus the raw bytes it may copy."""

from __future__ import annotations

from dataclasses import dataclass

from .annotation import Annotation, ProjectMeta


@dataclass(frozen=True, eq=False)
class ItemData:
    dataset: str            # full dataset name, "top/child" for nested datasets
    name: str               # item (image) name, with its extension
    out_dir: str            # output folder of the dataset, relative to the destination root
    mask_stem: str          # file stem of this item's masks, unique within the dataset
    out_name: str           # the item's (safe, unique) file name for copied image / annotation
    meta: ProjectMeta
    annotation: Annotation
    ann_bytes: bytes
    image_bytes: bytes | None
    ann_format: str = "supervisely"   # what ``ann_bytes`` is: Supervisely JSON, or "coco", "cvat", ...

    @property
    def where(self) -> str:
        return f"{self.dataset}/{self.name}"
