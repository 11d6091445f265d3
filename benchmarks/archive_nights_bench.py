"""Nightly archive runs (issue 17.4): what a no-op night and a one-item night cost with --part-size.

Writes a synthetic local Supervisely project of N small items (12x16 canvases, one polygon, a few
bytes of "image" copied as they are: ``-o masks=machine``), then runs into one destination:
  1. a full run (every item rendered, every part written);
  2. a no-op night;
  3. a night with one annotation changed;
  4. a night with new items, about two parts' worth (appended: the last part filled on, new parts;
     a tar's old last part is rewritten without its end blocks when a new part follows it);
  5. the same inputs with --repack (the clean run's layout);
and, for comparison, a clean run of the changed project into a new destination. For each: seconds,
items rendered, archive files written / kept (their mtime_ns and inode compared before and after),
and the bytes this process wrote (``wchar`` of /proc/self/io: parts, chunks, state files).

Usage:
  python benchmarks/archive_nights_bench.py [--items 2000] [--part-size 200000] [--workdir DIR] [--s3]
``--s3``: the destination on moto's S3 server (in this process, on loopback); archive files
"written" are then the PUT/POST/COPY requests on archive keys, counted from the server's log.
Runs in-process (``--cluster inprocess``): the costs measured are the run's own, not Dask's. The
script waits ``STAMP_SETTLE_SECONDS`` after writing the source, so unchanged items are known by
their stamps (no read), as on a real night.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from maskcore.exec.run import ExportConfig, run_export
from maskcore.io.storage import STAMP_SETTLE_SECONDS


def _write_item(src: Path, i: int, shift: int = 0) -> None:
    ann = {"size": {"height": 12, "width": 16}, "tags": [], "objects": [{
        "classTitle": "thing", "geometryType": "polygon", "tags": [],
        "points": {"exterior": [[1, 1], [1 + (i + shift) % 13, 2], [3, 1 + (i + shift) % 10]], "interior": []}}]}
    (src / f"ds/ann/im{i:06d}.png.json").write_text(json.dumps(ann))
    (src / f"ds/img/im{i:06d}.png").write_bytes(f"not decoded {i}".encode())


def _project(src: Path, n: int) -> None:
    (src / "ds/ann").mkdir(parents=True)
    (src / "ds/img").mkdir()
    (src / "meta.json").write_text(json.dumps({"classes": [
        {"title": "thing", "shape": "polygon", "color": "#FF0000"}], "tags": []}))
    for i in range(n):
        _write_item(src, i)


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _parts(dst) -> dict[str, tuple]:
    if isinstance(dst, str):   # s3: names only (writes are counted from the server's log)
        return {}
    # earlier and current part names
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in dst.glob("proj*.tar*")}


class _Requests(logging.Handler):
    """moto's access log: ``"PUT /bucket/key HTTP/1.1"`` lines."""
    LINE = re.compile(r'"([A-Z]+) (\S+) HTTP')

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = self.LINE.search(record.getMessage())
        if m:
            self.lines.append((m[1], m[2]))


def _night(label: str, src: Path, dst, part_size: int, options=None, requests=None, **kw) -> dict:
    before, wrote, seen = _parts(dst), _wchar(), len(requests.lines) if requests else 0
    start = time.perf_counter()
    result = run_export(ExportConfig(str(src), str(dst), part_size=part_size, archive_name="proj",
                                     cluster="inprocess", layout_options={"masks": "machine"},
                                     storage_options=options or {}, **kw), log=lambda m: None)
    seconds = time.perf_counter() - start
    after = _parts(dst)
    row = {"night": label, "seconds": round(seconds, 2), "items_rendered": result.report["items"]["written"],
           "parts": len(result.report["archive"]["files"]),
           "parts_written": sum(after[n] != before.get(n) for n in after),
           "bytes_written": _wchar() - wrote, "mode": result.report["archive"].get("mode", "full")}
    if requests:   # bytes sent over sockets are not in wchar
        row["bytes_written"] = None
        new = requests.lines[seen:]
        row["parts_written"] = sum(m in ("PUT", "POST") and ("/proj_part_" in t or "/proj.tar." in t)
                                   and "/.maskcore" not in t for m, t in new)
        row["requests"] = {m: sum(1 for k, _ in new if k == m) for m in sorted({k for k, _ in new})}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--part-size", type=int, default=200_000)
    ap.add_argument("--workdir")
    ap.add_argument("--s3", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="archive-nights-"))
    src, dst, clean, kw = work / "src", work / "out", work / "clean", {}
    if args.s3:
        dst, clean, kw = _s3(kw)
    _project(src, args.items)
    time.sleep(STAMP_SETTLE_SECONDS + 0.5)   # stamps younger than this are not trusted: every item hashed
    _night("full", src, dst, args.part_size, **kw)
    _night("no-op", src, dst, args.part_size, **kw)
    _write_item(src, args.items // 2, shift=5)
    time.sleep(STAMP_SETTLE_SECONDS + 0.5)
    _night("one item changed", src, dst, args.part_size, **kw)
    for i in range(args.items, args.items + 2 * args.part_size // 8600):   # ~8.6 kB of archive per item
        _write_item(src, i)
    time.sleep(STAMP_SETTLE_SECONDS + 0.5)
    _night("new items (~2 parts)", src, dst, args.part_size, **kw)
    if "repack" in ExportConfig.__dataclass_fields__:
        _night("repack", src, dst, args.part_size, repack=True, **kw)
    _night("clean run (new destination)", src, clean, args.part_size, **kw)


def _s3(kw: dict):
    """moto's server on loopback (credentials are dummies), a bucket, and its request log."""
    from moto.server import ThreadedMotoServer
    os.environ.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
    requests = _Requests()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(requests)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    import s3fs
    s3fs.S3FileSystem(**options).mkdir("nights")
    return "s3://nights/out", "s3://nights/clean", {"options": options, "requests": requests}


if __name__ == "__main__":
    main()
