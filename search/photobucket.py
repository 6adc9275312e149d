"""Photos on object storage: an ``s3://BUCKET/PREFIX`` listed like a folder, read like a file.

``pixfind index s3://bucket/photos`` lists the prefix (one paginated listing), plans against
the table by (path, mtime, size) as it does local files, with the object's URI as its path
and its Last-Modified (in whole seconds, as S3 gives it in both listings and reads) as its
mtime; the decoding stage fetches each object's bytes with one GET and decodes them as it
decodes a file's (indexer/decode.py). ``serve`` reads an indexed object the same way, and
only the URIs the index holds (api/service.py).

Endpoint and credentials are the index's own (search/objectstore.py turns them into a boto3
client): ``--storage-option KEY=VALUE`` (``use_options``), ``$PIXFIND_STORAGE_OPTIONS``,
and the environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...), read by boto3 itself.
Only s3:// (and S3-compatible servers): gs:// and az:// photos are one line of error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import PixfindError
from .location import IndexLocation, Options, options_from_text

SCHEME = "s3"
Unreadable = Callable[[str, str], None]

# the command line's --storage-option, for photos as for the index (a Ray actor's: its job's)
_options: list[Options] = [()]
# by process (none crosses a fork), options and AWS_* environment (what boto3 reads)
_clients: dict[tuple, object] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ObjectStat:
    """What decoding and serving need of an object's stat (os.stat_result's names)."""

    st_mtime: float
    st_size: int


def use_options(options: Options) -> None:
    """The storage options given on the command line (override the environment's)."""
    _options[0] = tuple(options)


def chosen_options() -> Options:
    """The options photos are read with: $PIXFIND_STORAGE_OPTIONS, then --storage-option."""
    from .settings import get_settings

    merged = dict(options_from_text(get_settings().storage_options))
    merged.update(_options[0])
    return tuple(sorted(merged.items()))


def normalise(uri: str) -> str:
    """``s3://bucket/prefix`` without trailing slashes; another scheme: one line of error."""
    scheme, _, rest = uri.partition("://")
    if scheme.lower() != SCHEME or not rest.strip("/"):
        raise PixfindError(
            f"{uri}: photos are read from local paths or from s3://BUCKET/PREFIX "
            "(gs:// and az:// photos: mount or copy them)"
        )
    return f"{SCHEME}://{rest.rstrip('/')}"


def split(uri: str) -> tuple[str, str]:
    """(bucket, key) of an object URI."""
    rest = uri.partition("://")[2]
    bucket, _, key = rest.partition("/")
    return bucket, key


def client():
    """The boto3 client for photos, made once (boto3 clients are thread-safe, their
    creation is not)."""
    from .objectstore import s3_client

    options = chosen_options()
    aws = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (os.getpid(), options, aws)
    with _lock:
        found = _clients.get(key)
        if found is None:
            where = IndexLocation("s3://photos", options)
            found = _clients[key] = s3_client(where, "reading photos from s3://")
        return found


def _errors():
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


def _seconds(when) -> float:
    """Last-Modified as a whole-second timestamp: listings give milliseconds (.000 on S3),
    a GET's header whole seconds; both must agree for an unchanged object to stay unchanged."""
    return float(int(when.timestamp()))


def list_objects(root: str, on_unreadable: Unreadable) -> Iterator[tuple[str, float, int]]:
    """(uri, mtime, size) of every object under the prefix ``root`` (or the one object it
    names), in key order. A prefix that can't be listed, or holds nothing, goes to
    ``on_unreadable``: not seeing an object there is not evidence that it is gone."""
    bucket, key = split(root)
    prefix = f"{key}/" if key else ""
    found = False
    try:
        pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                if obj["Key"].endswith("/"):
                    continue  # a "folder" marker some tools write
                found = True
                uri = f"{SCHEME}://{bucket}/{obj['Key']}"
                yield uri, _seconds(obj["LastModified"]), int(obj["Size"])
        if not found and key:  # the root may name one object
            head = client().head_object(Bucket=bucket, Key=key)
            found = True
            yield root, _seconds(head["LastModified"]), int(head["ContentLength"])
    except _errors() as exc:
        if _code(exc) not in ("404", "NoSuchKey"):
            on_unreadable(root, f"can't list it: {exc}")
            return
    if not found:
        on_unreadable(root, "no objects under this prefix")


def read_object(uri: str, max_bytes: int = 1 << 30) -> tuple[bytes, ObjectStat]:
    """The object's bytes and the stat they belong to (one GET); DecodeError, with the
    reason shown to users, where it can't be read."""
    from .images import DecodeError

    bucket, key = split(uri)
    try:
        got = client().get_object(Bucket=bucket, Key=key)
        size = int(got["ContentLength"])
        if size > max_bytes:
            got["Body"].close()
            raise DecodeError(f"file too large (over {max_bytes >> 20} MiB)")
        data = got["Body"].read()
    except _errors() as exc:
        if _code(exc) in ("404", "NoSuchKey"):
            raise DecodeError("object vanished during the run") from exc
        raise DecodeError(f"unreadable: {exc}") from exc
    except OSError as exc:  # the connection dropped mid-body
        raise DecodeError(f"unreadable: {exc}") from exc
    if len(data) != size:
        raise DecodeError("object changed while it was being read; it is indexed on the next run")
    return data, ObjectStat(_seconds(got["LastModified"]), size)


def stat_object(uri: str) -> ObjectStat | None:
    """The object's stat (one HEAD), None where it is gone or can't be read."""
    bucket, key = split(uri)
    try:
        head = client().head_object(Bucket=bucket, Key=key)
    except _errors():
        return None
    return ObjectStat(_seconds(head["LastModified"]), int(head["ContentLength"]))
