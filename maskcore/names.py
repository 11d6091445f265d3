"""Safe, deterministic file names for names that come from user data.

A name becomes one path component: separators, NUL and control characters become ``_``, ``.``
and ``..`` become ``_``, and over-long names are cut and suffixed with a short hash so that
different inputs stay different.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\]')
MAX_COMPONENT_BYTES = 200


def safe_component(name: str) -> str:
    """``name`` as a single safe path component (deterministic)."""
    out = _UNSAFE.sub("_", name)
    if out in ("", ".", ".."):
        out = out.replace(".", "_") or "_"
    if len(out.encode("utf-8")) > MAX_COMPONENT_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        out = out.encode("utf-8")[:MAX_COMPONENT_BYTES - 13].decode("utf-8", "ignore") + "~" + digest
    return out


def stem(name: str) -> str:
    """Item name without its last extension (``cat.1.jpg`` -> ``cat.1``)."""
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name
