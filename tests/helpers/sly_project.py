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
2026-08-12): maskcore's run metadata folder ``.maskcore/`` is tried as one and the SDK logs
"Item directory not found: '.maskcore/img'" (a warning, not an error: the project still loads).
``sdk_project`` lets exactly those warnings through and fails on any other.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from .oracles import load

STATE_DIR = ".maskcore"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def sdk_project(project_dir: Path):
    """The project opened by the SDK; fails when the SDK warns about anything but ``.maskcore/``
    or lists it as a dataset."""
    __tracebackhide__ = True
    sly = load("supervisely")
    collect = _Collect()
    sly.logger.addHandler(collect)
    try:
        project = sly.Project(str(project_dir), sly.OpenMode.READ)
    finally:
        sly.logger.removeHandler(collect)
    others = [m for m in collect.messages
              if not m.startswith("Item directory not found") or f"/{STATE_DIR}/" not in m.replace("'", "/")]
    assert not others, f"the Supervisely SDK warns about {project_dir}: {others[:3]}"
    names = [ds.name for ds in project.datasets]
    assert not any(n.split("/")[0] == STATE_DIR for n in names), names
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
