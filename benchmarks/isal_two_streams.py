"""The ISA-L case caught in the full suite (issue 18, session 6): one input, two level-1 streams.

With every PNG deflated by ISA-L and each compression logged (backend, sha256 of input and output,
per process), one full-suite run (``CI=true pytest -n 2``, 17,216 deflate calls, 5,359 distinct
inputs, 49 processes, all with ISA-L chosen from the same extension module) had exactly one input
with two outputs: the Up-filtered scanlines of a 5x4 grey mask (24 bytes, ``INPUT``), compressed
in both pytest-xdist worker processes during collection. One process gave ``STREAM_MATCH`` (27
bytes) every time (4 of 4, minutes apart), the other ``STREAM_LITERALS`` (25 bytes). Both inflate
to the input. ``STREAM_MATCH`` codes ``<length 4, distance 5>`` at byte 7; ``STREAM_LITERALS`` codes
24 literals although that match is in its 32-entry hash table (what ISA-L's C reference
``isal_deflate_icf_finish_hash_hist_base`` does, simulated, finds the match; so does level 3).

The two processes resolved the same multibinary versions (read from ``/proc/PID/mem``: finish
``isal_deflate_icf_finish_hash_hist_01``, body ``..._hash_hist_04``). Not reproduced in a fresh
process (this script; 60 fresh processes; pytest collection with and without xdist) whatever was
varied through ``isal_deflate`` called directly: garbage in the stream struct, the level buffer and
the output buffer, their alignments (0-120 by 8), the input's (0-4088 by 8), bytes after the input,
zmm0-31 and k1-7 filled before the call, earlier compressions, glibc heap settings as in a worker.
So ISA-L's level-1 output depends on per-process state that is none of those: it is not used by
default (``maskcore.codec.png``).

Usage: python benchmarks/isal_two_streams.py   (prints which stream this process produces)
"""

from __future__ import annotations

import zlib

from isal import isal_zlib

INPUT = bytes.fromhex("02ff000000000200000000ff0200ffff0000020100010000")
STREAM_LITERALS = bytes.fromhex("785e05c10101000008c3207cffce13160c9a62e77837610407")
STREAM_MATCH = bytes.fromhex("785e15c4b10d00000c0220f4ff9f6dca4007fd561b8d7037610407")


def main() -> None:
    assert zlib.decompress(STREAM_LITERALS) == INPUT == zlib.decompress(STREAM_MATCH)
    out = isal_zlib.compress(INPUT, 1)
    name = {STREAM_LITERALS: "STREAM_LITERALS (fresh processes)",
            STREAM_MATCH: "STREAM_MATCH (one long-lived suite process)"}.get(out, f"a third stream {out.hex()}")
    print(f"isal_zlib.compress(INPUT, 1) in this process: {name}")
    print(f"level 3 for comparison: {'STREAM_MATCH' if isal_zlib.compress(INPUT, 3) == STREAM_MATCH else 'other'}")


if __name__ == "__main__":
    main()
