"""Archive compaction cost (issue 16): how long the driver takes to turn the workers' chunks into
parts filled up to the part size, per GB of export.

    python benchmarks/archive_bench.py local [GB] [PART_MB]        # a local destination
    python benchmarks/archive_bench.py s3 [GB] [PART_MB]           # moto's S3 server on loopback

Members are random bytes of 1 kB .. 1 MB (mean ~500 kB, like masks and previews of 1-2 megapixel
photos) packed by partitions of 40 files, as workers pack them; the timing covers
``finalize_archive`` only (checks, member copies, trailers, publishing), not the packing.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time

from maskcore.io.archive import ArchiveSink, discard_chunks, finalize_archive
from maskcore.io.sinks.fsdir import FsspecDirSink


def pack(inner, part_size: int, total: int) -> list[dict]:
    rng = random.Random(1)
    blob = os.urandom(1 << 20)
    sink, records, written, p = ArchiveSink(inner, part_size), [], 0, 0
    while written < total:
        packer = sink.open_partition(p, ("ds", f"{p:06d}"))
        for k in range(40):
            size = rng.randint(1000, 1 << 20)
            packer.write(f"ds/f{p:06d}_{k:02d}.bin", blob[:size])
            written += size
        records += packer.finish()
        p += 1
    return records


def main(where: str = "local", gb: str = "1", part_mb: str = "100") -> None:
    total, part_size = int(float(gb) * 1e9), int(part_mb) * 10 ** 6
    if where == "s3":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from moto.server import ThreadedMotoServer

        os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        options = {"client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
        import s3fs

        s3fs.S3FileSystem(**options).mkdir("bench")
        inner = FsspecDirSink("s3://bench/out", options)
    else:
        inner = FsspecDirSink(tempfile.mkdtemp(prefix="archive-bench-", dir=os.environ.get("BENCH_DIR")))
    records = pack(inner, part_size, total)
    start = time.perf_counter()
    result = finalize_archive(inner, "bench", part_size, records, [("meta.json", b"{}")])
    seconds = time.perf_counter() - start
    size = sum(p["bytes"] for p in result.parts)
    print(f"{where}: {len(records)} chunks -> {len(result.parts)} parts of {part_mb} MB, {size / 1e9:.2f} GB "
          f"in {seconds:.2f} s: {seconds / (size / 1e9):.2f} s/GB "
          f"(fill {min(p['bytes'] for p in result.parts[:-1]) / part_size:.1%} .. "
          f"{max(p['bytes'] for p in result.parts) / part_size:.1%})")
    discard_chunks(inner)


if __name__ == "__main__":
    main(*sys.argv[1:])
