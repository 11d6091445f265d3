"""maskcore.kernel.resize against OpenCV's ``cv2.resize(..., INTER_AREA)`` (test-only oracle): 0 differing
values for every kind of size change, and the app's output-size rule."""
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.oracles import oracle
from maskcore.kernel.resize import preview_hw, resize_area, resize_area_to, resized_hw

cv2 = oracle("cv2")

STATS = {"cases": 0, "values": 0, "max_diff": 0}


def make_image(rng, H, W, C, mode):
    shape = (H, W) if C == 0 else (H, W, C)
    if mode == "random":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if mode == "zeros":
        return np.zeros(shape, np.uint8)
    if mode == "full":
        return np.full(shape, 255, np.uint8)
    if mode == "binary":  # 0/255 extremes, mask-like
        return (rng.integers(0, 2, shape) * 255).astype(np.uint8)
    if mode == "checker":
        yy, xx = np.indices((H, W))
        a = (((yy + xx) & 1) * 255).astype(np.uint8)
        return a if C == 0 else np.repeat(a[:, :, None], C, axis=2)
    if mode == "labels":  # few small label values, like machine masks
        return rng.integers(0, 4, shape, dtype=np.uint8)
    if mode == "near":  # values around rounding ties
        return rng.choice(np.array([0, 1, 2, 127, 128, 253, 254, 255], np.uint8), size=shape)
    raise ValueError(mode)


MODES = ["random", "zeros", "full", "binary", "checker", "labels", "near"]


def check(img, h, w):
    ref = cv2.resize(img, (int(w), int(h)), interpolation=cv2.INTER_AREA)
    out = resize_area_to(img, (h, w))
    assert out.dtype == np.uint8
    assert out.shape == ref.shape, (img.shape, (h, w), out.shape, ref.shape)
    d = int(np.abs(out.astype(np.int16) - ref.astype(np.int16)).max()) if ref.size else 0
    STATS["cases"] += 1
    STATS["values"] += ref.size
    STATS["max_diff"] = max(STATS["max_diff"], d)
    nbad = int((out != ref).sum())
    assert nbad == 0, f"{img.shape} -> {(h, w)}: {nbad} differing values, max diff {d}"


# ---------------------------------------------------------------- seeded random loops
@pytest.mark.parametrize("seed", range(8))
def test_random_sizes(seed):
    rng = np.random.default_rng(1000 + seed)
    for i in range(500):
        H, W, h, w = (int(v) for v in rng.integers(1, 301, 4))
        C = [0, 3, 1, 3, 0, 4, 2][i % 7]
        check(make_image(rng, H, W, C, MODES[i % len(MODES)] if i % 3 == 0 else "random"), h, w)


def _kind_sizes(rng, kind):
    if kind == "int_down":      # whole factors, incl. 2x2 fast path and 1xk
        kx, ky = (int(v) for v in rng.integers(1, 7, 2))
        w, h = (int(v) for v in rng.integers(1, 61, 2))
        return h * ky, w * kx, h, w
    if kind == "two":           # exact halves (SIMD (sum+2)>>2 path)
        w, h = (int(v) for v in rng.integers(1, 151, 2))
        return 2 * h, 2 * w, h, w
    if kind == "frac_down":
        H, W = (int(v) for v in rng.integers(2, 301, 2))
        return H, W, int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
    if kind == "mixed":         # one axis shrinks, the other grows
        H, W = (int(v) for v in rng.integers(1, 200, 2))
        if rng.random() < 0.5:
            return H, W, int(rng.integers(H, 301)), int(rng.integers(1, W + 1))
        return H, W, int(rng.integers(1, H + 1)), int(rng.integers(W, 301))
    if kind == "up":
        H, W = (int(v) for v in rng.integers(1, 150, 2))
        return H, W, int(rng.integers(H, 301)), int(rng.integers(W, 301))
    if kind == "int_up":        # integer upscales
        H, W = (int(v) for v in rng.integers(1, 60, 2))
        return H, W, H * int(rng.integers(1, 6)), W * int(rng.integers(1, 6))
    if kind == "odd":           # odd sizes, odd targets
        H, W = (int(v) * 2 + 1 for v in rng.integers(0, 150, 2))
        h, w = (int(v) * 2 + 1 for v in rng.integers(0, 150, 2))
        return H, W, h, w
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["int_down", "two", "frac_down", "mixed", "up", "int_up", "odd"])
@pytest.mark.parametrize("C", [0, 1, 3, 4])
def test_factor_kinds(kind, C):
    rng = np.random.default_rng(zlib.crc32(f"{kind}{C}".encode()))
    for i in range(120):
        H, W, h, w = _kind_sizes(rng, kind)
        check(make_image(rng, H, W, C, MODES[i % len(MODES)]), h, w)


@pytest.mark.parametrize("mode", MODES)
def test_edge_content_fixed_sizes(mode):
    rng = np.random.default_rng(7)
    sizes = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (64, 64), (101, 257), (300, 300)]
    for (H, W) in sizes:
        for (h, w) in sizes + [(H * 2, W * 3), (max(1, H // 2), max(1, W // 2)), (H, max(1, W // 3))]:
            for C in (0, 3):
                check(make_image(rng, H, W, C, mode), h, w)


# ---------------------------------------------------------------- percent based
PERCENTS = list(range(1, 201)) + [33.3, 66.6, 12.5, 0.5 * 3, 99.9, 150.5, 70.0, 50.0, 29, 57]


def test_resized_hw_formula():
    for (H, W) in [(1, 1), (3, 5), (99, 101), (480, 640), (1081, 1921), (2048, 4096)]:
        for p in PERCENTS:
            exp = (int(H * (p / 100)), int(W * (p / 100)))
            assert resized_hw((H, W), p) == exp  # 0 included: the caller decides (cv2 raises)
    # float truncation quirk is kept: 0.29*100 != 29
    assert resized_hw((100, 100), 29) == (28, 28)
    assert preview_hw((5, 7)) == (5, 14)


@pytest.mark.parametrize("odd_hw", [(37, 51), (99, 101), (121, 77), (13, 255)])
def test_percent_sizes(odd_hw):
    rng = np.random.default_rng(sum(odd_hw))
    H, W = preview_hw(odd_hw)              # side-by-side preview as in the app
    for C in (3, 0):
        img = make_image(rng, H, W, C, "random")
        for p in PERCENTS:
            if min(resized_hw((H, W), p)) < 1:
                continue  # cv2 raises; tested below
            ref = cv2.resize(img, (int(img.shape[1] * (p / 100)), int(img.shape[0] * (p / 100))),
                             interpolation=cv2.INTER_AREA)
            out = resize_area(img, p)
            STATS["cases"] += 1
            STATS["values"] += ref.size
            assert out.shape == ref.shape and (out == ref).all(), (img.shape, p)


def test_percent_zero_raises_like_cv2():
    img = np.zeros((3, 3, 3), np.uint8)
    with pytest.raises(cv2.error):
        cv2.resize(img, (int(3 * (10 / 100)), int(3 * (10 / 100))), interpolation=cv2.INTER_AREA)
    with pytest.raises(ValueError):
        resize_area(img, 10)


# ---------------------------------------------------------------- hypothesis
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(H=st.integers(1, 300), W=st.integers(1, 300), h=st.integers(1, 300), w=st.integers(1, 300),
       C=st.sampled_from([0, 1, 3, 4]), mode=st.sampled_from(MODES), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_any_size(H, W, h, w, C, mode, seed):
    check(make_image(np.random.default_rng(seed), H, W, C, mode), h, w)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(h=st.integers(1, 60), w=st.integers(1, 60), ky=st.integers(1, 6), kx=st.integers(1, 6),
       C=st.sampled_from([0, 1, 2, 3, 4]), mode=st.sampled_from(MODES), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_integer_factors(h, w, ky, kx, C, mode, seed):
    rng = np.random.default_rng(seed)
    img = make_image(rng, h * ky, w * kx, C, mode)
    check(img, h, w)          # shrink by whole factors
    check(img, h * ky * kx, w * kx * ky)  # grow by whole factors


def test_large_sizes():
    """A few sizes beyond 300 px so every SIMD main loop / scalar tail split is exercised."""
    rng = np.random.default_rng(3)
    for i in range(30):
        H, W = (int(v) for v in rng.integers(300, 1500, 2))
        C = [0, 1, 2, 3, 4][i % 5]
        img = make_image(rng, H, W, C, "random")
        for h, w in [(rng.integers(1, H), rng.integers(1, W)), (rng.integers(H, 2000), rng.integers(1, W)),
                     (rng.integers(H, 2000), rng.integers(W, 2000)), (max(1, H // 2), max(1, W // 2))]:
            check(img, int(h), int(w))


def test_zz_report():
    print(f"\nSTATS: {STATS}")
    assert STATS["max_diff"] == 0
