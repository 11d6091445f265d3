"""The cost of writing an export's files, by strategy and folder (the 18.1 disk question).

Reads every file under SOURCE (e.g. a finished export) into memory, then writes them all under
each DESTINATION folder with three strategies, alternated, ``--repeat`` rounds, after an
``os.sync()``: ``direct`` (create + write, no temporary), ``rename`` (a temporary in one folder,
then ``os.replace``, as ``FsspecDirSink.write`` does) and ``fallocate`` (``rename`` with the
file's size reserved first). Prints wall, system and user seconds of this process per round. The
written trees are removed after each round.

Usage: python benchmarks/write_bench.py SOURCE DESTINATION [DESTINATION ...] [--repeat 3]
e.g.   python benchmarks/write_bench.py /dev/shm/export /var/tmp /dev/shm
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time


def _files(src: str) -> list[tuple[str, bytes]]:
    out = []
    for folder, _, names in os.walk(src):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out.append((os.path.relpath(path, src), f.read()))
    return sorted(out)


def _write(root: str, files, how: str) -> None:
    made: set[str] = set()
    tmp = os.path.join(root, ".tmp")
    os.makedirs(tmp)
    for i, (rel, data) in enumerate(files):
        path = os.path.join(root, rel)
        folder = os.path.dirname(path)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        target = path if how == "direct" else os.path.join(tmp, f"{i:x}.part")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if how == "fallocate":
                os.posix_fallocate(fd, 0, len(data))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        if target != path:
            os.replace(target, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("destinations", nargs="+")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = _files(args.source)
    print(f"{len(files)} files, {sum(len(d) for _, d in files)} bytes")
    for base in args.destinations:
        for round_ in range(args.repeat):
            for how in ("direct", "rename", "fallocate"):
                root = os.path.join(base, f"write_bench_{os.getpid()}_{how}")
                shutil.rmtree(root, ignore_errors=True)
                os.sync()
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                _write(root, files, how)
                t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                print(f"{base} round {round_ + 1} {how:9s} wall {t1 - t0:.3f} s  "
                      f"system {r1.ru_stime - r0.ru_stime:.3f} s  user {r1.ru_utime - r0.ru_utime:.3f} s", flush=True)
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
