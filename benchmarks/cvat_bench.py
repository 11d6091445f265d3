"""maskcore's CVAT layout vs Datumaro's ``voc_segmentation`` export of the same COCO input, in one run.

Both tools read one COCO instances JSON and write CVAT "Segmentation mask 1.1" (labelmap.txt,
ImageSets, SegmentationClass/ and SegmentationObject/ PNGs) to a temporary folder, on one core:
- maskcore: the COCO reader and the ``cvat`` layout in this process, timed per step (parse JSON,
  parse item, rasterize, compose, encode each mask, write);
- Datumaro (PyPI ``datumaro``, in a separate interpreter given by ``--datumaro-python``, default
  this one): ``Dataset.import_from(..., "coco_instances")`` then the transforms CVAT's exporter
  applies (``polygons_to_masks``, ``merge_instance_segments``) and
  ``export(..., "voc_segmentation", apply_colormap=True)``, timed as import + export.
  (``boxes_to_masks`` is left out: Datumaro's COCO importer adds a box to every polygon
  annotation, which CVAT's own data does not have; converting them would paint the boxes.)
Best of ``--repeat`` runs, interleaved. Prints the ratio and the per-step table, and how many
pixels of the two outputs differ (upstream Datumaro rounds shape points through float32, CVAT's
fork and maskcore through float64: a few pixels on polygon edges differ; see BENCHMARKS.md).

Datumaro refuses COCO files with two categories of the same name (the facade set has two
"facade"): the benchmark writes a copy with the duplicates renamed (``name~<id>``) and gives that
copy to both tools.

Usage: python benchmarks/cvat_bench.py [COCO_JSON] [--images DIR] [--repeat 3]
                                       [--datumaro-python PATH]
Datumaro conflicts with the test extras (opencv-python vs opencv-python-headless, a pinned
pyarrow), so install it in its own venv:
  python -m venv .dmvenv && .dmvenv/bin/pip install datumaro==1.13.12
  python benchmarks/cvat_bench.py --datumaro-python .dmvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from maskcore.item import ItemData
from maskcore.layouts import get_layout
from maskcore.plan import plan_partitions
from maskcore.readers import open_source
from maskcore.sinks.fsdir import FsspecDirSink
from maskcore.timing import StepClock

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO.parent / "shared" / "data" / "roboflow_facade_coco" / "valid" / "_annotations.coco.json"

DATUMARO_SCRIPT = r'''
import json, os, shutil, sys, time
import datumaro as dm
src_json, img_dir, work, out = sys.argv[1:5]
root = os.path.join(work, "dm_in")
if not os.path.isdir(root):   # the layout Datumaro's importer expects (not timed)
    os.makedirs(os.path.join(root, "annotations")); os.makedirs(os.path.join(root, "images", "default"))
    shutil.copyfile(src_json, os.path.join(root, "annotations", "instances_default.json"))
    for im in json.load(open(src_json))["images"]:
        shutil.copyfile(os.path.join(img_dir, im["file_name"]),
                        os.path.join(root, "images", "default", im["file_name"]))
shutil.rmtree(out, ignore_errors=True)
t0 = time.perf_counter()
ds = dm.Dataset.import_from(root, "coco_instances")
n = len(ds)
t1 = time.perf_counter()
ds.transform("polygons_to_masks")
ds.transform("merge_instance_segments")
ds.export(out, "voc_segmentation", save_media=False, apply_colormap=True)
t2 = time.perf_counter()
print(json.dumps({"items": n, "import_s": t1 - t0, "export_s": t2 - t1, "version": dm.__version__}))
'''


def unique_category_names(src: Path, dst: Path) -> int:
    """Copy the COCO JSON with duplicate category names renamed; returns how many were renamed."""
    doc = json.loads(src.read_text())
    seen, renamed = set(), 0
    for c in doc["categories"]:
        if c["name"] in seen:
            c["name"] = f"{c['name']}~{c['id']}"
            renamed += 1
        seen.add(c["name"])
    dst.write_text(json.dumps(doc))
    return renamed


def run_maskcore(coco: Path, images: Path, out: Path, clock: StepClock) -> int:
    with clock.step("parse.json"):
        source = open_source("coco", str(coco), None, images=str(images))
        meta = source.read_meta()
        plan = plan_partitions(source.list_items(), workers=1, project_wide_stems=True)
    layout = get_layout("cvat", {})
    sink = FsspecDirSink(str(out))
    lines: dict[str, list[str]] = {}
    rows = plan.to_pylist()
    for row in rows:
        with clock.step("parse.item"):
            data = source.item_annotation(row)
            ann = source.parse_annotation(data, meta, row["item"], max_bitmap_pixels=2**28)
        item = ItemData(row["dataset"], row["item"], row["out_dir"], row["mask_stem"], row["out_name"],
                        meta, ann, data, None, "coco")
        files = layout.item_files(item, clock)
        with clock.step("write"):
            for path, blob in files:
                if path.startswith("@list/"):
                    lines.setdefault(path[6:], []).append(blob.decode())
                else:
                    sink.write(path, blob)
    with clock.step("write"):
        for path, blob in layout.project_files(meta, b""):
            sink.write(path, blob)
        for path, ids in lines.items():
            sink.write(path, ("\n".join(ids) + "\n").encode())
    return len(rows)


def run_datumaro(python: str, coco: Path, images: Path, work: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([python, "-c", DATUMARO_SCRIPT, str(coco), str(images), str(work), str(out)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"datumaro run failed (is datumaro installed for {python}?):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def differing_pixels(a: Path, b: Path) -> tuple[int, int, int]:
    """(differing class pixels, differing instance pixels, pixels compared) over b's PNGs."""
    from PIL import Image
    out = [0, 0, 0]
    for k, kind in enumerate(("SegmentationClass", "SegmentationObject")):
        for name in sorted(os.listdir(b / kind)):
            x = np.asarray(Image.open(a / kind / name).convert("RGB"))
            y = np.asarray(Image.open(b / kind / name).convert("RGB"))
            out[k] += int((x != y).any(-1).sum())
            out[2] += x.shape[0] * x.shape[1] if k == 0 else 0
    return out[0], out[1], out[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("coco", nargs="?", default=str(DEFAULT_JSON), help="COCO instances JSON")
    ap.add_argument("--images", help="image folder (default: the JSON's folder)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--datumaro-python", default=sys.executable)
    args = ap.parse_args()
    src = Path(args.coco).resolve()
    images = Path(args.images).resolve() if args.images else src.parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        coco = tmp / "instances.json"
        renamed = unique_category_names(src, coco)
        best_mc, best_dm, steps = None, None, None
        for _ in range(args.repeat):
            clock = StepClock()
            shutil.rmtree(tmp / "mc", ignore_errors=True)
            t0 = time.perf_counter()
            n = run_maskcore(coco, images, tmp / "mc", clock)
            mc = time.perf_counter() - t0
            if best_mc is None or mc < best_mc:
                best_mc, steps = mc, dict(clock.seconds)
            dm = run_datumaro(args.datumaro_python, coco, images, tmp, tmp / "dm")
            dm_s = dm["import_s"] + dm["export_s"]
            if best_dm is None or dm_s < best_dm["import_s"] + best_dm["export_s"]:
                best_dm = dm
        diff_class, diff_object, total = differing_pixels(tmp / "mc", tmp / "dm")
    dm_s = best_dm["import_s"] + best_dm["export_s"]
    print(f"# CVAT layout vs Datumaro {best_dm['version']} voc_segmentation: {n} images of {src.name}"
          f" ({renamed} duplicate category names renamed for Datumaro)")
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, one core, "
          f"best of {args.repeat}\n")
    print("| tool | ms/image | images/s |\n|---|---:|---:|")
    print(f"| maskcore (cvat layout) | {1000 * best_mc / n:.1f} | {n / best_mc:.1f} |")
    print(f"| Datumaro (import {1000 * best_dm['import_s'] / n:.1f} + export {1000 * best_dm['export_s'] / n:.1f}) "
          f"| {1000 * dm_s / n:.1f} | {n / dm_s:.1f} |")
    print(f"\n**ratio: maskcore is {dm_s / best_mc:.1f}x Datumaro**\n")
    print("| maskcore step | ms/image |\n|---|---:|")
    for name, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {1000 * seconds / n:.2f} |")
    print(f"\ndiffering pixels vs Datumaro: class {diff_class}, instance {diff_object} of {total} "
          f"({100 * max(diff_class, diff_object) / max(total, 1):.4f} %)")


if __name__ == "__main__":
    main()
