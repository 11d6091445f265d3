"""Scale measurements for BENCHMARKS.md (issue 3): throughput with 1 and 2 workers, scheduler
overhead per task, peak memory per worker on the largest images, and planning 1,000,000 items.

Usage:
  python benchmarks/scale_bench.py throughput PROJECT [--copies 4] [--masks machine,semantic,instance]
                                   [--workers 1,2] [--workdir DIR] [--no-copies] [--repeat N]
                                   [--items-per-partition N]
  python benchmarks/scale_bench.py overhead [--tasks 400]
  python benchmarks/scale_bench.py memory PROJECT [--masks ...]
  python benchmarks/scale_bench.py plan [--items 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from maskcore.exec.run import ExportConfig, run_export


def _replicate(project: Path, dst: Path, copies: int) -> Path:
    """A bigger project: every item of every dataset ``copies`` times under new names."""
    shutil.copytree(project, dst)
    for ann_dir in sorted(dst.rglob("ann")):
        img_dir = ann_dir.parent / "img"
        for ann in sorted(ann_dir.glob("*.json")):
            item = ann.name[:-len(".json")]
            for k in range(1, copies):
                os.link(ann, ann_dir / f"c{k}_{ann.name}")
                if (img_dir / item).exists():
                    os.link(img_dir / item, img_dir / f"c{k}_{item}")
    return dst


def _cluster(workers: int):
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, Client(cluster)


def throughput(args) -> None:
    # --workdir: on the BENCHMARKS.md machine, creating files under /tmp costs 0.6-0.9 ms each
    options = {"masks": args.masks}
    if args.no_copies:  # masks only: no img/ and ann/ copies (the layout copies both by default)
        options.update(copy_images=False, copy_annotations=False)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        src = _replicate(args.project, Path(tmp) / "src", args.copies)
        rates = {}
        for workers in (int(w) for w in args.workers.split(",")):
            cluster, client = _cluster(workers)
            try:
                for rep in range(args.repeat):  # later runs: same cluster, workers warm, fresh folder
                    start = time.perf_counter()
                    run = run_export(ExportConfig(str(src), f"{tmp}/out{workers}_{rep}", layout_options=options,
                                                  items_per_partition=args.items_per_partition),
                                     log=lambda m: None, client=client)
                    seconds = time.perf_counter() - start
                    n = run.report["items"]["total"]
                    rate = n / seconds
                    rates.setdefault(workers, rate)  # the first (cold) run is the one compared
                    print(f"{workers} worker(s), run {rep + 1}{' (cold)' if rep == 0 else ' (warm)'}: "
                          f"{n} images in {seconds:.2f} s = {rate:.2f} images/s")
            finally:
                client.close()
                cluster.close()
        if 1 in rates and 2 in rates:
            print(f"scaling 2 vs 1 worker: {rates[2] / rates[1]:.2f}x (efficiency {rates[2] / rates[1] / 2:.0%})")


def overhead(args) -> None:
    """Tasks that do almost nothing: wall time per task beyond the work measured inside tasks."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "ds/ann").mkdir(parents=True)
        (src / "meta.json").write_text(json.dumps({"classes": [{"title": "a", "shape": "rectangle",
                                                                 "color": "#FF0000"}], "tags": []}))
        for i in range(args.tasks):
            (src / "ds/ann" / f"{i:06d}.png.json").write_text(json.dumps({"size": {"height": 4, "width": 4},
                                                                          "objects": []}))
        cluster, client = _cluster(2)
        try:
            start = time.perf_counter()
            run = run_export(ExportConfig(str(src), f"{tmp}/out", items_per_partition=1,
                                          layout_options={"masks": "machine", "copy_images": False}),
                             log=lambda m: None, client=client)
            wall = time.perf_counter() - start
        finally:
            client.close()
            cluster.close()
        work = sum(run.manifest.column("seconds").to_pylist())
        print(f"{args.tasks} tasks of one tiny item on 2 workers: {wall:.2f} s wall, {work:.3f} s of item work; "
              f"overhead {1000 * (2 * wall - work) / args.tasks:.2f} ms per task per worker "
              f"(includes planning, reading and the report)")


def memory(args) -> None:
    """Peak RSS of the (single) worker process over a run."""
    cluster, client = _cluster(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            run = run_export(ExportConfig(str(args.project), f"{tmp}/out", items_per_partition=1,
                                          layout_options={"masks": args.masks}),
                             log=lambda m: None, client=client)
            peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        for addr in peak:
            print(f"worker peak RSS {peak[addr] / 1024:.0f} MiB (idle {base[addr] / 1024:.0f} MiB) over "
                  f"{run.report['items']['total']} items, masks {args.masks}")
    finally:
        client.close()
        cluster.close()


def plan(args) -> None:
    import pyarrow as pa

    from maskcore.exec.plan import partitions, plan_partitions
    from maskcore.readers.supervisely import index_project_files

    n = args.items
    files = []
    for i in range(n):
        ds = f"ds{i // 100000:02d}"
        files.append((f"{ds}/ann/img_{i:07d}.jpg.json", 900))
        files.append((f"{ds}/img/img_{i:07d}.jpg", 120000))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    listing = index_project_files(files)
    t_list = time.perf_counter() - start
    del files
    start = time.perf_counter()
    parts = partitions(plan_partitions(listing, workers=64))
    t_plan = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{n} items: index {t_list:.1f} s, plan + split into {len(parts)} partitions {t_plan:.1f} s; "
          f"peak RSS {rss / 1024:.0f} MiB (of which {rss0 / 1024:.0f} MiB the synthetic file list); "
          f"listing table {listing.nbytes / 2**20:.0f} MiB")
    assert isinstance(parts[0], pa.Table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("project", type=Path)
    t.add_argument("--copies", type=int, default=4)
    t.add_argument("--masks", default="machine,semantic,instance")
    t.add_argument("--items-per-partition", type=int, default=None,
                   help="default: maskcore's own (32, fewer when needed for 4 partitions per worker)")
    t.add_argument("--no-copies", action="store_true", help="masks only, no img/ and ann/ copies")
    t.add_argument("--repeat", type=int, default=1,
                   help="exports per cluster; runs after the first reuse warm workers")
    t.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    t.add_argument("--workdir", default=None, help="where the temporary project and outputs go")
    o = sub.add_parser("overhead")
    o.add_argument("--tasks", type=int, default=400)
    m = sub.add_parser("memory")
    m.add_argument("project", type=Path)
    m.add_argument("--masks", default="machine,semantic,human,instance")
    pl = sub.add_parser("plan")
    pl.add_argument("--items", type=int, default=1_000_000)
    args = p.parse_args()
    {"throughput": throughput, "overhead": overhead, "memory": memory, "plan": plan}[args.cmd](args)


if __name__ == "__main__":
    main()
