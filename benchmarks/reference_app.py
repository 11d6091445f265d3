"""The reference way of producing the masks: the Supervisely SDK, label by label, as the
"Export as masks" app does it (see docs/reference-notes.md section 4). Benchmark-only; needs the
``test`` extra (supervisely, opencv-python). Files are written to ``dst`` like the app writes them:
RGB PNGs through ``sly.image.write`` (OpenCV defaults), grey masks re-read and re-saved by Pillow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import supervisely as sly
from PIL import Image


def _write_grey(path: str, rgb: np.ndarray) -> None:
    sly.image.write(path, rgb)
    Image.open(path).convert("L").save(path)


def export_item(meta: sly.ProjectMeta, ann_path: str, img_path: str, dst: Path, stem: str,
                thickness: int = 2) -> None:
    """Human, machine and instance masks of one item, the app's way."""
    ann = sly.Annotation.load_json_file(ann_path, meta)
    colours = {c.name: [k, k, k] for k, c in enumerate(meta.obj_classes, start=1)}
    for sub in ("masks_human", "masks_machine", f"masks_instances/{stem}"):
        os.makedirs(dst / sub, exist_ok=True)
    raw = sly.image.read(img_path)
    overlay = raw.copy()
    for label in ann.labels:
        temp = overlay.copy()
        label.geometry.draw(temp, color=label.obj_class.color, thickness=thickness,
                            config=label.obj_class.geometry_config)
        overlay = ((overlay.astype(np.uint16) + temp.astype(np.uint16)) / 2).astype(np.uint8)
    sly.image.write(str(dst / "masks_human" / f"{stem}.png"), np.concatenate([raw, overlay], axis=1))
    machine = np.zeros(ann.img_size + (3,), np.uint8)
    for label in sorted(ann.labels, key=lambda lb: lb.area, reverse=True):
        # the app draws the geometry with no config (docs/reference-notes.md §4: src/main.py
        # export_as_masks): graphs give only their dots, no template edges (Label.draw would pass the class's config)
        label.geometry.draw(machine, color=colours[label.obj_class.name], thickness=thickness)
    _write_grey(str(dst / "masks_machine" / f"{stem}.png"), machine)
    used: set[str] = set()
    for label in ann.labels:
        name = label.obj_class.name
        k, candidate = 0, f"{name}.png"
        while candidate in used:
            k += 1
            candidate = f"{name}_{k:02d}.png"
        used.add(candidate)
        mask = np.zeros(ann.img_size + (3,), np.uint8)
        label.geometry.draw(mask, color=[255, 255, 255], thickness=thickness)   # no config, as above
        _write_grey(str(dst / "masks_instances" / stem / candidate), mask)
