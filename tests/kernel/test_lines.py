"""Thin segments and polylines vs OpenCV's cv2.line / cv2.polylines (test-only oracle)."""

import numpy as np
import pytest

from helpers.oracles import oracle
from maskcore.kernel.lines import clip_segments, polyline, segments_pixels
from maskcore.kernel.patch import patch_to_full

cv2 = oracle("cv2")

H, W = 37, 53
SCALES = (20, 200, 10 ** 5, 10 ** 7, 2 ** 31 - 100)


def _ref_line(size_hw, x0, y0, x1, y1):
    return cv2.line(np.zeros(size_hw, np.uint8), (int(x0), int(y0)), (int(x1), int(y1)), 1) > 0


def _ours_line(size_hw, x0, y0, x1, y1):
    xs, ys = segments_pixels(np.array([x0]), np.array([y0]), np.array([x1]), np.array([y1]), size_hw)
    out = np.zeros(size_hw, bool)
    out[ys, xs] = True
    return out


def _random_endpoint(rng, size_hw):
    scale = SCALES[rng.integers(len(SCALES))]
    h, w = size_hw
    lo = np.array([-scale, -scale])
    hi = np.array([w + scale, h + scale])
    return np.clip(rng.integers(lo, hi), -(2 ** 31), 2 ** 31 - 1)


def test_hand_drawn_segments():
    size = (6, 8)
    expected = np.zeros(size, bool)
    expected[[0, 0, 1, 1, 2], [0, 1, 2, 3, 4]] = True      # (0,0)->(4,2): minor step when err < 0
    assert (_ours_line(size, 0, 0, 4, 2) == expected).all()
    assert (_ours_line(size, 4, 2, 0, 0) == expected).all()  # drawn left to right either way
    assert _ours_line(size, 3, 3, 3, 3).sum() == 1
    assert _ours_line(size, 0, 5, 7, 5)[5].all()
    assert _ours_line(size, 2, -100, 2, 100)[:, 2].all()


def test_clipped_line_differs_from_cropping_and_matches_opencv():
    # clipLine truncates the border crossing, so the drawn pixels are not the crop of the ideal line.
    found = 0
    rng = np.random.default_rng(7)
    for _ in range(400):
        x0, y0 = rng.integers(-400, 0), rng.integers(-300, 340)
        x1, y1 = rng.integers(0, 30), rng.integers(0, 30)
        ours = _ours_line((30, 30), x0, y0, x1, y1)
        assert (ours == _ref_line((30, 30), x0, y0, x1, y1)).all()
        big = _ref_line((1000, 1000), x0 + 500, y0 + 500, x1 + 500, y1 + 500)[500:530, 500:530]
        found += int((big != ours).any())
    assert found > 0


def test_random_segments_match_opencv():
    rng = np.random.default_rng(1)
    bad = []
    for case in range(3000):
        size = (int(rng.integers(1, 45)), int(rng.integers(1, 45)))
        p0, p1 = _random_endpoint(rng, size), _random_endpoint(rng, size)
        if (_ours_line(size, *p0, *p1) != _ref_line(size, *p0, *p1)).any():
            bad.append((case, size, p0.tolist(), p1.tolist()))
    assert bad == []


def test_vectorised_call_equals_single_calls():
    rng = np.random.default_rng(2)
    ends = np.array([np.concatenate([_random_endpoint(rng, (H, W)), _random_endpoint(rng, (H, W))])
                     for _ in range(300)])
    xs, ys = segments_pixels(*ends.T, (H, W))
    singles = [segments_pixels(*(e[i:i + 1] for i in range(4)), (H, W)) for e in ends]
    np.testing.assert_array_equal(xs, np.concatenate([s[0] for s in singles]))
    np.testing.assert_array_equal(ys, np.concatenate([s[1] for s in singles]))
    assert ((xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)).all()


def test_clip_segments_reports_rejected_segments():
    inside, *_ = clip_segments(np.array([-5, -5, 2]), np.array([-5, 50, 2]),
                               np.array([-1, 60, 3]), np.array([-9, -20, 3]), (H, W))
    assert inside.tolist() == [False, True, True]


def test_clip_one_by_one_equals_vectorised_clip():
    # clip_segments clips a few segments with Python ints and many with numpy: same arithmetic.
    rng = np.random.default_rng(8)
    for _ in range(30):
        size = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        ends = np.array([np.concatenate([_random_endpoint(rng, size), _random_endpoint(rng, size)])
                         for _ in range(200)]).T
        scalar = clip_segments(*ends, size, scalar_below=10 ** 9)
        vector = clip_segments(*ends, size, scalar_below=0)
        for a, b in zip(scalar, vector):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("closed", [False, True])
def test_random_polylines_match_opencv(closed):
    rng = np.random.default_rng(3 + closed)
    bad = []
    for case in range(600):
        n = int(rng.integers(0, 12))
        pts = np.array([_random_endpoint(rng, (H, W)) for _ in range(n)], dtype=np.int64).reshape(-1, 2)
        if n and rng.random() < 0.3:
            pts = np.clip(pts, -30, 80)
        ref = cv2.polylines(np.zeros((H, W), np.uint8), [pts.astype(np.int32)], closed, 1) > 0
        patch = polyline(pts, (H, W), closed=closed)
        assert patch.mask.dtype == bool and patch.top >= 0 and patch.left >= 0
        assert patch.bottom <= H and patch.right <= W
        if (patch_to_full(patch, (H, W)) != ref).any():
            bad.append((case, pts.tolist()))
    assert bad == []


def test_degenerate_polylines():
    one = np.array([[4, 5]])
    assert polyline(one, (H, W)).is_empty                   # open, one vertex: no segment
    assert polyline(one, (H, W), closed=True).area() == 1
    assert polyline(np.zeros((0, 2), np.int64), (H, W)).is_empty
    assert polyline(np.array([[1, 1], [9, 1]]), (0, 0)).is_empty


@pytest.mark.parametrize("bad, exc", [
    (np.array([[1.5, 2.0], [3.0, 4.0]]), TypeError),
    (np.array([1, 2, 3]), ValueError),
    (np.array([[0, 0], [2 ** 31, 0]]), ValueError),
])
def test_rejects_bad_points(bad, exc):
    with pytest.raises(exc):
        polyline(bad, (H, W))


def test_rejects_bad_size():
    with pytest.raises(ValueError):
        polyline(np.array([[1, 1], [2, 2]]), (-1, 5))
    with pytest.raises(ValueError):
        segments_pixels(np.array([1, 2]), np.array([1]), np.array([1]), np.array([1]), (5, 5))
