"""A nightly export on S3 at scale (issue 17.1): what a no-op night and a one-item night cost.

Starts moto's S3 server (``moto_server``, a separate process on loopback, its access log in a
file), uploads a synthetic Supervisely project of N tiny items (12x16 canvases, one polygon, a
few bytes of image each: the costs measured are requests, not pixels), then runs:
  1. a full export (every item rendered);
  2. a no-op night: nothing changed;
  3. one annotation changed;
  4. the same with --verify (every input hashed, as every night did before change stamps).
For each, the seconds and the requests the server answered, counted from its access log: GETs of
source object bodies (annotations, images; ``meta.json`` apart), listings, and PUTs. The source's
listing alone (``list_items``) is timed too: a no-op night should take about that.

Usage:
  python benchmarks/nightly_bench.py [--items 20000] [--workdir DIR] [--cluster local]
Needs moto[server] and s3fs (the test extra).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maskcore.exec.run import ExportConfig, run_export
from maskcore.readers.supervisely import SuperviselySource

REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+"')
BUCKET = "nightly"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project(n: int) -> dict[str, bytes]:
    meta = {"classes": [{"title": "thing", "shape": "polygon", "color": "#FF0000"}], "tags": []}
    files = {f"{BUCKET}/in/proj/meta.json": json.dumps(meta).encode()}
    for i in range(n):
        ann = {"size": {"height": 12, "width": 16}, "tags": [], "objects": [{
            "classTitle": "thing", "geometryType": "polygon", "tags": [],
            "points": {"exterior": [[1, 1], [1 + i % 13, 2], [3, 1 + i % 10]], "interior": []}}]}
        files[f"{BUCKET}/in/proj/ds/ann/im{i:06d}.png.json"] = json.dumps(ann).encode()
        files[f"{BUCKET}/in/proj/ds/img/im{i:06d}.png"] = f"not decoded {i}".encode()
    return files


def _requests(log: Path, start: int) -> tuple[list[tuple[str, str]], int]:
    lines = log.read_text(errors="replace").splitlines()
    out = []
    for line in lines[start:]:
        m = REQUEST.search(line)
        if m:
            out.append((m["method"], m["target"]))
    return out, len(lines)


def _counts(reqs: list[tuple[str, str]]) -> dict:
    src = f"/{BUCKET}/in/proj/"
    return {
        "source_body_gets": sum(m == "GET" and t.startswith(src) and not t.endswith("/meta.json") for m, t in reqs),
        "source_meta_gets": sum(m == "GET" and t == src + "meta.json" for m, t in reqs),
        "listings": sum(m == "GET" and "list-type=2" in t for m, t in reqs),
        "destination_gets": sum(m == "GET" and t.startswith(f"/{BUCKET}/out/") for m, t in reqs),
        "puts": sum(m == "PUT" for m, _ in reqs),
        "all": len(reqs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--cluster", default="local")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nightly_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "moto.log"
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        import s3fs
        endpoint = f"http://127.0.0.1:{port}"
        options = {"key": "bench", "secret": "bench-secret", "client_kwargs": {"endpoint_url": endpoint}}
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
        fs.mkdir(BUCKET)
        files = _project(args.items)
        t = time.perf_counter()
        keys = list(files)
        for i in range(0, len(keys), 2000):
            fs.pipe({k: files[k] for k in keys[i:i + 2000]})
        print(f"uploaded {len(files)} objects in {time.perf_counter() - t:.1f} s", flush=True)
        cfg = {"source": f"s3://{BUCKET}/in/proj", "destination": f"s3://{BUCKET}/out", "storage_options": options,
               "layout_options": {"masks": ["machine"]}, "cluster": args.cluster}
        results = {"items": args.items}
        _, mark = _requests(log, 0)
        t = time.perf_counter()
        n = SuperviselySource.from_path(cfg["source"], options).list_items().num_rows
        reqs, mark = _requests(log, mark)
        results["listing_only"] = {"seconds": round(time.perf_counter() - t, 2), "items": n, **_counts(reqs)}
        for name, change, extra in (("full", None, {}), ("no_op", None, {}), ("one_changed", "im000007", {}),
                                    ("verify", None, {"verify": True})):
            if change:
                fs.pipe_file(f"{BUCKET}/in/proj/ds/ann/{change}.png.json",
                             files[f"{BUCKET}/in/proj/ds/ann/im000100.png.json"])
            _, mark = _requests(log, 0)
            t = time.perf_counter()
            run = run_export(ExportConfig(**cfg, **extra), log=lambda m: None)
            seconds = time.perf_counter() - t
            time.sleep(0.5)  # the access log is written by another process
            reqs, mark = _requests(log, mark)
            results[name] = {"seconds": round(seconds, 2), **run.report["items"], **run.report["stamps"],
                             **_counts(reqs)}
            print(name, json.dumps(results[name]), flush=True)
        print(json.dumps(results, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
