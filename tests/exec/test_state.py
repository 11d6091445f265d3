"""The manifest written piece by piece (``state.ManifestWriter``) is the manifest written whole."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from maskcore.exec import state
from maskcore.io.sinks import get_sink


def _manifest(n: int, rng) -> pa.Table:
    names = [f"img_{i:05d}_{rng.integers(1 << 30)}.png" for i in range(n)]
    return pa.table({"dataset": [f"ds{i // 7}" for i in range(n)], "item": names,
                     "status": rng.choice(["ok", "unchanged", "failed"], n).tolist(),
                     "bytes_written": rng.integers(0, 1 << 40, n)}
                    ).replace_schema_metadata({state.RUN_ID_KEY: b"night"})


def _files(root) -> dict[str, bytes]:
    """{path: bytes} of every file under ``root``, the state folder included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("seed", range(4))
def test_a_manifest_given_in_pieces_is_the_same_files_as_given_whole(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", int(rng.integers(1, 9)))
    n = int(rng.integers(0, 40))
    table = _manifest(n, rng)
    whole, pieces = get_sink("dir", str(tmp_path / "whole")), get_sink("dir", str(tmp_path / "pieces"))
    for sink in (whole, pieces):  # an earlier run's parts, which the commit removes
        sink.write(f"{state.MANIFEST_PARTS}/old-00001.parquet", b"an earlier run's part")
    state.write_manifest(whole, table)
    writer = state.ManifestWriter(pieces, table.schema)
    cuts = np.sort(rng.integers(0, n + 1, int(rng.integers(0, 6))))
    for start, end in zip([0, *cuts], [*cuts, n]):
        writer.add(table.slice(int(start), int(end - start)))
        assert not pieces.exists(state.MANIFEST)  # nothing committed before commit()
    writer.commit()
    assert _files(tmp_path / "pieces") == _files(tmp_path / "whole")
    assert pieces.exists(state.MANIFEST) and not pieces.exists(f"{state.MANIFEST_PARTS}/old-00001.parquet")
    read = state.read_manifest(pieces)
    assert read.equals(table.replace_schema_metadata(read.schema.metadata))
    parts = -(-n // state.MANIFEST_PART_ROWS) - 1
    assert len(pieces.listdir(state.MANIFEST_PARTS)) == max(0, parts)


def test_a_manifest_read_with_the_plan_holds_its_names_once(tmp_path, monkeypatch):
    """``read_manifest(names=plan)``: each file listing the plan's items at its place takes the plan's
    ``dataset`` / ``item`` (the same buffers); a file listing other items keeps its own."""
    rng = np.random.default_rng(7)
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", 5)
    table = _manifest(23, rng)
    sink = get_sink("dir", str(tmp_path))
    state.write_manifest(sink, table)
    plan = table.select(["dataset", "item"])
    names = pa.array(plan.column("item").to_pylist()[:12] + ["another.png"] + plan.column("item").to_pylist()[13:])
    other = plan.set_column(1, "item", names)  # row 12 (the third part) differs
    for given, shared_parts in ((plan, 5), (other, 4)):
        read = state.read_manifest(sink, names=given)
        assert read.select(["dataset", "item", "status"]).equals(table.select(["dataset", "item", "status"]))
        chunks = read.column("item").chunks
        plan_data = {given.column("item").chunk(0).buffers()[2].address}
        assert sum(c.buffers()[2].address in plan_data for c in chunks) == shared_parts
