"""Deterministic tar encoding: bytes in, bytes out, no I/O.

Conventions:
- Regular files only, no directory entries: ``tar`` creates the parent folders of every member
  when it extracts, and the export has no empty folders. A member is a 512-byte ustar header,
  its data, and zero padding to a multiple of 512 bytes.
- Every header field that could vary between runs is fixed: mtime ``FIXED_MTIME`` (0, the epoch),
  uid/gid 0, empty uname/gname, mode 0644, type ``0`` (regular file), no device numbers.
- Names are ``/``-separated relative paths. A name that ustar cannot hold (more than 100 bytes
  that cannot be split at a ``/`` into a 155-byte prefix and a 100-byte name, or any byte outside
  printable ASCII) and a size of 8 GiB or more get a POSIX pax extended header (``path``,
  ``size`` records, UTF-8) before the ustar header; the pax header's own name is fixed.
- An archive ends with ``END_OF_ARCHIVE`` (two zero blocks) and nothing after it (no padding to
  a 10240-byte record), so concatenating archives after stripping their last 1024 bytes gives
  one valid archive, and ``tar --ignore-zeros`` reads the plain concatenation.
"""

from __future__ import annotations

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
FIXED_MTIME = 0
FILE_MODE = 0o644
_USTAR_SIZE_LIMIT = 8 ** 11          # the 12-byte octal size field holds 11 digits
_PAX_NAME = b"././@PaxHeader"        # what Python's tarfile uses: fixed, so deterministic


def padding(size: int) -> int:
    """Zero bytes that follow ``size`` bytes of member data."""
    return -size % BLOCK


def _octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL, as ustar numeric fields are written."""
    return f"{value:0{width - 1}o}".encode("ascii") + b"\0"


def _header_block(name: bytes, prefix: bytes, size: int, typeflag: bytes) -> bytes:
    fields = [
        name.ljust(100, b"\0"),
        _octal(FILE_MODE, 8),
        _octal(0, 8),                     # uid
        _octal(0, 8),                     # gid
        _octal(size, 12),
        _octal(FIXED_MTIME, 12),
        b" " * 8,                         # checksum, computed over the block with spaces here
        typeflag,
        b"\0" * 100,                      # linkname
        b"ustar\x0000",                   # magic + version (POSIX ustar)
        b"\0" * 32,                       # uname
        b"\0" * 32,                       # gname
        _octal(0, 8),                     # devmajor
        _octal(0, 8),                     # devminor
        prefix.ljust(155, b"\0"),
        b"\0" * 12,
    ]
    block = bytearray(b"".join(fields))
    block[148:156] = f"{sum(block):06o}".encode("ascii") + b"\0 "
    return bytes(block)


def _ustar_split(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) fields for ``name``, or None when ustar cannot hold it."""
    if not all(0x20 <= b < 0x7F for b in name):
        return None
    if len(name) <= 100:
        return b"", name
    for cut in range(min(len(name) - 1, 155), 0, -1):   # longest prefix first, as POSIX tar does
        if name[cut] == 0x2F and len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1:]
    return None


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:  # the length counts its own digits
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def member_header(name: str, size: int) -> bytes:
    """The header block(s) of a regular file ``name`` holding ``size`` bytes."""
    if size < 0:
        raise ValueError(f"tar member {name!r}: expected a size >= 0, got {size}")
    raw = name.encode("utf-8")
    split = _ustar_split(raw)
    records = b""
    if split is None:
        records += _pax_record("path", name)
        split = (b"", raw.decode("ascii", "replace").encode("ascii", "replace")[:100])
    if size >= _USTAR_SIZE_LIMIT:
        records += _pax_record("size", str(size))
    if not records:
        return _header_block(split[1], split[0], size, b"0")
    pax = _header_block(_PAX_NAME, b"", len(records), b"x") + records + b"\0" * padding(len(records))
    return pax + _header_block(split[1], split[0], min(size, _USTAR_SIZE_LIMIT - 1), b"0")


def member_bytes(name: str, data: bytes) -> bytes:
    """One complete member: header(s), data, padding."""
    return member_header(name, len(data)) + data + b"\0" * padding(len(data))


def tar_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """A whole archive of ``files`` in the given order (for small sets of files)."""
    return b"".join(member_bytes(n, d) for n, d in files) + END_OF_ARCHIVE


class TarFormat:
    """The tar encoding as :mod:`maskcore.archive` packs chunks with it (see its module doc)."""

    name, suffix = "tar", ".tar"

    def member(self, name: str, data: bytes) -> tuple[bytes, dict]:
        return member_header(name, len(data)), {}

    def padding(self, size: int) -> bytes:
        return b"\0" * padding(size)

    def directory_size(self, name: str, size: int, offset: int) -> int:
        return 0                      # a tar has no directory

    def end_size(self, count: int, directory: int, body: int) -> int:
        return len(END_OF_ARCHIVE)

    def trailer(self, members, body: int):
        yield END_OF_ARCHIVE
