"""Reading an uploaded image into memory, with the size limit enforced while reading.

The body is never written to disk, so no name the client sends ever reaches the filesystem.
"""

from __future__ import annotations

from fastapi import Request
from pixfind.search.errors import BadQuery
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file itself


class TooLarge(Exception):
    """The upload exceeds the server's limit."""


def limit_message(limit: int, upload: bool = True) -> str:
    size = f"{limit / 2**20:.0f} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
    if not upload:
        return f"the request body is larger than this route's limit of {size}"
    return f"the upload is larger than this server's limit of {size}; send a smaller image"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(limit_message(limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(limit_message(limit))
    return bytes(body)


async def read_upload(request: Request, limit: int) -> tuple[bytes, str]:
    """(image bytes, display name) from a multipart form (field ``file``) or a raw body."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        data = await read_body(request, limit)
        if not data:
            raise BadQuery("no image sent: POST a multipart form with a `file` field")
        return data, "uploaded image"
    body = await read_body(request, limit + MULTIPART_SLACK)

    async def once():
        yield body

    class InMemoryParser(MultiPartParser):
        spool_max_size = limit + MULTIPART_SLACK  # keep the file part in memory

    parser = InMemoryParser(request.headers, once(), max_files=1, max_fields=4)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadQuery(f"malformed multipart upload: {exc.message}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadQuery("no image sent: the multipart form needs a `file` field")
        data = await upload.read()
        name = (upload.filename or "uploaded image")[:200]
    finally:
        await form.close()
    if len(data) > limit:
        raise TooLarge(limit_message(limit))
    if not data:
        raise BadQuery("the uploaded file is empty (0 bytes)")
    return data, name
