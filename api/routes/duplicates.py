"""Duplicate photos: groups of exact and near copies, best copy first (never deletes)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pixfind.search.duplicates import DEFAULT_THRESHOLD, MAX_THRESHOLD, Duplicates
from pixfind.search.query import parse_filters

from ..deps import ServiceDep, require_token
from ..schemas import (
    DuplicateCopy,
    DuplicateGroup,
    DuplicatesResponse,
    ErrorResponse,
    safe_text,
)

router = APIRouter(
    prefix="/api/duplicates",
    tags=["duplicates"],
    dependencies=[Depends(require_token)],
    responses={
        400: {"model": ErrorResponse, "description": "A date that can't be read"},
        401: {"model": ErrorResponse, "description": "Token missing or wrong"},
        422: {"model": ErrorResponse, "description": "Invalid parameter"},
        503: {"model": ErrorResponse, "description": "The index was rebuilt: restart"},
    },
)

MAX_GROUPS = 500


@router.get("", response_model=DuplicatesResponse, summary="Groups of duplicate photos")
def duplicates(
    request: Request,
    service: ServiceDep,
    threshold: Annotated[
        int, Query(ge=0, le=MAX_THRESHOLD, description="Most perceptual-hash bits apart")
    ] = DEFAULT_THRESHOLD,
    keep: Annotated[
        Literal["largest", "oldest", "metadata"], Query(description="Which copy is the best")
    ] = "largest",
    folder: Annotated[str | None, Query(max_length=4096, description="Folder or glob")] = None,
    after: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD")] = None,
    before: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD")] = None,
    type: Annotated[list[str] | None, Query(description="File types: jpeg, png...")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_GROUPS, description="Groups per page")] = 50,
    offset: Annotated[int, Query(ge=0, description="Groups to skip (paging)")] = 0,
) -> DuplicatesResponse:
    filters = parse_filters(folder, after, before, types=type or ())
    found = service.duplicates(filters or None, threshold, keep)
    return to_response(request, found, limit, offset)


def to_response(request: Request, found: Duplicates, limit: int, offset: int):
    root = request.scope.get("root_path", "")
    page = found.groups[offset : offset + limit]
    groups = [
        DuplicateGroup(
            kind=g.kind,
            copies=[
                DuplicateCopy(
                    **{**c.to_dict(), "id": str(c.id), "path": safe_text(c.path)},
                    thumbnail_url=f"{root}/api/thumbnails/{c.id}?size=256",
                    image_url=f"{root}/api/images/{c.id}",
                )
                for c in g.copies
            ],
        )
        for g in page
    ]
    more = offset + limit < len(found.groups)
    return DuplicatesResponse(
        threshold=found.threshold,
        keep=found.keep,
        photos=found.photos,
        unhashed=found.unhashed,
        copies=found.copies,
        total_groups=len(found.groups),
        offset=offset,
        next_offset=offset + limit if more else None,
        groups=groups,
    )
