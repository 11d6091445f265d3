"""COCO raster rule vs pycocotools (test-only oracle): seeded random polygons and boxes,
hand-drawn fixtures, and every polygon of the real facade dataset."""

import json
import pathlib
import tracemalloc

import numpy as np
import pytest
from patch_contract import checked_full

from helpers.oracles import oracle
from maskcore.kernel.coco_rule import (
    coco_box_mask,
    coco_box_ring,
    coco_polygon_mask,
    coco_polygon_masks,
    coco_polygon_spans,
    coco_ring_spans,
)

mask_api = oracle("pycocotools.mask")
# pycocotools 2.0.x under numpy 2 warns about its own __array__ on every decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FACADE = pathlib.Path(__file__).resolve().parents[1] / "data/facade/_annotations.coco.json"  # bundled


def _ref(rings, size_hw):
    """``decode(merge(frPyObjects(rings)))``, as CVAT's Datumaro draws one object."""
    h, w = size_hw
    flat = [np.asarray(r, dtype=np.float64).ravel().tolist() for r in rings]
    return mask_api.decode(mask_api.merge(mask_api.frPyObjects(flat, h, w))).astype(bool)


def _ref_box(xywh, size_hw):
    rle = mask_api.frPyObjects(np.array([xywh], dtype=np.float64), *size_hw)
    return mask_api.decode(rle)[:, :, 0].astype(bool)


_full = checked_full  # the patch on a full canvas, after checking the patch contract


def _snap(rng, pts):
    """Coordinates as annotators and tools write them: floats, or exactly on .0 / .5 / .1 /
    .2 grids (the rule's ties)."""
    mode = rng.integers(0, 6)
    if mode == 1:
        return np.round(pts)
    if mode == 2:
        return np.round(pts * 2) / 2
    if mode == 3:
        return np.round(pts * 10) / 10
    if mode == 4:
        return np.round(pts * 5) / 5 + 0.1
    return pts


def _random_ring(rng, size_hw, n_lo=3):
    """3..40 vertices in random order (mostly self-intersecting) or a star (simple), spread
    from sub-pixel to far off-canvas, sometimes with a repeated or collinear vertex."""
    h, w = size_hw
    n = int(rng.integers(n_lo, 41))
    centre = rng.uniform(-5, [w + 5, h + 5])
    spread = (0.7, 2, 6, 20, 200, 2000)[rng.integers(0, 6)]
    if rng.random() < 0.3 and n >= 3:
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.2, 1, n) * spread
        pts = centre + np.stack([np.cos(ang), np.sin(ang)], axis=1) * rad[:, None]
    else:
        pts = centre + rng.uniform(-spread, spread, (n, 2))
    pts = _snap(rng, pts)
    if n >= 3 and rng.random() < 0.1:
        pts[1] = pts[0]                                     # repeated vertex: zero-length edge
    if n >= 3 and rng.random() < 0.1:
        pts[2] = (pts[0] + pts[1]) / 2                      # collinear vertex
    return pts


def _random_object(rng, size_hw):
    """1..3 rings.  Only the first must have 3+ vertices: frPyObjects reads an object whose
    first ring has 4 numbers as boxes (and fails), later rings of 1-2 vertices are fine."""
    rings = [_random_ring(rng, size_hw)]
    for _ in range(int(rng.choice([0, 0, 1, 2]))):
        rings.append(_random_ring(rng, size_hw, n_lo=1))
    return rings


def test_random_polygons_match_pycocotools():
    rng = np.random.default_rng(20240604)
    cases = differing = 0
    bad = []
    for batch in range(200):
        size_hw = tuple(int(v) for v in rng.integers(1, 40, 2))
        objects = [_random_object(rng, size_hw) for _ in range(30)]
        patches = coco_polygon_masks(objects, size_hw)
        for k, (rings, patch) in enumerate(zip(objects, patches)):
            ref = _ref(rings, size_hw)
            n = int((_full(patch, size_hw) != ref).sum())
            n += int((_full(coco_polygon_mask(rings, size_hw), size_hw) != ref).sum())
            cases += 1
            differing += n
            if n:
                bad.append((batch, k))
    assert cases == 6000
    assert differing == 0, f"{differing} differing pixels in cases {bad[:10]}"


def test_far_off_canvas_matches_pycocotools():
    """Vertices up to 2e5 pixels away (pycocotools walks all of that; we never do)."""
    rng = np.random.default_rng(7)
    bad = []
    for k in range(40):
        size_hw = (int(rng.integers(5, 60)), int(rng.integers(5, 60)))
        pts = _snap(rng, rng.uniform(-2e5, 2e5, (int(rng.integers(3, 7)), 2)))
        rings = [pts, pts[:3] / 1000 + 20]
        if (_full(coco_polygon_mask(rings, size_hw), size_hw) != _ref(rings, size_hw)).any():
            bad.append(k)
    assert bad == []


def test_random_boxes_match_pycocotools():
    rng = np.random.default_rng(11)
    bad = []
    for k in range(3000):
        size_hw = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        x, y, w, h = _snap(rng, np.concatenate([rng.uniform(-10, 40, 2), rng.uniform(-5, 30, 2)]))
        ours = _full(coco_box_mask((x, y, w, h), size_hw), size_hw)
        # pycocotools' rleFrBbox, and Datumaro's BoxesToMasks (bbox.as_polygon() via frPoly)
        as_polygon = _ref([[x, y, x + w, y, x + w, y + h, x, y + h]], size_hw)
        if (ours != _ref_box((x, y, w, h), size_hw)).any() or (ours != as_polygon).any():
            bad.append(k)
    assert bad == []


def test_facade_dataset_matches_pycocotools():
    """All 3849 polygons of roboflow_facade_coco/valid, one batch per image, 0 differing pixels."""
    data = json.loads(FACADE.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    by_image = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["segmentation"])
    polygons = differing = 0
    for image_id, segmentations in by_image.items():
        size_hw = sizes[image_id]
        objects = [[np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in seg]
                   for seg in segmentations]
        for seg, patch in zip(segmentations, coco_polygon_masks(objects, size_hw)):
            ref = mask_api.decode(mask_api.merge(mask_api.frPyObjects(seg, *size_hw)))
            ref = ref.astype(bool)
            window = ref[patch.window()]
            differing += int((window != patch.mask).sum())
            differing += int(ref.sum()) - int(window.sum())   # reference pixels outside it
            polygons += 1
    assert polygons == 3849
    assert differing == 0


# -- hand-drawn fixtures ---------------------------------------------------------------

def test_integer_box_fills_half_open_range():
    expected = np.zeros((6, 7), dtype=bool)
    expected[2:5, 1:4] = True                               # rows y..y+h-1, columns x..x+w-1
    assert (_full(coco_box_mask((1, 2, 3, 3), (6, 7)), (6, 7)) == expected).all()
    assert (coco_box_ring((1, 2, 3, 3)) == [[1, 2], [1, 5], [4, 5], [4, 2]]).all()


def test_pixel_centre_ties_go_right_and_down():
    """Square corners on pixel centres: centres on its left/top side are out, right/bottom in."""
    square = np.array([[0.5, 0.5], [2.5, 0.5], [2.5, 2.5], [0.5, 2.5]])
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 1:3] = True
    assert (_full(coco_polygon_mask([square], (4, 4)), (4, 4)) == expected).all()


def test_rings_of_one_object_are_unioned_not_holes():
    outer = np.array([[1, 1], [5, 1], [5, 5], [1, 5]], dtype=np.float64)
    inner = np.array([[2, 2], [4, 2], [4, 4], [2, 4]], dtype=np.float64)
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:5, 1:5] = True
    assert (_full(coco_polygon_mask([outer, inner], (6, 6)), (6, 6)) == expected).all()
    assert (_ref([outer, inner], (6, 6)) == expected).all()


def test_self_intersecting_ring_is_even_odd_as_pycocotools():
    bowtie = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], dtype=np.float64)
    expected = np.array([[0, 1, 1, 0, 0],
                         [0, 0, 0, 0, 0],
                         [0, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0],
                         [0, 0, 0, 0, 0]], dtype=bool)
    assert (_full(coco_polygon_mask([bowtie], (5, 5)), (5, 5)) == expected).all()
    assert (_ref([bowtie], (5, 5)) == expected).all()


def test_vertex_order_does_not_matter():
    rng = np.random.default_rng(3)
    for _ in range(200):
        ring = _random_ring(rng, (20, 20))
        base = _full(coco_polygon_mask([ring], (20, 20)), (20, 20))
        for other in (ring[::-1], np.roll(ring, 3, axis=0)):
            assert (_full(coco_polygon_mask([other], (20, 20)), (20, 20)) == base).all()


def test_degenerate_input_paints_nothing():
    size_hw = (8, 8)
    point = np.array([[3.0, 3.0]])
    segment = np.array([[1.0, 1.0], [6.0, 5.0]])
    line3 = np.array([[1.0, 1.0], [3.0, 3.0], [6.0, 6.0]])
    for rings in ([], [np.zeros((0, 2))], [point], [segment], [line3], [[]]):
        assert coco_polygon_mask(rings, size_hw).is_empty
    triangle = np.array([[1.0, 1.0], [6.0, 1.0], [1.0, 6.0]])
    assert coco_polygon_mask([triangle], (0, 5)).is_empty
    assert coco_polygon_mask([triangle], (5, 0)).is_empty
    assert coco_polygon_masks([], size_hw) == []
    # rings given as nested lists or integer arrays are read as float coordinates
    as_list = coco_polygon_mask([triangle.tolist()], size_hw)
    as_int = coco_polygon_mask([triangle.astype(np.int32)], size_hw)
    ref = _ref([triangle], size_hw)
    assert (_full(as_list, size_hw) == ref).all() and (_full(as_int, size_hw) == ref).all()


def test_batch_equals_single_calls_and_keeps_empty_slots():
    rng = np.random.default_rng(5)
    size_hw = (30, 25)
    objects = [_random_object(rng, size_hw) for _ in range(40)]
    objects[7] = []                                         # an object with nothing to draw
    objects[9] = [np.array([[100.0, 100.0], [120.0, 100.0], [110.0, 120.0]])]   # off-canvas
    patches = coco_polygon_masks(objects, size_hw)
    assert len(patches) == 40 and patches[7].is_empty and patches[9].is_empty
    for rings, patch in zip(objects, patches):
        single = coco_polygon_mask(rings, size_hw)
        assert (single.top, single.left) == (patch.top, patch.left)
        assert np.array_equal(single.mask, patch.mask)


def test_spans_paint_each_object_as_pycocotools():
    """``coco_polygon_spans``: each object's runs, OR-ed, are pycocotools' mask of it; runs are
    non-empty, inside the canvas and grouped by object in order."""
    rng = np.random.default_rng(11)
    for _ in range(60):
        size_hw = tuple(int(v) for v in rng.integers(1, 40, 2))
        objects = [_random_object(rng, size_hw) for _ in range(int(rng.integers(0, 12)))]
        poly, col, row0, row1 = coco_polygon_spans(objects, size_hw)
        assert all(a.dtype == np.int64 for a in (poly, col, row0, row1))
        assert (row0 < row1).all() and (row0 >= 0).all() and (row1 <= size_hw[0]).all()
        assert ((col >= 0) & (col < size_hw[1])).all()
        assert (np.diff(poly) >= 0).all()
        for k, rings in enumerate(objects):
            got = np.zeros(size_hw, bool)
            for c, a, b in zip(col[poly == k], row0[poly == k], row1[poly == k]):
                got[a:b, c] = True
            assert np.array_equal(got, _ref(rings, size_hw) > 0)


def test_ring_spans_equal_polygon_spans():
    """``coco_ring_spans`` of the rings in one array (rings of 1-2 vertices included) gives the
    runs of ``coco_polygon_spans``; a coordinate past 2**40 or inconsistent sizes are refused."""
    rng = np.random.default_rng(12)
    for _ in range(60):
        size_hw = tuple(int(v) for v in rng.integers(1, 40, 2))
        objects = [_random_object(rng, size_hw) for _ in range(int(rng.integers(1, 12)))]
        rings = [np.asarray(r, np.float64).reshape(-1, 2) for rings in objects for r in rings]
        owners = [k for k, rings in enumerate(objects) for _ in rings]
        got = coco_ring_spans(np.concatenate(rings), [len(r) for r in rings], owners, size_hw)
        want = coco_polygon_spans(objects, size_hw)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    square = np.array([[0, 0], [0, 4], [4, 4], [4, 0]], np.float64)
    with pytest.raises(ValueError, match="2\\*\\*40"):
        coco_ring_spans(np.concatenate([square, square * 2.0**41]), [4, 4], [0, 1], (5, 5))
    with pytest.raises(ValueError, match="ring_sizes"):
        coco_ring_spans(square, [3], [0], (5, 5))


def test_runs_are_the_same_on_a_canvas_past_32_bit_keys():
    """The runs are sorted on (ring, column, row) packed in 32 bits when they fit, in 64 bits
    past that: random objects give the same runs on a 40 x 40 canvas and, clipped to it, on a
    2**20 x 2**13 one (34 bits of column and row)."""
    rng = np.random.default_rng(13)
    for _ in range(20):
        objects = [_random_object(rng, (40, 40)) for _ in range(int(rng.integers(1, 6)))]
        small = coco_polygon_spans(objects, (40, 40))
        big = coco_polygon_spans(objects, (2**20, 2**13))
        inside = big[1] < 40
        clipped = np.minimum(big[3][inside], 40)
        keep = clipped > big[2][inside]
        got = [a[inside][keep] for a in big[:3]] + [clipped[keep]]
        assert all(np.array_equal(a, b) for a, b in zip(got, small, strict=True))


def test_huge_coordinates_cost_nothing_extra():
    """pycocotools would walk 5 points per pixel of this perimeter (and overflow int)."""
    tri = np.array([[-1e11, -1e11], [1e11, 0.0], [0.0, 1e11]])
    tracemalloc.start()
    try:
        patch = coco_polygon_mask([tri], (100, 120))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20
    assert patch.area() == 100 * 120


def test_bad_input_raises_with_location():
    good = np.array([[1.0, 1.0], [5.0, 1.0], [1.0, 5.0]])
    for bad in (np.nan, np.inf, -2.0 ** 41):
        ring = good.copy()
        ring[1, 0] = bad
        with pytest.raises(ValueError, match=r"polys_rings_xy\[1\]\[0\]: expected finite"):
            coco_polygon_masks([[good], [ring]], (8, 8))
    with pytest.raises(ValueError, match=r"rings_xy\[0\]: expected shape \(N, 2\)"):
        coco_polygon_mask([np.zeros((3, 3))], (8, 8))
    with pytest.raises(TypeError, match="expected real coordinates"):
        coco_polygon_mask([np.array([["a", "b"]] * 3)], (8, 8))
    with pytest.raises(ValueError, match="size_hw"):
        coco_polygon_mask([good], (-1, 8))
    with pytest.raises(ValueError, match="xywh"):
        coco_box_mask((1, 2, 3), (8, 8))
