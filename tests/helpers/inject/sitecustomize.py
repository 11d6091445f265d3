"""Fault injection for test subprocesses (``python -m maskcore``, its Dask workers, Slurm jobs).

Put this folder first on ``PYTHONPATH``; nothing is changed unless a variable below is set. Each
applies in every process of the run, the driver and the spawned workers alike:

- ``MASKCORE_TEST_ENOSPC=<glob>``: every write of a destination-relative path matching it fails as
  a full disk does (``OSError(ENOSPC)``).
- ``MASKCORE_TEST_GATE=<glob>`` with ``MASKCORE_TEST_GATE_FILE=<path>``: every write of a matching
  path waits until ``<path>`` exists, so a test can hold a run mid-way (say, until it has seen a
  worker lost) without depending on how fast the machine is. A waiting process says so with a
  file ``<path>.<pid>.waiting``.
"""

import os

_ENOSPC = os.environ.get("MASKCORE_TEST_ENOSPC")
_GATE = os.environ.get("MASKCORE_TEST_GATE")
_GATE_FILE = os.environ.get("MASKCORE_TEST_GATE_FILE")

if _ENOSPC or (_GATE and _GATE_FILE):
    import errno
    import fnmatch
    import time

    from maskcore.io.sinks import fsdir

    _write = fsdir.FsspecDirSink.write

    def write(self, relpath, data):
        if _ENOSPC and fnmatch.fnmatchcase(relpath, _ENOSPC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.full_path(relpath))
        if _GATE and _GATE_FILE and fnmatch.fnmatchcase(relpath, _GATE):
            if not os.path.exists(_GATE_FILE):
                with open(f"{_GATE_FILE}.{os.getpid()}.waiting", "w"):
                    pass
            while not os.path.exists(_GATE_FILE):
                time.sleep(0.05)
        return _write(self, relpath, data)

    fsdir.FsspecDirSink.write = write
