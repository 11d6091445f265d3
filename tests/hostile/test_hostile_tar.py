"""Hostile tar sources: refused with a clear error, never extracted, nothing written outside the
destination. ``scan_tar`` reads headers in place; these archives are built byte by byte."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from maskcore.errors import ProjectError
from maskcore.exec.run import EXIT_FATAL, EXIT_PARTIAL, ExportConfig, run_export
from maskcore.io.tarindex import scan_tar
from maskcore.readers.supervisely import SuperviselySource

from .projects import META, files_under, good_annotation, rgb_png, snapshot

IMG = rgb_png(10, 12, seed=3)


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail instead of hanging (the scan once looped forever on a pax record of length 0)."""
    def boom(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def info(name: str, size: int = 0, kind=tarfile.REGTYPE, link: str = "", pax=None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.type, ti.linkname, ti.mtime = size, kind, link, 0
    if pax:
        ti.pax_headers = pax
    return ti


def tar_bytes(members, fmt=tarfile.PAX_FORMAT) -> bytes:
    """``members``: [(TarInfo, data or None)] -> the archive's bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def header(ti: tarfile.TarInfo, fmt=tarfile.GNU_FORMAT) -> bytes:
    """Just the header block(s) of ``ti`` (its data is left out: a lying size)."""
    return ti.tobuf(fmt, "utf-8", "surrogateescape")


def raw_pax(records: bytes, then: tarfile.TarInfo = None) -> bytes:
    """A pax 'x' header holding ``records`` verbatim, then a member, then the end marker."""
    x = info("pax", len(records), tarfile.XHDTYPE)
    body = records + b"\0" * (-len(records) % 512)
    member = then or info("p/meta.json", 2)
    return header(x, tarfile.USTAR_FORMAT) + body + header(member, tarfile.USTAR_FORMAT) + \
        b"{}".ljust(512, b"\0") + b"\0" * 1024


def project_members(prefix="p/") -> list:
    meta = json.dumps(META).encode()
    ann = json.dumps(good_annotation(1)).encode()
    return [(info(f"{prefix}meta.json", len(meta)), meta),
            (info(f"{prefix}ds/ann/a.png.json", len(ann)), ann),
            (info(f"{prefix}ds/img/a.png", len(IMG)), IMG)]


REFUSED = {
    "dotdot": (tar_bytes([(info("p/../../evil.json", 2), b"{}")]), "climbs out of it with '..'"),
    "absolute": (tar_bytes([(info("/etc/evil.json", 2), b"{}")]), "got the absolute '/etc/evil.json'"),
    "symlink_out": (tar_bytes([(info("p/ds/img/a.png", 0, tarfile.SYMTYPE, "../../../../etc/passwd"), None)]),
                    "expected a link target inside the archive"),
    "symlink_absolute": (tar_bytes([(info("p/ds/img/a.png", 0, tarfile.SYMTYPE, "/etc/passwd"), None)]),
                         "expected a relative link target"),
    "hardlink_out": (tar_bytes([(info("p/ds/img/a.png", 0, tarfile.LNKTYPE, "../x"), None)]),
                     "expected a link target inside the archive"),
    "char_device": (tar_bytes([(info("p/ds/img/a.png", 0, tarfile.CHRTYPE), None)]), "character device"),
    "block_device": (tar_bytes([(info("p/ds/img/a.png", 0, tarfile.BLKTYPE), None)]), "block device"),
    "fifo": (tar_bytes([(info("p/ds/img/a.png", 0, tarfile.FIFOTYPE), None)]), "fifo"),
    "member_bomb": (header(info("p/ds/img/a.png", 2**40)) + b"\0" * 1024,
                    "declares 1099511627776 bytes, but only 1024 follow"),
    "longname_bomb": (header(info("././@LongLink", 2**40, tarfile.GNUTYPE_LONGNAME)) + b"\0" * 1024,
                      "declared size of 1099511627776 bytes"),
    "pax_bomb": (header(info("pax", 2**33, tarfile.XHDTYPE)) + b"\0" * 1024,
                 "declared size of 8589934592 bytes"),
    "pax_length_zero": (raw_pax(b"0 path=x\n"), "expected records '<length> key=value\\n'"),
    "pax_length_lies": (raw_pax(b"99 path=x\n"), "expected records"),
    "pax_not_a_number": (raw_pax(b"xx path=x\n"), "expected records"),
    "pax_negative_size": (raw_pax(b"14 size=-1024\n"), "expected 'size' as a non-negative integer"),
    "pax_huge_size": (raw_pax(b"5011 size=" + b"9" * 5000 + b"\n"), "expected 'size' as a non-negative"),
    "truncated": (tar_bytes(project_members())[:600], "(a truncated tar or an archive bomb)"),
    "sparse": (header(info("p/x", 0, tarfile.GNUTYPE_SPARSE)) + b"\0" * 1024, "sparse files"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_archives_are_refused_quickly(case):
    data, message = REFUSED[case]
    with time_limit(5), pytest.raises(ProjectError) as err:
        scan_tar(io.BytesIO(data))
    assert message in str(err.value)


def test_links_inside_the_archive_resolve_and_dangling_ones_are_left_out():
    members = project_members() + [
        (info("p/ds/img/hard.png", 0, tarfile.LNKTYPE, "p/ds/img/a.png"), None),
        (info("p/ds/img/sym.png", 0, tarfile.SYMTYPE, "a.png"), None),
        (info("p/ds/img/up.png", 0, tarfile.SYMTYPE, "../img/./a.png"), None),
        (info("p/ds/img/dangling.png", 0, tarfile.SYMTYPE, "nowhere.png"), None),
        (info("p/ds/a/../img/b.png", 3), b"abc"),  # ".." that stays inside: normalised
    ]
    data = tar_bytes(members)
    index = scan_tar(io.BytesIO(data))
    assert index["p/ds/img/hard.png"] == index["p/ds/img/sym.png"] == index["p/ds/img/up.png"] \
        == index["p/ds/img/a.png"]
    assert "p/ds/img/dangling.png" not in index
    start, size = index["p/ds/img/b.png"]
    assert data[start:start + size] == b"abc"
    assert all(0 <= s and s + n <= len(data) for s, n in index.values())


def _many_members_tar(n: int) -> bytes:
    """``n`` empty members ``p/ds/img/<k>.png`` (ustar headers built with numpy: fast)."""
    template = np.frombuffer(header(info("p/ds/img/0000000.png"), tarfile.USTAR_FORMAT), np.uint8)
    blocks = np.tile(template, (n, 1))
    digits = np.array([list(f"{k:07d}".encode()) for k in range(n)], np.uint8)
    blocks[:, 9:16] = digits
    blocks[:, 148:156] = ord(" ")
    checksum = blocks.astype(np.int64).sum(axis=1)
    blocks[:, 148:155] = np.array([list(f"{c:06o}\0".encode()) for c in checksum], np.uint8)
    return blocks.tobytes() + b"\0" * 1024


def test_a_hundred_thousand_members_scan_in_linear_time(tmp_path):
    path = tmp_path / "many.tar"
    path.write_bytes(_many_members_tar(100_000))
    started = time.perf_counter()
    with time_limit(30), open(path, "rb") as f:
        index = scan_tar(f)
    assert len(index) == 100_000 and index["p/ds/img/0099999.png"] == (512 * 100_000, 0)
    assert time.perf_counter() - started < 10


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_an_escaping_member_refuses_the_run_and_writes_nothing(tmp_path, dask_client):
    members = project_members() + [(info("p/../../outside.json", 2), b"{}")]
    src = _write(tmp_path / "evil.tar", tar_bytes(members))
    before = snapshot(tmp_path)
    with pytest.raises(ProjectError, match="climbs out of it with '..'"):
        run_export(ExportConfig(src, str(tmp_path / "out")), log=lambda m: None, client=dask_client)
    assert snapshot(tmp_path) == before


def test_cli_refuses_a_hostile_tar_without_traceback(tmp_path, cli):
    src = _write(tmp_path / "evil.tar", tar_bytes(project_members() + [
        (info("p/ds/img/b.png", 0, tarfile.CHRTYPE), None)]))
    proc = cli("export", src, tmp_path / "out", "--workers", "1")
    assert proc.returncode == EXIT_FATAL
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("maskcore: error: project ") and "character device" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_tar_is_read_in_place_with_hostile_but_legal_names(tmp_path, dask_client):
    """Names a folder cannot hold (NUL, '\\\\', controls) come only from tars: exported safely."""
    ann = json.dumps(good_annotation(2)).encode()
    odd = ["nul\x00name.png", "back\\slash.png", "ctl\x01\x1b[31m.png", "Case.png", "case.png"]
    members = project_members()
    for name in odd:  # pax "path" records: a NUL would end a ustar name field
        members += [(info(f"p/ds/ann/{name}.json", len(ann), pax={"path": f"p/ds/ann/{name}.json"}), ann),
                    (info(f"p/ds/img/{name}", len(IMG), pax={"path": f"p/ds/img/{name}"}), IMG)]
    members += [(info("p/ds/ann/dangling.png.json", len(ann)), ann),
                (info("p/ds/img/dangling.png", 0, tarfile.SYMTYPE, "gone.png"), None)]
    src = _write(tmp_path / "odd.tar", tar_bytes(members))
    before = snapshot(tmp_path)
    result = run_export(ExportConfig(src, str(tmp_path / "out")), log=lambda m: None, client=dask_client)
    assert result.exit_code == EXIT_PARTIAL
    rows = {r["item"]: r for r in result.manifest.to_pylist()}
    assert rows["dangling.png"]["error"] == "ds/dangling.png: the image file is missing and the human preview needs it"
    assert all(rows[n]["status"] == "ok" for n in odd + ["a.png"])
    assert rows["nul\x00name.png"]["out_name"] == "nul_name.png"
    assert rows["ctl\x01\x1b[31m.png"]["out_name"] == "ctl__[31m.png"
    assert rows["back\\slash.png"]["out_name"] == "back_slash.png"
    assert rows["Case.png"]["out_name"].casefold() != rows["case.png"]["out_name"].casefold()
    written = {o["path"] for r in rows.values() for o in r["outputs"]}
    assert written <= files_under(tmp_path / "out")
    changed = {p for p, size in snapshot(tmp_path).items() if before.get(p) != size}
    assert all(p.startswith(str(tmp_path / "out") + "/") for p in changed)  # nothing extracted
    assert SuperviselySource.from_path(src).read_bytes("ds/img/back\\slash.png") == IMG
