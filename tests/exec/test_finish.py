"""A run's finish (maskcore.exec.finish): what it says when the last manifest it joined a part at a
time is no longer the one it reads back to make the new manifest."""

from __future__ import annotations

import json
import random
import time

import pytest

from helpers import SAMPLES, bigger_project, tree
from maskcore.errors import MaskcoreError, StateError
from maskcore.exec import state
from maskcore.exec.run import ExportConfig, run_export
from maskcore.exec.state import MANIFEST, MANIFEST_PARTS


def test_a_manifest_part_damaged_during_the_run_is_named_and_nothing_is_committed(tmp_path, monkeypatch):
    """A part of the last manifest overwritten while the run renders (after the run joined it):
    the finish, reading it again, stops with a maskcore error naming that part and what differs;
    the committed manifest stays the last run's, and the next run (which sets it aside) leaves the
    destination as a clean run does."""
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.3)
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", 4)
    src, dst = tmp_path / "src", tmp_path / "out"
    bigger_project(SAMPLES, src, 3)                                   # 18 items: a first file and 4 parts
    time.sleep(0.35)
    cfg = {"items_per_partition": 3, "in_process": True}
    assert run_export(ExportConfig(str(src), str(dst), **cfg), log=lambda m: None).exit_code == 0
    ann = src / "ds/ann/c1_dog1.jpg.json"
    doc = json.loads(ann.read_text())
    doc["objects"][0]["points"]["exterior"][1][0] -= 50               # one item to render again
    ann.write_text(json.dumps(doc))
    time.sleep(0.35)
    parts = sorted((dst / MANIFEST_PARTS).iterdir())
    assert len(parts) == 4
    victim = random.Random().choice(parts)
    head = (dst / MANIFEST).read_bytes()
    damaged = bytearray(victim.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF                                # one byte: the sha256 differs

    def damage(n_done: int) -> None:
        victim.write_bytes(bytes(damaged))

    with pytest.raises(StateError) as err:
        run_export(ExportConfig(str(src), str(dst), **cfg), log=lambda m: None, on_partition=damage)
    assert isinstance(err.value, MaskcoreError)                       # the command line says it, no traceback
    message = str(err.value)
    assert message.startswith(f"{MANIFEST}: expected the parts it named when the run started, got ")
    assert f"{MANIFEST_PARTS}/{victim.name} is not the part the manifest names (sha256 differs)" in message
    assert "the last manifest changed during the run" in message and "this run is not committed" in message
    assert (dst / MANIFEST).read_bytes() == head                      # nothing committed
    assert {p.name for p in parts} <= {p.name for p in (dst / MANIFEST_PARTS).iterdir()}
    lines: list[str] = []
    again = run_export(ExportConfig(str(src), str(dst), **cfg), log=lines.append)   # the next run mends it
    clean = run_export(ExportConfig(str(src), str(tmp_path / "clean"), **cfg), log=lambda m: None)
    assert again.exit_code == 0 and again.report["items"] == clean.report["items"]
    assert any(f"{MANIFEST} is unreadable" in line and "treated as absent" in line for line in lines)
    assert tree(dst) == tree(tmp_path / "clean")
