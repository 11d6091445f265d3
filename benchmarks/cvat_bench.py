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
Best of ``--repeat`` runs; the two tools run alternately (who goes first alternates), each in its
own process (maskcore in this one, Datumaro in a child); imports are outside the timing on both
sides. Wall and CPU time are both reported (the CPU time is robust to other processes sharing the
core). Prints the ratio and the per-step table, and how many pixels of the two outputs differ
(upstream Datumaro rounds shape points through float32, CVAT's fork and maskcore through float64: a
few pixels on polygon edges differ; see BENCHMARKS.md).

Datumaro refuses COCO files with two categories of the same name (the facade set has two
"facade"): the benchmark writes a copy with the duplicates renamed (``name~<id>``) and gives that
copy to both tools.

Usage: python benchmarks/cvat_bench.py [COCO_JSON] [--images DIR] [--repeat 3]
                                       [--datumaro-python PATH] [--batch-items 8] [--maskcore-only]
From a git worktree, put its package first (``PYTHONPATH=$PWD``): otherwise the editable install's
maskcore is imported. maskcore runs as a worker does (``--batch-items``: the polygon fills of that
many items in one kernel call where the layout asks for it, ``exec.task.BATCH_ITEMS``).
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

from maskcore.exec.memory import DEFAULT_TOP_PAD_BYTES, keep_freed_heap
from maskcore.exec.plan import plan_partitions
from maskcore.exec.task import BATCH_ITEMS
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.kernel.draw import coverages_many
from maskcore.layouts import get_layout
from maskcore.model.item import ItemData
from maskcore.readers import open_source
from maskcore.readers.base import read_item_annotation
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
t0, c0 = time.perf_counter(), time.process_time()
ds = dm.Dataset.import_from(root, "coco_instances")
n = len(ds)
t1 = time.perf_counter()
ds.transform("polygons_to_masks")
ds.transform("merge_instance_segments")
ds.export(out, "voc_segmentation", save_media=False, apply_colormap=True)
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"items": n, "import_s": t1 - t0, "export_s": t2 - t1, "cpu_s": c2 - c0,
                  "version": dm.__version__}))
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


ONE_TIME = "parse.json"
"""maskcore's one-time step: read and index the JSON, list the images, plan (Datumaro's
``import_from`` does the same work, and is counted in its total)."""


def run_maskcore(coco: Path, images: Path, out: Path, clock: StepClock, batch_items: int = BATCH_ITEMS) -> int:
    """The COCO -> cvat export as a worker runs it (``exec.task.render_partition``): items read and
    parsed, the polygon fills of ``batch_items`` items drawn in one kernel call (``coverage_job``,
    ``coverages_many``), then each item rendered and written; ``batch_items=1`` draws per item."""
    with clock.step(ONE_TIME):
        source = open_source("coco", str(coco), None, images=str(images))
        meta = source.read_meta()
        plan = plan_partitions(source.list_items(), workers=1, project_wide_stems=True)
    layout = get_layout("cvat", {})
    sink = FsspecDirSink(str(out))
    lines: dict[str, list[str]] = {}
    rows = plan.to_pylist()
    for first in range(0, len(rows), batch_items):
        batch = []
        for row in rows[first:first + batch_items]:
            with clock.step("parse.item"):
                read = read_item_annotation(source, row)   # as a worker reads it (exec.task)
                ann = source.parse_annotation(read.data, meta, row["item"], max_bitmap_pixels=2**28,
                                              decoded=read.decoded)
            batch.append(ItemData(row["dataset"], row["item"], row["out_dir"], row["mask_stem"],
                                  row["out_name"], meta, ann, read.data, None, "coco"))
        drawn = [None] * len(batch)
        if batch_items > 1:
            with clock.step("rasterize"):
                jobs = [layout.coverage_job(item) for item in batch]
                todo = [i for i, job in enumerate(jobs) if job is not None]
                patches = coverages_many([(jobs[i][0], batch[i].annotation.size_hw) for i in todo], 1, "coco")
                for i, item_patches in zip(todo, patches):
                    drawn[i] = item_patches
        for item, patches in zip(batch, drawn):
            files = layout.item_files(item, clock, patches=patches)
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


def warm_up() -> None:
    """Imports both tools pay once per process, outside the timing on both sides (the Datumaro
    script imports datumaro before its clock starts): pyarrow imports pandas on its first table."""
    import pyarrow as pa
    pa.table({"x": [0]})


def _best(seconds_per_run) -> float:
    return min(seconds_per_run)


def floors(coco: Path, images: Path, mc_out: Path, repeat: int) -> dict[str, tuple[str, float]]:
    """Per-image cost of the best known way to do each step's work alone, on the same data:
    step -> (what, seconds for all images). Best of ``repeat``."""
    from PIL import Image

    from maskcore.codec.png import DEFAULT_DEFLATE, DEFLATE_BACKENDS
    from maskcore.layouts.cvat import cvat_shape
    out: dict[str, tuple[str, float]] = {}
    source = open_source("coco", str(coco), None, images=str(images))
    meta = source.read_meta()
    rows = source.list_items().to_pylist()
    blobs = [source.item_annotation(row) for row in rows]   # the bytes a worker parses (range-read spans)
    out["parse.item"] = ("json.loads of the inline bytes", _timed(lambda: [json.loads(b) for b in blobs], repeat))
    # encode: the deflate backend alone on the Up-filtered scanlines maskcore wrote
    compress = DEFLATE_BACKENDS[DEFAULT_DEFLATE].compress
    filtered = []
    for kind in ("SegmentationClass", "SegmentationObject"):
        for name in sorted(os.listdir(mc_out / kind)):
            rgb = np.asarray(Image.open(mc_out / kind / name).convert("RGB")).reshape(
                -1, 3 * Image.open(mc_out / kind / name).width)
            f = np.empty((rgb.shape[0], rgb.shape[1] + 1), np.uint8)
            f[:, 0] = 2
            f[0, 1:] = rgb[0]
            np.subtract(rgb[1:], rgb[:-1], out=f[1:, 1:])
            filtered.append(memoryview(f).cast("B"))
    out["encode.cvat"] = (f"{DEFAULT_DEFLATE} deflate of the same filtered bytes (2 PNGs)",
                          _timed(lambda: [compress(f, 3) for f in filtered], repeat))
    canvas = np.zeros((1024, 1024), np.uint8)
    out["compose.cvat"] = ("one 1024x1024 uint8 canvas copy",
                           _timed(lambda: [canvas.copy().sum(dtype=np.uint8) for _ in rows], repeat))
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return out
    objects = []
    for row in rows:
        ann = source.parse_annotation(source.item_annotation(row), meta, row["item"])
        h, w = ann.size_hw
        polys = []
        for lb in ann.labels:
            geom = cvat_shape(lb.geometry)
            parts = geom.parts if hasattr(geom, "parts") else (geom,)
            polys.append([p.exterior_xy.ravel().tolist() for p in parts])
        objects.append((polys, h, w))
    # pycocotools' RLEs are runs down the columns, what the layout takes from the kernel
    # (coco_polygon_spans); decoding them to masks (below) is what it no longer does
    out["rasterize"] = ("pycocotools frPyObjects + merge per object (its runs, in C; no decode)",
                        _timed(lambda: [[mask_utils.merge(mask_utils.frPyObjects(p, h, w)) for p in polys]
                                        for polys, h, w in objects], repeat))
    out["rasterize (pycocotools)"] = ("pycocotools frPyObjects + merge + decode, per object",
                                      _timed(lambda: [[mask_utils.decode(mask_utils.merge(
                                          mask_utils.frPyObjects(p, h, w))) for p in polys]
                                          for polys, h, w in objects], repeat))
    return out


def _timed(fn, repeat: int) -> float:
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


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


def float32_render(coco: Path, images: Path, out: Path) -> None:
    """maskcore's export with polygon points rounded as upstream Datumaro 1.13 rounds them
    (``np.array(points, np.float32).round(2)``, then back to float64) instead of CVAT's fork
    (``np.around(points, 2)`` in float64): isolates that one difference in the comparison."""
    import maskcore.layouts.cvat as cvat
    keep = cvat._round
    cvat._round = lambda xy: (xy.astype(np.float32).round(cvat.COORDINATE_DIGITS).astype(np.float64)
                              if xy.dtype.kind == "f" else xy)
    try:
        run_maskcore(coco, images, out, StepClock())
    finally:
        cvat._round = keep


def maskcore_only(src: Path, images: Path, repeat: int, batch_items: int) -> None:
    """maskcore's CPU time per image (this thread), best and median of ``repeat`` runs, and each
    step's best CPU time, in ms/image: one line each, for A/B runs of two checkouts alternated by a shell
    loop."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        coco = tmp / "instances.json"
        unique_category_names(src, coco)
        runs = []
        for _ in range(repeat):
            clock = StepClock(time.thread_time)
            shutil.rmtree(tmp / "mc", ignore_errors=True)
            c0 = time.thread_time()
            n = run_maskcore(coco, images, tmp / "mc", clock, batch_items)
            runs.append((time.thread_time() - c0, dict(clock.seconds)))
    cpu = sorted(1000 * seconds / n for seconds, _ in runs)
    steps = {name: 1000 * min(r[1].get(name, 0.0) for r in runs) / n for name in runs[0][1]}
    print(f"maskcore {REPO.name}: CPU ms/image best {cpu[0]:.2f} median {cpu[len(cpu) // 2]:.2f} "
          f"(batch_items {batch_items}, {repeat} runs); steps: "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(steps.items(), key=lambda kv: -kv[1])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("coco", nargs="?", default=str(DEFAULT_JSON), help="COCO instances JSON")
    ap.add_argument("--images", help="image folder (default: the JSON's folder)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--datumaro-python", default=sys.executable)
    ap.add_argument("--no-floors", action="store_true", help="skip measuring each step's floor")
    ap.add_argument("--top-pad-mb", type=int, default=DEFAULT_TOP_PAD_BYTES >> 20,
                    help="glibc M_TOP_PAD for both tools (maskcore.exec.memory.keep_freed_heap here, as maskcore's "
                         "workers do; MALLOC_TOP_PAD_ for Datumaro): freed heap kept for reuse instead of "
                         "returned to the OS (page faults cost ~4 us here); 0 = glibc's default")
    ap.add_argument("--batch-items", type=int, default=BATCH_ITEMS,
                    help="items whose polygon fills are drawn in one kernel call, as a worker batches them "
                         "(maskcore.exec.task.BATCH_ITEMS); 1: each item alone (the script before session 8)")
    ap.add_argument("--maskcore-only", action="store_true",
                    help="time maskcore alone (--repeat runs, per-step table, no Datumaro, no pixel "
                         "comparison): for A/B runs of two checkouts, PYTHONPATH=<checkout> in turn")
    args = ap.parse_args()
    if args.top_pad_mb:
        keep_freed_heap(args.top_pad_mb << 20)
        os.environ["MALLOC_TOP_PAD_"] = str(args.top_pad_mb << 20)
    src = Path(args.coco).resolve()
    images = Path(args.images).resolve() if args.images else src.parent
    warm_up()
    if args.maskcore_only:
        maskcore_only(src, images, args.repeat, args.batch_items)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        coco = tmp / "instances.json"
        renamed = unique_category_names(src, coco)
        mc_runs, dm_runs = [], []   # (wall s, cpu s, steps) / Datumaro's json
        for r in range(args.repeat):
            for tool in (("mc", "dm") if r % 2 == 0 else ("dm", "mc")):  # alternate who goes first
                if tool == "dm":
                    dm_runs.append(run_datumaro(args.datumaro_python, coco, images, tmp, tmp / "dm"))
                    continue
                clock = StepClock()
                shutil.rmtree(tmp / "mc", ignore_errors=True)
                t0, c0 = time.perf_counter(), time.thread_time()
                n = run_maskcore(coco, images, tmp / "mc", clock, args.batch_items)
                mc_runs.append((time.perf_counter() - t0, time.thread_time() - c0, dict(clock.seconds)))
        diff_class, diff_object, total = differing_pixels(tmp / "mc", tmp / "dm")
        float32_render(coco, images, tmp / "mc32")
        diff32 = differing_pixels(tmp / "mc32", tmp / "dm")
        floor = {} if args.no_floors else floors(coco, images, tmp / "mc", max(args.repeat, 3))
    best_mc = min(mc_runs, key=lambda run: run[0])
    best_dm = min(dm_runs, key=lambda run: run["import_s"] + run["export_s"])
    mc_s, dm_s = best_mc[0], best_dm["import_s"] + best_dm["export_s"]
    mc_cpu, dm_cpu = min(run[1] for run in mc_runs), min(run["cpu_s"] for run in dm_runs)
    steps = {name: min(run[2].get(name, 0.0) for run in mc_runs) for name in best_mc[2]}
    once = steps.pop(ONE_TIME, 0.0)
    ms = lambda seconds: 1000 * seconds / n  # noqa: E731
    print(f"# CVAT layout vs Datumaro {best_dm['version']} voc_segmentation: {n} images of {src.name}"
          f" ({renamed} duplicate category names renamed for Datumaro)")
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}, one process each, run alternately, best of {args.repeat}, "
          f"glibc M_TOP_PAD {args.top_pad_mb or 'default'} MB\n")
    print("| tool | wall ms/image | CPU ms/image | images/s |\n|---|---:|---:|---:|")
    print(f"| maskcore (cvat layout), all | {ms(mc_s):.1f} | {ms(mc_cpu):.1f} | {n / mc_s:.1f} |")
    print(f"| maskcore, one-time JSON parse + listing + plan | {ms(once):.1f} | | |")
    print(f"| maskcore, per image (all minus one-time) | {ms(mc_s - once):.1f} | | |")
    print(f"| Datumaro: import {ms(best_dm['import_s']):.1f} + export {ms(best_dm['export_s']):.1f} "
          f"| {ms(dm_s):.1f} | {ms(dm_cpu):.1f} | {n / dm_s:.1f} |")
    print(f"\n**ratio: maskcore is {dm_s / mc_s:.1f}x Datumaro (wall, everything included), "
          f"{dm_cpu / mc_cpu:.1f}x (CPU)**\n")
    print("| maskcore step | ms/image (best run) | floor ms/image | floor |\n|---|---:|---:|---|")
    for name, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        what, fs = floor.get(name, ("", None))
        print(f"| {name} | {ms(seconds):.2f} | {'' if fs is None else f'{ms(fs):.2f}'} | {what} |")
    print(f"| {ONE_TIME} (one-time) | {ms(once):.2f} | | |")
    for name, (what, fs) in floor.items():
        if name not in steps:
            print(f"| ({name}) | | {ms(fs):.2f} | {what} |")
    print(f"\ndiffering pixels vs Datumaro: class {diff_class}, instance {diff_object} of {total} "
          f"({100 * max(diff_class, diff_object) / max(total, 1):.4f} %); with upstream Datumaro's float32 "
          f"rounding emulated: class {diff32[0]}, instance {diff32[1]}")


if __name__ == "__main__":
    main()
