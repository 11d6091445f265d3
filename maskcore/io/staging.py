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

import itertools
import os

from ..paths import STATE_DIR

TMP_DIR = f"{STATE_DIR}/tmp"
"""The destination-relative folder of every temporary file."""


_names = (-1, "", itertools.count())  # (pid, random prefix, counter) of this process


def temporary_relpath() -> str:
    """A new destination-relative name for a temporary file: ``<STATE_DIR>/tmp/<hex>.part``, 96
    random bits drawn once per process (again in a forked child) then a counter: unique across
    processes and hosts writing one destination as a ``uuid4`` per file was, without its
    ``getrandom`` call and object per file (a file write is a hot path)."""
    global _names
    pid, prefix, counter = _names
    if pid != os.getpid():
        pid, prefix, counter = os.getpid(), os.urandom(12).hex(), itertools.count()
        _names = (pid, prefix, counter)
    return f"{TMP_DIR}/{prefix}{next(counter):x}.part"
