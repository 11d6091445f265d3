"""Error types. Leaves also inherit a built-in so callers can catch either.

Messages say what was expected, what came, and where (dataset / item / object index).
"""

from __future__ import annotations


class MaskcoreError(Exception):
    """Base of every error maskcore raises on purpose."""


class ConfigError(MaskcoreError, ValueError):
    """A job spec, cluster profile or command-line option is invalid."""


class ProjectError(MaskcoreError, ValueError):
    """The project as a whole cannot be read (no meta.json, bad meta, ...)."""


class ItemError(MaskcoreError):
    """One item cannot be exported; the run goes on without it.

    ``where`` names the item (``dataset/item``) and, when known, the object index.
    """

    def __init__(self, reason: str, *, where: str = "") -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)

    def located(self, where: str) -> ItemError:
        """Return a copy of this error with ``where`` prefixed by an outer location."""
        inner = f"{where}/{self.where}" if self.where else where
        err = type(self)(self.reason, where=inner)
        err.__cause__ = self.__cause__
        return err


class AnnotationError(ItemError, ValueError):
    """An annotation (or one object in it) does not follow the format."""


class UnknownClassError(AnnotationError):
    """An object names a class that meta.json does not define."""


class ItemSourceError(ItemError, ValueError):
    """The source lists the item but its files cannot be read as listed (e.g. a file name that
    is not valid UTF-8)."""


class MissingImageError(ItemError, FileNotFoundError):
    """The layout needs the image file and it is not there."""


class ImageDecodeError(ItemError, ValueError):
    """The image file exists but cannot be decoded."""


class LimitError(ItemError, ValueError):
    """The item exceeds a configured limit (canvas pixels, classes, instances)."""


class UnsafePathError(MaskcoreError, ValueError):
    """A name would escape its destination folder."""


class RefusedError(MaskcoreError, RuntimeError):
    """The run refuses to start: the destination is locked by another run or lies in the source."""


class LateWriteError(MaskcoreError, RuntimeError):
    """A write's temporary file was removed by its run's end-of-run cleanup: the writer outlived
    the run (a duplicate or zombie task). What the destination holds is what the run recorded;
    the late writer must not remove anything."""


class ClusterError(MaskcoreError, RuntimeError):
    """The cluster gives no worker to run on: none came (a refused job submission, jobs pending),
    or every one was lost and none came back in time. The message says why (the submission's
    error, the queue's state)."""


class StateError(MaskcoreError, RuntimeError):
    """The destination's run state (``.maskcore-meta``: the last manifest) is not what the run read
    when it started: it changed, or a part is damaged, while the run went on. Nothing of the run is
    committed; the message names the file and what differs."""
