"""Run state in its old folder: ``<destination>/.maskcore/`` (``paths.LEGACY_STATE_DIR``).

Until maskcore kept its run state in ``paths.STATE_DIR`` (``.maskcore-meta``), it lived in
``.maskcore/``, a folder the Supervisely SDK takes for a dataset (see ``paths.STATE_DIR``). Such a
destination keeps working:
- a run, once it holds the destination's lock, moves the old state into ``STATE_DIR``
  (``migrate_legacy_state``): manifest, report, partials, start markers, damaged files, archive
  chunks and Slurm logs, so the run resumes and skips exactly as it would have; the old lock and
  temporaries are not carried over (a lock still held by a live run of an older maskcore refuses
  the run, as any held lock does). A file in both folders is taken from the old one: the new
  folder can only hold an earlier copy (a migration killed half way) or state older than a later
  run of an older maskcore. Killed half way, the next run moves what is left: every file is
  written whole before the old folder is removed.
- ``maskcore verify`` and ``--dry-run`` change nothing: they read the old folder in place through
  ``state_view``.
"""

from __future__ import annotations

import os

from ..paths import LEGACY_STATE_DIR, STATE_DIR
from .lease import stale_lock
from .state import LockedError

_NOT_CARRIED = ("lock", "lock.takeover.", "tmp/")
"""Names under the old folder that are removed, not moved: its lock and temporaries."""


def _new_name(relpath: str) -> str:
    return STATE_DIR + relpath[len(LEGACY_STATE_DIR):]


def _old_name(relpath: str) -> str:
    return LEGACY_STATE_DIR + relpath[len(STATE_DIR):]


def _in(relpath: str, folder: str) -> bool:
    return relpath == folder or relpath.startswith(folder + "/")


def migrate_legacy_state(sink) -> int:
    """Move the state of ``<destination>/.maskcore/`` into ``STATE_DIR`` (call holding the lock);
    returns the number of files moved (0: there was no old state). ``LockedError`` when a run of
    an older maskcore still holds the old lock."""
    found = sink.walk(LEGACY_STATE_DIR)
    if not found:
        return 0
    lock = f"{LEGACY_STATE_DIR}/lock"
    if lock in found:
        doc, why = stale_lock(sink.read(lock))
        if why is None:
            raise LockedError(f"a run of an older maskcore holds {sink.url} (lock {lock}: {doc.get('holder')}, "
                              f"run {doc.get('run')}); wait for it to finish, or for its lease to expire")
    moved = 0
    for relpath in found:
        name = relpath[len(LEGACY_STATE_DIR) + 1:]
        if not name.startswith(_NOT_CARRIED):
            sink.write(_new_name(relpath), sink.read(relpath))
            moved += 1
    sink.delete(found)
    if getattr(sink, "is_local", False):
        _remove_empty_folders(sink.full_path(LEGACY_STATE_DIR))
    return moved


def _remove_empty_folders(top: str) -> None:
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(folder)
        except OSError:   # not empty (a file written meanwhile is never lost) or gone
            pass


def state_view(sink):
    """``sink`` itself, or, when its state is still in the old folder only, a view that reads
    ``STATE_DIR`` paths there (for commands that must not change the destination)."""
    if sink.exists(f"{STATE_DIR}/manifest.parquet") or not sink.exists(f"{LEGACY_STATE_DIR}/manifest.parquet"):
        return sink
    return LegacyStateView(sink)


class LegacyStateView:
    """A destination sink whose ``STATE_DIR`` paths are those of ``LEGACY_STATE_DIR``."""

    def __init__(self, sink) -> None:
        self._sink = sink
        self.url = sink.url
        self.storage_options = getattr(sink, "storage_options", None)

    def _map(self, relpath: str) -> str:
        return _old_name(relpath) if _in(relpath, STATE_DIR) else relpath

    def read(self, relpath: str) -> bytes:
        return self._sink.read(self._map(relpath))

    def exists(self, relpath: str) -> bool:
        return self._sink.exists(self._map(relpath))

    def listdir(self, relpath: str) -> list[str]:
        return self._sink.listdir(self._map(relpath))

    def walk(self, relpath: str = "") -> list[str]:
        found = self._sink.walk(self._map(relpath)) if relpath else self._sink.walk()
        return sorted(_new_name(p) if _in(p, LEGACY_STATE_DIR) else p for p in found)

    def write(self, relpath: str, data: bytes) -> None:
        self._sink.write(self._map(relpath), data)

    def delete(self, relpaths) -> None:
        self._sink.delete([self._map(p) for p in relpaths])
