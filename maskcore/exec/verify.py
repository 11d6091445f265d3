"""``maskcore verify DST``: is the destination exactly what its manifest says?

The committed manifest (``.maskcore-meta/manifest.parquet``) names every file of the export: each
item's outputs (path, bytes, sha256) and, in its schema metadata (``FILES_KEY``), the project
files, list files and archive files. Verification reads every named file and compares size and
sha256, and lists the files of the destination that nothing names (*extra*; outside
``.maskcore-meta/``, and only inside the layout's own folder when it has one; not checked for archive
exports, whose manifest names the archive's members, not the destination's files).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ProjectError
from .state import MANIFEST, STATE_DIR, read_manifest

FILES_KEY = b"maskcore.files"
"""Manifest metadata: JSON ``[[path, bytes, sha256], ...]`` of the files no item row names."""
SCOPE_KEY = b"maskcore.scope"
"""Manifest metadata: the layout's own folder (its files are the export), "" for the whole destination."""
ARCHIVE_KEY = b"maskcore.archive"
"""Manifest metadata: b"1" when the item outputs are archive members, not destination files."""
MANIFEST_COLUMNS = ("dataset", "item", "status", "ann_sha256", "img_sha256", "outputs")


@dataclass
class Verification:
    destination: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)     # "path: why"
    extra: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.different or self.extra)

    def summary(self) -> str:
        return (f"{self.destination}: {self.checked} files checked, {len(self.missing)} missing, "
                f"{len(self.different)} different, {len(self.extra)} extra")


def recorded_files(manifest: pa.Table) -> dict[str, tuple[int, str]]:
    """Every destination file the manifest names: path -> (bytes, sha256)."""
    meta = manifest.schema.metadata or {}
    files: dict[str, tuple[int, str]] = {}
    if meta.get(ARCHIVE_KEY) != b"1" and manifest.num_rows:
        outputs = pc.list_flatten(manifest.column("outputs")).combine_chunks()
        for path, size, sha in zip(outputs.field("path").to_pylist(), outputs.field("bytes").to_pylist(),
                                   outputs.field("sha256").to_pylist()):
            files[path] = (size, sha)
    for path, size, sha in _named(meta):
        files[path] = (size, sha)
    return files


def named_project_files(manifest: pa.Table) -> list[str]:
    """The project-level and list files a folder run recorded in its manifest's metadata (none
    after an archive run: its parts are the archive's)."""
    meta = manifest.schema.metadata or {}
    return [] if meta.get(ARCHIVE_KEY) == b"1" else [str(path) for path, _, _ in _named(meta)]


def _named(meta: dict) -> list:
    """``FILES_KEY``: [(path, bytes, sha256), ...]."""
    return json.loads(meta.get(FILES_KEY, b"[]"))


def unrecorded_files(sink, manifest: pa.Table, recorded: dict | None = None) -> list[str]:
    """Files of the destination the manifest does not name (state under ``.maskcore-meta/`` aside)."""
    meta = manifest.schema.metadata or {}
    if meta.get(ARCHIVE_KEY) == b"1":
        return []
    recorded = recorded_files(manifest) if recorded is None else recorded
    scope = meta.get(SCOPE_KEY, b"").decode()
    found = sink.walk(scope) if scope else sink.walk()
    return sorted(p for p in found if not p.startswith(STATE_DIR + "/") and p not in recorded)


def verify_destination(sink, workers: int = 16) -> Verification:
    """Check every file the committed manifest names (size, then sha256) and list the extra ones.
    ``ProjectError`` when the destination has no readable manifest."""
    damaged: list = []
    manifest = read_manifest(sink, MANIFEST_COLUMNS, damaged)
    if manifest is None:
        why = damaged[0].message() if damaged else "it does not exist"
        raise ProjectError(f"{sink.url}: expected a maskcore export with {MANIFEST}; {why}")
    result = Verification(destination=sink.url)
    expected = recorded_files(manifest)
    present = set(sink.walk())

    def check(item) -> str | None:
        path, (size, sha) = item
        if path not in present:
            return "missing"
        data = sink.read(path)
        if len(data) != size:
            return f"{path}: {len(data)} bytes, the manifest says {size}"
        if hashlib.sha256(data).hexdigest() != sha:
            return f"{path}: sha256 differs from the manifest's"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (path, _), problem in zip(expected.items(), pool.map(check, expected.items())):
            result.checked += 1
            if problem == "missing":
                result.missing.append(path)
            elif problem:
                result.different.append(problem)
    result.extra = unrecorded_files(sink, manifest, expected)
    result.missing.sort()
    result.different.sort()
    return result
