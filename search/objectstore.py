"""The derived files of an index on object storage, shared through the storage itself.

The FAISS index and its files are built on the machine that needs them, in the index's
local cache folder (search/location.py). Building them reads every vector of the table, so
the indexer also copies them to ``URI/derived/`` with ``derived.json`` (the table version
and model they were built from), written last: another machine whose cache is missing or
from another version pulls them instead of rebuilding, and checks them as it checks its own
(their checksums are in ``infos.json``). Copies go through boto3, so on s3:// only; on gs://
and az:// each machine builds its own (the table itself works there through Lance).

Also here, what a folder's checks read from its disk without LanceDB: the stamp of the
table's newest manifest (one listing: the quick look of an unchanged re-index, the query
snapshot's freshness) and whether the table has index files, and the bytes under the URI.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .location import IndexLocation

DERIVED = "derived"
DERIVED_META = "derived.json"

# Lance's storage option names (and their aliases) -> boto3 client arguments
_BOTO = {
    "aws_access_key_id": "aws_access_key_id",
    "access_key_id": "aws_access_key_id",
    "aws_secret_access_key": "aws_secret_access_key",
    "secret_access_key": "aws_secret_access_key",
    "aws_session_token": "aws_session_token",
    "session_token": "aws_session_token",
    "aws_region": "region_name",
    "region": "region_name",
    "aws_endpoint": "endpoint_url",
    "endpoint": "endpoint_url",
    "aws_endpoint_url": "endpoint_url",
    "endpoint_url": "endpoint_url",
}


def s3_client(location: IndexLocation, what: str = ""):
    """A boto3 S3 client for ``location``: its storage options, else the environment's
    (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL...). boto3 is the ``s3`` extra; ``what`` names
    what needs it in that message (default: the index)."""
    from .errors import MissingExtra

    try:
        import boto3
    except ImportError:
        raise MissingExtra(
            f"{what or 'an index on ' + location.uri} needs boto3: pip install 'pixfind[s3]'"
        ) from None
    kwargs = {_BOTO[k.lower()]: v for k, v in location.storage_options if k.lower() in _BOTO}
    return boto3.client("s3", **kwargs)


def shared(location: IndexLocation) -> bool:
    """Whether derived files are copied to and from the storage (s3:// only)."""
    return location.remote and location.scheme == "s3"


def push(location: IndexLocation, directory: Path) -> bool:
    """Copy the derived files in ``directory`` to ``URI/derived/``, derived.json last (a
    reader never pairs it with older files of another version). False where not shared."""
    if not shared(location) or not (directory / "infos.json").is_file():
        return False
    infos = json.loads((directory / "infos.json").read_text())
    client = s3_client(location)
    meta = {"table_version": infos["store_version"], "model": infos["model"]}
    if _shared_meta(client, location, meta):
        return True  # already there (a run that changed nothing)
    sent = []
    # every file of the saved index (FAISS files, the query snapshot's records and keyword
    # index, a disk index's vectors.f16): a fixed list went stale when those files changed
    for path in sorted(directory.iterdir()):
        if path.is_file():
            bucket, key = location.bucket_key(DERIVED, path.name)
            client.upload_file(str(path), bucket, key)
            sent.append(path.name)
    meta["files"] = sent
    bucket, key = location.bucket_key(DERIVED, DERIVED_META)
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(meta).encode())
    return True


def _shared_meta(client, location: IndexLocation, want: dict) -> dict | None:
    """The shared derived.json if it names ``want``'s table version and model, else None."""
    import botocore.exceptions

    bucket, key = location.bucket_key(DERIVED, DERIVED_META)
    try:
        meta = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ValueError):
        return None
    same = isinstance(meta, dict) and all(meta.get(k) == v for k, v in want.items())
    return meta if same else None


def vector_index(store, recipe: dict | None = None, share: bool = False):
    """``VectorIndex.for_store``; for an index on object storage, first the shared derived
    files of the table's version when this machine's cache lacks them, and with ``share``
    (the indexer, which holds the lease) the files it built copied back for the others."""
    from .index import INDEX_DIR, VectorIndex

    location, directory = store.location, store.home / INDEX_DIR
    if location.remote:
        pull(location, directory, store.version, store.info.identity)
    built = VectorIndex.for_store(store, recipe)
    if share and location.remote and built.directory == directory:
        import botocore.exceptions

        try:
            push(location, directory)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            why = f"the FAISS index was not copied to {location.join(DERIVED)} ({exc})"
            print(f"pixfind: {why}", file=sys.stderr, flush=True)
    return built


def pull(location: IndexLocation, directory: Path, version: int, identity: str) -> bool:
    """Fetch the derived files of table ``version`` (model ``identity``) into ``directory``
    unless they are there already; True when ``directory`` then holds that version's files.
    Anything missing or of another version: False (the caller builds them)."""
    if _version_in(directory) == version:
        return True
    if not shared(location):
        return False
    import botocore.exceptions

    client = s3_client(location)
    tmp = directory.with_name(directory.name + f".pull{os.getpid()}")
    try:
        meta = _shared_meta(client, location, {"table_version": version, "model": identity})
        if meta is None:
            return False
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in meta["files"]:
            bucket, key = location.bucket_key(DERIVED, name)
            client.download_file(bucket, key, str(tmp / name))
        if _version_in(tmp) != version:  # replaced meanwhile by a newer version's files
            return False
        old = directory.with_name(directory.name + f".old{os.getpid()}")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        return True
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError):
        return False  # no copy, or unreachable: built here instead
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _version_in(directory: Path) -> int | None:
    try:
        return json.loads((directory / "infos.json").read_text()).get("store_version")
    except (OSError, ValueError, AttributeError):
        return None


_U64 = (1 << 64) - 1


def table_manifest(location: IndexLocation, version: int | None = None) -> dict | None:
    """The stamp of the table's newest manifest (``version`` None: one listing) or of one
    version's (a HEAD), as the local checks stat a manifest file: {version, name, etag}, so
    that a table deleted and re-created at the same version number is not taken for the old
    one. None where it can't be read. Without boto3 (gs://, az://) only a version's stamp,
    {version, uri}, and never the newest: what needs that (the cold query, the quick look of a
    re-index with nothing to do) then takes the ordinary path."""
    if not shared(location):
        return None if version is None else {"version": version, "uri": location.uri}
    import botocore.exceptions

    client = s3_client(location)
    bucket, prefix = location.bucket_key("images.lance", "_versions/")
    try:
        if version is not None:
            for name in (f"{_U64 - version:020d}.manifest", f"{version}.manifest"):
                try:
                    head = client.head_object(Bucket=bucket, Key=prefix + name)
                    return {"version": version, "name": name, "etag": head["ETag"]}
                except botocore.exceptions.ClientError:
                    continue
            return None
        best = None
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(prefix) :]
                stem, _, ext = name.partition(".")
                if ext != "manifest" or not stem.isdigit():
                    continue
                number = int(stem)
                found = _U64 - number if number >= 1 << 63 else number
                if best is None or found > best["version"]:
                    best = {"version": found, "name": name, "etag": obj["ETag"]}
            if best is not None and int(best["name"].partition(".")[0]) >= 1 << 63:
                break  # newest-first names (Lance's V2 scheme): the first page has it
        return best
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return None


def has_keyword_index(location: IndexLocation) -> bool:
    """Whether the table has any index files (only FTS here: keywords.on_disk) - one listing;
    True where it can't be listed, so that a text query goes to the ordinary path."""
    if not shared(location):
        return True
    import botocore.exceptions

    bucket, prefix = location.bucket_key("images.lance", "_indices/")
    try:
        found = s3_client(location).list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return True
    return bool(found.get("KeyCount"))


def stored_bytes(location: IndexLocation) -> int:
    """Bytes under the index's URI (s3://: one listing; elsewhere 0, not measured)."""
    if not shared(location):
        return 0
    bucket, prefix = location.bucket_key("")
    pages = (
        s3_client(location).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return sum(obj["Size"] for page in pages for obj in page.get("Contents", ()))
