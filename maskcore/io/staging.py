"""Temporary files in a destination: one name, one folder, one sweep.

On a local disk every file maskcore writes whole-or-nothing (an output, a state file, an archive
chunk or part) is first written as a temporary, then renamed or linked into place. Every
temporary is ``<STATE_DIR>/tmp/<random hex>.part`` under the destination root: on the filesystem of
every output (the rename is atomic), never beside an output (a killed writer leaves nothing in the
export tree), and all in one folder, which the end of every run empties
(``FsspecDirSink.clear_temporaries``): what killed writers left is removed by the next run that
finishes. Object stores need none (a PUT appears whole or not at all).
"""

from __future__ import annotations

import uuid

from ..paths import STATE_DIR

TMP_DIR = f"{STATE_DIR}/tmp"
"""The destination-relative folder of every temporary file."""


def temporary_relpath() -> str:
    """A new destination-relative name for a temporary file: ``<STATE_DIR>/tmp/<32 hex>.part``."""
    return f"{TMP_DIR}/{uuid.uuid4().hex}.part"
