"""Broken and hostile items: each fails alone, named with its reason; every other item is
exported exactly as it would be without them (issue 6). Driven through ``run_export`` on the
session's real Dask cluster, and once through the command line as a user runs it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from maskcore.exec.run import EXIT_OK, EXIT_PARTIAL, ExportConfig, run_export

from .projects import (
    CLASSES,
    META,
    ann,
    files_under,
    good_annotation,
    png_header_only,
    polygon,
    rectangle,
    rgb_png,
    snapshot,
    write_project,
)

H, W = 10, 12
IMG = rgb_png(H, W, seed=7)
FILLERS = [{"title": f"filler{i:03d}", "shape": "rectangle", "color": "#0A0A0A"} for i in range(300)]
META_300 = {**META, "classes": CLASSES + FILLERS}   # "filler293" is class 301: not 8-bit encodable

GOOD = {("ds", "good_a.png"): (good_annotation(1), rgb_png(H, W, 1)),
        ("ds", "good_b.jpg"): (good_annotation(2), rgb_png(H, W, 2)),
        ("top/child", "good_c.png"): (good_annotation(3), rgb_png(H, W, 3))}


def _bitmap(data: str) -> dict:
    return {"classTitle": "bmp", "tags": [], "bitmap": {"origin": [0, 0], "data": data}}


def _raw(objects_json: str, h=H, w=W) -> bytes:
    return (f'{{"size": {{"height": {h}, "width": {w}}}, "tags": [], '
            f'"objects": [{objects_json}]}}').encode()


def _raw_poly(point: str) -> bytes:
    return _raw(f'{{"classTitle": "poly", "points": {{"exterior": [{point}, [1, 2], [5, 5]]}}}}')


_ZLIB_BOMB = base64.b64encode(zlib.compress(png_header_only(10, 10) + b"\0" * (64 << 20), 9)).decode()

# item -> (annotation, image, error type, [substrings of the error after "ds/<item>"])
# The object index, when there is one, is part of the location: "ds/<item>/object <i>: ...".
BAD = {
    "not_json.png": (b"{nope", IMG, "AnnotationError", [": expected JSON"]),
    "not_utf8.png": (b"\xff\xfe\x00{", IMG, "AnnotationError", [": expected JSON"]),
    "not_object.png": ([1, 2], IMG, "AnnotationError", [": expected a JSON object, got list"]),
    "too_deep.png": (b"[" * 100_000 + b"]" * 100_000, IMG, "AnnotationError", [": expected JSON"]),
    "no_size.png": ({"objects": []}, IMG, "AnnotationError", [": expected 'size'"]),
    "no_objects.png": ({"size": {"height": H, "width": W}}, IMG, "AnnotationError",
                       [": expected 'objects' to be a list"]),
    "size_negative.png": (ann(-5, W, []), IMG, "AnnotationError", [": size.height", "got -5"]),
    "size_zero.png": (ann(H, 0, []), IMG, "AnnotationError", [": size.width", "got 0"]),
    "size_string.png": (ann("10", W, []), IMG, "AnnotationError", [": size.height", "'10'"]),
    "size_absurd.png": (ann(2**40, W, []), IMG, "AnnotationError", [": size.height", str(2**40)]),
    "canvas_limit.png": (ann(20_000, 20_000, [polygon()]), IMG, "LimitError",
                         [": canvas 20000x20000", "400000000 pixels", "max_canvas_pixels"]),
    "coord_string.png": (ann(H, W, [polygon(), polygon(pts=[("1", 2), (3, 4), (5, 5)])]), IMG,
                         "AnnotationError", ["/object 1: points.exterior[0]", "'1'"]),
    "coord_nan.png": (_raw_poly("[NaN, 1]"), IMG, "AnnotationError", ["/object 0: ", "finite"]),
    "coord_inf.png": (_raw_poly("[1, -Infinity]"), IMG, "AnnotationError", ["/object 0: ", "finite"]),
    "coord_huge.png": (_raw_poly("[1e300, 1]"), IMG, "AnnotationError", ["/object 0: ", "1e+300"]),
    "coord_bigint.png": (_raw_poly(f"[{10**40}, 1]"), IMG, "AnnotationError",
                         ["/object 0: ", "finite"]),
    "coord_int32.png": (ann(H, W, [polygon(pts=[(0, 0), (2**31, 3), (4, 8)])]), IMG,
                        "AnnotationError", ["/object 0: cannot draw this polygon", "int32"]),
    "graph_int32.png": (ann(H, W, [{"classTitle": "skel", "nodes": {"a": {"loc": [2**31, 1]},
                                                                    "b": {"loc": [3, 3]}}}]),
                        IMG, "AnnotationError", ["/object 0: cannot draw this graph", "int32"]),
    "unknown_class.png": (ann(H, W, [polygon(), rectangle(), polygon("unicorn")]), IMG,
                          "UnknownClassError", ["/object 2: classTitle", "'unicorn'"]),
    "class_not_str.png": (ann(H, W, [{"classTitle": 5, "points": {}}]), IMG, "UnknownClassError",
                          ["/object 0: classTitle", "got 5"]),
    "object_not_dict.png": (ann(H, W, [polygon(), 5]), IMG, "AnnotationError",
                            ["/object 1: expected an object, got int"]),
    "payload_mismatch.png": (ann(H, W, [{"classTitle": "poly", "bitmap": {"origin": [0, 0],
                                                                         "data": "AAAA"}}]),
                             IMG, "AnnotationError", ["/object 0: missing field 'points'"]),
    "polygon_2pts.png": (ann(H, W, [polygon(pts=[(0, 0), (5, 5)])]), IMG, "AnnotationError",
                         ["/object 0: points.exterior", "at least 3 points, got 2"]),
    "any_bad_type.png": (ann(H, W, [{"classTitle": "anything", "geometryType": [1]}]), IMG,
                         "AnnotationError", ["/object 0: geometryType", "[1]"]),
    "graph_bad_node.png": (ann(H, W, [{"classTitle": "skel", "nodes": {"zz": {"loc": [1, 1]}}}]),
                           IMG, "AnnotationError", ["/object 0: nodes", "'zz'"]),
    "tags_not_list.png": ({**ann(H, W, []), "tags": "x"}, IMG, "AnnotationError", [": expected 'tags'"]),
    "missing_image.png": (good_annotation(4), None, "MissingImageError", [": the image file is missing"]),
    "no_annotation.png": (None, IMG, "AnnotationError", [": the image has no annotation file"]),
    "image_garbage.png": (good_annotation(5), bytes(range(256)) * 4, "ImageDecodeError", [": "]),
    "image_truncated.png": (good_annotation(6), IMG[:len(IMG) // 2], "ImageDecodeError", [": "]),
    "image_bomb.png": (good_annotation(7), png_header_only(100_000, 100_000), "LimitError",
                       [": image is 100000x100000"]),
    "bitmap_not_base64.png": (ann(H, W, [_bitmap("abcde")]), IMG, "AnnotationError",
                              ["/object 0: bitmap.data: expected base64"]),
    "bitmap_not_zlib.png": (ann(H, W, [_bitmap(base64.b64encode(b"hello world").decode())]), IMG,
                            "AnnotationError", ["/object 0: bitmap.data: expected base64 of zlib(PNG)"]),
    "bitmap_not_png.png": (ann(H, W, [_bitmap(base64.b64encode(zlib.compress(b"hello")).decode())]),
                           IMG, "AnnotationError", ["/object 0: bitmap.data: expected a PNG"]),
    "bitmap_bomb.png": (ann(H, W, [_bitmap(base64.b64encode(zlib.compress(
                            png_header_only(100_000, 100_000))).decode())]),
                        IMG, "LimitError", ["/object 0: bitmap.data", "100000x100000"]),
    "bitmap_zlib_bomb.png": (ann(H, W, [polygon(), _bitmap(_ZLIB_BOMB)]), IMG, "LimitError",
                             ["/object 1: bitmap.data: zlib stream expands beyond"]),
    "class_301.png": (ann(H, W, [polygon(), rectangle("filler293")]), IMG, "LimitError",
                      ["/object 1: class 'filler293' is class 301", "255"]),
}
MISMATCH = ("ds", "mismatch.png")   # image 8x15 (HxW), annotation 10x12: exported, with a warning
NOT_UTF8 = b"caf\xe9.png"           # listed as "caf\\xe9.png", fails by name


def _hostile_project(root: Path) -> Path:
    items = dict(GOOD)
    items.update({("ds", name): (a, img) for name, (a, img, _, _) in BAD.items()})
    items[MISMATCH] = (good_annotation(8), rgb_png(8, 15, seed=8))
    items[("ds", NOT_UTF8)] = (good_annotation(9), IMG)
    return write_project(root, items, META_300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dask_client):
    """The hostile project and a clean one holding only its good items, both exported."""
    base = tmp_path_factory.mktemp("hostile")
    hostile = _hostile_project(base / "src")
    clean = write_project(base / "clean", GOOD, META_300)
    before = snapshot(base)
    # crop=none: the annotated geometry reaches the kernel (the default load-time crop would clip the
    # int32-overflowing vertices away, as the SDK does: test_sdk_crop_clips_what_the_kernel_refuses)
    bad = run_export(ExportConfig(str(hostile), str(base / "out"), items_per_partition=4,
                                  layout_options={"crop": "none"}),
                     log=lambda m: None, client=dask_client)
    good = run_export(ExportConfig(str(clean), str(base / "clean_out"), layout_options={"crop": "none"}),
                      log=lambda m: None, client=dask_client)
    return base, before, bad, good


def _rows(result) -> dict:
    return {(r["dataset"], r["item"]): r for r in result.manifest.to_pylist()}


def test_exit_code_is_partial_and_counts_add_up(runs):
    _, _, bad, good = runs
    assert good.exit_code == EXIT_OK
    assert bad.exit_code == EXIT_PARTIAL
    n_bad = len(BAD) + 1  # + the name that is not UTF-8
    assert bad.report["items"] == {"total": len(GOOD) + n_bad + 1, "written": len(GOOD) + 1,
                                   "unchanged": 0, "failed": n_bad}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_item_fails_alone_with_where_and_why(runs, name):
    _, _, bad, _ = runs
    _, _, error_type, parts = BAD[name]
    row = _rows(bad)[("ds", name)]
    assert row["status"] == "failed" and row["outputs"] == [] and row["bytes_written"] == 0
    assert row["error_type"] == error_type, row["error"]
    assert row["error"].startswith(f"ds/{name}"), row["error"]
    rest = row["error"][len(f"ds/{name}"):]
    assert rest.startswith(parts[0]), row["error"]
    for part in parts[1:]:
        assert part in rest, row["error"]
    assert "Traceback" not in row["error"] and "internal error" not in row["error"]


def test_report_and_manifest_list_every_failure(runs):
    base, _, bad, _ = runs
    report = json.loads((base / "out/.maskcore-meta/report.json").read_text())
    failed = {(f["dataset"], f["item"]): f["error"] for f in report["failures"]}
    assert set(failed) == {("ds", n) for n in BAD} | {("ds", "caf\\xe9.png")}
    manifest = pq.read_table(base / "out/.maskcore-meta/manifest.parquet").to_pylist()
    assert {(r["dataset"], r["item"]): r["error"] for r in manifest if r["status"] == "failed"} == failed


def test_name_that_is_not_utf8_fails_by_a_printable_name(runs):
    _, _, bad, _ = runs
    row = _rows(bad)[("ds", "caf\\xe9.png")]
    assert row["status"] == "failed" and row["error_type"] == "ItemSourceError"
    assert row["error"].startswith("ds/caf\\xe9.png: file name is not valid UTF-8")


def test_good_items_are_exported_exactly_as_without_the_bad_ones(runs):
    base, _, bad, good = runs
    rows, clean = _rows(bad), _rows(good)
    for key in GOOD:
        assert rows[key]["status"] == "ok" and rows[key]["warnings"] == []
        assert rows[key]["outputs"] == clean[key]["outputs"], key
        assert len(rows[key]["outputs"]) == 2 + 3 + 7  # ann, img, 3 mask kinds, 7 instances
    for name in ("meta.json", "obj_class_to_machine_color.json", "obj_class_to_semantic_color.json"):
        assert (base / "out" / name).read_bytes() == (base / "clean_out" / name).read_bytes()
    for key in GOOD:
        for o in rows[key]["outputs"]:
            assert hashlib.sha256((base / "out" / o["path"]).read_bytes()).hexdigest() == o["sha256"]


def test_files_written_are_exactly_the_manifest_and_nothing_else_changed(runs):
    base, before, bad, _ = runs
    listed = {o["path"] for r in bad.manifest.to_pylist() for o in r["outputs"]}
    assert files_under(base / "out") == listed | {
        "meta.json", "obj_class_to_machine_color.json", "obj_class_to_semantic_color.json"}
    after = snapshot(base)
    changed = {p for p in after if before.get(p) != after[p]} | set(before) - set(after)
    roots = (str(base / "out") + "/", str(base / "clean_out") + "/")
    assert all(p.startswith(roots) for p in changed), sorted(changed)[:5]


def test_image_size_mismatch_warns_and_uses_the_annotation_canvas(runs):
    base, _, bad, _ = runs
    row = _rows(bad)[MISMATCH]
    assert row["status"] == "ok"
    assert row["warnings"] == ["ds/mismatch.png: image is 15x8 (WxH) but the annotation says 12x10: "
                               "masks use the annotation's size; the preview crops or pads the "
                               "image to it"]
    out = base / "out" / "ds"
    machine = np.asarray(Image.open(out / "masks_machine/mismatch.png"))
    human = np.asarray(Image.open(out / "masks_human/mismatch.png"))
    assert machine.shape == (H, W) and human.shape == (H, 2 * W, 3)
    image = np.asarray(Image.open(io.BytesIO(rgb_png(8, 15, seed=8))))
    assert np.array_equal(human[:8, :W], image[:, :W])   # cropped on the right
    assert not human[8:, :W].any()                        # padded with black at the bottom


def test_missing_image_only_needed_for_the_copy_is_a_warning(tmp_path, dask_client):
    src = write_project(tmp_path / "src", {("ds", "a.png"): (good_annotation(1), None),
                                           ("ds", "b.png"): (good_annotation(2), IMG)})
    result = run_export(ExportConfig(str(src), str(tmp_path / "out"),
                                     layout_options={"masks": "machine,instance"}),
                        log=lambda m: None, client=dask_client)
    assert result.exit_code == EXIT_OK
    rows = _rows(result)
    assert rows[("ds", "a.png")]["warnings"] == [
        "ds/a.png: the image file is missing: masks written, no copy in img/"]
    assert (tmp_path / "out/ds/masks_machine/a.png").is_file()
    assert not (tmp_path / "out/ds/img/a.png").exists()
    assert rows[("ds", "b.png")]["warnings"] == []


def test_canvas_limit_is_a_layout_option(tmp_path, dask_client):
    src = write_project(tmp_path / "src", {("ds", "a.png"): (good_annotation(1), IMG)})
    result = run_export(ExportConfig(str(src), str(tmp_path / "out"),
                                     layout_options={"max_canvas_pixels": H * W - 1}),
                        log=lambda m: None, client=dask_client)
    assert result.exit_code == EXIT_PARTIAL
    assert result.manifest.column("error").to_pylist() == [
        f"ds/a.png: canvas {W}x{H} (WxH) = {H * W} pixels is above the limit of {H * W - 1} "
        f"pixels (max_canvas_pixels)"]


def test_cli_names_bad_items_without_traceback(tmp_path, cli):
    items = dict(list(GOOD.items())[:1])
    bad = ("bitmap_bomb.png", "coord_nan.png", "image_truncated.png", "not_json.png")
    for name in bad:
        a, img, _, _ = BAD[name]
        items[("ds", name)] = (a, img)
    src = write_project(tmp_path / "src", items)
    proc = cli("export", src, tmp_path / "out", "--workers", "1")
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "1 written" in proc.stderr and "4 failed" in proc.stderr
    report = json.loads((tmp_path / "out/.maskcore-meta/report.json").read_text())
    assert sorted(f["item"] for f in report["failures"]) == list(bad) and all(
        f["error"].startswith(f"ds/{f['item']}") for f in report["failures"])


def test_unchanged_item_keeps_its_warning_and_the_report_lists_it(tmp_path, dask_client):
    src = write_project(tmp_path / "src", {("ds", "m.png"): (good_annotation(1), rgb_png(8, 15, 1)),
                                           ("ds", "ok.png"): (good_annotation(2), rgb_png(H, W, 2))})
    runs = [run_export(ExportConfig(str(src), str(tmp_path / "out")), log=lambda m: None,
                       client=dask_client) for _ in range(2)]
    assert runs[1].report["items"]["unchanged"] == 2
    for result in runs:
        assert result.exit_code == EXIT_OK
        rows = _rows(result)
        assert len(rows[("ds", "m.png")]["warnings"]) == 1 and rows[("ds", "ok.png")]["warnings"] == []
        assert [w["item"] for w in result.report["warnings"]] == ["m.png"]


def test_sdk_crop_clips_what_the_kernel_refuses(tmp_path, dask_client):
    """With the default load-time crop, a vertex beyond int32 is clipped away by shapely (the polygon
    is drawn, as the app draws it) and a graph with such a node is dropped with a warning."""
    items = {("ds", name): BAD[name][:2] for name in ("coord_int32.png", "graph_int32.png")}
    src = write_project(tmp_path / "src", items, META_300)
    result = run_export(ExportConfig(str(src), str(tmp_path / "out")), log=lambda m: None, client=dask_client)
    rows = _rows(result)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    poly, graph = rows[("ds", "coord_int32.png")], rows[("ds", "graph_int32.png")]
    assert poly["warnings"] == [] and any("masks_instances" in o["path"] for o in poly["outputs"])
    assert graph["warnings"] == ["ds/graph_int32.png: object 0 (skel, graph) not drawn: a node (disabled "
                                 "ones included) is off the image; the Supervisely SDK drops it when "
                                 "loading (option crop=none draws it)"]
