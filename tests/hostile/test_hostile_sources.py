"""Hostile COCO, CVAT XML and Segmentation mask sources end to end (``run_export`` on the
session's Dask cluster, and the command line in-process on it): bad annotations fail their item alone,
named with the object and the reason, the good items are exported exactly as from a clean
source; hostile zips given to ``maskcore import`` are refused (exit 1, a clear message, no
traceback) and nothing is written anywhere; image names that climb out of the image folder are
never read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.oracles import load
from maskcore.errors import ProjectError, UnsafePathError
from maskcore.exec.run import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, ExportConfig, run_export
from maskcore.readers.coco import CocoSource

from .projects import (
    coco_doc,
    files_under,
    raw_zip,
    rgb_png,
    snapshot,
    voc_masks_files,
    zip_of,
)

H, W = 10, 12
SECRET = rgb_png(H, W, seed=99)      # an image outside the source: must never be read


def _rows(result) -> dict:
    return {r["item"]: r for r in result.manifest.to_pylist()}


def _export(src: Path, dst: Path, client, **kw):
    return run_export(ExportConfig(str(src), str(dst), **kw), log=lambda m: None, client=client)


def _same_outputs(a_root: Path, a_rows: dict, b_root: Path, b_rows: dict, items) -> None:
    for item in items:
        assert a_rows[item]["status"] == b_rows[item]["status"] == "ok", item
        assert a_rows[item]["outputs"] == b_rows[item]["outputs"], item
        for o in a_rows[item]["outputs"]:
            assert (a_root / o["path"]).read_bytes() == (b_root / o["path"]).read_bytes()


# --- COCO ----------------------------------------------------------------------------------------

GOOD_COCO = [  # (file_name, annotations)
    ("a.png", [{"category_id": 1, "segmentation": [[1, 1, 9, 1, 5, 8]]},
               {"category_id": 2, "segmentation": [], "bbox": [0, 0, 4, 3]}]),
    ("b.png", [{"category_id": 2, "segmentation": {"size": [H, W], "counts": [13, 5, 5, 5, 92]}}]),
    ("c.png", []),
]
BAD_COCO = {  # file_name: (annotations, what the error must say)
    "unknown_category.png": ([{"category_id": 7, "segmentation": [[1, 1, 5, 1, 3, 4]]}],
                             "/object 0: category_id: expected one of the 2 category ids"),
    "odd_ring.png": ([{"category_id": 1, "segmentation": [[1, 1, 5, 1, 3, 4]]},
                      {"category_id": 1, "segmentation": [[1, 1, 5, 1, 3]]}],
                     "/object 1: segmentation[0]: expected an even number"),
    "two_points.png": ([{"category_id": 1, "segmentation": [[1, 1, 5, 1]]}],
                       "/object 0: segmentation[0]: expected a ring of at least 3 points, got 2"),
    "nan.png": ([{"category_id": 1, "segmentation": [[1, float("nan"), 5, 1, 3, 4]]}],
                "/object 0: segmentation[0][1]: expected a finite number"),
    "huge.png": ([{"category_id": 1, "segmentation": [[1, 1e300, 5, 1, 3, 4]]}],
                 "/object 0: segmentation[0][1]: expected a finite number of magnitude"),
    "string_coord.png": ([{"category_id": 2, "segmentation": [], "bbox": ["0", 0, 1, 1]}],
                         "/object 0: bbox[0]: expected a finite number"),
    "rle_size.png": ([{"category_id": 1, "segmentation": {"size": [5, 5], "counts": [25]}}],
                     "/object 0: segmentation.size: expected [height, width] of the image"),
    "rle_sum.png": ([{"category_id": 1, "segmentation": {"size": [H, W], "counts": [1, 2]}}],
                    "/object 0: segmentation.counts: expected run lengths adding up"),
    "rle_garbage.png": ([{"category_id": 1, "segmentation": {"size": [H, W], "counts": "~~~"}}],
                        "/object 0: segmentation.counts: not COCO compressed RLE"),
    "negative_box.png": ([{"category_id": 2, "bbox": [0, 0, -4, 3]}],
                         "/object 0: bbox: expected [x, y, width, height] with width, height >= 0"),
    "not_an_object.png": ([{"category_id": 1, "segmentation": 5}],
                          "/object 0: segmentation: expected a list of rings or an RLE object, got int"),
}


def _coco_source(root: Path, entries, with_bad_image_sizes: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)   # images next to the JSON (the default folder)
    images, annotations = [], []
    for i, (name, anns) in enumerate(entries):
        images.append({"id": i + 1, "file_name": name, "height": H, "width": W})
        (root / name).write_bytes(rgb_png(H, W, seed=i))
        annotations += [{"id": len(annotations) + j + 1, "image_id": i + 1, **a}
                        for j, a in enumerate(anns)]
    if with_bad_image_sizes:
        images.append({"id": 100, "file_name": "zero_height.png", "height": 0, "width": W})
        (root / "zero_height.png").write_bytes(rgb_png(H, W))
    path = root / "instances_val.json"
    path.write_text(json.dumps(coco_doc(images, annotations), allow_nan=True))
    return path


@pytest.fixture(scope="module")
def coco_runs(tmp_path_factory, dask_client):
    base = tmp_path_factory.mktemp("coco")
    hostile = _coco_source(base / "src", GOOD_COCO + [(n, a) for n, (a, _) in BAD_COCO.items()])
    clean = _coco_source(base / "clean", GOOD_COCO, with_bad_image_sizes=False)
    before = snapshot(base)
    bad = _export(hostile, base / "out", dask_client, reader="coco", items_per_partition=3)
    good = _export(clean, base / "clean_out", dask_client, reader="coco")
    return base, before, bad, good


def test_coco_bad_annotations_fail_alone_named_with_their_reason(coco_runs):
    base, before, bad, good = coco_runs
    assert bad.exit_code == EXIT_PARTIAL and good.exit_code == EXIT_OK
    rows = _rows(bad)
    failed = {item for item, r in rows.items() if r["status"] == "failed"}
    assert failed == set(BAD_COCO) | {"zero_height.png"}
    for name, (_, message) in BAD_COCO.items():
        assert rows[name]["error"].startswith(f"val/{name}{message}"), rows[name]["error"]
        assert "Traceback" not in rows[name]["error"] and rows[name]["outputs"] == []
    assert rows["zero_height.png"]["error"] == ("val/zero_height.png: image.height: expected an "
                                                "integer in 1..2**31, got 0")
    assert sorted(f["item"] for f in bad.report["failures"]) == sorted(failed)
    _same_outputs(base / "out", rows, base / "clean_out", _rows(good), [n for n, _ in GOOD_COCO])
    listed = {o["path"] for r in rows.values() for o in r["outputs"]}
    assert listed <= files_under(base / "out")
    after = snapshot(base)
    changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
    assert all(p.startswith((str(base / "out") + "/", str(base / "clean_out") + "/"))
               for p in changed)


def test_coco_good_item_pixels_match_pycocotools(coco_runs):
    from PIL import Image
    cm = load("pycocotools.mask")
    base, _, bad, _ = coco_runs
    rle = cm.frPyObjects({"size": [H, W], "counts": [13, 5, 5, 5, 92]}, H, W)
    expected = cm.decode(rle).astype(bool)
    machine = [o["path"] for o in _rows(bad)["b.png"]["outputs"] if "masks_machine" in o["path"]]
    got = np.asarray(Image.open(base / "out" / machine[0]))
    got = got if got.ndim == 2 else got[..., 0]
    assert np.array_equal(got == 2, expected) and not (got == 1).any()   # dog = class 2


def test_cli_coco_partial_exit_without_traceback(tmp_path, cli):
    src = _coco_source(tmp_path / "src", GOOD_COCO[:1] + [
        (n, BAD_COCO[n][0]) for n in ("nan.png", "rle_garbage.png", "not_an_object.png")],
        with_bad_image_sizes=False)
    proc = cli("export", src, tmp_path / "out", "--workers", "1")
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "1 written" in proc.stderr and "3 failed" in proc.stderr
    report = json.loads((tmp_path / "out/.maskcore-meta/report.json").read_text())
    errors = {f["item"]: f["error"] for f in report["failures"]}
    assert sorted(errors) == ["nan.png", "not_an_object.png", "rle_garbage.png"]
    for name, error in errors.items():
        assert error.startswith(f"val/{name}{BAD_COCO[name][1]}"), error


# --- CVAT XML ------------------------------------------------------------------------------------

_LABELS = ("<meta><task><labels><label><name>car</name><color>#ff0000</color><type>any</type>"
           "</label><label><name>road</name><color>#00ff00</color><type>any</type></label>"
           "</labels></task></meta>")
GOOD_CVAT = {
    "a.png": ('<polygon label="car" points="1,1;9,1.5;5,8" z_order="1"/><box label="road" xtl="0" '
              'ytl="0" xbr="4" ybr="3"/>'),
    "b.png": ('<mask label="road" left="2" top="3" width="3" height="2" rle="1, 4, 1"/>'
              '<ellipse label="car" cx="6" cy="5" rx="3" ry="2"/>'),
}
BAD_CVAT = {
    "two_points.png": ('<polygon label="car" points="1,1;2,2"/>',
                       "/object 0: points: expected at least 3 points for a <polygon>, got 2"),
    "inverted_box.png": ('<box label="car" xtl="5" ytl="0" xbr="1" ybr="3"/>',
                         "/object 0: box: expected xtl <= xbr and ytl <= ybr"),
    "rle_sum.png": ('<box label="car" xtl="0" ytl="0" xbr="1" ybr="1"/>'
                    + '<mask label="road" left="0" top="0" width="3" height="2" rle="1, 2"/>',
                    "/object 1: rle: expected run lengths summing to width*height = 6, got 3"),
    "nan.png": ('<polyline label="car" points="1,nan;2,2"/>',
                "/object 0: points[0]: expected a number, got 'nan'"),
    "unknown.png": ('<box label="truck" xtl="0" ytl="0" xbr="1" ybr="1"/>',
                    "/object 0: label: expected one of the 2 classes of the project, got 'truck'"),
    "cuboid.png": ('<cuboid label="car" xtl1="0"/>', "/object 0: <cuboid>: unsupported shape"),
    "mask_bomb.png": ('<mask label="car" left="0" top="0" width="100000" height="100000" rle="1"/>',
                      "/object 0: mask: expected at most"),
}


def _cvat_source(root: Path, images: dict, extra: str = "") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    body = []
    for i, (name, shapes) in enumerate(images.items()):
        body.append(f'<image id="{i}" name="{name}" width="{W}" height="{H}">{shapes}</image>')
        (root / "images" / name).write_bytes(rgb_png(H, W, seed=i))
    (root / "annotations.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version>{_LABELS}'
        f'{"".join(body)}{extra}</annotations>')
    return root


def test_cvat_bad_shapes_fail_alone_and_good_images_export_exactly(tmp_path, dask_client):
    hostile = _cvat_source(tmp_path / "src", {**GOOD_CVAT, **{n: s for n, (s, _) in BAD_CVAT.items()}})
    clean = _cvat_source(tmp_path / "clean", GOOD_CVAT)
    bad = _export(hostile, tmp_path / "out", dask_client, reader="cvat", items_per_partition=3)
    good = _export(clean, tmp_path / "clean_out", dask_client, reader="cvat")
    assert bad.exit_code == EXIT_PARTIAL and good.exit_code == EXIT_OK
    rows = _rows(bad)
    assert {i for i, r in rows.items() if r["status"] == "failed"} == set(BAD_CVAT)
    for name, (_, message) in BAD_CVAT.items():
        assert rows[name]["error"].startswith(f"default/{name}{message}"), rows[name]["error"]
    _same_outputs(tmp_path / "out", rows, tmp_path / "clean_out", _rows(good), GOOD_CVAT)


# --- image names that climb out -------------------------------------------------------------------

def test_image_names_outside_the_image_folder_are_never_read(tmp_path, dask_client):
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret.png"
    secret.write_bytes(SECRET)
    names = ["../outside/secret.png", "../../outside/secret.png", str(secret), "/etc/passwd",
             "images/../../outside/secret.png", "..\\outside\\secret.png"]
    src = tmp_path / "proj"
    (src / "images").mkdir(parents=True)
    (src / "images" / "ok.png").write_bytes(rgb_png(H, W, seed=1))
    images = [{"id": i, "file_name": n, "height": H, "width": W} for i, n in enumerate(["ok.png"] + names)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "segmentation": [[1, 1, 8, 1, 4, 7]]}
                   for i in range(len(images))]
    (src / "ann").mkdir()
    (src / "ann" / "instances_x.json").write_text(json.dumps(coco_doc(images, annotations)))
    source = CocoSource.open_source(str(src / "ann" / "instances_x.json"), images=str(src / "images"))
    listed = {r["item"]: r["img_path"] for r in source.list_items().to_pylist()}
    assert listed["ok.png"] == "ok.png" and all(listed[n] is None for n in names), listed
    result = _export(src / "ann" / "instances_x.json", tmp_path / "out", dask_client, reader="coco",
                     reader_options={"images": str(src / "images")})
    rows = _rows(result)
    assert rows["ok.png"]["status"] == "ok" and result.exit_code == EXIT_PARTIAL
    for n in names:   # the human preview needs the photo: the item fails, the secret is not read
        assert rows[n]["status"] == "failed" and "image file is missing" in rows[n]["error"], rows[n]
        assert rows[n]["img_sha256"] is None
    for path in files_under(tmp_path / "out"):
        assert SECRET not in (tmp_path / "out" / path).read_bytes()
    # CVAT XML: an <image name> that climbs out is looked up in the listing only, never opened.
    cvat = _cvat_source(tmp_path / "cvat", {"ok.png": GOOD_CVAT["a.png"]},
                        extra='<image id="9" name="../outside/secret.png" width="12" height="10"/>')
    from maskcore.readers.cvat_xml import CvatXmlSource
    rows = {r["item"]: r["img_path"] for r in CvatXmlSource.open_source(str(cvat)).list_items().to_pylist()}
    assert rows == {"ok.png": "ok.png", "../outside/secret.png": None}


# --- hostile zips to `maskcore import` ----------------------------------------------------------

def _voc_members() -> dict[str, bytes]:
    return {f"export/{k}": v for k, v in voc_masks_files().items() if not k.startswith("JPEG")}


_S_IFLNK = 0o120777 << 16
HOSTILE_ZIPS = {
    "dotdot": (lambda: zip_of({**_voc_members(), "export/../../evil.txt": b"x"}),
               "climbs out with '..'"),
    "absolute": (lambda: zip_of({**_voc_members(), "/tmp/evil.txt": b"x"}),
                 "expected a relative name, got an absolute one"),
    "drive": (lambda: zip_of({**_voc_members(), "C:/evil.txt": b"x"}), "drive letter"),
    "symlink": (lambda: raw_zip([{"name": b"export/SegmentationClass/a.png", "data": b"/etc/passwd",
                                  "attr": _S_IFLNK}]), "got a symbolic link"),
    "ratio_bomb": (lambda: zip_of({**_voc_members(), "export/SegmentationClass/z.png": bytes(20 << 20)}),
                   "expected a compression ratio of at most 1000"),
    "declared_bomb": (lambda: raw_zip([{"name": b"export/labelmap.txt", "data": b"\x03\x00",
                                        "method": 8, "file_size": 2**32 - 1, "plain": b""}]),
                      "expected at most 2147483648 bytes, got a declared size of 4294967295"),
    "overlap": (lambda: raw_zip([{"name": b"export/SegmentationClass/a.png", "data": b"A" * 100},
                                 {"name": b"export/SegmentationClass/b.png", "data": b"A" * 100,
                                  "offset": 0}]), "overlap"),
    "case_duplicate": (lambda: zip_of({**_voc_members(), "export/LABELMAP.txt": b"a:1,2,3::",
                                       "export/labelmap.txt": b"b:1,2,3::"}),
                       "differing only by case"),
    "not_a_zip": (lambda: b"PK\x03\x04" + bytes(100), "expected a zip archive"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_import_refuses_hostile_zips_and_writes_nothing(case, tmp_path, dask_client):
    make, message = HOSTILE_ZIPS[case]
    src = tmp_path / "in" / "hostile.zip"
    src.parent.mkdir()
    src.write_bytes(make())
    before = snapshot(tmp_path)
    with pytest.raises((ProjectError, UnsafePathError)) as err:
        _export(src, tmp_path / "dst", dask_client, reader="cvat-masks", layout="supervisely-project")
    assert message in str(err.value) and "hostile.zip" in str(err.value), str(err.value)
    assert snapshot(tmp_path) == before and not (tmp_path / "dst").exists()


@pytest.mark.parametrize("case", ["dotdot", "ratio_bomb"])
def test_cli_import_refuses_hostile_zip_with_exit_1(case, tmp_path, cli):
    make, message = HOSTILE_ZIPS[case]
    src = tmp_path / "hostile.zip"
    src.write_bytes(make())
    before = snapshot(tmp_path.parent)
    proc = cli("import", src, tmp_path / "dst", "--workers", "1")
    assert proc.returncode == EXIT_FATAL, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("maskcore: error: project ") and message in proc.stderr
    assert snapshot(tmp_path.parent) == before


def test_import_of_a_good_zip_stays_inside_the_destination(tmp_path, dask_client):
    src = tmp_path / "good.zip"
    src.write_bytes(zip_of({**_voc_members(), **{f"export/{k}": v for k, v in voc_masks_files().items()
                                                  if k.startswith("JPEG")}}))
    before = snapshot(tmp_path)
    result = _export(src, tmp_path / "dst", dask_client, reader="cvat-masks", layout="supervisely-project")
    assert result.exit_code == EXIT_OK and result.report["items"]["written"] == 3
    after = snapshot(tmp_path)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed and all(p.startswith(str(tmp_path / "dst") + "/") for p in changed)


def test_voc_folder_name_that_is_not_utf8_fails_alone(tmp_path, dask_client):
    """A local folder can hold a file name that is not UTF-8: once an uncaught UnicodeEncodeError
    (a traceback from `maskcore import`), now that item fails by a printable name."""
    src = tmp_path / "voc"
    files = voc_masks_files()
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    bad = bytes(src / "SegmentationClass") + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write(files["SegmentationClass/2011_000003.png"])
    result = _export(src, tmp_path / "dst", dask_client, reader="cvat-masks", layout="supervisely-project")
    rows = _rows(result)
    assert result.exit_code == EXIT_PARTIAL and len(rows) == 4
    assert rows["caf\\udce9.png"]["error"] == ("default/caf\\udce9.png: file name 'caf\\\\udce9.png' "
                                               "(list 'default') is not valid UTF-8; rename it")
    assert all(r["status"] == "ok" for n, r in rows.items() if n != "caf\\udce9.png")


# --- annotation size bounds -----------------------------------------------------------------------

def _sparse(path: Path, size: int) -> Path:
    """A file that declares ``size`` bytes and takes no disk space (a sparse file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_huge_coco_json_is_refused_by_its_size_before_reading(tmp_path):
    """The instances JSON is streamed (issue 17): above its limit (64 GiB by default, reader option
    ``max_json_bytes``) it is refused by its listed size, in no time and without reading it."""
    import time

    from maskcore.readers.coco import DEFAULT_MAX_JSON_BYTES
    path = _sparse(tmp_path / "instances_x.json", DEFAULT_MAX_JSON_BYTES + 1)
    started = time.perf_counter()
    with pytest.raises(ProjectError, match=f"expected at most {DEFAULT_MAX_JSON_BYTES} bytes .*got "
                                           f"{DEFAULT_MAX_JSON_BYTES + 1}"):
        CocoSource.open_source(str(path))
    assert time.perf_counter() - started < 2
    small = tmp_path / "instances_y.json"
    small.write_text(json.dumps(coco_doc([], [])))
    with pytest.raises(ProjectError, match="expected at most 10 bytes"):
        CocoSource.open_source(str(small), max_json_bytes=10)
    assert CocoSource.open_source(str(small)).list_items().num_rows == 0


def test_a_2gb_cvat_xml_is_refused_by_its_size_before_reading(tmp_path):
    from maskcore.readers.cvat_xml import CvatXmlSource
    _sparse(tmp_path / "task" / "annotations.xml", 2**31 + 1)
    src = CvatXmlSource.open_source(str(tmp_path / "task"), max_xml_bytes=2**30)  # streamed: 64 GiB by default
    with pytest.raises(ProjectError, match=f"expected annotations.xml of at most {2**30} bytes"):
        src.read_meta()


def test_huge_voc_labelmap_and_list_files_are_refused_by_their_size(tmp_path):
    """labelmap.txt and ImageSets lists are read whole on the driver: over 64 MiB they are
    refused by their listed size, without reading (once: read whole, unbounded, from a folder)."""
    from maskcore.readers.voc_masks import MAX_TEXT_BYTES, VocMasksSource
    for rel, data in voc_masks_files().items():
        (tmp_path / "voc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "voc" / rel).write_bytes(data)
    _sparse(tmp_path / "voc" / "ImageSets" / "Segmentation" / "train.txt", MAX_TEXT_BYTES + 1)
    src = VocMasksSource.open_source(str(tmp_path / "voc"))
    assert len(src.read_meta().classes) == 20
    with pytest.raises(ProjectError, match=f"ImageSets/Segmentation/train.txt of .*: expected a text "
                                           f"file of at most {MAX_TEXT_BYTES} bytes, got "
                                           f"{MAX_TEXT_BYTES + 1}"):
        src.list_items()
    _sparse(tmp_path / "voc" / "labelmap.txt", 2**31)
    with pytest.raises(ProjectError, match="labelmap.txt of .*: expected a text file of at most"):
        VocMasksSource.open_source(str(tmp_path / "voc")).read_meta()


def test_an_annotation_above_the_size_limit_fails_its_item_before_it_is_read(tmp_path, monkeypatch):
    """The listing's size decides: the worker never reads an oversized annotation."""
    from maskcore.errors import LimitError
    from maskcore.exec import task
    monkeypatch.setattr(task, "MAX_ANNOTATION_BYTES", 10)

    class Source:
        def item_annotation(self, row):
            raise AssertionError("read")

    spec = task.TaskSpec(source=Source(), sink=None, layout=None, meta=None)
    row = {"dataset": "ds", "item": "a.jpg", "ann_path": "ds/ann/a.jpg.json", "ann_bytes": 11}
    import pytest as _pytest
    with _pytest.raises(LimitError, match="11 bytes is above the limit of 10 bytes"):
        task._read_inputs(spec, row)
