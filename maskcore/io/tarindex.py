"""Reading a tar archive in place, refusing the hostile ones. Never extracts anything.

Conventions:
- ``scan_tar(f)`` reads only the 512-byte headers of a seekable binary file (ustar, GNU long
  names, pax ``path``/``size``/``linkpath``) and returns the regular files: normalised member
  name (``./`` and ``//`` dropped) -> (offset of its data, size). Hard and symbolic links resolve
  to their targets; a link whose target is not a member is left out (like a missing file).
- Hostile archives are refused whole, as tarfile's ``data`` extraction filter refuses them,
  with a ``ProjectError`` naming the member and its byte offset: absolute names or link targets,
  ``..`` that climbs out of the archive, devices and fifos, sparse members, bad checksums,
  members or headers that declare more bytes than the file holds (a bomb, or a truncated tar),
  long-name or pax headers over ``limits.MAX_TAR_HEADER_BYTES``, malformed pax records.
- ``tar_members(fs, path)`` scans a tar on any fsspec filesystem once per process and version of
  the file, reading ahead ``_SCAN_BLOCK`` bytes (small range reads on object stores); then every
  member is one range read (``read_member``), thread-safe.
- The writing side (deterministic headers) is ``maskcore.codec.tar``.
"""

from __future__ import annotations

import functools
import posixpath

import fsspec

from ..codec.tar import BLOCK
from ..errors import ProjectError
from ..limits import MAX_TAR_HEADER_BYTES

_SCAN_BLOCK = 256 * 1024
"""Read-ahead while scanning tar headers: big members are skipped, small ones come together."""
_SPECIAL_KINDS = {b"3": "character device", b"4": "block device", b"6": "fifo"}


def _tar_number(field: bytes, where: int) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    if field[0] & 0x80:
        if field[0] != 0x80:
            raise ProjectError(f"tar header at byte {where}: expected a non-negative size")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ProjectError(f"tar header at byte {where}: expected an octal number, "
                           f"got {text[:12]!r}") from None


def _tar_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes, where: int) -> dict[str, str]:
    """``"<len> key=value\\n"`` records of a pax extended header (``ProjectError`` if malformed)."""
    out, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        length = int(digits) if digits.isdigit() else 0
        record = data[pos:pos + length]
        key, eq, value = record[len(digits) + 1:-1].partition(b"=")
        if length <= len(digits) + 1 or pos + length > len(data) or not eq or record[-1:] != b"\n":
            raise ProjectError(f"tar pax header at byte {where}: expected records '<length> "
                               f"key=value\\n', got {data[pos:pos + 40]!r} at offset {pos}")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _norm_member(name: str, pos: int, what: str = "member name") -> str:
    """A member name relative to the archive root; ``ProjectError`` for an absolute name or one
    whose ``..`` components climb out of the archive (as tarfile's ``data`` filter refuses)."""
    if name.startswith("/"):
        raise ProjectError(f"tar member at byte {pos}: expected a relative {what}, got the "
                           f"absolute {name[:200]!r}")
    norm = posixpath.normpath(name) if name else "."
    if norm == ".." or norm.startswith("../"):
        raise ProjectError(f"tar member at byte {pos}: expected a {what} inside the archive, "
                           f"got {name[:200]!r}, which climbs out of it with '..'")
    return "" if norm == "." else norm


def _checksum_ok(header: bytes, pos: int) -> bool:
    """Header checksum: sum of the bytes with the checksum field read as spaces (unsigned, or
    signed as some old tars wrote it)."""
    stored = _tar_number(header[148:156], pos)
    rest = header[:148] + header[156:]
    return stored == sum(rest) + 256 or stored == sum(rest) + 256 - 256 * sum(b > 127 for b in rest)


def _member_name(header: bytes, pending: dict) -> str:
    name = pending.get("path")
    if name is None:
        name = _tar_text(header[0:100])
        if header[257:263] == b"ustar\0" and header[345] != 0:  # POSIX prefix field
            name = _tar_text(header[345:500]) + "/" + name
    return name


def _pax_size(pending: dict, size: int, pos: int) -> int:
    text = pending.get("size")
    if text is None:
        return size
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ProjectError(f"tar pax header before byte {pos}: expected 'size' as a non-negative "
                           f"integer, got {text[:40]!r}")
    return int(text)


def scan_tar(f) -> dict[str, tuple[int, int]]:
    """Regular files of a tar read from the seekable binary file ``f``: normalised member name
    -> (offset of its data, size). Reads only the 512-byte headers (ustar, GNU long names,
    pax ``path``/``size``/``linkpath``); hard and symbolic links resolve to their targets.

    Nothing is ever extracted, yet hostile archives are refused as tarfile's ``data`` extraction
    filter refuses them: ``ProjectError`` on an absolute member name or link target, one that
    climbs out of the archive with ``..``, a device or fifo member, a member (or header) that
    declares more bytes than the file holds (an archive bomb or a truncated tar), a long-name or
    pax header over ``MAX_TAR_HEADER_BYTES``, a malformed pax record, a bad checksum or a sparse
    member. A link whose target is not a member of the archive is left out (like a missing file).
    """
    members: dict[str, tuple[int, int]] = {}
    links: dict[str, str] = {}
    f.seek(0, 2)
    total = f.tell()
    pos, pending = 0, {}
    while True:
        f.seek(pos)
        header = f.read(BLOCK)
        if len(header) < BLOCK or header.count(0) == BLOCK:
            break  # end of archive (a missing end marker is tolerated, as tarfile does)
        if not _checksum_ok(header, pos):
            raise ProjectError(f"tar header at byte {pos}: expected a valid checksum "
                               f"(not a tar, or corrupt)")
        kind, size, data = header[156:157], _tar_number(header[124:136], pos), pos + BLOCK
        if kind in (b"L", b"K", b"x"):
            if size > min(MAX_TAR_HEADER_BYTES, total - data):
                raise ProjectError(f"tar header at byte {pos}: expected an extended header of at "
                                   f"most {min(MAX_TAR_HEADER_BYTES, total - data)} bytes, got a "
                                   f"declared size of {size} bytes")
            f.seek(data)
            body = f.read(size)
            if kind == b"x":
                pending.update(_pax_records(body, pos))
            else:
                pending["path" if kind == b"L" else "linkpath"] = _tar_text(body)
        elif kind == b"S":
            raise ProjectError(f"tar member at byte {pos}: sparse files are not supported")
        elif kind != b"g":
            raw_name = _member_name(header, pending)
            size = _pax_size(pending, size, pos)
            name = _norm_member(raw_name, pos)
            if kind in _SPECIAL_KINDS:
                raise ProjectError(f"tar member at byte {pos}: expected files, folders and links, "
                                   f"got the {_SPECIAL_KINDS[kind]} {raw_name[:200]!r}")
            if size > total - data:
                raise ProjectError(f"tar member {raw_name[:200]!r} at byte {pos}: declares "
                                   f"{size} bytes, but only {max(total - data, 0)} follow its "
                                   f"header (a truncated tar or an archive bomb)")
            if kind in (b"0", b"\0", b"7"):
                members[name] = (data, size)
            elif kind in (b"1", b"2"):
                target = pending.get("linkpath") or _tar_text(header[157:257])
                if target.startswith("/"):
                    raise ProjectError(f"tar member at byte {pos}: expected a relative link "
                                       f"target, got {raw_name[:200]!r} -> {target[:200]!r}")
                base = "" if kind == b"1" else posixpath.dirname(name)
                links[name] = _norm_member(posixpath.join(base, target), pos, "link target")
                size = 0
            pending = {}
        elif size > total - data:
            raise ProjectError(f"tar header at byte {pos}: declares {size} bytes, but only "
                               f"{max(total - data, 0)} follow it")
        pos = data + -(-size // BLOCK) * BLOCK
    for _ in range(8):  # links to links
        for name, target in list(links.items()):
            if target in members:
                members[name] = members[target]
                del links[name]
    return members


def tar_members(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, tuple[int, int]]:
    """``scan_tar`` of the tar at ``path``, scanned once per process and version of the file
    (size and mtime or ETag); ``ProjectError`` when it is refused."""
    info = fs.info(path)
    version = f"{info.get('size')}:{info.get('mtime') or info.get('ETag') or ''}"
    return _scanned(fs, path, version)


@functools.lru_cache(maxsize=4)
def _scanned(fs: fsspec.AbstractFileSystem, path: str, version: str) -> dict[str, tuple[int, int]]:
    """One index per tar (and version) and process."""
    # The default block of a remote file (50 MiB on s3fs) would fetch most of the tar.
    with fs.open(path, "rb", block_size=_SCAN_BLOCK, cache_type="readahead") as f:
        return scan_tar(f)


def read_member(fs: fsspec.AbstractFileSystem, path: str, member: tuple[int, int]) -> bytes:
    """The bytes of one member, ``(offset, size)`` from the index: one range read."""
    start, size = member
    return fs.cat_file(path, start=start, end=start + size) if size else b""
