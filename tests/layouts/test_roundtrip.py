"""Every source to every layout, and the CVAT round trip: export -> import -> export gives identical
masks, on real data (labelme's VOC photos as COCO, the facade COCO set, CVAT's own XML, and a
Supervisely project), through ``run_export`` on real Dask workers and the archives unpacked with
``unzip``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import DATA, SAMPLES, colours
from helpers.sly_project import assert_sdk_draws_the_same, maskcore_masks, sdk_items, sdk_project
from maskcore.exec.run import EXIT_OK, ExportConfig, run_export


def _run(tmp: Path, client, **cfg) -> Path:
    result = run_export(ExportConfig(**{"archive": False, **cfg}), log=lambda m: None, client=client)
    assert result.exit_code == EXIT_OK, result.report["failures"][:3]
    return Path(cfg["destination"])


def _pngs(root: Path, kind: str) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / kind).glob("*.png"))}


def _coco_source(tmp: Path) -> tuple[str, str]:
    """The labelme COCO export (3 real photos, multi-ring and self-intersecting objects)."""
    src = tmp / "coco"
    shutil.copytree(DATA / "coco_labelme", src)
    return str(next(src.glob("*.json"))), str(src)


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory, dask_client):
    tmp = tmp_path_factory.mktemp("roundtrip")
    json_path, images = _coco_source(tmp)
    first = _run(tmp, dask_client, source=json_path, destination=str(tmp / "first"), reader="coco",
                 reader_options={"images": images}, layout="cvat",
                 layout_options={"with_images": True}, archive=True)
    zips = sorted(first.glob("*.zip"))
    assert len(zips) == 1
    unpacked = tmp / "first_unzipped"
    subprocess.run(["unzip", "-q", str(zips[0]), "-d", str(unpacked)], check=True)
    imported = _run(tmp, dask_client, source=str(zips[0]), destination=str(tmp / "imported"),
                    reader="auto", layout="supervisely-project")
    second = _run(tmp, dask_client, source=str(imported), destination=str(tmp / "second"),
                  reader="supervisely", layout="cvat", layout_options={"with_images": True})
    return unpacked, imported, second


def test_export_import_export_gives_identical_masks(roundtrip):
    first, _, second = roundtrip
    for kind in ("SegmentationClass", "SegmentationObject"):
        a, b = _pngs(first, kind), _pngs(second, kind)
        assert a.keys() == b.keys() and len(a) == 3
        for name in a:
            assert np.array_equal(a[name], b[name]), (kind, name)
            assert len(colours(a[name])) > 1  # something was drawn
    assert (first / "labelmap.txt").read_text() == (second / "labelmap.txt").read_text()
    assert sorted(p.name for p in (first / "JPEGImages").iterdir()) == \
        sorted(p.name for p in (second / "JPEGImages").iterdir())


def test_import_writes_one_exact_bitmap_per_instance(roundtrip):
    first, imported, _ = roundtrip
    items = sdk_items(imported)   # the SDK opens the project import wrote (sly.Project)
    assert len(items) == 3
    for (_, item), ann in sorted(items.items()):
        stem = item.rsplit(".", 1)[0]
        objects = np.asarray(Image.open(first / "SegmentationObject" / f"{stem}.png").convert("RGB"))
        assert len(ann.labels) == len(colours(objects) - {(0, 0, 0)})
        covered = np.zeros(objects.shape[:2], bool)
        for label in ann.labels:
            assert label.geometry.geometry_name() == "bitmap"
            mask = np.zeros(objects.shape[:2], bool)
            label.geometry.draw(mask, True)
            colour = objects[mask][0]
            assert (objects[mask] == colour).all()                      # one instance
            assert np.array_equal(mask, (objects == colour).all(-1))    # all of it, holes kept
            covered |= mask
        assert np.array_equal(covered, objects.any(-1))


SOURCES = {
    "supervisely": lambda tmp: (str(SAMPLES / "vector"), {}),
    "coco": lambda tmp: (str(DATA / "coco_labelme" / "annotations.json"), {}),
    "cvat": lambda tmp: _cvat_source(tmp),
    "cvat-masks": lambda tmp: (str(DATA / "voc_labelme"), {}),
}
LAYOUTS = {
    "supervisely": {}, "cvat": {}, "isahit": {}, "supervisely-project": {},
    "save_masks": {"masks_machine": True, "masks_human": False, "gt_machine_color": {}},
}


def _cvat_source(tmp: Path):
    """CVAT's real annotations.xml with stand-in images of the annotated sizes (the photos are
    40 MB): only 2 images are kept to stay fast."""
    import xml.etree.ElementTree as ET
    root = ET.parse(DATA / "cvat_urban_scene" / "annotations.xml").getroot()
    images = root.findall("image")
    keep = sorted(images, key=lambda im: int(im.get("width")) * int(im.get("height")))[:2]
    for im in images:
        if im not in keep:
            root.remove(im)
    folder = tmp / "cvat"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(folder / "annotations.xml")
    for im in keep:
        Image.new("RGB", (int(im.get("width")), int(im.get("height")))).save(
            folder / "images" / im.get("name"), quality=50)
    return str(folder), {}


@pytest.mark.parametrize("reader", sorted(SOURCES))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_source_goes_to_every_layout(tmp_path, dask_client, reader, layout):
    source, reader_options = SOURCES[reader](tmp_path)
    options = dict(LAYOUTS[layout])
    if layout == "save_masks":  # map every class the source has
        from maskcore.readers import open_source
        meta = open_source(reader, source).read_meta()
        options["gt_machine_color"] = {c.title: [i, i, i] for i, c in enumerate(meta.classes, 1)}
    result = run_export(ExportConfig(source=source, destination=str(tmp_path / "out"), reader=reader,
                                     reader_options=reader_options, layout=layout,
                                     layout_options=options, archive=False),
                        log=lambda m: None, client=dask_client)
    assert result.exit_code == EXIT_OK, result.report["failures"][:3]
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and ".maskcore-meta" not in p.parts]
    assert any(p.suffix == ".png" for p in written) or layout == "supervisely-project"
    assert result.report["items"]["written"] >= 2
    if layout in ("supervisely", "save_masks"):   # a Supervisely project too: the SDK opens it quietly
        assert len(list(sdk_project(tmp_path / "out").datasets)) >= 1
    if layout == "supervisely-project" and reader == "cvat":   # 2 large canvases: the SDK reads it
        assert len(sdk_items(tmp_path / "out")) == 2
    elif layout == "supervisely-project":   # the SDK opens it and draws what maskcore's re-export draws
        masks = run_export(ExportConfig(source=str(tmp_path / "out"), destination=str(tmp_path / "masks"),
                                        reader="supervisely", layout="supervisely",
                                        layout_options={"masks": "machine,instance"}, archive=False),
                           log=lambda m: None, client=dask_client)
        assert masks.exit_code == EXIT_OK
        assert assert_sdk_draws_the_same(tmp_path / "out", maskcore_masks(tmp_path / "masks", masks.manifest)) >= 2
