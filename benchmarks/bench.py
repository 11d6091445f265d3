"""maskcore vs the reference way (Supervisely SDK as the export app uses it), in one run.

For every item with an image in the given Supervisely projects, both pipelines produce the
human, machine and instance masks (the three kinds the reference app makes) and write them to a
temporary folder. maskcore is timed per step (read, parse, decode, rasterize, compose and encode
per kind, write); the reference end to end per item. One process, one core, interleaved repeats;
the best of ``--repeat`` runs is kept. Prints a Markdown table for BENCHMARKS.md.

Usage: python benchmarks/bench.py [PROJECT ...] [--repeat 3] [--thickness 2] [--no-reference]
       (default projects: examples/sly_catsdogs/{vector,instance,keypoints})
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from maskcore.item import ItemData
from maskcore.layouts import get_layout
from maskcore.plan import plan_partitions
from maskcore.readers import open_source
from maskcore.readers.supervisely import parse_annotation
from maskcore.sinks.fsdir import FsspecDirSink
from maskcore.timing import StepClock

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROJECTS = [REPO / "examples" / "sly_catsdogs" / p for p in ("vector", "instance", "keypoints")]
KINDS = "machine,human,instance"


def _items(project: Path):
    source = open_source("supervisely", str(project))
    meta = source.read_meta()
    plan = plan_partitions(source.list_items(), workers=1)
    rows = [r for r in plan.to_pylist() if r["img_path"] and r["ann_path"]]
    return source, meta, rows


def run_maskcore(project: Path, dst: Path, thickness: int, clock: StepClock) -> int:
    source, meta, rows = _items(project)
    layout = get_layout("supervisely", {"masks": KINDS, "thickness": thickness, "copy_images": False,
                                        "copy_annotations": False})
    sink = FsspecDirSink(str(dst))
    for row in rows:
        with clock.step("read"):
            ann_bytes = source.read_bytes(row["ann_path"])
            img_bytes = source.read_bytes(row["img_path"])
        with clock.step("parse"):
            ann = parse_annotation(json.loads(ann_bytes), meta, row["item"])
        item = ItemData(row["dataset"], row["item"], row["out_dir"], row["mask_stem"], row["out_name"],
                        meta, ann, ann_bytes, img_bytes)
        files = layout.item_files(item, clock)
        with clock.step("write"):
            for path, data in files:
                sink.write(path, data)
    return len(rows)


def run_reference(project: Path, dst: Path, thickness: int) -> tuple[int, float]:
    import supervisely as sly

    from reference_app import export_item

    _, _, rows = _items(project)
    meta = sly.ProjectMeta.from_json(json.loads((project / "meta.json").read_text()))
    start = time.perf_counter()
    for row in rows:
        export_item(meta, str(project / row["ann_path"]), str(project / row["img_path"]),
                    dst / row["out_dir"], row["mask_stem"], thickness)
    return len(rows), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("projects", nargs="*", type=Path, default=DEFAULT_PROJECTS)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--thickness", type=int, default=2)
    p.add_argument("--no-reference", action="store_true")
    args = p.parse_args()
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    best_ours, best_ref, n_items = None, None, 0
    for _ in range(args.repeat):
        clock, n_items, ref_s = StepClock(), 0, 0.0
        for project in args.projects:
            with tempfile.TemporaryDirectory() as tmp:
                n_items += run_maskcore(project, Path(tmp) / "ours", args.thickness, clock)
                if not args.no_reference:
                    ref_s += run_reference(project, Path(tmp) / "ref", args.thickness)[1]
                shutil.rmtree(tmp, ignore_errors=True)
        total = sum(clock.seconds.values())
        if best_ours is None or total < sum(best_ours.values()):
            best_ours = dict(clock.seconds)
        if not args.no_reference and (best_ref is None or ref_s < best_ref):
            best_ref = ref_s
    ours_total = sum(best_ours.values())
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"{n_items} images from {', '.join(str(p) for p in args.projects)}; masks {KINDS}; "
          f"thickness {args.thickness}; best of {args.repeat}\n")
    print("| step | maskcore ms/image |\n|---|---:|")
    for name in sorted(best_ours, key=lambda k: -best_ours[k]):
        print(f"| {name} | {1000 * best_ours[name] / n_items:.2f} |")
    print(f"| **total** | **{1000 * ours_total / n_items:.2f}** |\n")
    if best_ref is not None:
        print(f"reference (Supervisely SDK, app's way): {1000 * best_ref / n_items:.1f} ms/image; "
              f"maskcore: {1000 * ours_total / n_items:.1f} ms/image; "
              f"speed-up **{best_ref / ours_total:.1f}x**")


if __name__ == "__main__":
    main()
