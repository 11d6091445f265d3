"""Polygon fill vs OpenCV's cv2.fillPoly (test-only oracle), on seeded random and hand-drawn shapes."""

import tracemalloc

import numpy as np
import pytest
from patch_contract import checked_full

from helpers.oracles import oracle
from maskcore.kernel.fill import fill_poly

cv2 = oracle("cv2")

H, W = 37, 53


def _ref(rings, size_hw=(H, W)):
    rings = [r.astype(np.int32) for r in rings if len(r)]    # cv2 raises on an empty ring
    return cv2.fillPoly(np.zeros(size_hw, np.uint8), rings, 1) > 0


def _ours(rings, size_hw=(H, W)):
    return checked_full(fill_poly(rings, size_hw), size_hw)


def _mismatches(cases, size_hw=(H, W)):
    """Indexes of the cases whose fill differs from cv2 on any pixel."""
    return [i for i, rings in enumerate(cases) if (_ours(rings, size_hw) != _ref(rings, size_hw)).any()]


def _star(rng, centre, r_lo, r_hi, n):
    """A simple (non-self-intersecting) polygon: sorted angles, random radii."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(r_lo, r_hi, n)
    pts = np.stack([centre[0] + rad * np.cos(ang), centre[1] + rad * np.sin(ang)], axis=1)
    return np.floor(pts).astype(np.int64)


def _box_ring(rng, n, lo_xy, hi_xy):
    return rng.integers(lo_xy, hi_xy, size=(n, 2))


# ---------------------------------------------------------------------------------- hand-drawn


def test_spec_triangle_paints_45_pixels():
    tri = np.array([[1, 1], [9, 1], [1, 9]])
    ours = _ours([tri], (12, 12))
    assert ours.sum() == 45
    assert (ours == _ref([tri], (12, 12))).all()


def test_hand_drawn_square_with_hole():
    outer = np.array([[1, 1], [7, 1], [7, 7], [1, 7]])
    hole = np.array([[3, 3], [5, 3], [5, 5], [3, 5]])
    expected = np.zeros((9, 9), bool)
    expected[1:8, 1:8] = True
    expected[4, 4] = False          # even-odd: only the hole's interior is left; its edges are painted
    assert (_ours([outer, hole], (9, 9)) == expected).all()
    assert (expected == _ref([outer, hole], (9, 9))).all()


def test_degenerate_rings():
    assert _ours([np.array([[3, 4]])], (9, 9)).sum() == 1
    seg = [np.array([[1, 1], [6, 3]])]
    assert (_ours(seg, (9, 9)) == _ref(seg, (9, 9))).all()
    flat = [np.array([[0, 2], [5, 2], [8, 2], [2, 2]])]          # zero area, collinear
    assert (_ours(flat, (9, 9)) == _ref(flat, (9, 9))).all()
    assert fill_poly([], (9, 9)).is_empty
    assert fill_poly([np.zeros((0, 2), np.int64)], (9, 9)).is_empty
    assert fill_poly([np.array([[1, 1], [5, 1], [1, 5]])], (0, 7)).is_empty
    outside = [np.array([[-50, -50], [-10, -40], [-30, -5]])]
    assert fill_poly(outside, (9, 9)).is_empty


def test_empty_ring_is_skipped_among_others():
    tri = np.array([[1, 1], [9, 1], [1, 9]])
    ours = _ours([np.zeros((0, 2), np.int64), tri], (12, 12))
    assert (ours == _ref([tri], (12, 12))).all()


def test_whole_canvas_covered_by_far_vertices():
    big = np.array([[-10 ** 7, -10 ** 4], [10 ** 7, -10 ** 4], [10 ** 7, 10 ** 7], [-10 ** 7, 10 ** 7]])
    assert _ours([big]).all()


def test_tall_edge_beside_the_canvas_keeps_c_truncating_slope():
    # The right edge misses the canvas (x > 52 on every canvas row), yet its crossing is extrapolated
    # over ~750k rows from its top vertex: a floor instead of C's truncating division for its
    # 16.16 slope drifts it ~11 px into the canvas.  Found by random search, minimised.
    tri = [np.array([[58, 10286], [-14, 130215], [81, -738875]])]
    assert (_ours(tri) == _ref(tri)).all()


def test_far_vertices_allocate_only_the_window():
    rng = np.random.default_rng(5)
    rings = [rng.integers(-10 ** 7, 10 ** 7, size=(40, 2)) for _ in range(3)]
    tracemalloc.start()
    patch = fill_poly(rings, (H, W))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert patch.mask.shape[0] <= H and patch.mask.shape[1] <= W
    assert peak < 4 * 2 ** 20


@pytest.mark.parametrize("bad, exc", [
    ([np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 1.0]])], TypeError),
    ([np.array([[1, 2, 3]])], ValueError),
    ([np.array([[0, 0], [-(2 ** 31) - 1, 0], [3, 3]])], ValueError),
])
def test_rejects_bad_rings(bad, exc):
    with pytest.raises(exc):
        fill_poly(bad, (H, W))


# ------------------------------------------------------------------------------ random vs cv2


def test_random_polygons_near_canvas():
    rng = np.random.default_rng(10)
    cases = [[_box_ring(rng, int(rng.integers(3, 41)), (-8, -8), (W + 8, H + 8))] for _ in range(1000)]
    assert _mismatches(cases) == []


def test_random_polygons_around_canvas_every_side():
    rng = np.random.default_rng(11)
    cases = [[_box_ring(rng, int(rng.integers(3, 41)), (-W, -H), (2 * W, 2 * H))] for _ in range(600)]
    assert _mismatches(cases) == []


def test_random_far_vertices():
    # Far above the canvas is cheap for us but costly for cv2 (it walks every row from the top
    # vertex), hence the smaller negative y range.
    rng = np.random.default_rng(12)
    cases = []
    for _ in range(400):
        scale = [10 ** 3, 10 ** 5, 10 ** 7][rng.integers(3)]
        cases.append([_box_ring(rng, int(rng.integers(3, 41)), (-scale, -2000), (scale, scale))
                      for _ in range(int(rng.integers(1, 3)))])
    for _ in range(100):        # x near the int32 limits: exercises the 64-bit-key fallback sort
        cases.append([_box_ring(rng, int(rng.integers(3, 20)), (-(2 ** 31), -500),
                                (2 ** 31 - 1, 500))])
    for _ in range(200):        # some vertices near the int32 x limits, the others near the canvas
        ring = _box_ring(rng, int(rng.integers(3, 12)), (-20, -20), (W + 20, H + 20))
        far = rng.random(len(ring)) < 0.3
        ring[far, 0] = rng.choice([-(2 ** 31), 2 ** 31 - 1], int(far.sum()))
        cases.append([ring])
    for _ in range(6):
        cases.append([_box_ring(rng, int(rng.integers(3, 10)), (-10 ** 7, -10 ** 7),
                                (10 ** 7, 10 ** 7))])
    assert _mismatches(cases) == []


def test_random_collinear_and_duplicate_vertices():
    rng = np.random.default_rng(13)
    cases = []
    for _ in range(500):
        n = int(rng.integers(3, 30))
        ring = _box_ring(rng, n, (-10, -10), (W + 10, H + 10))
        kind = rng.integers(4)
        if kind == 0:                                    # all on one line through the canvas
            d = rng.integers(-3, 4, size=2)
            ring = ring[0] + np.outer(rng.integers(-20, 20, n), d)
        elif kind == 1:                                  # one shared row or column
            ring[:, rng.integers(2)] = ring[0, rng.integers(2)]
        elif kind == 2:                                  # repeated vertices
            ring = np.repeat(ring, rng.integers(1, 4, n), axis=0)
        else:                                            # collinear runs inside a polygon
            mid = (ring + np.roll(ring, -1, axis=0)) // 2
            ring = np.stack([ring, mid], axis=1).reshape(-1, 2)
        cases.append([ring])
    assert _mismatches(cases) == []


def test_random_polygons_with_holes():
    rng = np.random.default_rng(14)
    cases = []
    for _ in range(400):
        centre = rng.uniform([-10, -10], [W + 10, H + 10])
        r_out = rng.uniform(6, 40)
        rings = [_star(rng, centre, r_out * 0.7, r_out, int(rng.integers(3, 41)))]
        for _ in range(int(rng.integers(1, 4))):
            hole_centre = centre + rng.uniform(-0.2, 0.2, 2) * r_out
            rings.append(_star(rng, hole_centre, 0.1 * r_out, 0.4 * r_out, int(rng.integers(3, 15))))
        cases.append(rings)
    assert _mismatches(cases) == []


def test_random_multi_ring_self_intersecting_and_tiny_canvases():
    rng = np.random.default_rng(15)
    cases, sizes = [], []
    for _ in range(600):
        h, w = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        rings = [_box_ring(rng, int(rng.integers(1, 41)), (-15, -15), (w + 15, h + 15))
                 for _ in range(int(rng.integers(1, 5)))]
        cases.append(rings)
        sizes.append((h, w))
    bad = [i for i, (rings, size) in enumerate(zip(cases, sizes))
           if (_ours(rings, size) != _ref(rings, size)).any()]
    assert bad == []


def test_random_polygons_on_a_larger_canvas():
    rng = np.random.default_rng(16)
    size = (300, 420)
    cases = []
    for k in range(60):
        centre = rng.uniform([-50, -50], [470, 350])
        n = int(rng.integers(3, 200))
        if k % 2:
            cases.append([_star(rng, centre, 5, rng.uniform(10, 250), n)])
        else:
            cases.append([np.floor(centre + rng.uniform(-150, 150, (n, 2))).astype(np.int64)])
    assert _mismatches(cases, size) == []


def test_accepts_any_integer_dtype():
    tri = np.array([[1, 1], [9, 1], [1, 9]])
    for dtype in (np.int32, np.uint16, np.int64):
        assert _ours([tri.astype(dtype)], (12, 12)).sum() == 45
    assert _ours([tri.tolist()], (12, 12)).sum() == 45
