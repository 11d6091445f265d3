"""Safe, deterministic file names for names that come from user data.

A name becomes one path component that every common file system accepts (Linux, macOS, Windows,
S3): ``/``, ``\\``, NUL, control characters (C0, DEL, C1), lone surrogates and the characters
Windows refuses (``<>:"|?*``) become ``_``; ``.`` and ``..`` become ``_`` and ``__``; trailing dots
and spaces (Windows drops them) become ``_``; Windows device names (``CON``, ``prn.txt``,
``COM1``, ``LPT9.png``, any case, any extension) get a ``_`` prefix; names over
``MAX_COMPONENT_BYTES`` UTF-8 bytes are cut and suffixed with a short hash of the whole name so
that different inputs stay different. ``unique_names`` then makes the names of one folder unique
ignoring case (a case-insensitive disk must not merge two outputs), again with short hashes.
Everything is a pure function of the input names: the same listing gives the same names.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from .errors import UnsafePathError

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\\ud800-\udfff<>:"|?*]')
_WINDOWS_DEVICE = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3])(\.|$)")
_TRAILING = re.compile(r"[. ]+$")
MAX_COMPONENT_BYTES = 200

STATE_DIR = ".maskcore-meta"
"""The destination-relative folder of maskcore's run state (manifest, report, lock, partials, start
markers, temporaries, archive chunks, Slurm logs): every state path is built from this constant.
Its name ends with ``meta`` so that the Supervisely SDK passes over it: ``Project._read``
(supervisely/project/project.py) takes every sub-folder for a dataset except paths ending (string
``endswith``) with one of ``Dataset.ignorable_dirs()`` (``ann, blob, datasets, img, img_info, meta,
seg``), and does not look inside those (but ``datasets``); a folder named ``.maskcore`` made it log
"Item directory not found: '.maskcore/img'" for it and each of its sub-folders."""
LEGACY_STATE_DIR = ".maskcore"
"""Where maskcore kept run state before ``STATE_DIR``; a run moves it (``maskcore.exec.legacy``)."""


def short_hash(text: str, n: int = 8) -> str:
    """First ``n`` hex digits of the sha256 of ``text`` (lone surrogates included)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def safe_component(name: str) -> str:
    """``name`` as a single safe path component (deterministic)."""
    out = _UNSAFE.sub("_", name)
    if out in ("", ".", ".."):
        out = out.replace(".", "_") or "_"
    out = _TRAILING.sub(lambda m: "_" * len(m.group()), out)
    if _WINDOWS_DEVICE.match(out):
        out = "_" + out
    if len(out.encode("utf-8")) > MAX_COMPONENT_BYTES:
        out = out.encode("utf-8")[:MAX_COMPONENT_BYTES - 13].decode("utf-8", "ignore") + "~" + short_hash(name, 12)
    return out


def stem(name: str) -> str:
    """Item name without the extension of its last path component (``cat.1.jpg`` -> ``cat.1``,
    ``v1.2/frame`` -> ``v1.2/frame``, ``.hidden`` -> ``.hidden``)."""
    dot = name.rfind(".")
    return name[:dot] if dot > name.rfind("/") + 1 else name


def _tagged(name: str, tag: str, keep_extension: bool) -> str:
    base, dot, ext = name.rpartition(".")
    if keep_extension and dot and base:
        return f"{base}~{tag}.{ext}"
    return f"{name}~{tag}"


def fold(name: str) -> str:
    """The key under which file systems may take two names for one: Unicode NFC (macOS, Windows and
    many S3 gateways store ``é`` composed or decomposed as the same name) and case folded."""
    return unicodedata.normalize("NFC", name).casefold()


def unique_names(names: list[str], originals: list[str], *, keep_extension: bool = True,
                 reserved: Iterable[str] = ()) -> list[str]:
    """Make ``names`` (already safe) unique ignoring case and Unicode normalisation (``fold``), and
    distinct from ``reserved``.

    A name that is unique and not reserved is kept. The others get ``~<hash of the original>``
    before the extension (``a.jpg`` -> ``a~1f2e3d4c.jpg``; at the end with
    ``keep_extension=False``); should that name be taken too (a name crafted to collide), the
    hash is taken again with a counter until it is free. Deterministic for a given input order.
    """
    counts = Counter(fold(n) for n in names)
    taken = {fold(r) for r in reserved}
    clash = [counts[fold(n)] > 1 or fold(n) in taken for n in names]
    taken.update(fold(n) for n, c in zip(names, clash) if not c)
    out = []
    for n, orig, c in zip(names, originals, clash):
        if c:
            k, candidate = 0, _tagged(n, short_hash(orig), keep_extension)
            while fold(candidate) in taken:
                k += 1
                candidate = _tagged(n, short_hash(f"{orig}\x00{k}"), keep_extension)
            taken.add(fold(candidate))
            n = candidate
        out.append(n)
    return out


def check_relpath(relpath: str) -> str:
    """Validate a destination-relative path written with ``/`` separators."""
    parts = relpath.split("/")
    if (not relpath or relpath.startswith("/") or "\\" in relpath or "\x00" in relpath
            or any(p in ("", ".", "..") for p in parts)):
        raise UnsafePathError(f"output path {relpath!r} would escape the destination or is malformed")
    return relpath
