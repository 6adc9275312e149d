"""One writer per index on object storage: a lease object instead of the lock file.

There is no flock on a bucket. ``URI/_pixfind.lease`` is created with a conditional put
(``If-None-Match: *``: exactly one of two racing writers gets it), renewed every 30 s by a
thread with a put conditional on its ETag, and deleted at the end. A writer that dies leaves
it behind: once it has not been renewed for 120 s, by the storage's own clock (its
Last-Modified against the Date of the same reply, so no two machines' clocks are compared),
the next writer takes it over, again conditionally. S3 has supported conditional writes since
2024 (moto since 5.0.15); gs:// and az:// have no lease yet (indexer/lock.py says so).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

from pixfind.search.errors import IndexLocked, UnusableIndex
from pixfind.search.location import IndexLocation
from pixfind.search.objectstore import s3_client

LEASE_NAME = "_pixfind.lease"
RENEW_SECONDS = 30.0
EXPIRE_SECONDS = 120.0


class Lease:
    """The lease on one index; ``acquire`` then ``release`` (or use ``held``)."""

    def __init__(
        self,
        location: IndexLocation,
        renew: float = RENEW_SECONDS,
        expire: float = EXPIRE_SECONDS,
    ):
        self.location = location
        self.renew_every = renew
        self.expire = expire
        self.bucket, self.key = location.bucket_key(LEASE_NAME)
        self.client = s3_client(location)
        self.holder = f"pid {os.getpid()} on {socket.gethostname()}"
        self.etag: str | None = None
        self.lost = False  # another writer took it over: this run's later commits race it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"holder": self.holder, "renewed": time.time()}).encode()

    def acquire(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            put = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
            )
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise self._unusable(exc) from None
            put = self._take_over_stale()
        except BotoCoreError as exc:  # no credentials, no endpoint, unreachable
            raise self._unusable(exc) from None
        self.etag = put["ETag"]
        self._thread = threading.Thread(target=self._renew, name="pixfind-lease", daemon=True)
        self._thread.start()

    def _take_over_stale(self) -> dict:
        from botocore.exceptions import ClientError

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
            holder = json.loads(found["Body"].read()).get("holder", "another writer")
        except ClientError as exc:
            if _code(exc) == "NoSuchKey":  # released meanwhile: try once more from scratch
                return self.client.put_object(
                    Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
                )
            raise self._unusable(exc) from None
        except ValueError:
            holder = "another writer"
        now = parsedate_to_datetime(found["ResponseMetadata"]["HTTPHeaders"]["date"])
        age = (now - found["LastModified"]).total_seconds()
        if age < self.expire:
            raise IndexLocked(
                f"the index at {self.location.uri} is being updated by {holder} (its lease "
                f"{self.location.join(LEASE_NAME)} was renewed {age:.0f} s ago); wait for it to "
                f"finish, or, if it was stopped, {self.expire - age:.0f} s for the lease to expire"
            )
        try:  # stale: take it over unless another writer just did
            return self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=found["ETag"]
            )
        except ClientError as exc:
            raise IndexLocked(
                f"the index at {self.location.uri} was just taken by another writer; "
                "run this again once it has finished"
            ) from exc

    def _renew(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        while not self._stop.wait(self.renew_every):
            try:
                put = self.client.put_object(
                    Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=self.etag
                )
                self.etag = put["ETag"]
            except ClientError as exc:
                if _code(exc) in ("PreconditionFailed", "NoSuchKey"):
                    self.lost = True
                    return
            except BotoCoreError:  # unreachable for a moment: try again at the next beat
                continue

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still this run's."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost or self.etag is None:
            return
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
            if head["ETag"] == self.etag:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except (BotoCoreError, ClientError):
            pass  # left behind: it expires by itself

    def _unusable(self, exc: Exception) -> UnusableIndex:
        return UnusableIndex(
            f"can't take the writer's lease {self.location.join(LEASE_NAME)} ({exc}); check "
            "the URI, the credentials (AWS_* variables or --storage-option) and the network"
        )


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def held(location: IndexLocation) -> Iterator[Lease]:
    """Hold the index's lease for the block."""
    lease = Lease(location)
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
