"""The numpy structure scanner against a byte-by-byte reference, on random documents cut into
random chunks (strings with escaped quotes, backslash runs, brackets, unicode)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from maskcore.codec.json_spans import JsonSpanError, StructureScanner

CODES = {ord("{"): 1, ord("["): 2, ord("}"): -1, ord("]"): -2, ord(","): 3, ord(":"): 4}


def reference_tokens(data: bytes, shallow: int, cut: int):
    """Every structural byte outside strings with its depth before, one byte at a time."""
    shallow_out, cut_open, cut_close = [], [], []
    in_string = escaped = False
    depth = 0
    for i, b in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
            elif b == 0x22:
                in_string = False
            continue
        if b == 0x22:
            in_string = True
            continue
        code = CODES.get(b)
        if code is None:
            continue
        delta = 1 if code in (1, 2) else -1 if code < 0 else 0
        before, after = depth, depth + delta
        if (delta > 0 and before < shallow) or (delta < 0 and after < shallow) or (delta == 0 and before <= shallow):
            shallow_out.append((i, code, before))
        if delta > 0 and before == cut:
            cut_open.append(i)
        if delta < 0 and after == cut:
            cut_close.append(i)
        depth = after
    return shallow_out, cut_open, cut_close


def scan(data: bytes, cuts: list[int], shallow: int = 2, cut: int = 4):
    scanner = StructureScanner(shallow=shallow, cut=cut)
    out, opens, closes = [], [], []
    for lo, hi in zip([0, *cuts], [*cuts, len(data)]):
        toks = scanner.feed(data[lo:hi])
        out += list(zip(toks.pos.tolist(), toks.code.tolist(), toks.depth.tolist()))
        opens += toks.cut_open.tolist()
        closes += toks.cut_close.tolist()
    scanner.finish()
    return out, opens, closes


WORDS = ['a', '"', '\\', '\\\\', '\\"', '[', ']', '{', '}', ',', ':', 'é', '日本', '\n', '\\\\\\"', ' ']


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6)))


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.random()
    if depth > 6 or kind < 0.3:
        return rng.choice([1, -2.5, None, True, random_string(rng), 1e20])
    if kind < 0.65:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_bytes(rng: random.Random, value) -> bytes:
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 0, 2]),
                      separators=rng.choice([None, (",", ":"), (" , ", " : ")]))
    return text.encode("utf-8")


@pytest.mark.parametrize("seed", range(40))
def test_scanner_equals_the_byte_by_byte_reference(seed):
    rng = random.Random(seed)
    data = random_bytes(rng, {"k": random_value(rng), "images": [random_value(rng) for _ in range(5)]})
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 30))))
    assert scan(data, cuts) == reference_tokens(data, 2, 4)


def test_backslash_runs_across_chunk_boundaries():
    for n in range(1, 8):
        value = {"s": "\\" * n + '"]' + "\\" * n, "t": [1]}
        data = json.dumps(value).encode()
        for cut in range(1, len(data)):
            assert scan(data, [cut]) == reference_tokens(data, 2, 4), (n, cut)


@pytest.mark.parametrize("data, match", [
    (b'{"a": [1, 2}', "never closed"), (b'{"a": "x', "string that is never closed"),
    (b'{"a": 1}}', "closes nothing"), (b'{"a": 1} x', "expected the end of the file"),
    (b"]", "closes nothing"), (b"  ", "got none"),
])
def test_broken_structure_is_reported_with_its_offset(data, match):
    scanner = StructureScanner()
    with pytest.raises(JsonSpanError, match=match) as info:
        scanner.feed(data)
        scanner.feed(b"   ")
        scanner.finish()
    assert 0 <= info.value.offset <= len(data) + 3 and "at byte" in str(info.value)


def test_tokens_are_numpy_int64_positions():
    toks = StructureScanner().feed(b'{"a": [1, [2, [3]]]}')
    assert toks.pos.dtype == np.int64 and toks.pos.tolist() == [0, 4, 6, 8, 18, 19]
