"""Datumaro (PyPI ``datumaro``) as a test oracle for the cvat layout: can the Pascal VOC
importer CVAT and Datumaro users run (``Dataset.import_from(path, "voc_segmentation")``) read an
export, with the same items, labels and masks?

Datumaro lives in its own interpreter: it pins pyarrow and brings opencv-python-headless, which
clash with the test extras. ``$MASKCORE_DATUMARO_PYTHON``, else ``<repo>/.dmvenv/bin/python``
(``.ci/run`` creates it: ``python -m venv .dmvenv && .dmvenv/bin/pip install datumaro==1.13.12``).
One long-lived child process per test process (``DatumaroOracle``) answers every request, so
Datumaro's start-up is paid once; each request imports several export folders.
When the interpreter is missing, the requesting test is skipped with a reason starting with
``helpers.oracles.INTERPRETER_PREFIX`` (a failure under ``CI=true``, as for every oracle).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from maskcore.layouts.base import LIST_PREFIX

from . import REPO
from .oracles import INTERPRETER_PREFIX

PYTHON_ENV = "MASKCORE_DATUMARO_PYTHON"
VERSION = "1.13.12"

# Runs inside Datumaro's interpreter. Request (one JSON line): {"paths": [...], "out": DIR};
# answer (one JSON line): per path {"labels": [[name, [r, g, b] or null], ...], "items":
# [{"id", "subset", "masks": [[label, group], ...]}], "error": null or text}. Each item's masks go
# to DIR/<path index>_<item index>.npz as one map "groups" (H, W): each mask's pixels hold its
# group (the VOC importer's instance number), 0 elsewhere; a pixel in two masks is refused. The
# masks the VOC importer makes share one index mask (ExtractedMask: image = index_mask == index),
# so the map is built from it in one pass, not one image per instance.
SERVER = r'''
import json, os, sys, traceback
import numpy as np
import datumaro as dm
from datumaro.components.annotation import AnnotationType, ExtractedMask

def groups_map(masks, shape):
    sources = {id(m.index_mask) for m in masks if isinstance(m, ExtractedMask)}
    if len(sources) == 1 and all(isinstance(m, ExtractedMask) for m in masks):
        index = masks[0].index_mask
        index = np.asarray(index() if callable(index) else index)
        lut = np.zeros(int(index.max()) + 1, np.int64)
        for m in masks:
            lut[m.index] = m.group
        return lut[index]
    out = None
    for m in masks:
        image = np.asarray(m.image, dtype=bool)
        out = np.zeros(image.shape, np.int64) if out is None else out
        if (out[image] != 0).any():
            raise ValueError(f"masks overlap (group {m.group})")
        out[image] = m.group
    return out if out is not None else np.zeros((0, 0), np.int64)

def dump(path, out, k):
    ds = dm.Dataset.import_from(path, "voc_segmentation")
    cats = ds.categories()
    colormap = cats[AnnotationType.mask].colormap if AnnotationType.mask in cats else {}
    labels = [[lb.name, [int(v) for v in colormap[i]] if i in colormap else None]
              for i, lb in enumerate(cats[AnnotationType.label])]
    items = []
    for j, item in enumerate(sorted(ds, key=lambda it: (it.subset, it.id))):
        masks = [a for a in item.annotations if a.type == AnnotationType.mask]
        np.savez(os.path.join(out, f"{k}_{j}.npz"), groups=groups_map(masks, None))
        items.append({"id": item.id, "subset": item.subset,
                      "masks": [[a.label, a.group] for a in masks]})
    return {"labels": labels, "items": items, "error": None}

for line in sys.stdin:
    request = json.loads(line)
    answers = []
    for k, path in enumerate(request["paths"]):
        try:
            answers.append(dump(path, request["out"], k))
        except Exception as exc:
            answers.append({"labels": [], "items": [], "error": "".join(
                traceback.format_exception_only(type(exc), exc)).strip()})
    sys.stdout.write(json.dumps(answers) + "\n")
    sys.stdout.flush()
'''


def datumaro_python() -> Path | None:
    """The interpreter that has Datumaro, or None."""
    given = os.environ.get(PYTHON_ENV)
    path = Path(given) if given else REPO / ".dmvenv" / "bin" / "python"
    return path if path.is_file() else None


@dataclass
class Imported:
    """One export folder as a VOC segmentation reader finds it."""
    labels: list            # [(name, (r, g, b) or None)] in label order
    items: dict             # {(subset, id): ([(group, label colour)] sorted, (H, W) group map)}
    error: str | None


class DatumaroOracle:
    """A Datumaro child process; ``import_voc(paths)`` reads export folders in one request."""

    def __init__(self, python: Path) -> None:
        self._proc = subprocess.Popen([str(python), "-c", SERVER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONWARNINGS": "ignore"})

    def import_voc(self, paths: list[Path]) -> list[Imported]:
        with tempfile.TemporaryDirectory(prefix="dm-") as out:
            self._proc.stdin.write(json.dumps({"paths": [str(p) for p in paths], "out": out}) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the Datumaro process ended (exit code {self._proc.wait()})")
            return [_imported(answer, Path(out), k) for k, answer in enumerate(json.loads(line))]

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


def _imported(answer: dict, out: Path, k: int) -> Imported:
    labels = [(name, tuple(c) if c is not None else None) for name, c in answer["labels"]]
    items = {}
    for j, item in enumerate(answer["items"]):
        with np.load(out / f"{k}_{j}.npz") as npz:
            groups = npz["groups"]
        instances = sorted((group, labels[label][1] if label is not None else None)
                           for label, group in item["masks"])
        items[(item["subset"], item["id"])] = (instances, groups)
    return Imported(labels, items, answer["error"])


_ORACLE: DatumaroOracle | None = None


def datumaro_oracle() -> DatumaroOracle:
    """This test process's Datumaro process (started on first use, ended at exit); skips the
    running test when no interpreter with Datumaro is found (a failure in CI)."""
    global _ORACLE
    __tracebackhide__ = True
    if _ORACLE is None:
        python = datumaro_python()
        if python is None:
            pytest.skip(f"{INTERPRETER_PREFIX} with Datumaro: set ${PYTHON_ENV} or create .dmvenv "
                        f"(python -m venv .dmvenv && .dmvenv/bin/pip install datumaro=={VERSION})")
        _ORACLE = DatumaroOracle(python)
        import atexit
        atexit.register(_ORACLE.close)
    return _ORACLE


# --- cvat-layout exports as Datumaro must read them -------------------------------------------


def write_export(root: Path, renders) -> Path:
    """Write in-memory renders of the cvat layout, ``[(layout, item, files)]`` (files as
    ``item_files`` returns them), as one export folder per labelmap under ``root``, as the run
    layer assembles them (list lines collected into their files); returns ``root``. Items whose
    stems repeat (tests render many items called ``img``) get ``~<n>`` appended in this folder."""
    folders: dict[bytes, tuple[Path, set]] = {}
    lists: dict[Path, list[str]] = {}
    for layout, item, files in renders:
        (_, labelmap), = layout.project_files(item.meta, b"")
        if labelmap not in folders:
            folder = root / f"export{len(folders)}"
            folder.mkdir(parents=True)
            (folder / "labelmap.txt").write_bytes(labelmap)
            folders[labelmap] = (folder, set())
        folder, stems = folders[labelmap]
        stem = item.mask_stem
        n = 0
        while stem in stems:
            n += 1
            stem = f"{item.mask_stem}~{n}"
        stems.add(stem)
        for path, data in files:
            if path.startswith(LIST_PREFIX):
                lists.setdefault(folder / path[len(LIST_PREFIX):], []).append(stem)
                continue
            directory, name = path.rsplit("/", 1)
            assert name.startswith(item.mask_stem)
            target = folder / directory / (stem + name[len(item.mask_stem):])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    for path, lines in lists.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in sorted(lines)), encoding="utf-8")
    return root


def voc_instance_colours(n: int) -> dict[tuple[int, int, int], int]:
    """{colour: instance index} of the VOC colormap (Pascal VOC's bit-spreading formula)."""
    out = {}
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(7, -1, -1):
            r, g, b = r | (c & 1) << j, g | ((c >> 1) & 1) << j, b | ((c >> 2) & 1) << j
            c >>= 3
        out[(r, g, b)] = i
    return out


VOC_INSTANCES = voc_instance_colours(256)


def expected_from_files(folder: Path) -> Imported:
    """What a VOC segmentation reader must find in an export folder, read with PIL from its files
    (labelmap.txt lines, list files, SegmentationObject colours as VOC instance indexes with the
    class colour under each)."""
    from PIL import Image

    labels = []
    for line in (folder / "labelmap.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, colour, _, _ = line.split(":")
            labels.append((name, tuple(int(v) for v in colour.split(","))))
    items = {}
    for lst in sorted((folder / "ImageSets/Segmentation").glob("*.txt")):
        for stem in lst.read_text(encoding="utf-8").splitlines():
            instances, groups = [], np.zeros((0, 0), np.int64)
            obj_png = folder / "SegmentationObject" / f"{stem}.png"
            if obj_png.exists():
                objects = np.asarray(Image.open(obj_png).convert("RGB"))
                classes = np.asarray(Image.open(folder / "SegmentationClass" / f"{stem}.png").convert("RGB"))
                object_key = _packed(objects)
                pairs = np.unique((object_key << 24) | _packed(classes))   # (instance, class colour)
                assert len(np.unique(pairs >> 24)) == len(pairs), f"{stem}: an instance has several classes"
                lut = {}
                for key in pairs:
                    obj, cls = int(key >> 24), int(key & 0xFFFFFF)
                    lut[obj] = VOC_INSTANCES[(obj >> 16, (obj >> 8) & 255, obj & 255)]
                    if obj:
                        instances.append((lut[obj], (cls >> 16, (cls >> 8) & 255, cls & 255)))
                keys = np.array(sorted(lut), np.uint64)
                groups = np.array([lut[int(v)] for v in keys], np.int64)[np.searchsorted(keys, object_key)]
            items[(lst.stem, stem)] = (sorted(instances), groups)
    return Imported(labels, items, None)


def _packed(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint64 ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.uint64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def assert_datumaro_reads(folders: list[Path]) -> int:
    """Datumaro's ``voc_segmentation`` importer reads every folder (one request) with the items,
    labels (names, colours, order) and instance masks (pixels and class colour) the files hold;
    returns the number of items compared."""
    __tracebackhide__ = True
    got = datumaro_oracle().import_voc(folders)
    compared = 0
    for folder, imported in zip(folders, got):
        want = expected_from_files(folder)
        assert imported.error is None, f"Datumaro cannot import {folder}: {imported.error}"
        assert imported.labels == want.labels, f"{folder}: labels differ"
        assert sorted(imported.items) == sorted(want.items), f"{folder}: items differ"
        for key, (instances, groups) in want.items.items():
            theirs, their_groups = imported.items[key]
            assert theirs == instances, f"{folder} {key}: instances (number, class colour) differ"
            if instances:
                assert np.array_equal(their_groups, groups), f"{folder} {key}: instance pixels differ"
            compared += 1
    return compared
