"""Deterministic zip encoding: bytes in, bytes out, no I/O.

Conventions:
- Regular files only, no directory entries (``unzip`` and ``zipfile`` create the parent folders
  of every member). Every member is STORED (method 0): the export's bytes are PNG and JPEG,
  already compressed (deflate saves 2.7 % of the bundled sample's export, 35 % of its 0.5 % of
  JSON), and a stored member's data are the file's bytes, so the archive manifest's
  ``offset``/``bytes`` give a range read of the file, and no zlib build can change the archive.
- A member is a local header (30 bytes, the name, an optional zip64 extra field) followed by its
  data; no data descriptor (size and CRC-32 are known before the header is written). The local
  header depends only on the name and the data, never on where the member sits, so runs of
  members written apart can be concatenated and given one central directory afterwards.
- Every field that could vary between runs is fixed: time 00:00, date 1980-01-01 (the DOS
  epoch), general purpose flags ``0x0800`` (names are UTF-8) on every member, "made by" Unix
  4.5, external attributes of a regular file with mode 0644, no comments, no other extra fields.
- zip64 records are written only where a value needs them: a member of ``ZIP64_LIMIT`` bytes or
  more (local and central zip64 extra with both sizes), a local header at offset ``ZIP64_LIMIT``
  or more (central zip64 extra with the offset), ``ZIP64_COUNT_LIMIT`` members or more, or a
  central directory whose size or offset reaches ``ZIP64_LIMIT`` (zip64 end record and locator
  before the end record). A field that overflows holds its all-ones sentinel and the zip64
  record holds the value (APPNOTE 6.3.x, 4.4 and 4.5.3). Tests lower the two limits (read at call
  time) to exercise these records with small data.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

ZIP64_LIMIT = 0xFFFFFFFF            # a 4-byte size/offset field this large or larger overflows
ZIP64_COUNT_LIMIT = 0xFFFF          # likewise a 2-byte entry count
FLAGS = 0x0800                      # bit 11: name is UTF-8
DOS_TIME, DOS_DATE = 0, (0 << 9) | (1 << 5) | 1     # 00:00:00, 1980-01-01
MADE_BY = (3 << 8) | 45             # Unix, spec 4.5
EXTERNAL_ATTR = (0o100644 << 16)    # regular file, rw-r--r--
_NEEDED, _NEEDED_ZIP64 = 20, 45
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR = struct.Struct("<IIQI")
END_SIZE, END64_SIZE = _END.size, _END64.size + _LOCATOR.size     # 22, 76


def _name_bytes(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not raw or len(raw) > 0xFFFF:
        raise ValueError(f"zip member {name!r}: expected a name of 1 to 65535 UTF-8 bytes, got {len(raw)}")
    return raw


def crc32(data: bytes) -> int:
    """CRC-32 of a member's data, as its headers record it."""
    return zlib.crc32(data) & 0xFFFFFFFF


def local_header(name: str, size: int, crc: int) -> bytes:
    """The local header of a STORED member ``name`` of ``size`` bytes whose CRC-32 is ``crc``;
    its data follow it directly."""
    if size < 0:
        raise ValueError(f"zip member {name!r}: expected a size >= 0, got {size}")
    raw = _name_bytes(name)
    if size >= ZIP64_LIMIT:
        extra = struct.pack("<HHQQ", 1, 16, size, size)
        return _LOCAL.pack(0x04034B50, _NEEDED_ZIP64, FLAGS, 0, DOS_TIME, DOS_DATE, crc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra)) + raw + extra
    return _LOCAL.pack(0x04034B50, _NEEDED, FLAGS, 0, DOS_TIME, DOS_DATE, crc, size, size,
                       len(raw), 0) + raw


def _zip64_fields(size: int, offset: int) -> list[int]:
    """Values the central zip64 extra field holds, in the order APPNOTE 4.5.3 gives."""
    big = size >= ZIP64_LIMIT
    return [size, size] * big + [offset] * (offset >= ZIP64_LIMIT)


def central_header_size(name: str, size: int, offset: int) -> int:
    """Bytes of the central directory entry of a member (see :func:`central_header`)."""
    fields = _zip64_fields(size, offset)
    return _CENTRAL.size + len(name.encode("utf-8")) + (4 + 8 * len(fields) if fields else 0)


def central_header(name: str, size: int, crc: int, offset: int) -> bytes:
    """The central directory entry of a STORED member whose local header is at ``offset``."""
    raw = _name_bytes(name)
    fields = _zip64_fields(size, offset)
    extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
    size32 = 0xFFFFFFFF if size >= ZIP64_LIMIT else size
    offset32 = 0xFFFFFFFF if offset >= ZIP64_LIMIT else offset
    return _CENTRAL.pack(0x02014B50, MADE_BY, _NEEDED_ZIP64 if fields else _NEEDED, FLAGS, 0,
                         DOS_TIME, DOS_DATE, crc, size32, size32, len(raw), len(extra), 0, 0, 0,
                         EXTERNAL_ATTR, offset32) + raw + extra


def _needs_zip64_end(count: int, cd_size: int, cd_offset: int) -> bool:
    return count >= ZIP64_COUNT_LIMIT or cd_size >= ZIP64_LIMIT or cd_offset >= ZIP64_LIMIT


def end_size(count: int, cd_size: int, cd_offset: int) -> int:
    """Bytes after the central directory (see :func:`end_records`)."""
    return END_SIZE + (END64_SIZE if _needs_zip64_end(count, cd_size, cd_offset) else 0)


def end_records(count: int, cd_size: int, cd_offset: int) -> bytes:
    """What follows a central directory of ``count`` entries and ``cd_size`` bytes starting at
    ``cd_offset``: the zip64 end record and its locator when needed, then the end record."""
    out = b""
    if _needs_zip64_end(count, cd_size, cd_offset):
        out = (_END64.pack(0x06064B50, _END64.size - 12, MADE_BY, _NEEDED_ZIP64, 0, 0, count, count,
                           cd_size, cd_offset)
               + _LOCATOR.pack(0x07064B50, 0, cd_offset + cd_size, 1))
    count16 = 0xFFFF if count >= ZIP64_COUNT_LIMIT else count
    return out + _END.pack(0x06054B50, 0, 0, count16, count16,
                           0xFFFFFFFF if cd_size >= ZIP64_LIMIT else cd_size,
                           0xFFFFFFFF if cd_offset >= ZIP64_LIMIT else cd_offset, 0)


def directory(entries: Iterable[tuple[str, int, int, int]], cd_offset: int,
              block: int = 1 << 20) -> Iterator[bytes]:
    """The central directory of ``entries`` (name, size, crc, local header offset), in order,
    starting at ``cd_offset``, then the end records; yielded in blocks of about ``block`` bytes
    so a directory of millions of entries is never one string."""
    pending, held, count, cd_size = [], 0, 0, 0
    for name, size, crc, offset in entries:
        record = central_header(name, size, crc, offset)
        pending.append(record)
        held += len(record)
        count += 1
        cd_size += len(record)
        if held >= block:
            yield b"".join(pending)
            pending, held = [], 0
    yield b"".join(pending) + end_records(count, cd_size, cd_offset)


def zip_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """A whole archive of ``files`` in the given order (for small sets of files)."""
    body, entries = [], []
    offset = 0
    for name, data in files:
        crc = crc32(data)
        header = local_header(name, len(data), crc)
        entries.append((name, len(data), crc, offset))
        body += [header, data]
        offset += len(header) + len(data)
    return b"".join(body) + b"".join(directory(entries, offset))


class ZipFormat:
    """The zip encoding as :mod:`maskcore.archive` packs chunks with it (see its module doc):
    members are local header + data; the trailer is the central directory and end records."""

    name, suffix = "zip", ".zip"

    def member(self, name: str, data: bytes) -> tuple[bytes, dict]:
        crc = crc32(data)
        return local_header(name, len(data), crc), {"crc32": crc}

    def padding(self, size: int) -> bytes:
        return b""

    def directory_size(self, name: str, size: int, offset: int) -> int:
        return central_header_size(name, size, offset)

    def end_size(self, count: int, directory: int, body: int) -> int:
        return end_size(count, directory, body)

    def trailer(self, members, body: int):
        """Central directory of ``members`` (dicts: path, bytes, crc32, header offset) at ``body``."""
        yield from directory(((m["path"], m["bytes"], m["crc32"], m["header"]) for m in members), body)
