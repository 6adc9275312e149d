"""Indexed images: the original file and a cached thumbnail. Only indexed files are served."""

from __future__ import annotations

import os
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response
from pixfind.search.types import display_path

from ..deps import ServiceDep, require_token
from ..schemas import ErrorResponse
from ..service import parse_id

router = APIRouter(
    prefix="/api",
    tags=["images"],
    dependencies=[Depends(require_token)],
    responses={
        401: {"model": ErrorResponse, "description": "Token missing or wrong"},
        404: {"model": ErrorResponse, "description": "No such id in the index"},
        410: {"model": ErrorResponse, "description": "File missing or changed since indexing"},
    },
)

IMAGE_RESPONSE = {200: {"content": {"image/*": {}}, "description": "The image"}}
CACHE = "private, max-age=3600"
ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides letters and digits


def content_disposition(path: str) -> str:
    """``inline`` with the file's name per RFC 6266: an ASCII ``filename`` (anything else,
    quotes, backslashes and control characters such as CR/LF become ``_``) and the exact
    name as ``filename*=UTF-8''...`` (percent-encoded, so no byte of the name can end the
    header). Undecodable bytes of non-UTF-8 names are sent as U+FFFD."""
    name = display_path(os.path.basename(path)) or "image"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    exact = urllib.parse.quote(name, safe=ATTR_CHARS)
    return f"inline; filename=\"{fallback[:200]}\"; filename*=UTF-8''{exact}"


@router.get(
    "/images/{image_id}",
    summary="The original image file",
    response_class=Response,
    responses=IMAGE_RESPONSE,
)
def original(service: ServiceDep, image_id: str) -> Response:
    rec, data, media_type = service.read_original(parse_id(image_id))
    return Response(
        data,
        media_type=media_type,
        headers={"Cache-Control": CACHE, "Content-Disposition": content_disposition(rec.path)},
    )


@router.get(
    "/thumbnails/{image_id}",
    summary="A JPEG thumbnail (generated on first use, cached on disk)",
    response_class=Response,
    responses={
        **IMAGE_RESPONSE,
        400: {"model": ErrorResponse, "description": "The indexed file can't be decoded"},
        422: {"model": ErrorResponse, "description": "Invalid size"},
    },
)
def thumbnail(
    service: ServiceDep,
    image_id: str,
    size: Annotated[
        int,
        Query(
            ge=16,
            le=1024,
            description="Longest side in pixels; rounded up to 64, 128, 256, 512 or 1024",
        ),
    ] = 256,
) -> Response:
    cached, data = service.thumbnail(parse_id(image_id), size)
    if cached is not None:
        return FileResponse(cached, media_type="image/jpeg", headers={"Cache-Control": CACHE})
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": CACHE})
