"""Reference masks of Supervisely's "Export as masks" app, drawn with the real Supervisely SDK.

Test-only: imports supervisely and cv2. Everything is computed in memory; nothing is written.
Facts and citations: docs/reference-notes.md.

Conventions (those of the SDK): coordinates ``[x, y] = [col, row]``, origin at the top-left
pixel, floats floored when read; the canvas is the annotation ``size`` (the image's own size
for the human mask, as in the app). Annotations are loaded with ``sly.Annotation`` like the app
does, which crops every label except oriented boxes to the image first (polygons clipped by
shapely with ``buffer(0)`` and rounded vertices, lines clipped and split, off-image points,
graphs and cuboids dropped, bitmaps cropped); what is drawn is the cropped geometry.
Outputs per item:

- ``"machine"``: ``H x W`` uint8, class index (meta order, from 1), labels drawn largest
  ``Label.area`` first (stable), colour ``[k, k, k]``, no geometry config, grey via PIL "L".
- ``"semantic"``: ``H x W x 3`` uint8 RGB, class colours, labels in file order, drawn like the
  human overlay's per-label drawing (geometry config passed): the app's ``masks_semantic_rgb``.
- ``"human"``: ``H x 2W x 3`` uint8 RGB: image | overlay, where for each label in file order the
  label is drawn on a copy of the overlay and ``overlay = floor((overlay + copy) / 2)``.
- ``"instances"``: list of ``(file_name, H x W uint8)`` in file order; names from the SDK's
  ``generate_free_name`` (``cls.png``, ``cls_01.png``, ...). Values are 0/255, except that an
  alpha mask gives its alpha values (the SDK blends 255 over black).

Deliberate deviations from the app (each one a defect of the app or of the SDK):
- cuboid_2d: every cuboid fills its own 5 faces in every mask kind (the app reuses the faces of
  the item's last cuboid in the machine and instance masks).
- Bitmaps and alpha masks crossing the canvas border are drawn clipped (the SDK raises
  IndexError, or silently draws at a wrapped position for origins far above/left).
- (No deviation any more for the human-mask resize: the app has used ``cv2.resize(..., INTER_AREA)``
  to ``int(side * (percent / 100))`` since 2024-11, as here.)
- More than 255 classes: ValueError (the app crashes or saturates, depending on the geometry).
- Items whose image file is missing: with ``missing_image="masks_only"`` (default) the
  annotation-only kinds (machine, semantic, instances) are still produced and "human" is absent;
  ``missing_image="skip"`` mirrors the SDK, which does not list such items at all.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from helpers.oracles import oracle

cv2 = oracle("cv2")
sly = oracle("supervisely")
sly_utils = oracle("supervisely._utils")

MAX_MACHINE_CLASSES = 255

# The five faces the app fills for a cuboid_2d (front, top, right, bottom, left; no back face).
CUBOID2D_VISIBLE_FACES = (
    ("face1-topleft", "face1-topright", "face1-bottomright", "face1-bottomleft"),
    ("face1-topleft", "face2-topleft", "face2-topright", "face1-topright"),
    ("face1-topright", "face2-topright", "face2-bottomright", "face1-bottomright"),
    ("face1-bottomright", "face2-bottomright", "face2-bottomleft", "face1-bottomleft"),
    ("face1-bottomleft", "face2-bottomleft", "face2-topleft", "face1-topleft"),
)


def render_reference(
    project_dir, *, thickness: int = 2, human_resize_percent: int | None = None,
    missing_image: str = "masks_only",
) -> dict[tuple[str, str], dict[str, object]]:
    """Render every item of a Supervisely project as the export app would (minus its defects).

    Returns ``{(dataset full name, item name): {kind: array or list}}``; the dataset full name is
    the SDK's (``top/child`` for ``top/datasets/child``). See the module docstring for the kinds.
    """
    meta, items = load_project_items(project_dir, missing_image=missing_image)
    machine_colors = machine_color_map(meta)
    result = {}
    for dataset_name, item_name, ann, image_path in items:
        image = sly.image.read(image_path) if image_path is not None else None
        result[(dataset_name, item_name)] = render_item(
            ann, image, machine_colors, thickness=thickness, human_resize_percent=human_resize_percent)
    return result


def load_project_items(project_dir, *, missing_image: str = "masks_only"):
    """``(meta, [(dataset name, item name, sly.Annotation, image path or None), ...])`` via the SDK.

    Annotations are loaded with ``sly.Annotation.load_json_file``, which crops every label except
    oriented boxes to the image (see docs/reference-notes.md). Items whose image is missing get
    ``None`` as path with ``missing_image="masks_only"`` and are left out with ``"skip"``.
    """
    if missing_image not in ("masks_only", "skip"):
        raise ValueError(f"missing_image must be 'masks_only' or 'skip', got {missing_image!r}")
    project = sly.Project(str(project_dir), sly.OpenMode.READ)
    items = []
    for dataset in project:
        for item_name in dataset:
            paths = dataset.get_item_paths(item_name)
            ann = sly.Annotation.load_json_file(paths.ann_path, project.meta)
            image_path = paths.img_path if os.path.isfile(paths.img_path) else None
            if image_path is not None or missing_image == "masks_only":
                items.append((dataset.name, item_name, ann, image_path))
        if missing_image == "masks_only":
            for item_name, ann_path in _items_without_image(dataset):
                ann = sly.Annotation.load_json_file(ann_path, project.meta)
                items.append((dataset.name, item_name, ann, None))
    return project.meta, items


def machine_color_map(meta: sly.ProjectMeta) -> dict[str, list[int]]:
    """``{class name: [k, k, k]}`` with k = 1.. in meta order, as in obj_class_to_machine_color.json."""
    classes = list(meta.obj_classes)
    if len(classes) > MAX_MACHINE_CLASSES:
        raise ValueError(
            f"machine masks are 8-bit: expected at most {MAX_MACHINE_CLASSES} classes, got {len(classes)}")
    return {obj_class.name: [idx, idx, idx] for idx, obj_class in enumerate(classes, start=1)}


def render_item(
    ann: sly.Annotation, image_rgb: np.ndarray | None, machine_colors: dict[str, list[int]], *,
    thickness: int = 2, human_resize_percent: int | None = None,
) -> dict[str, object]:
    """All mask kinds of one item; "human" only when `image_rgb` (H x W x 3 RGB uint8) is given."""
    out = {
        "machine": render_machine(ann, machine_colors, thickness),
        "semantic": render_semantic(ann, thickness),
        "instances": render_instances(ann, thickness),
    }
    if image_rgb is not None:
        out["human"] = render_human(ann, image_rgb, thickness, human_resize_percent)
    return out


def render_machine(ann: sly.Annotation, machine_colors: dict[str, list[int]], thickness: int) -> np.ndarray:
    """Class-index mask: largest area first, colour [k, k, k], no geometry config."""
    canvas = np.zeros(ann.img_size + (3,), dtype=np.uint8)
    for label in sorted(ann.labels, key=lambda lab: lab.area, reverse=True):
        draw_label(label, canvas, machine_colors[label.obj_class.name], thickness, config=None)
    return to_grey(canvas)


def render_semantic(ann: sly.Annotation, thickness: int) -> np.ndarray:
    """RGB class-colour mask on black, labels in file order, geometry config passed."""
    canvas = np.zeros(ann.img_size + (3,), dtype=np.uint8)
    for label in ann.labels:
        draw_label(label, canvas, label.obj_class.color, thickness, config=label.obj_class.geometry_config)
    return canvas


def render_human(
    ann: sly.Annotation, image_rgb: np.ndarray, thickness: int, resize_percent: int | None = None,
) -> np.ndarray:
    """Original | overlay; overlay = floor((overlay + overlay-with-label) / 2) per label."""
    overlay = image_rgb.copy()
    for label in ann.labels:
        temp = overlay.copy()
        draw_label(label, temp, label.obj_class.color, thickness, config=label.obj_class.geometry_config)
        overlay = ((overlay.astype(np.uint16) + temp.astype(np.uint16)) / 2).astype(np.uint8)
    picture = np.concatenate([image_rgb, overlay], axis=1)
    if resize_percent is None:
        return picture
    new_h = int(picture.shape[0] * (resize_percent / 100))
    new_w = int(picture.shape[1] * (resize_percent / 100))
    return cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_AREA)


def render_instances(ann: sly.Annotation, thickness: int) -> list[tuple[str, np.ndarray]]:
    """One grey mask per label in file order, drawn in [255, 255, 255]; SDK free names."""
    used_names: list[str] = []
    masks = []
    for label in ann.labels:
        name = sly_utils.generate_free_name(used_names=used_names, possible_name=f"{label.obj_class.name}.png",
                                            with_ext=True)
        used_names.append(name)
        canvas = np.zeros(ann.img_size + (3,), dtype=np.uint8)
        draw_label(label, canvas, [255, 255, 255], thickness, config=None)
        masks.append((name, to_grey(canvas)))
    return masks


def draw_label(label: sly.Label, canvas: np.ndarray, color, thickness: int, config) -> None:
    """Draw one label in place the way the app does, except for the documented deviations."""
    geometry = label.geometry
    if isinstance(geometry, sly.Cuboid2d):
        for face in cuboid2d_faces_xy(geometry):
            cv2.fillPoly(canvas, pts=[face], color=color)
    elif isinstance(geometry, sly.Bitmap) and not _bitmap_inside(geometry, canvas.shape[:2]):
        _draw_bitmap_clipped(geometry, canvas, color, thickness)
    else:
        geometry.draw(canvas, color=color, thickness=thickness, config=config)


def cuboid2d_faces_xy(geometry: sly.Cuboid2d) -> list[np.ndarray]:
    """The 5 visible faces of a cuboid_2d as int32 ``[[x, y] x 4]`` arrays (the app's order)."""
    nodes = geometry.nodes
    return [np.array([[nodes[v].location.col, nodes[v].location.row] for v in face], dtype=np.int32)
            for face in CUBOID2D_VISIBLE_FACES]


def to_grey(canvas_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> grey uint8 the way the app saves masks (PIL ``convert("L")``)."""
    return np.asarray(Image.fromarray(canvas_rgb).convert("L"))


def _bitmap_inside(geometry: sly.Bitmap, size_hw) -> bool:
    box = geometry.to_bbox()
    return box.top >= 0 and box.left >= 0 and box.bottom < size_hw[0] and box.right < size_hw[1]


def _draw_bitmap_clipped(geometry: sly.Bitmap, canvas: np.ndarray, color, thickness: int) -> None:
    """Draw only the part of a bitmap/alpha mask that lies on the canvas (SDK draws the crop)."""
    box = geometry.to_bbox()
    height, width = canvas.shape[:2]
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.bottom, height - 1), min(box.right, width - 1)
    if top > bottom or left > right:
        return
    data = geometry.data[top - box.top:bottom - box.top + 1, left - box.left:right - box.left + 1]
    if not np.any(data):
        return
    cropped = type(geometry)(data=data, origin=sly.PointLocation(row=top, col=left))
    cropped.draw(canvas, color=color, thickness=thickness)


def _items_without_image(dataset: sly.Dataset) -> list[tuple[str, str]]:
    """(item name, annotation path) for annotation files that no listed image claims."""
    claimed = {os.path.basename(dataset.get_ann_path(name)) for name in dataset}
    found = []
    for file_name in sorted(os.listdir(dataset.ann_dir)):
        if file_name.endswith(".json") and file_name not in claimed:
            found.append((file_name[: -len(".json")], os.path.join(dataset.ann_dir, file_name)))
    return found


def resave_through_sdk(project_dir, dst_dir) -> str:
    """A copy of a Supervisely project whose annotations went through ``sly.Annotation.load_json_file``
    and ``to_json``: what the SDK holds after loading (every label cropped to the image), on disk.
    Images and meta are copied as they are. Returns ``dst_dir``."""
    import json
    import shutil

    project = sly.Project(str(project_dir), sly.OpenMode.READ)
    for dataset in project:
        rel = os.path.relpath(dataset.directory, str(project_dir))
        for item in dataset:
            paths = dataset.get_item_paths(item)
            ann = sly.Annotation.load_json_file(paths.ann_path, project.meta)
            out_ann = os.path.join(dst_dir, rel, "ann", os.path.basename(paths.ann_path))
            out_img = os.path.join(dst_dir, rel, "img", item)
            os.makedirs(os.path.dirname(out_ann), exist_ok=True)
            os.makedirs(os.path.dirname(out_img), exist_ok=True)
            with open(out_ann, "w", encoding="utf-8") as f:
                json.dump(ann.to_json(), f)
            shutil.copyfile(paths.img_path, out_img)
    shutil.copyfile(os.path.join(project_dir, "meta.json"), os.path.join(dst_dir, "meta.json"))
    return str(dst_dir)
