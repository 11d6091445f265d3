"""Reading zip archives in place, refusing the hostile ones. Never extracts anything.

Conventions:
- ``SafeZip(fs, path)`` reads only the central directory when opened (Python's ``zipfile`` on
  an fsspec file object; zip64 and prepended data handled there) and checks every entry
  before any member is read. One bad entry refuses the whole archive with
  ``UnsafeArchiveError`` (both an ``UnsafePathError`` and a ``ProjectError``) naming it.
- Member names: ``\\`` counts as a separator (old Windows zippers write it), ``.`` and empty
  components are dropped, so ``names()`` are normalised ``a/b/c``. Refused: a ``..``
  component, an absolute name (``/x``, ``\\x``, ``//server/x``), a drive letter (``C:x``),
  NUL or other control characters, an empty name, two entries with the same name or the same
  name case-folded (``A.png`` and ``a.png``), and a file whose name is also a folder of
  another member (``a`` and ``a/b``).
- Entry kinds: folders (a name ending in ``/`` or a unix folder mode) are accepted and left
  out of ``names()``; symbolic links, devices, fifos and sockets (unix mode in the high 16
  bits of ``external_attr``) are refused; so are encrypted entries (flag bit 0 or 6) and
  compression methods other than stored (0) and deflate (8).
- Bombs: a declared size above ``max_member_bytes``, a total above ``max_total_bytes``, a
  ratio ``file_size / compress_size`` above ``max_ratio`` (any entry of at least 1 MiB), a
  stored entry whose sizes differ, and overlapping entries (two central records whose local
  headers and data share bytes: the "overlapping files" bomb): each entry occupies at least
  ``30 + len(name) + compress_size`` bytes from its local header, which must end before the
  next entry's header (or the central directory) starts. ``read`` rechecks with the real
  local header (its extra field) and requires the local name to be the central one.
- ``read(name)`` decompresses with a hard cap at the declared size (one byte more is an
  error) and checks length and CRC-32; a member that does not match its record raises
  ``ZipMemberError`` (an ``ItemSourceError``: the item that needs it fails, not the run).
- Picklable: holds the fsspec filesystem, the path and the checked index (so workers do not
  reread the directory); no open handle. Each ``read`` is one or two range reads.
"""

from __future__ import annotations

import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass

import fsspec

from ..errors import ItemSourceError, ProjectError, UnsafePathError
from ..limits import MAX_ZIP_MEMBER_BYTES, MAX_ZIP_RATIO, MAX_ZIP_TOTAL_BYTES

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIG = b"PK\x03\x04"
_READ_SLACK = 512          # bytes read past the minimal local extent, for the local extra field
_RATIO_FLOOR = 2**20       # entries smaller than this are not held to max_ratio
_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SUPPORTED = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_REFUSED_KINDS = {stat.S_IFLNK: "symbolic link", stat.S_IFCHR: "character device",
                  stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


class UnsafeArchiveError(UnsafePathError, ProjectError):
    """The archive as a whole is refused (an escaping name, a link, a bomb, ...)."""


class ZipMemberError(ItemSourceError):
    """One member's data does not match its central record (corrupt, truncated, bad CRC)."""


@dataclass(frozen=True)
class _Entry:
    name: str          # normalised
    offset: int        # of the local header
    raw_name: bytes    # as stored in the central directory
    method: int
    compress_size: int
    file_size: int
    crc: int
    end: int           # first byte that belongs to the next entry (or the central directory)


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name bytes as stored (zipfile decodes UTF-8 when flag 11 is set, else cp437)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def normalise_member_name(raw: str) -> tuple[str, bool]:
    """(normalised '/'-separated name, is a folder); ``UnsafeArchiveError`` when unsafe."""
    shown = repr(raw[:200])
    if _CONTROL.search(raw):
        raise UnsafeArchiveError(f"zip member {shown}: expected a name without NUL or control "
                                 f"characters, got one")
    name = raw.replace("\\", "/")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"zip member {shown}: expected a relative name, got an "
                                 f"absolute one")
    if _DRIVE.match(name):
        raise UnsafeArchiveError(f"zip member {shown}: expected a relative name, got one with a "
                                 f"drive letter")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"zip member {shown}: expected a name inside the archive, got "
                                 f"one that climbs out with '..'")
    if not parts:
        raise UnsafeArchiveError(f"zip member {shown}: expected a file or folder name, got an "
                                 f"empty one")
    return "/".join(parts), name.endswith("/")


class SafeZip:
    """A zip on an fsspec filesystem, checked on open, read member by member (see module doc)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, *,
                 max_member_bytes: int = MAX_ZIP_MEMBER_BYTES, max_total_bytes: int = MAX_ZIP_TOTAL_BYTES,
                 max_ratio: float = MAX_ZIP_RATIO) -> None:
        self.fs, self.path = fs, path
        self.max_member_bytes, self.max_total_bytes = max_member_bytes, max_total_bytes
        self.max_ratio = max_ratio
        self._entries = self._scan()

    def __repr__(self) -> str:
        return f"SafeZip({self.path!r}, {len(self._entries)} files)"

    # --- the central directory -----------------------------------------------------------------

    def _scan(self) -> dict[str, _Entry]:
        try:
            with self.fs.open(self.path, "rb", block_size=2**16) as f:
                zf = zipfile.ZipFile(f)  # reads the end record and central directory only
                infos, start_dir = zf.infolist(), zf.start_dir
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
                ValueError, struct.error) as exc:
            raise ProjectError(f"zip {self.path!r}: expected a zip archive, got "
                               f"{type(exc).__name__}: {exc}") from None
        return self._check(infos, start_dir)

    def _check(self, infos: list[zipfile.ZipInfo], start_dir: int) -> dict[str, _Entry]:
        files: list[tuple[str, zipfile.ZipInfo]] = []
        seen: dict[str, str] = {}
        total = 0
        for info in infos:
            name, is_dir = normalise_member_name(info.orig_filename)
            shown = f"zip member {info.orig_filename[:200]!r}"
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind in _REFUSED_KINDS:
                raise UnsafeArchiveError(f"{shown}: expected a file or folder, got a "
                                         f"{_REFUSED_KINDS[kind]}")
            key = name.casefold()
            if key in seen:
                how = "the same name" if seen[key] == name else f"a name differing only by case ({seen[key]!r})"
                raise UnsafeArchiveError(f"{shown}: expected unique member names, got {how} twice")
            seen[key] = name
            if is_dir or kind == stat.S_IFDIR:
                continue
            if info.flag_bits & 0x41:
                raise UnsafeArchiveError(f"{shown}: expected an unencrypted member, got an "
                                         f"encrypted one")
            if info.compress_type not in _SUPPORTED:
                raise UnsafeArchiveError(f"{shown}: expected compression stored or deflate, got "
                                         f"method {info.compress_type}")
            self._check_sizes(info, shown)
            total += info.file_size
            if total > self.max_total_bytes:
                raise UnsafeArchiveError(f"{shown}: expected at most {self.max_total_bytes} bytes "
                                         f"in all, got {total} declared up to this member "
                                         f"(an archive bomb?)")
            files.append((name, info))
        file_keys = {name.casefold() for name, _ in files}
        for name, _ in files:  # a file that is also a folder of another member
            for cut in (i for i, ch in enumerate(name) if ch == "/"):
                if name[:cut].casefold() in file_keys:
                    raise UnsafeArchiveError(f"zip member {name!r}: expected {name[:cut]!r} to be "
                                             f"a folder, got a file of that name too")
        return self._spans(files, start_dir)

    def _check_sizes(self, info: zipfile.ZipInfo, shown: str) -> None:
        if info.file_size > self.max_member_bytes:
            raise UnsafeArchiveError(f"{shown}: expected at most {self.max_member_bytes} bytes, "
                                     f"got a declared size of {info.file_size}")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise UnsafeArchiveError(f"{shown}: expected a stored member's sizes to agree, got "
                                     f"{info.compress_size} stored for {info.file_size}")
        if info.file_size >= _RATIO_FLOOR and info.file_size > self.max_ratio * info.compress_size:
            ratio = info.file_size / max(info.compress_size, 1)
            raise UnsafeArchiveError(f"{shown}: expected a compression ratio of at most "
                                     f"{self.max_ratio:g}, got {ratio:.0f} ({info.compress_size} -> "
                                     f"{info.file_size} bytes; a zip bomb?)")

    @staticmethod
    def _spans(files: list[tuple[str, zipfile.ZipInfo]], start_dir: int) -> dict[str, _Entry]:
        """Entries with their byte bounds; ``UnsafeArchiveError`` when two overlap."""
        order = sorted(files, key=lambda f: f[1].header_offset)
        entries: dict[str, _Entry] = {}
        for i, (name, info) in enumerate(order):
            raw = _raw_name(info)
            end = order[i + 1][1].header_offset if i + 1 < len(order) else start_dir
            need = info.header_offset + _LOCAL_HEADER.size + len(raw) + info.compress_size
            if info.header_offset < 0 or need > end:
                other = order[i + 1][0] if i + 1 < len(order) else "the central directory"
                raise UnsafeArchiveError(f"zip member {name!r}: expected its {info.compress_size} "
                                         f"bytes at offset {info.header_offset} to end before "
                                         f"{other!r} at {end}, got an overlap (an overlapping-"
                                         f"entries zip bomb or a corrupt zip)")
            entries[name] = _Entry(name, info.header_offset, raw, info.compress_type,
                                   info.compress_size, info.file_size, info.CRC, end)
        return dict(sorted(entries.items()))

    # --- members -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Normalised names of the files (no folders), sorted."""
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def size(self, name: str) -> int:
        """Declared uncompressed size of a member; ``KeyError`` when there is none."""
        return self._entry(name).file_size

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"zip {self.path!r}: no member {name!r}") from None

    def _bad(self, e: _Entry, what: str) -> ZipMemberError:
        return ZipMemberError(what, where=f"zip member {e.name!r}")

    def read(self, name: str) -> bytes:
        """The member's bytes, decompressed (at most its declared size), length and CRC checked."""
        e = self._entry(name)
        head = _LOCAL_HEADER.size + len(e.raw_name)
        stop = min(e.end, e.offset + head + e.compress_size + _READ_SLACK)
        blob = self.fs.cat_file(self.path, start=e.offset, end=stop)
        if len(blob) < _LOCAL_HEADER.size or blob[:4] != _LOCAL_SIG:
            raise self._bad(e, f"expected a local header at offset {e.offset}, got none")
        fields = _LOCAL_HEADER.unpack_from(blob)
        name_len, extra_len = fields[9], fields[10]
        if blob[_LOCAL_HEADER.size:_LOCAL_HEADER.size + name_len] != e.raw_name:
            raise self._bad(e, "expected the local header to repeat the central name, got another")
        start = e.offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + e.compress_size > e.end:
            raise self._bad(e, f"expected its data to end before offset {e.end}, got an overlap")
        rel = start - e.offset
        if rel + e.compress_size <= len(blob):
            data = blob[rel:rel + e.compress_size]
        else:
            data = self.fs.cat_file(self.path, start=start, end=start + e.compress_size)
        if len(data) != e.compress_size:
            raise self._bad(e, f"expected {e.compress_size} bytes of data, got {len(data)} "
                               f"(truncated zip)")
        out = self._decompress(e, data)
        if zlib.crc32(out) != e.crc:
            raise self._bad(e, f"expected CRC-32 {e.crc:08x}, got {zlib.crc32(out):08x} (corrupt)")
        return out

    def _decompress(self, e: _Entry, data: bytes) -> bytes:
        if e.method == zipfile.ZIP_STORED:
            out = data
        else:
            d = zlib.decompressobj(-15)
            try:
                out = d.decompress(data, e.file_size + 1)
            except zlib.error as exc:
                raise self._bad(e, f"expected deflate data, got an error: {exc}") from None
        if len(out) != e.file_size:
            raise self._bad(e, f"expected {e.file_size} bytes once decompressed, got "
                               f"{'more' if len(out) > e.file_size else len(out)}")
        return out
