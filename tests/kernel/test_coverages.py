"""draw.coverages (all labels of an image, polygon fills batched) vs draw.coverage per label.

coverage itself is checked against the Supervisely SDK in tests/layouts/test_export_vs_sdk.py; here the
batch must give the very same patches (window and pixels) for every geometry type, mixed.
"""

import math

import numpy as np
import pytest

from maskcore.kernel.draw import coverage, coverages, coverages_many
from maskcore.model import geometry as g

H, W = 48, 64


def _xy(rng, n, margin=12):
    return rng.integers([-margin, -margin], [W + margin, H + margin], size=(n, 2))


def _polygon(rng):
    holes = tuple(_xy(rng, int(rng.integers(3, 7)), -10) for _ in range(rng.integers(0, 3)))
    return g.Polygon(_xy(rng, int(rng.integers(3, 12))), holes)


def _random_geometry(rng):
    kind = int(rng.integers(11))
    if kind == 0:
        return _polygon(rng)
    if kind == 1:
        return g.MultiPolygon(tuple(_polygon(rng) for _ in range(rng.integers(1, 4))))
    if kind == 2:
        left, top = (int(v) for v in _xy(rng, 1)[0])
        return g.OrientedBBox(left, top, left + int(rng.integers(0, 30)),
                              top + int(rng.integers(0, 30)), float(rng.uniform(-math.pi, math.pi)))
    if kind == 3:
        return g.Cuboid2d(_xy(rng, 8))
    if kind == 4:
        faces = tuple(tuple(int(i) for i in rng.choice(8, int(rng.integers(2, 5)), replace=False))
                      for _ in range(rng.integers(0, 4)))
        return g.Cuboid(_xy(rng, 8), faces)
    if kind == 5:
        (x0, y0), (x1, y1) = np.sort(_xy(rng, 2), axis=0).tolist()
        return g.Rectangle(x0, y0, x1, y1)
    if kind == 6:
        origin = tuple(int(v) for v in _xy(rng, 1)[0])
        return g.Bitmap(origin, rng.random((int(rng.integers(1, 20)), int(rng.integers(1, 20)))) < 0.5)
    if kind == 7:
        origin = tuple(int(v) for v in _xy(rng, 1)[0])
        return g.AlphaMask(origin, rng.integers(0, 256, (5, 7), dtype=np.uint8))
    if kind == 8:
        return g.Polyline(_xy(rng, int(rng.integers(1, 6))))
    if kind == 9:
        return g.Point(*(int(v) for v in _xy(rng, 1)[0]))
    nodes = tuple(g.GraphNode(f"n{i}", int(x), int(y), bool(rng.random() < 0.2))
                  for i, (x, y) in enumerate(_xy(rng, int(rng.integers(0, 5)))))
    return g.Graph(nodes)


@pytest.mark.parametrize("thickness", [1, 2, 3, 6])
def test_coverages_equal_coverage_per_label(thickness):
    rng = np.random.default_rng(30 + thickness)
    for _ in range(60):
        geoms = [_random_geometry(rng) for _ in range(rng.integers(0, 15))]
        batch = coverages(geoms, (H, W), thickness)
        assert len(batch) == len(geoms)
        for k, (geom, got) in enumerate(zip(geoms, batch)):
            want = coverage(geom, (H, W), thickness)
            assert (got.top, got.left, got.mask.shape, got.mask.dtype) == \
                (want.top, want.left, want.mask.shape, want.mask.dtype), (k, geom)
            assert np.array_equal(got.mask, want.mask), (k, geom)


@pytest.mark.parametrize("rule", ["opencv", "coco"])
def test_coverages_many_equal_coverages_per_image(rule):
    """Several images' fills in one kernel call per size give each image's own patches; images of
    other sizes in the same call are drawn on their own canvas."""
    rng = np.random.default_rng(7 if rule == "opencv" else 8)
    sizes = [(H, W), (W, H), (H, W), (17, 90), (H, W), (1, 1)]
    for _ in range(25):
        images = []
        for _ in range(int(rng.integers(1, 9))):
            size = sizes[int(rng.integers(len(sizes)))]
            images.append(([_random_geometry(rng) for _ in range(rng.integers(0, 10))], size))
        thickness = int(rng.integers(1, 5))
        got = coverages_many(images, thickness, rule)
        assert len(got) == len(images)
        for (geoms, size), patches in zip(images, got):
            want = coverages(geoms, size, thickness, rule)
            assert len(patches) == len(want)
            for a, b in zip(patches, want):
                assert (a.top, a.left, a.mask.shape, a.mask.dtype) == (b.top, b.left, b.mask.shape, b.mask.dtype)
                assert np.array_equal(a.mask, b.mask)


def test_errors_are_the_kernels():
    ok = g.Polygon(np.array([[1, 1], [9, 1], [1, 9]]))
    far = g.Polygon(np.array([[1, 1], [2 ** 31, 1], [1, 9]]))
    with pytest.raises(ValueError, match="int32"):
        coverages([ok, ok, far, ok], (H, W))
    with pytest.raises(TypeError, match="cannot draw"):
        coverages([ok, object()], (H, W))
