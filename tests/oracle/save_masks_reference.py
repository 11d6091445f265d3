"""The DTL ``save_masks`` layer's drawing, done with the Supervisely SDK (test-only oracle).

The reference is the layer's own recipe (``SaveMasksLayer.draw_colored_mask`` and
``overlay_images`` of supervisely-ecosystem's DTL app): a black canvas, ``Label.draw(canvas,
colour)`` for each label in file order whose class the map lists (thickness 1, ``Label.draw``'s
default, unless a test sets another), the human map's black replaced by [1, 1, 1], then
``uint8(0.5 * colour + 0.5 * original)`` in numpy float with the original kept where the colour
mask is black, and ``original | [0, 255, 0] column | overlay``. Bitmaps crossing the border are
drawn clipped (the SDK raises there), with the oracle's helper. Used by the save_masks layout
and DTL job tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.oracles import oracle

from .sly_reference import _bitmap_inside, _draw_bitmap_clipped

sly = oracle("supervisely")

GREEN = np.array([0, 255, 0], np.uint8)


# ----------------------------------------------------------------------------- reference
def sdk_colour_mask(labels, size_hw, colours, thickness=1) -> np.ndarray:
    canvas = np.zeros((*size_hw, 3), np.uint8)
    for label in labels:
        colour = colours.get(label.obj_class.name)
        if colour is None:
            continue
        geometry = label.geometry
        if isinstance(geometry, sly.Bitmap) and not _bitmap_inside(geometry, size_hw):
            _draw_bitmap_clipped(geometry, canvas, list(colour), thickness)
        else:
            label.draw(canvas, list(colour), thickness)
    return canvas


def float_overlay(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The layer's ``overlay_images(image, colour, 0.5)``, in numpy float, then the green column."""
    comb = (0.5 * colour + (1 - 0.5) * image).astype(np.uint8)
    black = (colour[:, :, 0] == 0) & (colour[:, :, 1] == 0) & (colour[:, :, 2] == 0)
    comb[black] = image[black]
    sep = np.array([[GREEN]] * image.shape[0], dtype=np.uint8)
    return np.hstack((image, sep, comb))


def sdk_save_masks(project_dir, machine, human, thickness=1):
    """{(dataset, item): {"machine": HxWx3, "human": Hx(2W+1)x3}} as the layer draws them."""
    project = sly.Project(str(project_dir), sly.OpenMode.READ)
    human_hack = {k: [1, 1, 1] if max(v) == 0 else v for k, v in (human or {}).items()}
    out = {}
    for dataset in project:
        for item in dataset:
            paths = dataset.get_item_paths(item)
            obj = json.loads(Path(paths.ann_path).read_text(encoding="utf-8"))
            size_hw = (obj["size"]["height"], obj["size"]["width"])
            # loaded as the DTL engine loads it: Annotation.from_json crops every label to the image
            labels = sly.Annotation.from_json(obj, project.meta).labels
            kinds = {}
            if machine is not None:
                kinds["machine"] = sdk_colour_mask(labels, size_hw, machine, thickness)
            if human is not None and Path(paths.img_path).is_file():
                image = sly.image.read(paths.img_path)
                kinds["human"] = float_overlay(image, sdk_colour_mask(labels, size_hw, human_hack, thickness))
            out[(dataset.name, item)] = kinds
    return out


def read_outputs(dst: Path, result) -> dict:
    out = {}
    for row in result.manifest.to_pylist():
        kinds = {}
        for o in row["outputs"]:
            folder = o["path"].split("/")[-2]
            if folder in ("masks_machine", "masks_human"):
                with Image.open(dst / o["path"]) as im:
                    assert im.mode == "RGB", f"{o['path']}: mode {im.mode}"
                    kinds[folder.split("_")[1]] = np.asarray(im)
        out[(row["dataset"], row["item"])] = kinds
    return out


def assert_same(ours: dict, ref: dict, where: str) -> int:
    """Every kind of every item equal; returns the number of pixels compared."""
    assert set(ours) == set(ref), f"{where}: items {sorted(ours)} vs {sorted(ref)}"
    compared = 0
    for key in sorted(ref):
        assert set(ours[key]) == set(ref[key]), f"{where} {key}: kinds {set(ours[key])} vs {set(ref[key])}"
        for kind, b in ref[key].items():
            a = ours[key][kind]
            assert a.shape == b.shape, f"{where} {key} {kind}: shape {a.shape} vs {b.shape}"
            n = int(np.any(a != b, axis=-1).sum())
            assert n == 0, f"{where} {key} {kind}: {n} pixels differ from the SDK reference"
            compared += a.shape[0] * a.shape[1]
    return compared
