"""Whole ``maskcore export`` commands of two (or more) checkouts, alternated, CPU time of each.

On a machine where wall time varies +-10 % from run to run (the 2-vCPU VM of BENCHMARKS.md, no
hardware counters), a change of a few % shows only in the CPU time of many alternated runs: each
run is ``python -m maskcore.cli.main export PROJECT OUT ARGS`` with ``PYTHONPATH=CHECKOUT`` (so
the checkout's package is imported, not the installed one), pinned to one core with ``taskset``
when it is on PATH, output in a fresh folder under ``--workdir`` removed after the run; the CPU
time (user + system) comes from ``os.wait4`` of the child. Each checkout's modules are
byte-compiled first, as ``pip install`` does. Prints every run, then per checkout the sorted CPU
seconds, the minimum and the median.

Usage: python benchmarks/ab_whole.py PROJECT CHECKOUT [CHECKOUT ...] [--runs 5] [--workdir /dev/shm]
           [--core 1] -- [export arguments, default: --masks machine,human,instance --no-images
           -o copy_annotations=false --workers 1]
Example (main vs a worktree): python benchmarks/ab_whole.py /tmp/facade_sly /work/main /tmp/wt_x
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

DEFAULT_ARGS = ["--masks", "machine,human,instance", "--no-images", "-o", "copy_annotations=false",
                "--workers", "1"]


def run_once(project: str, checkout: str, args: list[str], workdir: str,
             core: int | None) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, minor page faults) of one export by ``checkout``'s package."""
    import time

    out = tempfile.mkdtemp(dir=workdir, prefix="ab_")
    try:
        cmd = [sys.executable, "-m", "maskcore.cli.main", "export", project, os.path.join(out, "o"), *args]
        if core is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(core), *cmd]
        env = {**os.environ, "PYTHONPATH": checkout}
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace")
        if proc.returncode not in (0, 3):
            raise SystemExit(f"{checkout}: export failed ({proc.returncode}): {err[-2000:]}")
        return usage.ru_utime + usage.ru_stime, wall, usage.ru_minflt
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    argv = sys.argv[1:]
    export_args = DEFAULT_ARGS
    if "--" in argv:
        cut = argv.index("--")
        argv, export_args = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("project")
    p.add_argument("checkouts", nargs="+")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--workdir", default=tempfile.gettempdir())
    p.add_argument("--core", type=int, default=1, help="pin to this core (taskset); -1: do not pin")
    a = p.parse_args(argv)
    core = None if a.core < 0 else a.core
    for checkout in a.checkouts:
        compileall.compile_dir(os.path.join(checkout, "maskcore"), quiet=1)
    cpu: dict[str, list[float]] = {c: [] for c in a.checkouts}
    for k in range(a.runs):
        for checkout in a.checkouts:
            seconds, wall, faults = run_once(a.project, checkout, export_args, a.workdir, core)
            cpu[checkout].append(seconds)
            print(f"run {k + 1} {checkout}: CPU {seconds:.3f} s, wall {wall:.3f} s, {faults} page faults, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    for checkout, values in cpu.items():
        print(f"{checkout}: CPU s sorted {' '.join(f'{v:.3f}' for v in sorted(values))}; "
              f"min {min(values):.3f}, median {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
