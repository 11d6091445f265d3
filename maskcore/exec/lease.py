"""One run per destination: a lease in ``.maskcore-meta/lock``.

The lock holds JSON: ``holder`` (host:pid), ``run`` (run id), ``expires`` (Unix time) and
``lease_seconds``. It is created whole or not at all (``sink.create_exclusive``: a hard link of a
written temporary locally, a conditional PUT ``If-None-Match: *`` on object stores), so no run ever
leaves an empty lock. The live run renews the expiry every third of the lease from a background
thread. A later run takes the lock over when it has expired, when its holder is a dead process on
this host, or when it is unreadable (a lock no maskcore run writes): with a compare-and-swap, the
exclusive creation of ``lock.takeover.<sha256 of the lock it found>``, so that of several runs
breaking the same stale lock exactly one wins; the others are refused. The takeover is logged and
reported. Lease time: ``DEFAULT_LEASE_SECONDS``, ``MASKCORE_LOCK_LEASE`` or ``--lock-lease``.

On S3 every write of the lock after its creation is a compare-and-swap on its ETag (``If-Match``:
the ETag this run last wrote, or for a takeover the ETag of the stale lock it read), so a renewal
can never overwrite a lock another run took over meanwhile: it fails (HTTP 412), the run marks the
lease lost and commits nothing; ``check()`` before the commit renews once more, so a takeover since
the last renewal is seen. On a local disk a renewal reads the lock then replaces it (no
compare-and-swap on a file's content; the window is a few microseconds every third of the lease).
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


class LeaseConflict(Exception):
    """A conditional write of the lock found another version than expected (HTTP 412)."""


class S3LockObject:
    """The lock object on S3: read with its ETag in one request, written only over the ETag the
    caller last saw (``If-Match``) or over nothing (``If-None-Match: *``)."""

    def __init__(self, fs, path: str) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)

    @classmethod
    def for_sink(cls, sink, relpath: str) -> S3LockObject | None:
        """The lock of ``sink`` when it is a folder on S3 (else None: read-then-write)."""
        url, options = getattr(sink, "url", None), getattr(sink, "storage_options", None)
        if not isinstance(url, str) or options is None:
            return None
        from ..io.storage import filesystem
        fs, root = filesystem(url, options)
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        if not {"s3", "s3a"} & set(protocols):
            return None
        return cls(fs, f"{root.rstrip('/')}/{relpath}")

    def get(self) -> tuple[bytes, str] | None:
        """(content, ETag), or None when there is no lock."""
        from fsspec.asyn import sync
        try:
            response = self.fs.call_s3("get_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return None
        return sync(self.fs.loop, response["Body"].read), response["ETag"]

    def put(self, data: bytes, *, if_match: str | None = None, create: bool = False) -> str:
        """Write ``data``; returns its ETag. ``create``: only if there is no lock
        (FileExistsError); ``if_match``: only over that version (LeaseConflict)."""
        condition = {"IfNoneMatch": "*"} if create else {"IfMatch": if_match} if if_match else {}
        try:
            response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except FileExistsError:
            raise
        except (OSError, ValueError) as exc:
            if _conflict(exc):
                raise LeaseConflict(str(exc)) from None
            raise
        return response["ETag"]


def _conflict(exc: BaseException) -> bool:
    """Whether a store error is a failed precondition (412) or a concurrent conditional write (409)."""
    seen = exc
    while seen is not None:
        error = (getattr(seen, "response", None) or {}).get("Error", {})
        if error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return True
        seen = seen.__cause__ or seen.__context__
    return "pre-conditions you specified did not hold" in str(exc)


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
        self._s3 = S3LockObject.for_sink(sink, LOCK)   # None: a local (or other) store
        self._etag: str | None = None                   # S3: the version of the lock this run wrote last
        self._mutex = threading.Lock()                  # one renewal at a time (thread, check())

    def _body(self) -> bytes:
        return json.dumps({"holder": self.holder, "run": self.run_id, "expires": time.time() + self.lease,
                           "lease_seconds": self.lease}).encode("utf-8")

    def _read(self) -> bytes | None:
        if self._s3 is not None:
            got = self._s3.get()
            return None if got is None else got[0]
        try:
            return self.sink.read(LOCK)
        except FileNotFoundError:
            return None

    def _create(self) -> None:
        if self._s3 is not None:
            self._etag = self._s3.put(self._body(), create=True)
        else:
            self.sink.create_exclusive(LOCK, self._body())

    def acquire(self) -> None:
        for _ in range(5):
            try:
                self._create()
                break
            except FileExistsError:
                pass
            if self._s3 is not None:
                found, found_etag = self._s3.get() or (None, None)
            else:
                found, found_etag = self._read(), None
            if found is None:
                continue  # released meanwhile: try again
            doc, why = stale_lock(found)
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
            if self._s3 is not None:  # replaced only if still the stale version we read
                try:
                    self._etag = self._s3.put(self._body(), if_match=found_etag)
                except (LeaseConflict, FileNotFoundError):  # renewed or released meanwhile
                    self.sink.delete([claim])
                    continue
            elif self._read() != found:  # changed between our read and our claim: not ours to take
                self.sink.delete([claim])
                continue
            else:
                self.sink.write(LOCK, self._body())
            self._claim = claim
            self.taken_over = f"took over the lock of {doc.get('holder', '?')} (run {doc.get('run', '?')}): {why}"
            break
        else:
            raise LockedError(f"could not take the lock {LOCK} of {self.sink.url}: it kept changing")
        self._thread = threading.Thread(target=self._renew, name="maskcore-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a store hiccup: retried at the next tick
                continue
            if self.lost:
                return

    def renew(self) -> None:
        """Push the expiry one lease ahead, unless the lock is no longer this run's (then ``lost``
        says whose it is). On S3 a compare-and-swap on the ETag this run wrote last."""
        with self._mutex:
            if self.lost:
                return
            if self._s3 is not None:
                try:
                    self._etag = self._s3.put(self._body(), if_match=self._etag)
                    return
                except (LeaseConflict, FileNotFoundError):
                    doc = _doc(self._read())
                    self.lost = (f"the lock was replaced since this run renewed it; it now names "
                                 f"{doc.get('holder')} (run {doc.get('run')})")
                    return
            doc = _doc(self._read())
            if doc.get("run") != self.run_id:
                self.lost = f"the lock now belongs to {doc.get('holder')} (run {doc.get('run')})"
                return
            self.sink.write(LOCK, self._body())

    def check(self) -> None:
        """Raise LockedError when this run no longer holds the lease (call before committing). The
        lease is renewed first, so a takeover since the last renewal is seen."""
        if not self.lost:
            self.renew()
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


def _doc(found: bytes | None) -> dict:
    try:
        doc = json.loads(found or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def stale_lock(found: bytes) -> tuple[dict, str | None]:
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
