"""Conformance of every registered reader (fsspec ``tests/abstract`` style): a reader gets this whole
suite by being registered and adding a builder of a tiny project to ``PROJECTS``.

What every reader promises (``maskcore.readers.base``): an opened source satisfies the ``Source``
protocol and shares ``SourceBase``; the same project gives the same meta, listing, annotation
bytes and parsed annotations every time it is opened; the listing is sorted by (dataset, item);
a source pickles without its filesystem and the copy reads the same; a broken annotation fails
its own item with an ``ItemError`` naming it, and the other items still parse; a missing project
is a ``ProjectError`` naming it; and a real Dask worker process reads what the driver reads.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from PIL import Image

from maskcore.codec.png import encode_png
from maskcore.errors import ItemError, ProjectError
from maskcore.readers import READERS, Source, SourceBase, open_source

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sly_catsdogs"


def _jpeg(path: Path, size_wh=(8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", size_wh, (90, 120, 30)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())


def _supervisely(root: Path, broken: bool) -> tuple[str, dict, str]:
    shutil.copytree(SAMPLES / "vector", root / "proj")
    if broken:  # an object that is not an object
        (root / "proj" / "ds" / "ann" / "dog2.jpg.json").write_text('{"size": {"height": 4, "width": 4}, '
                                                                    '"objects": [7]}')
    return str(root / "proj"), {}, "ds/dog2.jpg"


def _coco(root: Path, broken: bool) -> tuple[str, dict, str]:
    for name in ("a.jpg", "b.jpg"):
        _jpeg(root / name)
    second = [[1, "x", 5, 1, 5, 4]] if broken else [[2, 2, 6, 2, 6, 5]]
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6},
                      {"id": 2, "file_name": "b.jpg", "width": 8, "height": 6}],
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 4]],
                            "area": 6, "bbox": [1, 1, 4, 3], "iscrowd": 0},
                           {"id": 2, "image_id": 2, "category_id": 2, "segmentation": second,
                            "area": 6, "bbox": [2, 2, 4, 3], "iscrowd": 0}]}
    (root / "instances_default.json").write_text(json.dumps(doc))
    return str(root / "instances_default.json"), {}, "default/b.jpg"


def _cvat(root: Path, broken: bool) -> tuple[str, dict, str]:
    for name in ("a.jpg", "b.jpg"):
        _jpeg(root / "images" / name)
    points = "1,1;5,x;5,4" if broken else "2,2;6,2;6,5"
    (root / "annotations.xml").write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
  <meta><task><labels>
    <label><name>cat</name><color>#ff0000</color><type>polygon</type><attributes/></label>
    <label><name>dog</name><color>#00ff00</color><type>polygon</type><attributes/></label>
  </labels></task></meta>
  <image id="0" name="a.jpg" width="8" height="6">
    <polygon label="cat" occluded="0" source="manual" points="1,1;5,1;5,4" z_order="0"/></image>
  <image id="1" name="b.jpg" width="8" height="6">
    <polygon label="dog" occluded="0" source="manual" points="{points}" z_order="0"/></image>
</annotations>
""")
    return str(root / "annotations.xml"), {}, "default/b.jpg"


def _cvat_masks(root: Path, broken: bool) -> tuple[str, dict, str]:
    voc = root / "voc"
    (voc / "SegmentationClass").mkdir(parents=True)
    (voc / "labelmap.txt").write_text("background:0,0,0::\ncat:255,0,0::\ndog:0,255,0::\n")
    for name, colour in (("a", (255, 0, 0)), ("b", (7, 7, 7) if broken else (0, 255, 0))):
        mask = np.zeros((6, 8, 3), np.uint8)
        mask[1:4, 2:6] = colour
        (voc / "SegmentationClass" / f"{name}.png").write_bytes(encode_png(mask))
        _jpeg(voc / "JPEGImages" / f"{name}.jpg")
    return str(voc), {}, "default/b.jpg"


PROJECTS: dict[str, Callable[[Path, bool], tuple[str, dict, str]]] = {
    # reader -> builder(root, broken) of a tiny project: (url, reader options, the item that a
    # broken build breaks, as "<dataset>/<item>"); a new reader must add its own
    "supervisely": _supervisely,
    "coco": _coco,
    "cvat": _cvat,
    "cvat-masks": _cvat_masks,
}
MISSING = {"supervisely": "nope", "coco": "nope.json", "cvat": "nope.xml", "cvat-masks": "nope"}


def test_every_registered_reader_is_covered():
    assert sorted(PROJECTS) == sorted(READERS) == sorted(MISSING), "add the new reader's tiny project"


def _open(name: str, tmp_path: Path, broken: bool = False, tag: str = "p"):
    root = tmp_path / tag
    root.mkdir()
    url, options, bad = PROJECTS[name](root, broken)
    return open_source(name, url, None, **options), bad


def read_everything(source, meta) -> tuple:
    """Listing, then per item: annotation bytes, parsed annotation (Supervisely JSON) or the
    item's error, image bytes: plain data, comparable (run in a Dask worker too)."""
    from maskcore.codec.sly_json import annotation_json_bytes
    from maskcore.errors import ItemError
    from maskcore.limits import MAX_PIXELS

    table = source.list_items()
    items = []
    for row in table.to_pylist():
        where = f"{row['dataset']}/{row['item']}"
        if row.get("problem") or (row.get("ann_inline") is None and not row.get("ann_path")):
            items.append((where, None, None, None))
            continue
        data = source.item_annotation(row)
        try:
            parsed = annotation_json_bytes(source.parse_annotation(data, meta, where, max_bitmap_pixels=MAX_PIXELS))
        except ItemError as exc:
            parsed = f"{type(exc).__name__}: {exc}".encode()
        image = source.read_bytes(row["img_path"]) if row.get("img_path") else None
        items.append((where, data, parsed, image))
    return table, items


@pytest.mark.parametrize("name", sorted(READERS))
def test_shape_of_a_source(name, tmp_path):
    source, _ = _open(name, tmp_path)
    assert isinstance(source, Source) and isinstance(source, SourceBase)
    assert isinstance(source.annotation_format, str) and source.annotation_format
    assert isinstance(source.project_name, str)
    assert source.project_id is None or isinstance(source.project_id, int)
    assert all(isinstance(w, str) for w in source.warnings)
    meta = source.read_meta()
    assert isinstance(meta.raw, dict) and [c.title for c in meta.classes] == [c["title"] for c in meta.raw["classes"]]
    table = source.list_items()
    assert {"dataset", "item", "img_path"} <= set(table.column_names)
    assert {"ann_path", "ann_inline"} & set(table.column_names)
    keys = list(zip(table.column("dataset").to_pylist(), table.column("item").to_pylist()))
    assert keys and keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_project_reads_the_same_every_time(name, tmp_path):
    first, _ = _open(name, tmp_path)
    meta = first.read_meta()
    table, items = read_everything(first, meta)
    again = open_source(name, first.url)
    assert again.read_meta() == meta and again.read_meta().raw == meta.raw
    table2, items2 = read_everything(again, again.read_meta())
    assert table2.equals(table) and items2 == items
    assert all(parsed is not None and not parsed.startswith(b"AnnotationError") for _, _, parsed, _ in items)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_source_pickles_without_its_filesystem(name, tmp_path):
    source, _ = _open(name, tmp_path)
    meta = source.read_meta()
    expected = read_everything(source, meta)
    state = source.__getstate__()
    assert state["_fs"] is None and state["url"] == source.url
    copy = pickle.loads(pickle.dumps(source))
    table, items = read_everything(copy, meta)
    assert table.equals(expected[0]) and items == expected[1]


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_broken_annotation_fails_its_item_by_name(name, tmp_path):
    source, bad = _open(name, tmp_path, broken=True)
    meta = source.read_meta()
    table, items = read_everything(source, meta)
    errors = {where: parsed for where, _, parsed, _ in items if parsed is not None and not parsed.startswith(b"{")}
    assert list(errors) == [bad], f"expected only {bad!r} to fail, got {errors}"
    assert errors[bad].split(b": ", 2)[1].startswith(bad.encode()), errors[bad]
    row = next(r for r in table.to_pylist() if f"{r['dataset']}/{r['item']}" == bad)
    with pytest.raises(ItemError) as caught:
        source.parse_annotation(source.item_annotation(row), meta, bad, max_bitmap_pixels=2**28)
    assert caught.value.where.startswith(bad)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_missing_project_is_a_project_error_naming_it(name, tmp_path):
    missing = tmp_path / "gone" / MISSING[name]
    with pytest.raises(ProjectError, match="gone"):
        source = open_source(name, str(missing))
        source.read_meta()
        source.list_items()


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_dask_worker_reads_what_the_driver_reads(name, tmp_path, dask_client):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this module
    source, _ = _open(name, tmp_path)
    meta = source.read_meta()
    table, items = read_everything(source, meta)
    remote_table, remote_items = dask_client.submit(read_everything, source, meta, pure=False).result()
    assert remote_table.equals(table) and remote_items == items
