"""The Python API's costs, measured: where in-process beats a local cluster, and in-memory masks
for a training data loader vs pycocotools.

``threshold``: ``maskcore.export`` of the first N items of a project (N = 6, 12, 24, 48, 96), all
four Supervisely mask kinds, once in this process (``cluster="inprocess"``) and once on the built-in
local cluster (``cluster="local", workers=<cores>``, started and stopped by the run), whole
calls timed; the outputs of both are checked identical before any time is printed. The crossover
is where the built-in local profile's ``inprocess_below`` (maskcore/exec/profiles.yaml) should sit.

``loader``: per item, ``project.masks(item, ("machine", "instance"))`` (parse, crop, rasterise,
compose: the pixels the export writes) vs pycocotools on the same objects the way a COCO data
loader does it (``annToMask`` per object = ``frPyObjects`` + ``merge`` + ``decode``, then a class
mask by painting them largest first). The two draw by different pixel rules (OpenCV vs COCO), so
only the work is compared, not the pixels.

Usage: python benchmarks/api_bench.py threshold PROJECT [--sizes 6,12,24,48,96] [--workdir DIR] [--repeat 3]
       python benchmarks/api_bench.py loader PROJECT [--limit 108] [--repeat 3]
(PROJECT: e.g. /tmp/facade_sly from benchmarks/coco_to_sly.py; see BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import maskcore


def _subset(project: Path, n: int, dst: Path) -> Path:
    """A copy of the first ``n`` items (sorted) of the single-dataset Supervisely ``project``."""
    (dst / "ds" / "img").mkdir(parents=True)
    (dst / "ds" / "ann").mkdir()
    shutil.copy(project / "meta.json", dst / "meta.json")
    images = sorted((project / "ds" / "img").iterdir())
    for i in range(n):
        img = images[i % len(images)]
        name = f"{i:05d}_{img.name}"
        shutil.copy(img, dst / "ds" / "img" / name)
        shutil.copy(project / "ds" / "ann" / f"{img.name}.json", dst / "ds" / "ann" / f"{name}.json")
    return dst


def _hashes(result) -> dict:
    return {o["path"]: o["sha256"] for row in result.manifest.to_pylist() for o in row["outputs"]}


def threshold(project: Path, sizes: list[int], workdir: str | None, repeat: int) -> None:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:  # warm up: imports and codecs of this process
        maskcore.export(_subset(project, 1, Path(tmp) / "src"), Path(tmp) / "o", cluster="inprocess",
                        log=lambda line: None)
    print(f"best of {repeat}, whole maskcore.export calls, all four mask kinds\n")
    print("| items | in-process s | local cluster s | faster |\n|---:|---:|---:|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            src = _subset(project, n, Path(tmp) / "src")
            times, outs = {}, {}
            for k in range(repeat):
                for where in ("inprocess", "local") if k % 2 == 0 else ("local", "inprocess"):
                    dst = Path(tmp) / f"{where}{k}"
                    start = time.perf_counter()
                    # workers= forces the local profile's worker processes (no in-process shortcut)
                    workers = None if where == "inprocess" else os.cpu_count()
                    result = maskcore.export(src, dst, cluster=where, workers=workers, log=lambda line: None)
                    times[where] = min(times.get(where, float("inf")), time.perf_counter() - start)
                    assert result.exit_code == 0, result.report["failures"][:2]
                    outs[where] = _hashes(result)
                    shutil.rmtree(dst)
            if outs["inprocess"] != outs["local"]:
                raise SystemExit(f"{n} items: in-process and cluster outputs differ")
            faster = "in-process" if times["inprocess"] < times["local"] else "cluster"
            print(f"| {n} | {times['inprocess']:.2f} | {times['local']:.2f} | {faster} |", flush=True)


def loader(project: Path, limit: int, repeat: int) -> None:
    from pycocotools import mask as mask_api

    opened = maskcore.open_project(project)
    items = list(opened.items())[:limit]
    index = {t: i for i, t in enumerate(opened.classes, start=1)}
    anns = []
    for item in items:
        ann = json.loads((project / "ds" / "ann" / f"{item.name}.json").read_text())
        h, w = ann["size"]["height"], ann["size"]["width"]
        polys = [(index[o["classTitle"]], [float(v) for xy in o["points"]["exterior"] for v in xy])
                 for o in ann["objects"] if o.get("geometryType", "polygon") == "polygon"]
        anns.append((h, w, polys))
    best = {"maskcore": float("inf"), "pycocotools": float("inf")}
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            m = opened.masks(item, ("machine", "instance"))
            assert m.machine is not None and m.instances is not None
        best["maskcore"] = min(best["maskcore"], time.perf_counter() - start)
        start = time.perf_counter()
        for h, w, polys in anns:
            masks = [(k, mask_api.decode(mask_api.merge(mask_api.frPyObjects([p], h, w)))) for k, p in polys]
            order = sorted(range(len(masks)), key=lambda i: -int(masks[i][1].sum()))
            machine = np.zeros((h, w), np.uint8)
            for i in order:
                machine[masks[i][1] != 0] = masks[i][0]
            instances = np.stack([m for _, m in masks]).astype(bool) if masks else None
            assert instances is not None
        best["pycocotools"] = min(best["pycocotools"], time.perf_counter() - start)
    n = len(items)
    print(f"{n} items, best of {repeat}: maskcore project.masks(machine, instance) "
          f"{1000 * best['maskcore'] / n:.2f} ms/item; pycocotools annToMask + class mask "
          f"{1000 * best['pycocotools'] / n:.2f} ms/item; ratio {best['pycocotools'] / best['maskcore']:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["threshold", "loader"])
    p.add_argument("project", type=Path)
    p.add_argument("--sizes", default="6,12,24,48,96")
    p.add_argument("--workdir", default=None)
    p.add_argument("--limit", type=int, default=108)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    if args.what == "threshold":
        threshold(args.project, [int(s) for s in args.sizes.split(",")], args.workdir, args.repeat)
    else:
        loader(args.project, args.limit, args.repeat)


if __name__ == "__main__":
    main()
