"""One run per destination: a lease in ``.maskcore/lock``.

The lock holds JSON: ``holder`` (host:pid), ``run`` (run id), ``expires`` (Unix time) and
``lease_seconds``. It is created whole or not at all (``sink.create_exclusive``: a hard link of a
written temporary locally, a conditional PUT ``If-None-Match: *`` on object stores), so no run ever
leaves an empty lock. The live run renews the expiry every third of the lease from a background
thread. A later run takes the lock over when it has expired, when its holder is a dead process on
this host, or when it is unreadable (a lock no maskcore run writes): with a compare-and-swap, the
exclusive creation of ``lock.takeover.<sha256 of the lock it found>``, so that of several runs
breaking the same stale lock exactly one wins; the others are refused. The takeover is logged and
reported. Lease time: ``DEFAULT_LEASE_SECONDS``, ``MASKCORE_LOCK_LEASE`` or ``--lock-lease``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time

from .state import LOCK, LockedError

DEFAULT_LEASE_SECONDS = 300.0
"""How long a lock outlives its last renewal: a killed run's destination is free after at most this."""
TAKEOVER = f"{LOCK}.takeover."


def lease_seconds(value: float | None = None) -> float:
    if value is None:
        value = float(os.environ.get("MASKCORE_LOCK_LEASE", DEFAULT_LEASE_SECONDS))
    if value <= 0:
        from ..errors import ConfigError
        raise ConfigError(f"lock lease: expected a positive number of seconds, got {value}")
    return value


class RunLock:
    """The lease on a destination, held (and renewed) for the duration of a run."""

    def __init__(self, sink, lease: float | None = None, run_id: str = "") -> None:
        self.sink = sink
        self.lease = lease_seconds(lease)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.run_id = run_id or os.urandom(6).hex()
        self.taken_over: str | None = None      # what the run took over, for the log and report
        self.lost: str | None = None             # why the lease was lost, if it was
        self._claim: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"holder": self.holder, "run": self.run_id, "expires": time.time() + self.lease,
                           "lease_seconds": self.lease}).encode("utf-8")

    def _read(self) -> bytes | None:
        try:
            return self.sink.read(LOCK)
        except FileNotFoundError:
            return None

    def acquire(self) -> None:
        for _ in range(5):
            try:
                self.sink.create_exclusive(LOCK, self._body())
                break
            except FileExistsError:
                pass
            found = self._read()
            if found is None:
                continue  # released meanwhile: try again
            doc, why = _stale(found)
            if why is None:
                raise LockedError(
                    f"another maskcore run holds {self.sink.url} (lock {LOCK}: {doc.get('holder')}, run "
                    f"{doc.get('run')}, lease expires in {doc['expires'] - time.time():.0f} s); wait for it "
                    f"to finish, or for its lease to expire if that run is dead")
            claim = TAKEOVER + hashlib.sha256(found).hexdigest()[:32]
            try:
                self.sink.create_exclusive(claim, self._body())
            except FileExistsError:
                raise LockedError(f"another maskcore run is taking over the stale lock {LOCK} of "
                                  f"{self.sink.url} ({why})") from None
            if self._read() != found:  # changed between our read and our claim: not ours to take
                self.sink.delete([claim])
                continue
            self._claim = claim
            self.sink.write(LOCK, self._body())
            self.taken_over = f"took over the lock of {doc.get('holder', '?')} (run {doc.get('run', '?')}): {why}"
            break
        else:
            raise LockedError(f"could not take the lock {LOCK} of {self.sink.url}: it kept changing")
        self._thread = threading.Thread(target=self._renew, name="maskcore-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                doc = json.loads(self._read() or b"{}")
                if doc.get("run") != self.run_id:
                    self.lost = f"the lock now belongs to {doc.get('holder')} (run {doc.get('run')})"
                    return
                self.sink.write(LOCK, self._body())
            except Exception:  # noqa: BLE001 - a store hiccup: retried at the next tick
                continue

    def check(self) -> None:
        """Raise LockedError when this run no longer holds the lease (call before committing)."""
        if self.lost:
            raise LockedError(f"this run lost the lock of {self.sink.url}: {self.lost}; nothing committed")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if json.loads(self._read() or b"{}").get("run") == self.run_id:
                self.sink.delete([LOCK])
        except ValueError:
            pass
        if self._claim:
            self.sink.delete([self._claim])

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _stale(found: bytes) -> tuple[dict, str | None]:
    """(the lock's content, why it may be taken over, or None while it is held)."""
    try:
        doc = json.loads(found)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError:
        return {}, f"unreadable lock ({len(found)} bytes)"
    if "expires" not in doc:
        return doc, "a lock without a lease (written before leases)"
    host, _, pid = str(doc.get("holder", "")).partition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return doc, f"its process {pid} on this host is gone"
    late = time.time() - float(doc["expires"])
    if late > 0:
        return doc, f"its lease expired {late:.0f} s ago"
    return doc, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
