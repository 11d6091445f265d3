"""Fault injection for test subprocesses (``python -m maskcore`` and its Dask workers).

Put this folder first on ``PYTHONPATH`` and set ``MASKCORE_TEST_ENOSPC`` to a glob: every write
of a destination-relative path matching it fails as a full disk does (``OSError(ENOSPC)``) in
every process of the run, the driver and the spawned workers alike. Nothing is changed when the
variable is not set.
"""

import os

_PATTERN = os.environ.get("MASKCORE_TEST_ENOSPC")

if _PATTERN:
    import errno
    import fnmatch

    from maskcore.io.sinks import fsdir

    _write = fsdir.FsspecDirSink.write

    def write(self, relpath, data):
        if fnmatch.fnmatchcase(relpath, _PATTERN):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.full_path(relpath))
        return _write(self, relpath, data)

    fsdir.FsspecDirSink.write = write
