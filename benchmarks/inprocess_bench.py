"""When does a LocalCluster pay? The whole ``maskcore export`` command in this process vs on one and
two worker processes, per mask kind, on the same items; prints the cost of one item-kind, the
clusters' start-up and the work (items x kinds) at which each starts to pay: the built-in
``local`` profile's ``inprocess_below`` and ``maskcore.exec.cluster.ONE_WORKER_FACTOR``.

Usage (BENCHMARKS.md "Issue 18 (session 6)"; outputs under ``--workdir``, fresh folders):
    python benchmarks/inprocess_bench.py /tmp/facade_sly --repeat 3 --workdir /var/tmp

Model: in this process a run takes ``S0 + W``; on ``n`` workers ``S0 + S_n + W / n`` (``W``: the
work, ``S_n``: starting the cluster and its workers). n workers pay when ``W (1 - 1/n) > S_n``;
one worker never runs faster, and is worth its start-up (its isolation of a worker death) when
``S_1`` is at most 5 % of the run (``W > 20 S_1``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

KINDS = (("machine",), ("instance",), ("semantic",), ("human",), ("machine", "semantic", "human", "instance"))
MODES = {"in-process": ["--in-process"], "1 worker": ["--no-in-process", "--workers", "1"],
         "2 workers": ["--no-in-process", "--workers", "2"]}
_SECONDS = re.compile(r"bytes in ([0-9.]+) s")


def run(src: str, dst: Path, kinds, mode: list[str]) -> tuple[float, float]:
    """(wall seconds of the whole command, seconds the command reports: after import)."""
    shutil.rmtree(dst, ignore_errors=True)
    cmd = [sys.executable, "-m", "maskcore.cli.main", "export", src, str(dst), "--masks", ",".join(kinds),
           "--no-images", "-o", "copy_annotations=false", *mode]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    reported = float(_SECONDS.findall(proc.stderr + proc.stdout)[-1])
    shutil.rmtree(dst, ignore_errors=True)
    return wall, reported


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/var/tmp")
    args = ap.parse_args()
    n_items = sum(1 for _ in Path(args.project).glob("*/ann/*.json"))
    dst = Path(args.workdir) / "maskcore_inprocess_bench"
    print(f"{n_items} items; medians of {args.repeat} interleaved runs; seconds as the command reports "
          f"them (after import), wall in brackets")
    print(f"{'kinds':<32}" + "".join(f"{m:>20}" for m in MODES) + f"{'ms/item-kind':>14}{'S_1':>7}{'S_2':>7}")
    costs, starts1, starts2 = [], [], []
    for kinds in KINDS:
        times = {m: [] for m in MODES}
        for _ in range(args.repeat):
            for name, mode in MODES.items():
                times[name].append(run(args.project, dst, kinds, mode))
        rep = {m: statistics.median(r for _, r in v) for m, v in times.items()}
        wall = {m: statistics.median(w for w, _ in v) for m, v in times.items()}
        # the work W is the in-process time minus its fixed part (listing, plan, report): that of a
        # run of the same command on 1 item is not measured; the whole in-process time is used (an
        # upper bound of W, so the thresholds below are lower bounds)
        work = rep["in-process"]
        c = 1000 * work / (n_items * len(kinds))
        s1 = rep["1 worker"] - rep["in-process"]
        s2 = rep["2 workers"] - work / 2
        costs.append(c)
        starts1.append(s1)
        starts2.append(s2)
        print(f"{','.join(kinds):<32}" + "".join(f"{rep[m]:>11.2f} ({wall[m]:5.2f})" for m in MODES)
              + f"{c:>14.2f}{s1:>7.2f}{s2:>7.2f}")
    c, s1, s2 = statistics.median(costs), statistics.median(starts1), statistics.median(starts2)
    print(f"median: {c:.2f} ms per item-kind, start-up S_1 {s1:.2f} s, S_2 {s2:.2f} s")
    print(f"two workers pay above W = 2 S_2 = {2 * s2 * 1000 / c:.0f} item-kinds; one worker's start-up is "
          f"<= 5 % of the run above 20 S_1 = {20 * s1 * 1000 / c:.0f} item-kinds")


if __name__ == "__main__":
    main()
