"""fill_polys (many polygons of one canvas in one pass) vs cv2.fillPoly per polygon (test-only oracle)."""

import numpy as np
import pytest

import maskcore.kernel.fill as fill_module
from helpers.oracles import oracle
from maskcore.kernel.fill import fill_poly, fill_polys
from maskcore.kernel.patch import EMPTY, patch_to_full

cv2 = oracle("cv2")

H, W = 37, 53


def _ref(rings, size_hw):
    rings = [r.astype(np.int32) for r in rings if len(r)]    # cv2 raises on an empty ring
    canvas = np.zeros(size_hw, np.uint8)
    return (cv2.fillPoly(canvas, rings, 1) if rings else canvas) > 0


def _assert_batch_matches(batch, size_hw):
    """Every patch of the batch paints what cv2 paints for that polygon alone, and is exactly the
    patch fill_poly gives (same window); no two masks share memory."""
    patches = fill_polys(batch, size_hw)
    assert len(patches) == len(batch)
    bad = []
    for i, (rings, patch) in enumerate(zip(batch, patches)):
        single = fill_poly(rings, size_hw)
        assert (patch.top, patch.left, patch.mask.shape) == (single.top, single.left, single.mask.shape)
        assert patch.mask.dtype == bool
        if (patch_to_full(patch, size_hw) != _ref(rings, size_hw)).any() or \
                (patch.mask != single.mask).any():
            bad.append(i)
    assert bad == []
    masks = [p.mask for p in patches if p.mask.size]
    assert not any(np.shares_memory(a, b) for k, a in enumerate(masks) for b in masks[k + 1:])


def _ring(rng, n, lo_xy, hi_xy):
    return rng.integers(lo_xy, hi_xy, size=(n, 2))


def _star(rng, centre, r_lo, r_hi, n):
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(r_lo, r_hi, n)
    xy = np.stack([centre[0] + rad * np.cos(ang), centre[1] + rad * np.sin(ang)], axis=1)
    return np.floor(xy).astype(np.int64)


def _random_poly(rng, size_hw):
    """One polygon's ring list: near or across the canvas, sometimes with holes, several
    self-intersecting rings, degenerate or empty rings, or far-off vertices."""
    h, w = size_hw
    kind = rng.integers(6)
    if kind == 0:
        return [_ring(rng, int(rng.integers(3, 30)), (-8, -8), (w + 8, h + 8))]
    if kind == 1:
        centre = rng.uniform([-10, -10], [w + 10, h + 10])
        r = rng.uniform(4, 40)
        holes = [_star(rng, centre, 0.1 * r, 0.4 * r, int(rng.integers(3, 12)))
                 for _ in range(rng.integers(1, 3))]
        return [_star(rng, centre, 0.7 * r, r, int(rng.integers(3, 30)))] + holes
    if kind == 2:
        return [_ring(rng, int(rng.integers(1, 20)), (-15, -15), (w + 15, h + 15))
                for _ in range(rng.integers(1, 4))]
    if kind == 3:
        return [np.zeros((0, 2), np.int64)] if rng.random() < 0.5 else []
    if kind == 4:
        scale = [10 ** 3, 10 ** 5, 10 ** 7][rng.integers(3)]
        return [_ring(rng, int(rng.integers(3, 20)), (-scale, -1000), (scale, scale))]
    return [_ring(rng, int(rng.integers(1, 6)), (0, 0), (w, h))]           # inside, tiny


def test_random_batches_match_cv2_per_polygon():
    rng = np.random.default_rng(20)
    for _ in range(150):
        batch = [_random_poly(rng, (H, W)) for _ in range(rng.integers(1, 25))]
        _assert_batch_matches(batch, (H, W))
    _assert_batch_matches([_random_poly(rng, (H, W)) for _ in range(400)], (H, W))


def test_random_batches_inside_the_canvas():
    # Every vertex inside: the no-clipping fast path with many polygons (and overlapping ones).
    rng = np.random.default_rng(21)
    for _ in range(100):
        batch = [[_ring(rng, int(rng.integers(1, 40)), (0, 0), (W, H))]
                 for _ in range(rng.integers(1, 20))]
        _assert_batch_matches(batch, (H, W))


def test_random_batches_on_varied_canvases():
    rng = np.random.default_rng(22)
    for _ in range(150):
        size = (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        batch = [_random_poly(rng, size) for _ in range(rng.integers(1, 12))]
        _assert_batch_matches(batch, size)


def test_batch_near_the_int32_limits():
    # x near +-2**31 takes the exact (lexsort, int32 cast) pairing for the whole batch.
    rng = np.random.default_rng(23)
    for _ in range(40):
        batch = [[_ring(rng, int(rng.integers(3, 12)), (-20, -20), (W + 20, H + 20))]
                 for _ in range(rng.integers(1, 6))]
        ring = _ring(rng, int(rng.integers(3, 10)), (-20, -20), (W + 20, H + 20))
        far = rng.random(len(ring)) < 0.4
        ring[far, 0] = rng.choice([-(2 ** 31), 2 ** 31 - 1], int(far.sum()))
        batch.insert(int(rng.integers(len(batch) + 1)), [ring])
        _assert_batch_matches(batch, (H, W))


@pytest.mark.parametrize("case", ["linear", "clamp", "exact"])
def test_every_pairing_mode_is_exercised(case, monkeypatch):
    seen = []
    real = fill_module._key_mode
    monkeypatch.setattr(fill_module, "_key_mode", lambda *a: seen.append(real(*a)) or seen[-1])
    rng = np.random.default_rng(24)
    big = {"linear": 10, "clamp": 10 ** 5, "exact": 2 ** 31 - 1}[case]
    for _ in range(30):
        batch = [[_ring(rng, 6, (-8, -8), (W + 8, H + 8))],
                 [np.clip(_ring(rng, 5, (-big, -20), (big, H + 20)), -(2 ** 31), 2 ** 31 - 1)]]
        _assert_batch_matches(batch, (H, W))
    assert case in seen


def test_key_too_wide_falls_back_to_exact_pairing():
    # A nominal canvas 2**30 px wide: (polygon, row, x) no longer fits one int64 key for a batch
    # of 64 polygons, while one polygon alone still does; both must agree (no canvas is allocated).
    rng = np.random.default_rng(25)
    size = (300, 2 ** 30)
    batch = [[_star(rng, rng.uniform([0, 0], [400, 300]), 5, 60, int(rng.integers(3, 30)))]
             for _ in range(64)]
    for patch, rings in zip(fill_polys(batch, size), batch):
        single = fill_poly(rings, size)
        assert (patch.top, patch.left) == (single.top, single.left)
        assert np.array_equal(patch.mask, single.mask)
        crop = _ref(rings, (300, 500))[patch.top:patch.bottom, patch.left:patch.right]
        assert np.array_equal(patch.mask, crop)


def test_empty_batches_and_entries():
    tri = np.array([[1, 1], [9, 1], [1, 9]])
    assert fill_polys([], (H, W)) == []
    assert fill_polys([[], [np.zeros((0, 2), np.int64)]], (H, W)) == [EMPTY, EMPTY]
    out = fill_polys([[], [tri], []], (12, 12))
    assert out[0] is EMPTY and out[2] is EMPTY and out[1].area() == 45
    assert all(p is EMPTY for p in fill_polys([[tri], [tri]], (0, 12)))
    off = [np.array([[-50, -50], [-10, -40], [-30, -5]])]
    assert [p.is_empty for p in fill_polys([off, [tri]], (12, 12))] == [True, False]


def test_accepts_lists_and_any_integer_dtype():
    tri = np.array([[1, 1], [9, 1], [1, 9]])
    out = fill_polys(([tri.astype(np.uint16)], [tri.tolist()], (tri.astype(np.int32),)), (12, 12))
    assert [p.area() for p in out] == [45, 45, 45]


@pytest.mark.parametrize("bad, exc, where", [
    ([np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 1.0]])], TypeError, "polys_rings_xy[1][0]"),
    ([np.array([[1, 2], [1, 1], [0, 0]]), np.array([[1, 2, 3]])], ValueError, "polys_rings_xy[1][1]"),
    ([np.array([[0, 0], [2 ** 31, 0], [3, 3]])], ValueError, "polys_rings_xy[1][0]"),
    ([np.array([[0, 0], [2 ** 63, 0], [3, 3]], dtype=np.uint64)], ValueError, "polys_rings_xy[1][0]"),
])
def test_rejects_bad_rings_and_names_them(bad, exc, where):
    tri = [np.array([[1, 1], [9, 1], [1, 9]])]
    with pytest.raises(exc, match=where.replace("[", r"\[").replace("]", r"\]")):
        fill_polys([tri, bad, tri], (H, W))
