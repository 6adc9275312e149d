"""Searching: by text, by an uploaded image, and "more like this" for an indexed image."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pixfind.search.engine import Results
from pixfind.search.query import Query as SearchQuery
from pixfind.search.types import display_path

from ..deps import ServiceDep, SettingsDep, require_token
from ..schemas import ErrorResponse, Result, SearchResponse, safe_text
from ..service import parse_id
from ..upload import read_upload

router = APIRouter(
    prefix="/api/search",
    tags=["search"],
    dependencies=[Depends(require_token)],
    responses={
        400: {"model": ErrorResponse, "description": "A query with nothing to search for"},
        401: {"model": ErrorResponse, "description": "Token missing or wrong"},
        422: {"model": ErrorResponse, "description": "Invalid parameter (k, offset, q)"},
        503: {"model": ErrorResponse, "description": "The index is empty or was rebuilt"},
    },
)

MAX_K = 200  # a literal bound, for the OpenAPI schema
MAX_OFFSET = 1000
MAX_Q = 500

K = Annotated[int, Query(ge=1, le=MAX_K, description="Results per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Results to skip (paging)")]


def _keyword_parts(h) -> dict:
    kw = h.keyword
    if kw is None:
        return {}
    return dict(
        vector_score=None if kw.vector_score is None else round(kw.vector_score, 6),
        keyword_score=round(kw.score, 6),
        matched_fields=list(kw.fields),
        matched_words=[safe_text(w) for w in kw.words],
    )


def to_response(request: Request, query: str, page: Results, k: int, offset: int) -> SearchResponse:
    root = request.scope.get("root_path", "")
    results = [
        Result(
            id=str(h.id),
            rank=offset + i + 1,
            path=display_path(h.path),  # a non-UTF-8 name: U+FFFD where bytes don't decode
            score=round(float(h.score), 6),
            width=h.width,
            height=h.height,
            thumbnail_url=f"{root}/api/thumbnails/{h.id}?size=256",
            image_url=f"{root}/api/images/{h.id}",
            **_keyword_parts(h),
        )
        for i, h in enumerate(page.hits)
    ]
    return SearchResponse(
        query=safe_text(query),
        took_ms=round(page.took_ms, 2),
        offset=offset,
        k=k,
        next_offset=page.next_offset,
        mode=page.mode,
        results=results,
    )


@router.get("", response_model=SearchResponse, summary="Search by text")
def search_text(
    request: Request,
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_Q, description="What to look for")],
    k: K = 20,
    offset: Offset = 0,
    mode: Annotated[
        Literal["hybrid", "vector", "keyword"] | None,
        Query(description="hybrid (default where the index has a keyword index), vector, keyword"),
    ] = None,
) -> SearchResponse:
    page = service.search(SearchQuery.text(q, k=k, offset=offset, mode=mode))
    return to_response(request, q, page, k, offset)


@router.get(
    "/similar/{image_id}",
    response_model=SearchResponse,
    summary='"More like this": images similar to an indexed image',
    responses={404: {"model": ErrorResponse, "description": "No such id in the index"}},
)
def search_similar(
    request: Request, service: ServiceDep, image_id: str, k: K = 20, offset: Offset = 0
) -> SearchResponse:
    page = service.search(SearchQuery(similar_to=parse_id(image_id), k=k, offset=offset))
    return to_response(request, image_id, page, k, offset)


@router.post(
    "/image",
    response_model=SearchResponse,
    summary="Search by an uploaded image",
    description="Send a multipart form with the image in a `file` field (or the image as the "
    "raw body). The image is decoded in memory; it is never stored.",
    responses={
        400: {"model": ErrorResponse, "description": "No file, or an empty one"},
        413: {"model": ErrorResponse, "description": "Larger than the upload limit"},
        415: {
            "model": ErrorResponse,
            "description": "Not a decodable image, or over the upload pixel cap (50 MP)",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def search_upload(
    request: Request, service: ServiceDep, settings: SettingsDep, k: K = 20, offset: Offset = 0
) -> SearchResponse:
    data, name = await read_upload(request, settings.max_upload_bytes)
    page = await run_in_threadpool(service.search, SearchQuery(upload=data, k=k, offset=offset))
    return to_response(request, name, page, k, offset)
