"""The raster kernel alone: maskcore's polygon fill vs cv2.fillPoly per object, on the same shapes.

Shapes: every polygon fill of every labelled image of the given Supervisely projects (a polygon's
exterior, and its holes as one fill; multipolygon parts likewise), or ``--synthetic N`` images of
36 random star polygons of 20-200 vertices on 1024x1024. Variants, each over all images:

  ours.per_object     ``fill_poly`` once per fill
  ours.batch          ``fill_polys`` once per image (what ``draw.coverages`` does)
  ours.batch_images   ``fill_polys`` once per ``--images-per-batch`` images of one size (a
                      comma list gives one variant per size: the partition-level batch)
  cv2.full_canvas     ``np.zeros(size_hw)`` + ``cv2.fillPoly`` per fill: a per-object mask, as ours
  cv2.box_canvas      ``np.zeros(fill's box)`` + ``cv2.fillPoly(..., offset)`` per fill: the
                      cheapest per-object masks with OpenCV (clips at its box, not at the image
                      border, so not equal to the others for shapes crossing the border)
  cv2.shared_canvas   ``cv2.fillPoly`` per fill into one canvas per image: no per-object masks, a
                      floor rather than an equivalent
  draw.coverage       ``draw.coverage`` per label (the layout's old rasterize loop, every label)
  draw.coverages      ``draw.coverages`` per image (one image alone)
  draw.coverages_many ``draw.coverages_many`` per ``task.BATCH_ITEMS`` consecutive images (what
                      an export's partition does: its items' fills, per canvas size, in one call)

Before timing, every fill of ``ours.batch`` is compared with ``cv2.full_canvas`` (must be 0
differing pixels). Times are CPU seconds of this process (the machine's cores are shared),
medians of ``--repeat`` interleaved runs. "Crossings" are the (edge, row) pairs inside the
canvas: the scanline work of OpenCV's fill and ours.

Usage: python benchmarks/kernel_bench.py [PROJECT ...] [--synthetic N] [--repeat 7]
                                         [--images-per-batch 4,16]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from maskcore.exec.task import BATCH_ITEMS
from maskcore.kernel.draw import coverage, coverages, coverages_many
from maskcore.kernel.fill import fill_poly, fill_polys
from maskcore.kernel.patch import patch_to_full
from maskcore.model import geometry as g
from maskcore.readers import open_source
from maskcore.readers.supervisely import parse_annotation

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROJECTS = [REPO / "examples" / "sly_catsdogs" / "vector"]


def load_images(projects: list[Path]) -> list[tuple[tuple[int, int], list]]:
    """``(size_hw, geometries)`` of every annotated image of the projects."""
    images = []
    for project in projects:
        source = open_source("supervisely", str(project))
        meta = source.read_meta()
        for row in source.list_items().to_pylist():
            if row["ann_path"]:
                ann = parse_annotation(json.loads(source.read_bytes(row["ann_path"])), meta, row["item"])
                images.append((ann.size_hw, [lb.geometry for lb in ann.labels]))
    return images


def synthetic_images(n: int, seed: int = 0) -> list[tuple[tuple[int, int], list]]:
    """``n`` 1024x1024 images of 36 star polygons of 20-200 vertices each."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        geoms = []
        for _ in range(36):
            k = int(rng.integers(20, 201))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = rng.uniform(20, rng.uniform(40, 300), k)
            centre = rng.uniform(0, 1024, 2)
            xy = centre + np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
            geoms.append(g.Polygon(np.floor(xy).astype(np.int64)))
        images.append(((1024, 1024), geoms))
    return images


def polygon_fills(geoms) -> list[list[np.ndarray]]:
    """The polygon fills (ring lists) the layout does for these labels."""
    fills = []
    for geom in geoms:
        if isinstance(geom, g.MultiPolygon):
            parts = geom.parts
        else:
            parts = (geom,) if isinstance(geom, g.Polygon) else ()
        for poly in parts:
            fills.append([poly.exterior_xy])
            if poly.interiors_xy:
                fills.append(list(poly.interiors_xy))
    return fills


def crossings(fills, size_hw) -> int:
    """Active (edge, row) pairs inside the canvas over all fills."""
    height = size_hw[0]
    total = 0
    for rings in fills:
        for ring in rings:
            y = ring[:, 1]
            lo, hi = np.minimum(y, np.roll(y, 1)), np.maximum(y, np.roll(y, 1))
            total += int(np.maximum(np.minimum(hi, height) - np.maximum(lo, 0), 0).sum())
    return total


def check_exact(images, cv2) -> int:
    """Pixels where ours.batch differs from cv2.fillPoly on a full canvas, over every fill."""
    diff = 0
    for size_hw, fills, _ in images:
        for rings, patch in zip(fills, fill_polys(fills, size_hw)):
            ref = cv2.fillPoly(np.zeros(size_hw, np.uint8), [r.astype(np.int32) for r in rings], 1)
            diff += int(np.count_nonzero(patch_to_full(patch, size_hw) != (ref > 0)))
    return diff


def variants(images, cv2, images_per_batch: list[int]) -> dict:
    """name -> function running that variant over every image."""
    cv_images = [(size_hw, [[r.astype(np.int32) for r in rings] for rings in fills])
                 for size_hw, fills, _ in images]
    by_size = defaultdict(list)
    for size_hw, fills, _ in images:
        by_size[size_hw].append(fills)

    def groups(n: int):
        return [(size_hw, [f for fills in runs[i:i + n] for f in fills])
                for size_hw, runs in by_size.items() for i in range(0, len(runs), n)]

    def per_object():
        for size_hw, fills, _ in images:
            for rings in fills:
                fill_poly(rings, size_hw)

    def batch():
        for size_hw, fills, _ in images:
            fill_polys(fills, size_hw)

    def batch_images(n: int):
        batches = groups(n)

        def run():
            for size_hw, fills in batches:
                fill_polys(fills, size_hw)
        return run

    def cv_full():
        for size_hw, fills in cv_images:
            for rings in fills:
                cv2.fillPoly(np.zeros(size_hw, np.uint8), rings, 1)

    def cv_box():
        for (height, width), fills in cv_images:
            for rings in fills:
                pts = np.concatenate(rings)
                x0, y0 = np.maximum(pts.min(0), 0)
                x1, y1 = np.minimum(pts.max(0), (width - 1, height - 1))
                if x0 <= x1 and y0 <= y1:
                    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
                    cv2.fillPoly(canvas, rings, 1, offset=(-int(x0), -int(y0)))

    def cv_shared():
        for size_hw, fills in cv_images:
            canvas = np.zeros(size_hw, np.uint8)
            for rings in fills:
                cv2.fillPoly(canvas, rings, 1)

    def draw_per_label():
        for size_hw, _, geoms in images:
            for geom in geoms:
                coverage(geom, size_hw)

    def draw_batch():
        for size_hw, _, geoms in images:
            coverages(geoms, size_hw)

    def draw_partition():
        for i in range(0, len(images), BATCH_ITEMS):
            coverages_many([(geoms, size_hw) for size_hw, _, geoms in images[i:i + BATCH_ITEMS]])

    return {"ours.per_object": per_object, "ours.batch": batch,
            **{f"ours.batch_images (x{n})": batch_images(n) for n in images_per_batch},
            "cv2.full_canvas": cv_full, "cv2.box_canvas": cv_box, "cv2.shared_canvas": cv_shared,
            "draw.coverage (per label)": draw_per_label, "draw.coverages (per image)": draw_batch,
            f"draw.coverages_many ({BATCH_ITEMS} consecutive images: exports)": draw_partition}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("projects", nargs="*", type=Path)
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="N synthetic images instead of (or besides) projects")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--images-per-batch", default="4",
                   help="images per fill_polys call, comma-separated for several variants")
    args = p.parse_args()
    try:
        import cv2
    except ImportError:
        raise SystemExit("kernel_bench needs OpenCV: pip install '.[test]'") from None
    projects = args.projects or ([] if args.synthetic else DEFAULT_PROJECTS)
    raw = load_images(projects) + synthetic_images(args.synthetic)
    images = [(size_hw, polygon_fills(geoms), geoms) for size_hw, geoms in raw]
    images = [im for im in images if im[1]]
    if not images:
        raise SystemExit("no polygons in the given projects")
    n_images = len(images)
    n_fills = sum(len(f) for _, f, _ in images)
    n_cross = sum(crossings(f, s) for s, f, _ in images)
    diff = check_exact(images, cv2)
    runs = variants(images, cv2, [int(n) for n in args.images_per_batch.split(",")])
    times = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)
    names = [str(p) for p in projects] + ([f"{args.synthetic} synthetic images"] if args.synthetic else [])
    source = ", ".join(names)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}, opencv {cv2.__version__}; {source}: {n_images} images, "
          f"{n_fills} polygon fills ({n_fills / n_images:.1f}/image), {n_cross / n_images:.0f} "
          f"crossings/image; CPU time, median of {args.repeat}\n")
    print(f"exactness: ours.batch vs cv2.fillPoly per fill: {diff} differing pixels\n")
    base = float(np.median(times["ours.batch"]))
    print("| variant | ms/image | ms per 1M crossings | time / ours.batch |\n|---|---:|---:|---:|")
    for name, ts in times.items():
        t = float(np.median(ts))
        print(f"| {name} | {1000 * t / n_images:.3f} | {1000 * t / (n_cross / 1e6):.1f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
