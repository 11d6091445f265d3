"""Area resize of the human preview vs OpenCV's INTER_AREA (test-only oracle)."""

import numpy as np
import pytest

from maskcore.kernel.resize import resize_area, resized_hw

cv2 = pytest.importorskip("cv2")


def _ref(img, percent):
    dh, dw = resized_hw(img.shape[:2], percent)
    return cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)


def test_whole_factors_match_opencv_exactly():
    rng = np.random.default_rng(0)
    for _ in range(300):
        f = int(rng.choice([2, 3, 4, 5, 8]))
        h, w = (rng.integers(1, 30, 2) * f).tolist()
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(resize_area(img, 100 / f), _ref(img, 100 / f))


def test_other_factors_within_one_level_on_few_pixels():
    rng = np.random.default_rng(1)
    differing = total = 0
    for _ in range(200):
        h, w = rng.integers(2, 120, 2).tolist()
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        percent = float(rng.uniform(5, 99))
        ours, ref = resize_area(img, percent), _ref(img, percent)
        assert ours.shape == ref.shape
        assert np.abs(ours.astype(int) - ref).max() <= 1
        differing += int((ours != ref).sum())
        total += ref.size
    assert differing / total < 0.01


def test_rejects_bad_percent():
    with pytest.raises(ValueError, match="percent"):
        resize_area(np.zeros((4, 4, 3), np.uint8), 0)
