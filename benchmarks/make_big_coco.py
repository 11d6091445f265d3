"""A synthetic, deterministic COCO instances JSON of ~3 GB (issue 17.2): ~1 M images, ~10 M polygons.

Images ``img_0000000.jpg`` ... (640x480), 80 categories, annotations in a shuffled image order (as
in COCO 2017: not grouped by image), each one to three polygon rings of 4-13 points taken from a
fixed pool of ring texts (so the file is written in seconds, not formatted number by number), with
bbox, area, iscrowd, id. Same arguments, same bytes. Written to /var/tmp by default: never the repo.

Usage:
  python benchmarks/make_big_coco.py [--images 1000000] [--per-image 10] [--out /var/tmp/big_coco/instances_big.json]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def ring_pool(rng: np.random.Generator, n: int = 4096) -> list[str]:
    """``n`` ring texts ``[x0,y0,...]`` of 4-13 points with 2 decimals inside a 640x480 image."""
    pool = []
    for _ in range(n):
        k = int(rng.integers(4, 14))
        cx, cy, r = rng.uniform(60, 580), rng.uniform(60, 420), rng.uniform(5, 55)
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        xy = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).ravel()
        pool.append("[" + ",".join(f"{v:.2f}" for v in xy) + "]")
    return pool


def write(out: str, n_images: int, per_image: int, seed: int = 17) -> int:
    """Write the file; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    pool = ring_pool(rng)
    n_ann = n_images * per_image
    image_of = rng.integers(0, n_images, n_ann)           # shuffled: annotations not grouped by image
    rings = rng.integers(0, len(pool), (n_ann, 3))
    n_rings = rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 2, 3], n_ann)
    cats = rng.integers(1, 81, n_ann)
    boxes = rng.integers(0, 400, (n_ann, 4))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = out + ".part"
    with open(tmp, "w", encoding="ascii", buffering=1 << 24) as f:
        f.write('{"info": {"description": "maskcore synthetic big COCO", "version": "1"},\n"licenses": [],\n')
        f.write('"images": [\n')
        step = 100_000
        for lo in range(0, n_images, step):
            f.write(",\n".join(
                f'{{"id": {i}, "file_name": "img_{i:07d}.jpg", "width": 640, "height": 480, "license": 0}}'
                for i in range(lo, min(n_images, lo + step))))
            f.write(",\n" if lo + step < n_images else "\n")
        f.write('],\n"annotations": [\n')
        step = 200_000
        for lo in range(0, n_ann, step):
            parts = []
            for i in range(lo, min(n_ann, lo + step)):
                seg = ",".join(pool[j] for j in rings[i, :n_rings[i]])
                x, y, w, h = boxes[i]
                parts.append(f'{{"id": {i + 1}, "image_id": {image_of[i]}, "category_id": {cats[i]}, '
                             f'"segmentation": [{seg}], "area": {w * h}.0, '
                             f'"bbox": [{x}.0, {y}.0, {w}.0, {h}.0], "iscrowd": 0}}')
            f.write(",\n".join(parts))
            f.write(",\n" if lo + step < n_ann else "\n")
        f.write('],\n"categories": [')
        f.write(", ".join(f'{{"id": {c}, "name": "class_{c:02d}", "supercategory": "s"}}' for c in range(1, 81)))
        f.write("]}\n")
    os.replace(tmp, out)
    return os.path.getsize(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--per-image", type=int, default=10)
    p.add_argument("--out", default="/var/tmp/big_coco/annotations/instances_big.json")
    args = p.parse_args()
    started = time.perf_counter()
    size = write(args.out, args.images, args.per_image)
    print(f"{args.out}: {size} bytes ({size / 2**30:.2f} GiB), {args.images} images, "
          f"{args.images * args.per_image} annotations, {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
