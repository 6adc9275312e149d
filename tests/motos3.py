"""An S3 server on loopback for tests: moto's, in a thread of the test process.

The ``s3`` fixture starts one on 127.0.0.1 at a free port, creates a bucket and points
the environment at it (credentials, endpoint, plain http) as a user would for their own
S3-compatible storage; the server stops with the fixture. Skips where moto is not installed.
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKET = "pixfind-test"


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    bucket: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        found = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for o in found.get("Contents", ())]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(name="s3")
def moto_s3(monkeypatch, tmp_path) -> Iterator[MotoS3]:
    """Import it into a test module; tests take it as ``s3``."""
    pytest.importorskip("boto3", reason="boto3 not installed (pip install 'pixfind[s3]')")
    server_mod = pytest.importorskip("moto.server", reason="moto not installed (dev extra)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,  # boto3 and Lance both read it
        "AWS_ALLOW_HTTP": "true",  # Lance: plain http to the loopback server
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "PIXFIND_STORAGE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    # the remote index's cache folder (search/location.py) under the test's tmp
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    s3 = MotoS3(endpoint, BUCKET)
    s3.client().create_bucket(Bucket=BUCKET)
    try:
        yield s3
    finally:
        # moto keeps its buckets in the process, across servers: the next test starts empty
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", b""))
        server.stop()
