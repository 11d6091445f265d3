"""maskcore vs the reference way (Supervisely SDK as the export app uses it), in one run.

For every item with an image in the given Supervisely projects, both pipelines produce the
human, machine and instance masks (the three kinds the reference app makes) and write them to a
temporary folder. maskcore is timed per step (read, parse, decode, rasterize, compose and encode
per kind, write); the reference end to end per item. One process, one core, interleaved repeats;
the best of ``--repeat`` runs is kept. Prints a Markdown table for BENCHMARKS.md.

With ``--floor``, each step is also timed at its floor on the same items and outputs: the
fastest installed codec or copy doing only that step's unavoidable work (deflate of the same
filtered scanlines, JPEG decode, ``json.loads``, the photo copied into both halves of the preview, a
plain create + write of the same bytes without temporary + rename). The masks' deflate floor is
ISA-L, which maskcore must not use (not deterministic: BENCHMARKS.md "Issue 18 (session 6)" 1),
so a second column gives the deterministic floor of those steps: maskcore's own deflate backend
(zlib-ng level 1, RLE for grey) on the same filtered scanlines, nothing else.

Outputs go to a temporary folder under ``--workdir`` (default: the system's temporary folder).
On the machine of BENCHMARKS.md, creating a file anywhere under /tmp costs 0.6-0.9 ms (0.01-0.08
ms elsewhere on the same disk), which alone made ``write`` 20+ ms per image: pass
``--workdir /var/tmp`` to measure the code rather than that folder.

With ``--whole``, the whole commands instead, as a user runs them (interpreter start, imports,
listing, the run, the report): the reference as one ``python`` process drawing every item
(``reference_app.export_item``), maskcore as ``python -m maskcore.cli.main export PROJECT OUT
--masks machine,human,instance --no-images -o copy_annotations=false --workers 1``; wall time of
each process, best of ``--repeat``, the outputs compared mask by mask (every pixel) before any
time is printed. maskcore's modules are byte-compiled first (``compileall``), as ``pip install``
does: a source checkout run with ``PYTHONDONTWRITEBYTECODE`` (this machine's environment) would
otherwise compile them in every command (~0.24 s of 0.67 s of imports measured).

With ``--drop-caches`` (Linux, root), ``--whole`` first writes dirty pages back and drops the
page cache (``sync; echo 1 > /proc/sys/vm/drop_caches``) before each tool's command, then reads the
projects' files back in, so that both tools start from the same state of the machine's memory. On the
VM of BENCHMARKS.md the same maskcore command writing its 411 MB to this disk paid 0.79-0.84 s of system
time without a drop and 0.28-0.57 s right after one (three alternations; tmpfs 0.27-0.31), nearly all
of the difference in the kernel's copy into the page cache (``copy_folio_from_iter_atomic``):
BENCHMARKS.md "Issue 18 (session 10)".

With ``--cpu`` the steps are timed in CPU time of this thread (steady when other work shares the
core; the reference's time stays wall time, so use it with ``--no-reference``). The process keeps
freed heap for reuse as the command's process and its workers do (``exec.memory.keep_freed_heap``).

Usage: python benchmarks/bench.py [PROJECT ...] [--repeat 3] [--thickness 2] [--no-reference]
                                  [--floor] [--cpu] [--whole] [--workdir DIR] [--drop-caches]
       (default projects: examples/sly_catsdogs/{vector,instance,keypoints})
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from maskcore.exec.plan import plan_partitions
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.layouts import get_layout
from maskcore.model.crop import crop_annotation
from maskcore.model.item import ItemData
from maskcore.readers import open_source
from maskcore.readers.supervisely import parse_annotation
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
        with clock.step("crop"):  # the SDK's load-time crop (maskcore's default, option crop=sdk)
            ann = crop_annotation(ann)
        item = ItemData(row["dataset"], row["item"], row["out_dir"], row["mask_stem"], row["out_name"],
                        meta, ann, ann_bytes, img_bytes)
        files = layout.item_files(item, clock)
        with clock.step("write"):
            for path, data in files:
                sink.write(path, data)
    return len(rows)


def run_floor(project: Path, dst: Path, ours: Path, clock: StepClock, det: StepClock) -> None:
    """Each step's floor on the same items: only the unavoidable codec work or copy (the codecs:
    ISA-L level 1 on the Up-filtered rows; for the preview fpng's whole PNG when installed). ``det``
    times the masks' deflate with maskcore's deterministic backend on the same rows."""
    import io

    import numpy as np
    from isal import isal_zlib
    from PIL import Image

    from maskcore.codec.image import decode_image
    from maskcore.codec.png import DEFAULT_DEFLATE, DEFLATE_BACKENDS, _filter_up, _fpng

    deterministic = DEFLATE_BACKENDS[DEFAULT_DEFLATE].compress

    source, _, rows = _items(project)
    for row in rows:
        with clock.step("read"):
            ann_bytes = source.read_bytes(row["ann_path"])
            img_bytes = source.read_bytes(row["img_path"])
        with clock.step("parse"):
            json.loads(ann_bytes)
        with clock.step("decode.image"):
            image = decode_image(img_bytes)
        with clock.step("compose.human"):  # the photo into both halves: one broadcast copy
            h, w = image.shape[:2]
            both = np.empty((h, 2 * w, 3), np.uint8)
            np.copyto(both.reshape(h, 2, w * 3), image.reshape(h, 1, w * 3))
        out_dir, stem = row["out_dir"], row["mask_stem"]
        files = [(f"{out_dir}/masks_machine/{stem}.png", "encode.machine"),
                 (f"{out_dir}/masks_human/{stem}.png", "encode.human")]
        files += [(str(p.relative_to(ours)), "encode.instance")
                  for p in sorted((ours / out_dir / "masks_instances" / stem).glob("*.png"))]
        for rel, step in files:
            data = (ours / rel).read_bytes()
            pixels = np.asarray(Image.open(io.BytesIO(data)))
            filtered = memoryview(_filter_up(pixels.reshape(pixels.shape[0], -1))).cast("B")
            if step == "encode.human" and _fpng is not None:  # fpng's whole PNG beats ISA-L's deflate
                with clock.step(step):
                    _fpng.encode_ndarray(pixels)
            else:
                with clock.step(step):
                    isal_zlib.compress(filtered, 1)
                with det.step(step):
                    deterministic(filtered, pixels.shape[2] if pixels.ndim == 3 else 1)
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with clock.step("write"):
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, data)
                os.close(fd)


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


_REFERENCE_COMMAND = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import supervisely as sly
from pathlib import Path
from reference_app import export_item
jobs = json.loads(Path(sys.argv[2]).read_text())
for job in jobs:
    meta = sly.ProjectMeta.from_json(json.loads(Path(job["meta"]).read_text()))
    for ann, img, out_dir, stem in job["items"]:
        export_item(meta, ann, img, Path(job["dst"]) / out_dir, stem, job["thickness"])
"""


def settle_page_cache(projects: list[Path]) -> None:
    """Dirty pages written back, the page cache dropped, the projects' files read back in
    (``--drop-caches``): every command starts from the same memory state."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as exc:
        raise SystemExit(f"--drop-caches needs Linux and root: writing /proc/sys/vm/drop_caches failed: {exc}") from exc
    for project in projects:
        for path in sorted(project.rglob("*")):
            if path.is_file():
                path.read_bytes()


def run_whole(projects: list[Path], tmp: Path, thickness: int,
              drop_caches: bool = False) -> tuple[float, float, int, int]:
    """(reference seconds, maskcore seconds, masks compared, pixels compared): each tool's whole
    command, in its own process, wall time; the outputs compared before anything is returned.
    ``drop_caches``: ``settle_page_cache`` before each command."""
    import subprocess
    import sys

    jobs = []
    for k, project in enumerate(projects):
        _, _, rows = _items(project)
        jobs.append({"meta": str(project / "meta.json"), "dst": str(tmp / "ref" / str(k)), "thickness": thickness,
                     "items": [(str(project / r["ann_path"]), str(project / r["img_path"]), r["out_dir"],
                                r["mask_stem"]) for r in rows]})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    if drop_caches:
        settle_page_cache(projects)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _REFERENCE_COMMAND, str(Path(__file__).parent), str(tmp / "jobs.json")],
                   check=True)
    ref_s = time.perf_counter() - start
    ours_s = 0.0
    for k, project in enumerate(projects):
        if drop_caches:
            settle_page_cache(projects)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "maskcore.cli.main", "export", str(project),
                               str(tmp / "ours" / str(k)), "--masks", KINDS, "--thickness", str(thickness),
                               "--no-images", "-o", "copy_annotations=false", "--workers", "1"],
                              capture_output=True, text=True, check=False)
        ours_s += time.perf_counter() - start
        if proc.returncode not in (0, 3):  # 3: some items failed (an item without its image: the
            # reference is not given those either)
            raise SystemExit(f"maskcore export {project} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    files = pixels = 0
    for k in range(len(projects)):
        f, p = compare_outputs(tmp / "ours" / str(k), tmp / "ref" / str(k))
        files, pixels = files + f, pixels + p
    return ref_s, ours_s, files, pixels


def compare_outputs(ours: Path, ref: Path) -> tuple[int, int]:
    """Every mask the reference wrote has a file of the same name in ``ours`` with the same pixels,
    and ``ours`` has no mask the reference lacks. Returns (files, pixels) compared; raises SystemExit
    naming the first difference: a ratio is only worth printing for identical outputs."""
    import numpy as np
    from PIL import Image

    theirs = sorted(p.relative_to(ref) for p in ref.rglob("*.png"))
    mine = sorted(p.relative_to(ours) for p in ours.rglob("*.png"))
    if theirs != mine:
        extra, missing = sorted(set(mine) - set(theirs))[:5], sorted(set(theirs) - set(mine))[:5]
        raise SystemExit(f"outputs differ: maskcore wrote {len(mine)} masks, the reference {len(theirs)}; "
                         f"only maskcore: {extra}; only the reference: {missing}")
    pixels = 0
    for rel in theirs:
        a, b = np.asarray(Image.open(ours / rel)), np.asarray(Image.open(ref / rel))
        if a.shape != b.shape or (a != b).any():
            n = "shape" if a.shape != b.shape else int((a != b).any(axis=-1).sum() if a.ndim == 3 else (a != b).sum())
            raise SystemExit(f"outputs differ: {rel}: {n} pixels differ from the reference")
        pixels += a.shape[0] * a.shape[1]
    return len(theirs), pixels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("projects", nargs="*", type=Path, default=DEFAULT_PROJECTS)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--thickness", type=int, default=2)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--floor", action="store_true", help="also time each step at its floor")
    p.add_argument("--whole", action="store_true", help="time the whole commands (see above) instead")
    p.add_argument("--workdir", default=None, help="where the temporary output folders go")
    p.add_argument("--drop-caches", action="store_true",
                   help="--whole: sync and drop the page cache before each command (Linux, root; see above)")
    p.add_argument("--cpu", action="store_true",
                   help="time the steps in this thread's CPU time (time.thread_time) instead of wall time: "
                        "steady on a machine shared with other work")
    args = p.parse_args()
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    if args.whole:
        main_whole(args)
        return
    from maskcore.exec.memory import keep_freed_heap
    keep_freed_heap()  # as the command's process and its workers do (cli/main.py, exec/task.py)
    best_ours, best_ref, best_floor, best_det, n_items = None, None, {}, {}, 0
    compared = [0, 0]
    for repeat in range(args.repeat):
        timer = time.thread_time if args.cpu else time.perf_counter
        clock, floor, det, n_items, ref_s = StepClock(timer), StepClock(timer), StepClock(timer), 0, 0.0
        for project in args.projects:
            with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
                n_items += run_maskcore(project, Path(tmp) / "ours", args.thickness, clock)
                if args.floor:
                    run_floor(project, Path(tmp) / "floor", Path(tmp) / "ours", floor, det)
                if not args.no_reference:
                    ref_s += run_reference(project, Path(tmp) / "ref", args.thickness)[1]
                    if repeat == 0:
                        files, pixels = compare_outputs(Path(tmp) / "ours", Path(tmp) / "ref")
                        compared[0] += files
                        compared[1] += pixels
                shutil.rmtree(tmp, ignore_errors=True)
        total = sum(clock.seconds.values())
        if best_ours is None or total < sum(best_ours.values()):
            best_ours = dict(clock.seconds)
        for name, sec in floor.seconds.items():
            best_floor[name] = min(sec, best_floor.get(name, sec))
        for name, sec in det.seconds.items():
            best_det[name] = min(sec, best_det.get(name, sec))
        if not args.no_reference and (best_ref is None or ref_s < best_ref):
            best_ref = ref_s
    ours_total = sum(best_ours.values())
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{n_items} images from {', '.join(str(p) for p in args.projects)}; masks {KINDS}; "
          f"thickness {args.thickness}; best of {args.repeat}; {'CPU' if args.cpu else 'wall'} time\n")
    if best_floor:
        print("| step | maskcore ms/image | floor ms/image | gap | deterministic floor | gap |\n"
              "|---|---:|---:|---:|---:|---:|")
    else:
        print("| step | maskcore ms/image |\n|---|---:|")
    for name in sorted(best_ours, key=lambda k: -best_ours[k]):
        line = f"| {name} | {1000 * best_ours[name] / n_items:.2f} |"
        if best_floor:
            for floors in (best_floor, best_det):
                fl = floors.get(name, 0.0)
                line += f" {1000 * fl / n_items:.2f} | {best_ours[name] / fl:.1f}x |" if fl else " - | - |"
        print(line)
    floor_total = sum(best_floor.values())
    det_total = sum({**best_floor, **best_det}.values())  # the fastest floor where no deterministic one differs
    print(f"| **total** | **{1000 * ours_total / n_items:.2f}** |"
          + (f" {1000 * floor_total / n_items:.2f} | {ours_total / floor_total:.2f}x |"
             f" {1000 * det_total / n_items:.2f} | {ours_total / det_total:.2f}x |" if best_floor else "") + "\n")
    if best_ref is not None:
        print(f"outputs identical: {compared[0]} masks, {compared[1]} pixels compared with the reference's")
        print(f"reference (Supervisely SDK, app's way): {1000 * best_ref / n_items:.1f} ms/image; "
              f"maskcore: {1000 * ours_total / n_items:.1f} ms/image; "
              f"speed-up **{best_ref / ours_total:.1f}x**")


def main_whole(args) -> None:
    """``--whole``: best of ``--repeat`` whole commands per tool; outputs compared on every run."""
    import compileall
    import os

    import maskcore

    compileall.compile_dir(str(Path(maskcore.__file__).parent), quiet=1)  # what ``pip install`` does
    best_ref = best_ours = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            ref_s, ours_s, files, pixels = run_whole(args.projects, Path(tmp), args.thickness, args.drop_caches)
        best_ref = ref_s if best_ref is None else min(best_ref, ref_s)
        best_ours = ours_s if best_ours is None else min(best_ours, ours_s)
    n_items = sum(len(_items(p)[2]) for p in args.projects)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {n_items} images from "
          f"{', '.join(str(p) for p in args.projects)}; masks {KINDS}; thickness {args.thickness}; "
          f"best of {args.repeat}; output under {args.workdir or tempfile.gettempdir()}"
          f"{'; page cache dropped before each command' if args.drop_caches else ''}")
    print(f"outputs identical: {files} masks, {pixels} pixels compared with the reference's")
    print(f"whole command, wall: reference (Supervisely SDK, app's way) {best_ref:.2f} s; maskcore export "
          f"--workers 1 {best_ours:.2f} s ({n_items / best_ours:.1f} items/s); "
          f"speed-up **{best_ref / best_ours:.1f}x**")


if __name__ == "__main__":
    main()
