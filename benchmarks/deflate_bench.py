"""Deflate backends on the facade previews (2048x1024 RGB, photo | 50 % overlay): ms and bytes.

The same Up-filtered scanlines as ``codec/png.encode_png`` are compressed at level 1 by every
backend maskcore knows (``DEFLATE_BACKENDS``) and, when the ``deflate`` package (libdeflate) is
importable, by libdeflate at levels 1 and 2 (its input is copied to ``bytes`` first, ~1 ms, not
timed). Interleaved repeats, one thread; medians over photos of per-photo medians. Each stream
is checked to inflate to the scanlines.

Usage: taskset -c 1 python benchmarks/deflate_bench.py [--photos 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
import zlib

import numpy as np
from codec_bench import make_inputs

from maskcore.codec.png import DEFLATE_BACKENDS, _filter_up


def coders(data: memoryview) -> dict:
    out = {f"{name} level 1": (lambda b=b: b.compress(data, 3)) for name, b in DEFLATE_BACKENDS.items()}
    try:
        import deflate  # libdeflate, optional: pip install deflate
    except ImportError:
        return out
    raw = bytes(data)
    out.update({f"libdeflate level {lv}": (lambda lv=lv: deflate.zlib_compress(raw, lv)) for lv in (1, 2)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, list] = {}
    for item in make_inputs(args.photos):
        preview = item["preview 2048x1024 RGB"]
        height = preview.shape[0]
        filtered = np.empty((height, preview[0].size + 1), np.uint8)
        filtered[:, 0] = 2
        _filter_up(preview.reshape(height, -1), out=filtered)
        data = memoryview(filtered).cast("B")
        times: dict[str, list] = {}
        sizes: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, f in coders(data).items():
                t0 = time.perf_counter()
                stream = f()
                times.setdefault(name, []).append(time.perf_counter() - t0)
                np.add.reduce(np.ones(16, np.float32))  # one encoder's SIMD state off the next
                assert zlib.decompress(stream) == data, name
                sizes[name] = len(stream)
        for name, t in times.items():
            rows.setdefault(name, []).append((1e3 * float(np.median(t)), sizes[name]))
    print("| backend | median ms | median bytes |\n|---|---:|---:|")
    for name, r in rows.items():
        ms, size = np.median(np.asarray(r, float), axis=0)
        print(f"| {name} | {ms:.2f} | {int(size):,} |")


if __name__ == "__main__":
    main()
