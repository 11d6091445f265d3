"""A real S3-compatible server on loopback for the tests: moto in server mode, in a thread.

moto's in-process mock patches botocore in one process and does not reach s3fs (aiobotocore)
nor Dask worker processes; its server answers real HTTP on 127.0.0.1, so every process reaches
it through the endpoint given in the storage options. A pytest plugin (tests/conftest.py's
``pytest_plugins``): every test can ask for the fixtures.

``s3_server`` (session): the server, with fake AWS credentials in the environment (so botocore
never picks up real ones) and every request line it served in ``requests``.
``s3_bucket``: a fresh, empty bucket per test.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass, field

import pytest

from .oracles import load

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-env-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-env-secret",
    "AWS_SESSION_TOKEN": "testing-env-session-token",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
"""Set while the server runs. Tests pass their own key and secret in the storage options."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+"')


class _RequestLog(logging.Handler):
    """Collects werkzeug's access-log lines (``"GET /bucket/key HTTP/1.1" 200``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class S3Server:
    endpoint: str
    key: str = "AKIAMASKCORETESTKEY1"
    secret: str = "maskcore-test-secret-0c1f5e9a7d"
    log: _RequestLog = field(default_factory=_RequestLog)

    def options(self) -> dict:
        """s3fs storage options: endpoint and credentials, nothing from the environment."""
        return {"key": self.key, "secret": self.secret,
                "client_kwargs": {"endpoint_url": self.endpoint}}

    def filesystem(self):
        """A fresh s3fs filesystem on this server (no listing cache shared with the code)."""
        return load("s3fs").S3FileSystem(skip_instance_cache=True, use_listings_cache=False,
                                 **self.options())

    def requests(self, bucket: str, start: int = 0) -> list[str]:
        """Request lines (``GET /bucket/key?... HTTP/1.1``) on ``bucket``, from line ``start``
        of the log on."""
        out = []
        for line in self.log.lines[start:]:
            match = _REQUEST.search(_ANSI.sub("", line))
            if match and match["target"].lstrip("/").split("?")[0].split("/")[0] == bucket:
                out.append(match[0].strip('"'))
        return out


@pytest.fixture(scope="session")
def s3_server():
    ThreadedMotoServer = load("moto.server").ThreadedMotoServer  # test-only: skipped (CI: failed) if missing
    load("s3fs")  # maskcore's S3 filesystem (the [s3] extra)
    werkzeug = logging.getLogger("werkzeug")
    saved = (werkzeug.level, werkzeug.propagate, os.environ.copy())
    server = None
    try:
        os.environ.update(FAKE_ENV)
        for name in [n for n in os.environ if n.startswith(("FSSPEC_S3", "AWS_ENDPOINT"))]:
            del os.environ[name]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        info = S3Server(endpoint=f"http://{host}:{port}")
        werkzeug.addHandler(info.log)
        werkzeug.setLevel(logging.INFO)
        werkzeug.propagate = False
        yield info
        werkzeug.removeHandler(info.log)
    finally:
        if server is not None:
            server.stop()
        werkzeug.setLevel(saved[0])
        werkzeug.propagate = saved[1]
        os.environ.clear()
        os.environ.update(saved[2])


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """Name of a new empty bucket."""
    name = f"maskcore-{uuid.uuid4().hex[:12]}"
    s3_server.filesystem().mkdir(name)
    return name
