"""The Supervisely SDK as the oracle of ``supervisely-project`` outputs (what ``maskcore import`` and
``--layout supervisely-project`` write): the SDK must open the project
(``sly.Project(dir, sly.OpenMode.READ)``), find exactly its datasets and items, accept every
annotation (declared tags, shapes matching their classes), and draw the same machine and instance
masks as maskcore's export of the project (the re-export). Against the masks of the original
COCO or CVAT source, the SDK differs only where its load-time crop (docs/reference-notes.md
section 1) touches a label crossing the image border: maskcore never crops COCO or CVAT geometry
(the labelme COCO set: 1 pixel of one chair at the bottom edge).

The SDK takes every sub-folder of a project for a dataset (``Project._read`` over
``supervisely.io.fs.subdirs_tree``; checked in SDK 6.74.51 and the repository's head of
2026-08-12) except those whose path ends with one of ``Dataset.ignorable_dirs()``: maskcore's run
state folder (``paths.STATE_DIR``, ``.maskcore-meta``) ends with ``meta``, so the SDK passes over it.
``sdk_project`` fails on any warning the SDK logs while opening a project, except "Item directory
not found" for the mask folders the reference layouts themselves put in a dataset
(``MASK_FOLDERS``: the app's and the ``save_masks`` layer's outputs, which the SDK tries as
nested datasets too), and fails when a folder of maskcore's (old or new state folder) is a dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from maskcore.paths import LEGACY_STATE_DIR, STATE_DIR

from .oracles import load

MASK_FOLDERS = ("masks_machine", "masks_human", "masks_instances", "masks_semantic_rgb")
"""Folders the reference layouts write inside a dataset (Export as masks, DTL ``save_masks``)."""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _mask_folder(message: str, project_dir: Path) -> bool:
    """``message`` is the SDK's "Item directory not found" for a reference mask folder (or an
    instance folder inside one) of a dataset of ``project_dir``."""
    prefix = "Item directory not found: '"
    if not message.startswith(prefix):
        return False
    path = Path(message[len(prefix):].rstrip("'"))
    try:
        parts = path.relative_to(project_dir).parts
    except ValueError:
        return False
    return parts[-1] == "img" and any(p in MASK_FOLDERS for p in parts[1:-1])


def sdk_project(project_dir: Path):
    """The project opened by the SDK; fails when the SDK warns about anything but a reference
    layout's mask folders, or lists a folder of maskcore's as a dataset."""
    __tracebackhide__ = True
    sly = load("supervisely")
    project_dir = Path(project_dir).resolve()
    collect = _Collect()
    sly.logger.addHandler(collect)
    try:
        project = sly.Project(str(project_dir), sly.OpenMode.READ)
    finally:
        sly.logger.removeHandler(collect)
    others = [m for m in collect.messages if not _mask_folder(m, project_dir)]
    assert not others, f"the Supervisely SDK warns about {project_dir}: {others[:3]}"
    names = [ds.name for ds in project.datasets]
    assert not any(n.split("/")[0] in (STATE_DIR, LEGACY_STATE_DIR) for n in names), names
    return project


def sdk_items(project_dir: Path) -> dict[tuple[str, str], object]:
    """{(dataset, item): sly.Annotation} of every item, each annotation loaded with the project's
    meta (the SDK refuses undeclared tags and objects that do not match their class's shape)."""
    sly = load("supervisely")
    project = sdk_project(project_dir)
    out = {}
    for dataset in project.datasets:
        for item in dataset:
            out[(dataset.name, item)] = sly.Annotation.load_json_file(
                dataset.get_ann_path(item), project.meta)
    return out


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def maskcore_masks(dst: Path, manifest) -> dict:
    """{(dataset, item file name): {"machine": array, "instances": [(file name, array)]}} of a
    supervisely layout export, from its manifest; the item's file name is its safe output name
    (``out_name``: ``JPEGImages/a.jpg`` -> ``JPEGImages_a.jpg``), the name the project holds."""
    out = {}
    for row in manifest.to_pylist():
        kinds = {"instances": []}
        for o in row["outputs"]:
            if "/masks_instances/" in o["path"]:
                kinds["instances"].append((o["path"].rsplit("/", 1)[1], _png(dst / o["path"])))
            elif o["path"].split("/")[-2] == "masks_machine":
                kinds["machine"] = _png(dst / o["path"])
        out[(row["dataset"], row["out_name"])] = kinds
    return out


def assert_sdk_draws_the_same(project_dir: Path, ours: dict) -> int:
    """The SDK's drawing of the project (tests/oracle/sly_reference.py: the Export-as-masks app)
    equals ``ours`` (``maskcore_masks`` of maskcore's export of the same source), machine and
    instance masks, item by item; returns the number of items compared."""
    __tracebackhide__ = True
    from oracle.sly_reference import render_reference

    sdk_project(project_dir)
    ref = render_reference(project_dir)
    assert sorted(ref) == sorted(ours), "items differ"
    for key, theirs in ref.items():
        assert np.array_equal(theirs["machine"], ours[key]["machine"]), f"{key}: machine mask differs"
        names = [n for n, _ in theirs["instances"]]
        assert [n for n, _ in ours[key]["instances"]] == names, f"{key}: instance masks {names}"
        for (name, a), (_, b) in zip(theirs["instances"], ours[key]["instances"]):
            assert np.array_equal(a, b), f"{key} {name}: instance pixels differ"
    return len(ref)
