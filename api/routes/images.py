"""Indexed images: the original file and a cached thumbnail. Only indexed files are served."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

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


@router.get(
    "/images/{image_id}",
    summary="The original image file",
    response_class=Response,
    responses=IMAGE_RESPONSE,
)
def original(service: ServiceDep, image_id: str) -> Response:
    rec, data, media_type = service.read_original(parse_id(image_id))
    name = os.path.basename(rec.path).encode("ascii", "replace").decode().replace('"', "")
    return Response(
        data,
        media_type=media_type,
        headers={"Cache-Control": CACHE, "Content-Disposition": f'inline; filename="{name}"'},
    )


@router.get(
    "/thumbnails/{image_id}",
    summary="A JPEG thumbnail (generated on first use, cached on disk)",
    response_class=Response,
    responses=IMAGE_RESPONSE,
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
