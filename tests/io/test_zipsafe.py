"""SafeZip: good zips read exactly; hostile ones (made with zipfile, or byte by byte where
zipfile refuses to write them) are refused with the member named, before any member is read."""

from __future__ import annotations

import io
import pickle
import random
import struct
import zipfile
import zlib

import fsspec
import pytest

from maskcore.errors import ItemSourceError, ProjectError, UnsafePathError
from maskcore.io.zipsafe import SafeZip, UnsafeArchiveError, ZipMemberError


def _raw_zip(entries: list[dict]) -> bytes:
    """A zip built byte by byte. Entry keys: name (bytes), data (bytes, stored as given),
    method, file_size, crc, offset (central record points there instead), attr (external),
    flags, local_name, local_extra, local_extra_len, no_local."""
    out, central = bytearray(), bytearray()
    for e in entries:
        data, name = e["data"], e["name"]
        method = e.get("method", 0)
        crc = e.get("crc", zlib.crc32(e.get("plain", data)))
        size = e.get("file_size", len(e.get("plain", data)))
        offset = len(out)
        local_name, extra = e.get("local_name", name), e.get("local_extra", b"")
        if not e.get("no_local"):
            out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, e.get("flags", 0), method, 0, 0,
                               crc, len(data), size, len(local_name),
                               e.get("local_extra_len", len(extra)))
            out += local_name + extra + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", (3 << 8) | 20, 20,
                               e.get("flags", 0), method, 0, 0, crc, len(data), size, len(name), 0,
                               0, 0, 0, e.get("attr", 0o100644 << 16), e.get("offset", offset))
        central += name
    n = len(entries)
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + eocd)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _open(blob: bytes, **kw) -> SafeZip:
    fs = fsspec.filesystem("memory")
    path = f"/zips/{zlib.crc32(blob):08x}.zip"
    fs.pipe(path, blob)
    return SafeZip(fs, path, **kw)


def _zipfile(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            z.writestr(info, data)
    return buf.getvalue()


# --- good archives ---------------------------------------------------------------------------

def test_reads_every_member_exactly_and_survives_pickling(tmp_path):
    rng = random.Random(7)
    members = {f"d{i % 3}/sub/f{i}.bin": rng.randbytes(rng.randrange(0, 5000)) for i in range(40)}
    members["zeros.raw"] = bytes(300_000)
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        z.writestr("d0/", b"")  # a folder entry: not a file
        for i, (name, data) in enumerate(members.items()):
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED if i % 2 else zipfile.ZIP_DEFLATED)
    path = tmp_path / "a.zip"
    path.write_bytes(blob.getvalue())
    sz = SafeZip(fsspec.filesystem("file"), str(path))
    assert sz.names() == sorted(members)
    for name, data in members.items():
        assert sz.size(name) == len(data)
        assert sz.read(name) == data
    again = pickle.loads(pickle.dumps(sz))
    assert again.read("zeros.raw") == members["zeros.raw"]
    with pytest.raises(KeyError, match="nope"):
        sz.read("nope")


def test_names_are_normalised_backslash_is_a_separator():
    blob = _raw_zip([{"name": b"./a//b\\c.txt", "data": b"x"}, {"name": b"e.txt", "data": b"y"}])
    sz = _open(blob)
    assert sz.names() == ["a/b/c.txt", "e.txt"]
    assert sz.read("a/b/c.txt") == b"x"


# --- refused on open -------------------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    (b"../evil.png", "'..'"),
    (b"a/../../evil.png", "'..'"),
    (b"..\\..\\evil.png", "'..'"),
    (b"/etc/passwd", "absolute"),
    (b"\\\\server\\share\\x", "absolute"),
    (b"C:/Windows/x.png", "drive letter"),
    (b"c:evil.png", "drive letter"),
    (b"a\x00b.png", "control"),
    (b"a\nb.png", "control"),
    (b"./", "empty"),
])
def test_hostile_names_are_refused(name, words):
    blob = _raw_zip([{"name": b"ok.txt", "data": b"fine"}, {"name": name, "data": b"bad"}])
    with pytest.raises(UnsafeArchiveError, match=words) as info:
        _open(blob)
    assert isinstance(info.value, UnsafePathError) and isinstance(info.value, ProjectError)
    assert repr(name.decode("cp437"))[1:-1][:3] in str(info.value)


def test_names_zipfile_writes_are_refused_too():
    # zipfile keeps '..' and leading '/' in a ZipInfo name as given: the classic zip-slip archive
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./\.\./x\.sh'.*'\.\.'"):
        _open(_zipfile([(zipfile.ZipInfo("../../x.sh"), b"rm -rf")]))
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        _open(_zipfile([(zipfile.ZipInfo("/tmp/x.sh"), b"rm -rf")]))


@pytest.mark.parametrize("mode, words", [
    (0o120777, "symbolic link"), (0o020644, "character device"), (0o060644, "block device"),
    (0o010644, "fifo"), (0o140644, "socket"),
])
def test_links_and_devices_are_refused(mode, words):
    info = zipfile.ZipInfo("SegmentationClass/link.png")
    info.create_system = 3
    info.external_attr = mode << 16
    with pytest.raises(UnsafeArchiveError, match=f"link.png.*{words}"):
        _open(_zipfile([("labelmap.txt", b"x"), (info, b"/etc/passwd")]))


def test_duplicates_case_folded_and_file_folder_clashes_are_refused():
    with pytest.warns(UserWarning):  # zipfile itself only warns
        blob = _zipfile([("a.png", b"1"), ("a.png", b"2")])
    with pytest.raises(UnsafeArchiveError, match="'a.png'.*same name twice"):
        _open(blob)
    with pytest.raises(UnsafeArchiveError, match="differing only by case"):
        _open(_zipfile([("Img/A.png", b"1"), ("img/a.PNG", b"2")]))
    with pytest.raises(UnsafeArchiveError, match="same name twice"):
        _open(_raw_zip([{"name": b"x/y", "data": b"1"}, {"name": b"x\\y", "data": b"2"}]))
    with pytest.raises(UnsafeArchiveError, match="'a' to be a folder"):
        _open(_zipfile([("a", b"1"), ("a/b", b"2")]))


def test_encrypted_and_unknown_compression_are_refused():
    with pytest.raises(UnsafeArchiveError, match="encrypted"):
        _open(_raw_zip([{"name": b"s.txt", "data": b"xxxx", "flags": 1}]))
    with pytest.raises(UnsafeArchiveError, match="method 12"):
        _open(_raw_zip([{"name": b"b.txt", "data": b"BZh9", "method": 12}]))


def test_declared_sizes_and_ratio_bombs_are_refused():
    packed = _deflate(bytes(4 << 20))  # 4 MiB of zeros -> ~4 KiB: ratio ~1000
    entry = {"name": b"bomb.png", "data": packed, "method": 8, "plain": bytes(4 << 20)}
    assert _open(_raw_zip([entry]), max_ratio=2000).read("bomb.png") == bytes(4 << 20)
    with pytest.raises(UnsafeArchiveError, match="'bomb.png'.*compression ratio of at most 1000"):
        _open(_raw_zip([entry]))  # deflate's best ratio is ~1030: the default catches zeros
    # a central record claiming 50 MB for 4 KiB: ratio ~12000
    with pytest.raises(UnsafeArchiveError, match="got 12255.*zip bomb"):
        _open(_raw_zip([{**entry, "file_size": 50_000_000}]), max_ratio=2000)
    with pytest.raises(UnsafeArchiveError, match="at most 1000 bytes, got a declared size of 4194304"):
        _open(_raw_zip([entry]), max_member_bytes=1000, max_ratio=2000)
    many = [{**entry, "name": f"m{i}".encode()} for i in range(3)]
    with pytest.raises(UnsafeArchiveError, match="'m2'.*in all"):
        _open(_raw_zip(many), max_total_bytes=10 << 20, max_ratio=2000)
    with pytest.raises(UnsafeArchiveError, match="stored member's sizes"):
        _open(_raw_zip([{"name": b"s", "data": b"abc", "file_size": 10**9}]))


def test_overlapping_entries_are_refused():
    # the "overlapping files" bomb: many central records share one local header and its data
    one = _deflate(bytes(1 << 19))
    entries = [{"name": b"k0", "data": one, "method": 8, "plain": bytes(1 << 19)}]
    entries += [{**entries[0], "name": f"k{i}".encode(), "offset": 0, "no_local": True}
                for i in range(1, 5)]
    with pytest.raises(UnsafeArchiveError, match="overlap"):
        _open(_raw_zip(entries))
    # a record whose data would run into the next entry's header
    blob = _raw_zip([{"name": b"a", "data": b"12345"}, {"name": b"b", "data": b"678"}])
    central = blob.index(b"PK\x01\x02")
    patched = bytearray(blob)
    struct.pack_into("<II", patched, central + 20, 9, 9)  # a's sizes: 9 > the 5 it has
    with pytest.raises(UnsafeArchiveError, match="'a'.*overlap"):
        _open(bytes(patched))


def test_not_a_zip_is_a_project_error():
    with pytest.raises(ProjectError, match="expected a zip archive"):
        _open(b"not a zip at all" * 10)


# --- refused on read: the member fails alone ---------------------------------------------------

def test_member_data_that_lies_fails_on_read_only():
    plain = b"pixels" * 1000
    good = {"name": b"good.txt", "data": b"fine"}
    cases = {
        b"crc.txt": {"data": _deflate(plain), "method": 8, "plain": plain, "crc": 1234},
        b"more.txt": {"data": _deflate(plain), "method": 8, "plain": plain, "file_size": 100},
        b"less.txt": {"data": _deflate(plain), "method": 8, "plain": plain, "file_size": 7000},
        b"junk.txt": {"data": b"\xff" * 50, "method": 8, "plain": b"x" * 60},
        b"renamed.txt": {"data": b"abc", "local_name": b"RENAMED.txt"},
        b"extra.txt": {"data": b"abc", "local_extra_len": 40},  # runs into z.txt's header
    }
    entries = [good] + [{"name": k, **v} for k, v in cases.items()]
    entries.append({"name": b"z.txt", "data": b""})
    sz = _open(_raw_zip(entries))
    assert sz.read("good.txt") == b"fine"
    words = {"crc.txt": "CRC-32", "more.txt": "got more", "less.txt": "got 6000",
             "junk.txt": "deflate", "renamed.txt": "central name", "extra.txt": "overlap"}
    for name, word in words.items():
        with pytest.raises(ZipMemberError, match=word) as info:
            sz.read(name)
        assert isinstance(info.value, ItemSourceError) and name in str(info.value)
