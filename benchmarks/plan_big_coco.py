"""Plan a big COCO JSON on the driver (issue 17.2): seconds per step and peak RSS.

Steps, as ``maskcore export SRC DST --dry-run`` runs them (that command is the operator's; run it
under ``/usr/bin/time -v`` for the whole process):
  index     ``CocoSource.open_source``: one streamed pass over the JSON (``readers/coco_index.py``)
  meta      ``read_meta``
  listing   ``list_items`` with stamps (``exec.stamps.stamped_listing``)
  plan      ``exec.plan.plan_partitions`` (names, stems, partitions)
  read      one worker-side read of the first 1000 items (``item_annotation``: range reads)
Prints seconds per step, GB/s of the pass, and the peak RSS (ru_maxrss) after each step.

Usage:
  python benchmarks/make_big_coco.py        # /var/tmp/big_coco/annotations/instances_big.json
  python benchmarks/plan_big_coco.py [JSON]
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    """CPU seconds of this process (the wall clock of a shared machine is noise)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="?", default="/var/tmp/big_coco/annotations/instances_big.json")
    args = p.parse_args()
    from maskcore.exec.plan import plan_partitions
    from maskcore.exec.stamps import stamped_listing
    from maskcore.readers.coco import CocoSource

    size = os.path.getsize(args.json)
    print(f"{args.json}: {size / 1e9:.2f} GB; load {os.getloadavg()[0]:.1f}; start RSS {_rss_mib():.0f} MiB")
    t = time.perf_counter()
    cpu = [_cpu()]

    def step(name: str, began: float) -> float:
        now = time.perf_counter()
        cpu.append(_cpu())
        print(f"{name:8s} {now - began:7.1f} s wall {cpu[-1] - cpu[-2]:7.1f} s CPU   peak RSS "
              f"{_rss_mib():7.0f} MiB", flush=True)
        return now

    src = CocoSource.open_source(args.json)
    t1 = step("index", t)
    print(f"         {(t1 - t) / (size / 1e9):.1f} s wall, {(cpu[1] - cpu[0]) / (size / 1e9):.1f} s CPU per GB")
    src.read_meta()
    t2 = step("meta", t1)
    listing = stamped_listing(src)
    t3 = step("listing", t2)
    plan = plan_partitions(listing)
    t4 = step("plan", t3)
    rows = plan.slice(0, 1000).to_pylist()
    n = sum(len(src.item_annotation(r)) for r in rows)
    step("read", t4)
    print(f"items {plan.num_rows}, plan table {plan.nbytes / 2**20:.0f} MiB, 1000 items read = {n} bytes; "
          f"total {time.perf_counter() - t:.1f} s wall, {_cpu() - cpu[0]:.1f} s CPU, peak RSS "
          f"{_rss_mib():.0f} MiB; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
