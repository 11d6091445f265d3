"""Quiet closes of the workers maskcore starts.

When a run stops early (SIGTERM, Ctrl-C, a failed check) the cluster maskcore started is closed
while its workers may be mid-task. ``distributed`` then lets a closing worker log, into the
operator's console for a local cluster, what is only the close racing itself:

- ``distributed.worker``: "Failed to communicate with scheduler during heartbeat." with the
  traceback of the ``CommClosedError`` (``Worker.heartbeat`` catches ``OSError`` and logs it with
  ``logger.exception``; a heartbeat sent just before ``Worker.close`` meets the scheduler being
  closed after the worker was retired);
- ``distributed.worker.state_machine``: "Async instruction for <Task ...> ended with
  CancelledError" (``BaseWorker._finish_async_instruction``: ``Worker.close`` cancels the running
  ``execute``).

:class:`QuietClose` is a worker plugin that drops exactly these records, and only while its
worker is closing (status ``closing``, ``closing_gracefully`` or ``closed``): a heartbeat failing
in a running worker is still logged with its traceback. It is registered only on clusters
maskcore starts (never on the workers of an existing scheduler, kind ``address``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from distributed import WorkerPlugin
from distributed.core import Status

LOGGERS = ("distributed.worker", "distributed.worker.state_machine")


class _WhileClosing(logging.Filter):
    """Drops a closing worker's comm errors and cancelled-instruction warnings."""

    def __init__(self, worker) -> None:
        super().__init__()
        self._worker = weakref.ref(worker)

    def closing(self) -> bool:
        worker = self._worker()
        return worker is None or worker.status in (Status.closing, Status.closing_gracefully, Status.closed)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        noise = isinstance(exc, (OSError, asyncio.CancelledError)) or (
            record.levelno == logging.WARNING and "ended with CancelledError" in record.getMessage())
        return not (noise and self.closing())


class QuietClose(WorkerPlugin):
    """Worker plugin installing :class:`_WhileClosing`.

    The filter stays after the plugin's (inherited, empty) ``teardown``: ``Worker.close`` removes
    its plugins before the records the filter is there for are logged."""

    name = "maskcore-quiet-close"
    idempotent = True

    def setup(self, worker) -> None:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            for old in [f for f in logger.filters if isinstance(f, _WhileClosing)]:
                logger.removeFilter(old)
            logger.addFilter(_WhileClosing(worker))
