"""Property tests: random JSON, geometry payloads, listings, tars and bytes thrown at every
reader entry point. The only exceptions allowed are the documented ``maskcore.errors`` types;
no example may hang (hypothesis deadline) or allocate much (inputs are bounded in ``fuzz.py``).
The ``_long`` variants run many more examples (``MASKCORE_FUZZ_LONG=1``)."""

from __future__ import annotations

import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskcore.codec.image import decode_image
from maskcore.errors import AnnotationError, ItemError, LimitError, ProjectError
from maskcore.io.tarindex import scan_tar
from maskcore.limits import MAX_COORD as COORD_LIMIT
from maskcore.model.geometry import AlphaMask, Bitmap
from maskcore.readers.sly_geometry import parse_geometry
from maskcore.readers.supervisely import ITEMS_SCHEMA, index_project_files, parse_annotation, parse_meta

from .fuzz import ANNOTATION_BYTES, ANNOTATIONS, JSON, LISTINGS, META_JSON, bitmap_payloads, image_bytes, tar_bytes
from .projects import META, long

MAX_PIXELS = 4096   # every decode in these tests is held to this many declared pixels
CI = settings(max_examples=200, derandomize=True, deadline=2000,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=20_000, deadline=5000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
META_OBJ = parse_meta(META)


def _geometry_arrays(geom):
    for name in ("exterior_xy", "points_xy", "vertices_xy"):
        if hasattr(geom, name):
            yield getattr(geom, name)
    yield from getattr(geom, "interiors_xy", ())
    for part in getattr(geom, "parts", ()):
        yield from _geometry_arrays(part)


def check_annotation(value) -> None:
    try:
        annotation = parse_annotation(value, META_OBJ, "ds/x.png", max_bitmap_pixels=MAX_PIXELS)
    except (AnnotationError, LimitError) as exc:
        assert str(exc).startswith("ds/x.png"), str(exc)
        return
    h, w = annotation.size_hw
    assert type(h) is int and type(w) is int and 0 < h <= COORD_LIMIT and 0 < w <= COORD_LIMIT
    for label in annotation.labels:
        geom = label.geometry
        for arr in _geometry_arrays(geom):
            assert arr.dtype == np.int64 and arr.ndim == 2 and arr.shape[1] == 2
            assert np.abs(arr).max(initial=0) <= COORD_LIMIT
        if isinstance(geom, (Bitmap, AlphaMask)):
            data = geom.mask if isinstance(geom, Bitmap) else geom.alpha
            assert 0 < data.size <= MAX_PIXELS and data.any()


@CI
@given(JSON)
def test_parse_annotation_random_json(value):
    check_annotation(value)


@CI
@given(ANNOTATIONS)
def test_parse_annotation_hostile_payloads(value):
    check_annotation(value)


@CI
@given(ANNOTATION_BYTES)
def test_parse_annotation_random_bytes(data):
    check_annotation(data)


@long
@LONG
@given(st.one_of(JSON, ANNOTATIONS, ANNOTATION_BYTES))
def test_parse_annotation_long(value):
    check_annotation(value)


def check_meta(value) -> None:
    try:
        meta = parse_meta(value)
    except ProjectError as exc:
        assert str(exc).startswith("meta.json"), str(exc)
        return
    assert len({c.title for c in meta.classes}) == len(meta.classes)


@CI
@given(st.one_of(META_JSON, st.binary(max_size=100), META_JSON.map(lambda m: json.dumps(m, default=str))))
def test_parse_meta(value):
    check_meta(value)


@long
@LONG
@given(st.one_of(META_JSON, st.binary(max_size=300)))
def test_parse_meta_long(value):
    check_meta(value)


def check_listing(files) -> None:
    try:
        table = index_project_files(files)
    except ProjectError as exc:
        assert str(exc).startswith("dataset name"), str(exc)
        return
    assert table.schema.remove_metadata().names[:6] == ITEMS_SCHEMA.names
    keys = list(zip(table.column("dataset").to_pylist(), table.column("item").to_pylist()))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    problems = (table.column("problem").to_pylist() if "problem" in table.column_names
                else [None] * table.num_rows)
    known = {p for p, _ in files}
    for row, problem in zip(table.to_pylist(), problems):
        if problem is None:
            assert row["ann_path"] is None or row["ann_path"] in known
            assert row["img_path"] is None or row["img_path"] in known
            assert row["ann_path"] or row["img_path"]
        else:
            assert row["ann_path"] is None and row["img_path"] is None and "UTF-8" in problem


@CI
@given(LISTINGS)
def test_index_project_files(files):
    check_listing(files)


@long
@LONG
@given(LISTINGS)
def test_index_project_files_long(files):
    check_listing(files)


def check_tar(data: bytes) -> None:
    try:
        index = scan_tar(io.BytesIO(data))
    except ProjectError as exc:
        assert str(exc).startswith("tar "), str(exc)
        return
    for name, (start, size) in index.items():
        assert 0 <= start and 0 <= size and start + size <= len(data), (name, start, size)
        assert not name.startswith("/") and ".." not in name.split("/")


@CI
@given(tar_bytes())
def test_scan_tar(data):
    check_tar(data)


@long
@LONG
@given(tar_bytes())
def test_scan_tar_long(data):
    check_tar(data)


def check_image(data: bytes) -> None:
    try:
        rgb = decode_image(data, max_pixels=MAX_PIXELS, name="ds/x.png")
    except ItemError as exc:
        assert type(exc).__name__ in ("ImageDecodeError", "LimitError"), repr(exc)
        assert str(exc).startswith("ds/x.png: "), str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS and rgb.flags.c_contiguous


@CI
@given(image_bytes())
def test_decode_image(data):
    check_image(data)


@long
@LONG
@given(image_bytes())
def test_decode_image_long(data):
    check_image(data)


def check_bitmap(kind: str, data: str, origin) -> None:
    try:
        geom = parse_geometry(kind, {"bitmap": {"origin": origin, "data": data}},
                              max_bitmap_pixels=MAX_PIXELS)
    except (AnnotationError, LimitError):
        return
    values = geom.mask if kind == "bitmap" else geom.alpha
    assert 0 < values.size <= MAX_PIXELS and values.any()


@CI
@given(st.sampled_from(["bitmap", "alpha_mask"]), bitmap_payloads(),
       st.lists(st.integers(-2**31, 2**31), min_size=2, max_size=2))
def test_bitmap_payloads(kind, data, origin):
    check_bitmap(kind, data, origin)


@long
@LONG
@given(st.sampled_from(["bitmap", "alpha_mask"]), bitmap_payloads(),
       st.lists(st.integers(-2**31, 2**31), min_size=2, max_size=2))
def test_bitmap_payloads_long(kind, data, origin):
    check_bitmap(kind, data, origin)
