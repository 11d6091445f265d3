"""Publishing an archive's files whole-or-nothing across the set, by a journal and backups.

A run that replaces, adds or removes archive files (``maskcore.io.archive``) first saves every
file it will replace or remove in ``BACKUP_DIR`` (hard links on a local disk: no bytes copied;
server-side copies on object stores) and writes ``PUBLISH_JOURNAL``: its run id, the saved files
and the names it adds. Then it writes, renames and removes. Once its manifest is committed,
:func:`end_publish` drops the journal and the backups. A run that died in between leaves the
journal: the next run, as it starts (:func:`recover_publish`), sees that the committed manifest is
not that run's, removes the added names and puts the saved files back (locally by rename: the same
inode and mtime, so their recorded stamps hold again). A run that replaces nothing writes no journal.
"""

from __future__ import annotations

import json
import os
import shutil

from fsspec.implementations.local import LocalFileSystem

from ..paths import STATE_DIR, check_relpath
from .storage import filesystem

PUBLISH_JOURNAL = f"{STATE_DIR}/archive_publish.json"   # what to undo if the run dies before its commit
BACKUP_DIR = f"{STATE_DIR}/archive_backup"             # the archive files a publishing run replaces or removes



def begin_publish(inner, existing: list[str], writes: list[str], keep: set[str], run_id: str | None) -> list[str]:
    """Prepare to write the archive files ``writes`` and keep only ``keep`` of the ``existing``
    ones: returns the stale archive files to remove once the new ones are in place.

    With ``run_id`` (a run that commits a manifest after publishing), the archive files about to
    be replaced or removed are first saved in ``BACKUP_DIR`` (hard links locally, server-side
    copies elsewhere) and ``PUBLISH_JOURNAL`` names them with the files that are new: if the run
    dies before :func:`end_publish`, :func:`recover_publish` puts the old set back."""
    existing = set(existing)
    stale = sorted(existing - keep)
    if run_id is None:
        return stale
    fs, root = _filesystem(inner)
    restore = {}
    for n in sorted(existing & set(writes)) + stale:
        restore[n] = f"{BACKUP_DIR}/{n}"
        if isinstance(fs, LocalFileSystem):
            os.makedirs(f"{root}/{BACKUP_DIR}", exist_ok=True)
            _remove(f"{root}/{BACKUP_DIR}/{n}")
            os.link(f"{root}/{n}", f"{root}/{BACKUP_DIR}/{n}")
        else:
            fs.cp_file(f"{root}/{n}", f"{root}/{BACKUP_DIR}/{n}")
    journal = {"run_id": run_id, "restore": restore, "remove": sorted(set(writes) - existing)}
    inner.write(PUBLISH_JOURNAL, json.dumps(journal, indent=1).encode())
    return stale


def end_publish(inner) -> None:
    """The run's manifest is committed: its archive files are the truth; drop the backups and the
    journal (nothing to do, and nothing written, when the run replaced no archive file)."""
    if inner.exists(PUBLISH_JOURNAL):
        _remove_tree(inner, BACKUP_DIR)
        inner.delete([PUBLISH_JOURNAL])


def recover_publish(inner, committed_run: str | None) -> str | None:
    """Undo the publication of a run that died before its commit (its journal is left and the
    committed manifest is not its own): the archive files it replaced or removed are put back,
    the ones it added removed. Returns what was done (for the log), None when nothing was left."""
    try:
        journal = json.loads(inner.read(PUBLISH_JOURNAL))
    except FileNotFoundError:
        _remove_tree(inner, BACKUP_DIR)   # a run died while saving: nothing was replaced yet
        return None
    if journal["run_id"] == committed_run:
        end_publish(inner)   # it died after its commit
        return None
    fs, root = _filesystem(inner)
    inner.delete(journal["remove"])
    for n, backup in sorted(journal["restore"].items()):
        if isinstance(fs, LocalFileSystem):
            if os.path.exists(f"{root}/{backup}"):
                os.replace(f"{root}/{backup}", f"{root}/{check_relpath(n)}")
        else:
            fs.cp_file(f"{root}/{backup}", f"{root}/{check_relpath(n)}")
    end_publish(inner)
    return (f"an earlier run died while publishing its archive: its {len(journal['remove'])} new archive "
            f"files were removed and the {len(journal['restore'])} it replaced restored")


def _remove_tree(inner, relpath: str) -> None:
    fs, root = _filesystem(inner)
    fs.invalidate_cache(f"{root}/{relpath}")
    try:
        found = fs.find(f"{root}/{relpath}")
    except FileNotFoundError:
        found = []
    inner.delete(sorted(f"{relpath}/{p[len(root) + len(relpath) + 2:]}" for p in found))
    if isinstance(fs, LocalFileSystem):
        shutil.rmtree(f"{root}/{relpath}", ignore_errors=True)


def _filesystem(sink):
    fs, root = filesystem(sink.url, sink.storage_options)
    return fs, root.rstrip("/")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
