"""Validation of JSON values that every reader checks the same way.

Conventions: a canvas side is a JSON integer (or an integer-valued float) in 1..2**31; errors are
``AnnotationError`` naming the key (``<what>.<key>``) and the value, located at ``where``.
"""

from __future__ import annotations

from typing import Any

from ..errors import AnnotationError
from ..limits import MAX_COORD


def canvas_size_hw(obj: dict[str, Any], what: str, where: str) -> tuple[int, int]:
    """``(obj["height"], obj["width"])`` validated as canvas sides."""
    hw = []
    for key in ("height", "width"):
        v = obj.get(key)
        if type(v) is float and v.is_integer():
            v = int(v)
        if type(v) is not int or not 0 < v <= MAX_COORD:
            raise AnnotationError(f"{what}.{key}: expected an integer in 1..2**31, got {v!r:.60}",
                                  where=where)
        hw.append(v)
    return hw[0], hw[1]


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (a name read with ``surrogateescape`` from
    undecodable bytes cannot; pyarrow refuses it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
