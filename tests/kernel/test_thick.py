"""Thick polylines and discs against the OpenCV oracle (cv2 is test-only), pixel for pixel."""

from __future__ import annotations

import time

import numpy as np
import pytest
from patch_contract import assert_valid_patch

from helpers.oracles import oracle
from maskcore.kernel.disc import circle_half_widths, disc, discs
from maskcore.kernel.patch import patch_to_full
from maskcore.kernel.thick import thick_polyline

cv2 = oracle("cv2")

H, W = 41, 57  # small canvas: most random shapes cross its border


def cv2_polyline(pts, size_hw, thickness, closed=False) -> np.ndarray:
    canvas = np.zeros(size_hw, np.uint8)
    cv2.polylines(canvas, [np.asarray(pts).astype(np.int32)], closed, 1, thickness)
    return canvas.astype(bool)


def cv2_disc(center, radius, size_hw) -> np.ndarray:
    canvas = np.zeros(size_hw, np.uint8)
    cv2.circle(canvas, (int(center[0]), int(center[1])), int(radius), 1, thickness=-1)
    return canvas.astype(bool)


def random_points(rng, n: int) -> np.ndarray:
    mode = rng.integers(0, 4)
    if mode == 0:    # inside the canvas
        pts = rng.integers(0, [W, H], size=(n, 2))
    elif mode == 1:  # around the border
        pts = rng.integers([-15, -15], [W + 15, H + 15], size=(n, 2))
    elif mode == 2:  # well outside
        pts = rng.integers(-200, 260, size=(n, 2))
    else:            # some vertices very far away
        pts = rng.integers([-15, -15], [W + 15, H + 15], size=(n, 2))
        far = rng.random(n) < 0.3
        pts[far] = rng.integers(-10**6, 10**6, size=(int(far.sum()), 2))
    if n > 2 and rng.random() < 0.3:  # duplicate vertices (zero-length segments)
        pts[rng.integers(0, n)] = pts[rng.integers(0, n)]
    return pts


# --- hand-drawn fixtures -------------------------------------------------------------------

def test_short_segment_thickness_2_fixture():
    expected = np.array([
        [0, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ], dtype=bool)
    got = thick_polyline(np.array([[1, 1], [6, 3]]), (6, 8), 2)
    np.testing.assert_array_equal(patch_to_full(got, (6, 8)), expected)


def test_point_thickness_2_is_a_five_pixel_plus():
    plus = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    closed = thick_polyline(np.array([[4, 4]]), (9, 9), 2, closed=True)
    assert (closed.top, closed.left) == (3, 3)
    np.testing.assert_array_equal(closed.mask, plus)
    zero_length = thick_polyline(np.array([[4, 4], [4, 4]]), (9, 9), 2)
    np.testing.assert_array_equal(patch_to_full(zero_length, (9, 9)),
                                  patch_to_full(closed, (9, 9)))
    np.testing.assert_array_equal(disc((4, 4), 1, (9, 9)).mask, plus)


def test_open_single_vertex_and_empty_input_paint_nothing():
    assert thick_polyline(np.array([[4, 4]]), (9, 9), 5).is_empty
    assert thick_polyline(np.zeros((0, 2), np.int64), (9, 9), 5).is_empty
    assert not cv2_polyline([[4, 4]], (9, 9), 5).any()
    assert thick_polyline(np.array([[4, 4], [5, 5]]), (0, 9), 3).is_empty


def test_reference_opencv_preclips_thick_lines():
    """OpenCV >= 4.13 clips each segment to the canvas grown by `thickness` before drawing it.

    Older OpenCV draws the unclipped quad; this probe tells which one the oracle is.
    """
    pre_clip = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]], dtype=bool)
    pts = np.array([[8, 12], [-1, -3]])
    np.testing.assert_array_equal(cv2_polyline(pts, (4, 4), 2), pre_clip,
                                  err_msg=f"OpenCV {cv2.__version__} lacks the thick-line pre-clip")
    np.testing.assert_array_equal(patch_to_full(thick_polyline(pts, (4, 4), 2), (4, 4)), pre_clip)


# --- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("thickness", [-1, 0, 1, 32768])
def test_thickness_outside_range_is_rejected(thickness):
    with pytest.raises(ValueError, match="thickness"):
        thick_polyline(np.array([[0, 0], [3, 3]]), (9, 9), thickness)


def test_bad_points_are_rejected():
    with pytest.raises(TypeError, match="integer"):
        thick_polyline(np.array([[0.5, 0], [3, 3]]), (9, 9), 2)
    with pytest.raises(ValueError, match="shape"):
        thick_polyline(np.array([0, 0, 3, 3]), (9, 9), 2)
    with pytest.raises(ValueError, match="int32"):
        thick_polyline(np.array([[0, 0], [2**31, 3]]), (9, 9), 2)
    with pytest.raises(ValueError, match="radius"):
        disc((0, 0), -1, (9, 9))
    with pytest.raises(ValueError, match="size_hw"):
        disc((0, 0), 1, (9,))


# --- discs ---------------------------------------------------------------------------------

def _midpoint_profiles(max_radius: int) -> np.ndarray:
    """OpenCV's Circle() walk run for every radius at once: half-width per row offset."""
    r = np.arange(max_radius + 1)
    prof = np.full((r.size, r.size), -1)
    dx, dy = r.copy(), np.zeros_like(r)
    err, plus, minus = np.zeros_like(r), np.ones_like(r), 2 * r - 1
    live = np.flatnonzero(dx >= dy)
    while live.size:
        np.maximum.at(prof, (live, dy[live]), dx[live])
        np.maximum.at(prof, (live, dx[live]), dy[live])
        dy[live] += 1
        err[live] += plus[live]
        plus[live] += 2
        down = err[live] > 0
        err[live] -= np.where(down, minus[live], 0)
        dx[live] -= down
        minus[live] -= 2 * down
        live = np.flatnonzero(dx >= dy)
    return prof


def test_half_widths_match_the_midpoint_walk():
    profiles = _midpoint_profiles(1100)  # covers the memoised (<= 1024) and direct paths
    offsets = np.arange(1101)
    bad = [r for r in range(1101) if not np.array_equal(circle_half_widths(r, offsets),
                                                        profiles[r])]
    assert bad == []


def test_disc_matches_cv2_on_random_cases():
    rng = np.random.default_rng(20240601)
    failures = []
    for case in range(3000):
        radius = int(rng.integers(0, 26))
        if case % 10 == 0:
            center = tuple(int(v) for v in rng.integers(-10**6, 10**6, size=2))
        else:
            center = (int(rng.integers(-30, W + 30)), int(rng.integers(-30, H + 30)))
        patch = disc(center, radius, (H, W))
        assert_valid_patch(patch, (H, W))
        diff = np.count_nonzero(patch_to_full(patch, (H, W)) != cv2_disc(center, radius, (H, W)))
        if diff:
            failures.append((center, radius, diff))
    assert failures == []


def test_large_disc_matches_cv2():
    for center, radius in [((300, 200), 250), ((-100, 50), 400), ((10, 10), 1500)]:
        got = patch_to_full(disc(center, radius, (480, 640)), (480, 640))
        np.testing.assert_array_equal(got, cv2_disc(center, radius, (480, 640)))


def test_discs_are_the_union_of_cv2_circles():
    rng = np.random.default_rng(20240602)
    for case in range(400):
        radius = int(rng.integers(0, 26)) if case % 50 else int(rng.integers(40, 90))
        n = int(rng.integers(0, 8))
        centers = np.stack([rng.integers(-30, W + 30, n), rng.integers(-30, H + 30, n)], axis=1)
        expected = np.zeros((H, W), bool)
        for c in centers:
            expected |= cv2_disc(c, radius, (H, W))
        patch = discs(centers, radius, (H, W))
        assert_valid_patch(patch, (H, W))
        np.testing.assert_array_equal(patch_to_full(patch, (H, W)), expected)


def test_discs_validate_like_disc():
    assert discs(np.zeros((0, 2), np.int64), 3, (H, W)).is_empty
    with pytest.raises(ValueError, match="radius"):
        discs(np.array([[1, 1]]), -1, (H, W))
    with pytest.raises(ValueError, match="int32"):
        discs(np.array([[1, 1], [2**31, 0]]), 1, (H, W))
    with pytest.raises(TypeError, match="integer"):
        discs(np.array([[1.5, 1]]), 1, (H, W))


# --- thick polylines -----------------------------------------------------------------------

def test_thick_polyline_matches_cv2_on_random_cases():
    rng = np.random.default_rng(7)
    failures = []
    for case in range(3000):
        n = int(rng.integers(1, 16))
        thickness = 2 if case % 4 == 0 else int(rng.integers(2, 13))
        closed = bool(rng.integers(0, 2))
        pts = random_points(rng, n)
        patch = thick_polyline(pts, (H, W), thickness, closed)
        assert_valid_patch(patch, (H, W))
        expected = cv2_polyline(pts, (H, W), thickness, closed)
        diff = np.count_nonzero(patch_to_full(patch, (H, W)) != expected)
        if diff:
            failures.append((pts.tolist(), thickness, closed, diff))
    assert failures[:5] == []


def test_thick_polyline_matches_cv2_on_varied_canvases():
    rng = np.random.default_rng(11)
    failures = []
    for _ in range(300):
        size = tuple(int(v) for v in rng.integers(1, 150, size=2))
        n = int(rng.integers(1, 8))
        thickness = int(rng.integers(2, 60))
        closed = bool(rng.integers(0, 2))
        span = 3 * max(size)
        pts = rng.integers(-span, 2 * span, size=(n, 2))
        patch = thick_polyline(pts, size, thickness, closed)
        assert_valid_patch(patch, size)
        if np.count_nonzero(patch_to_full(patch, size)
                            != cv2_polyline(pts, size, thickness, closed)):
            failures.append((size, pts.tolist(), thickness, closed))
    assert failures[:5] == []


def test_far_off_segment_is_fast_and_exact():
    pts = np.array([[-10**6, 20], [10**6, 23], [10**6, -10**6], [-999_999, 10**6]])
    start = time.perf_counter()
    patch = thick_polyline(pts, (H, W), 7, closed=True)
    assert time.perf_counter() - start < 0.5
    assert_valid_patch(patch, (H, W))
    np.testing.assert_array_equal(patch_to_full(patch, (H, W)),
                                  cv2_polyline(pts, (H, W), 7, closed=True))
