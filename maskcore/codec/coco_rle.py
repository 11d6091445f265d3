"""COCO run-length encoding (RLE), as pycocotools' ``maskApi.c`` defines it; pure numpy, no I/O.

Conventions: runs cover an (h, w) canvas in column-major (Fortran) order and start with a run of
0s; ``counts`` is an int64 array of run lengths. The compact string form writes each count as
5-bit groups (see ``rle_counts_from_string``); pycocotools' code is not used or copied, the format
is restated from its documentation and checked against it in tests/readers/test_coco_reader.py.
"""

from __future__ import annotations

import numpy as np

MAX_RLE_CHUNKS = 12
"""Longest count in the compact string form, in characters (12 * 5 bits covers any int64 run)."""


def rle_counts_from_string(text: str | bytes) -> np.ndarray:
    """COCO's compact RLE string -> run lengths (int64; not yet checked against a canvas).

    Each count is written as 5-bit groups, least significant first, each group + 48 as one
    character, bit 0x20 meaning "another group follows"; the last group's bit 0x10 is the sign.
    From the fourth count on, the value written is the difference to the count two before.
    Raises ``ValueError`` for characters outside '0'..'o', a truncated last count, or a count
    longer than ``MAX_RLE_CHUNKS`` characters.
    """
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    b = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if b.size == 0:
        return np.zeros(0, np.int64)
    bad = np.flatnonzero((b < 0) | (b > 63))
    if bad.size:
        raise ValueError(f"expected characters '0'..'o', got {raw[bad[0]:bad[0] + 1]!r} at "
                         f"offset {int(bad[0])}")
    more = (b & 0x20) != 0
    if more[-1]:
        raise ValueError("expected the last count to end, got a string cut inside a count")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    chunks = ends - starts + 1
    if chunks.max() > MAX_RLE_CHUNKS:
        at = int(np.argmax(chunks))
        raise ValueError(f"expected counts of at most {MAX_RLE_CHUNKS} characters, got "
                         f"{int(chunks[at])} for count {at}")
    k = np.arange(b.size) - np.repeat(starts, chunks)
    x = np.add.reduceat((b & 0x1F) << (5 * k), starts)
    negative = (b[ends] & 0x10) != 0
    x[negative] -= np.left_shift(np.int64(1), 5 * chunks[negative])
    counts = x.copy()
    counts[1::2] = np.cumsum(x[1::2])  # the deltas chain every other count from the 2nd and 3rd
    counts[2::2] = np.cumsum(x[2::2])
    return counts


def check_rle_counts(counts: np.ndarray, size_hw: tuple[int, int]) -> None:
    """``ValueError`` unless every count is in 0..h*w and they add up to h*w exactly."""
    n = size_hw[0] * size_hw[1]
    if counts.size and (counts.min() < 0 or counts.max() > n):
        bad = int(np.flatnonzero((counts < 0) | (counts > n))[0])
        raise ValueError(f"expected run lengths in 0..{n} (h*w), got {int(counts[bad])} at run {bad}")
    ends = np.cumsum(counts)  # no overflow: every count is at most n <= 2**62
    total = int(ends[-1]) if ends.size else 0
    if total != n or (ends.size and ends.max() > n):
        raise ValueError(f"expected run lengths adding up to h*w = {size_hw[0]}*{size_hw[1]} = "
                         f"{n}, got {total if ends.max(initial=0) <= n else 'more'}")


def rle_to_bitmap(counts: np.ndarray, size_hw: tuple[int, int]) -> tuple[tuple[int, int], np.ndarray]:
    """Checked column-major runs (0s first) over a ``size_hw`` canvas -> (origin_xy, bool mask)
    cropped tight to the set pixels; allocates only the crop. No pixel set: ((0, 0), (0, 0) mask).
    """
    h = size_hw[0]
    ends = np.cumsum(counts)
    s, e = (ends - counts)[1::2], ends[1::2]
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return (0, 0), np.zeros((0, 0), bool)
    first_col, last_col = s // h, (e - 1) // h
    c0, c1 = int(first_col.min()), int(last_col.max())
    if (last_col > first_col).any():  # a run through a column end: every row is covered somewhere
        r0, r1 = 0, h - 1
    else:
        r0, r1 = int((s % h).min()), int(((e - 1) % h).max())
    hh, ww = r1 - r0 + 1, c1 - c0 + 1
    if hh == h:  # the crop is a contiguous slice of the column-major canvas
        cs = s - c0 * h
    else:        # every run lies in one column: shift it into the crop's columns
        cs = (first_col - c0) * hh + (s % h - r0)
    ce = cs + (e - s)
    lengths = np.empty(2 * s.size + 1, np.int64)
    lengths[0:-1:2] = cs - np.concatenate(([0], ce[:-1]))
    lengths[1::2] = ce - cs
    lengths[-1] = hh * ww - ce[-1]
    values = np.zeros(lengths.size, bool)
    values[1::2] = True
    mask = np.repeat(values, lengths).reshape(ww, hh).T
    return (c0, r0), mask
