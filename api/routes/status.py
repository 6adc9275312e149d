"""Service state: health (no token), index status, and the page's login cookie."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response

from ..deps import COOKIE, ServiceDep, SettingsDep, require_token, session_value
from ..schemas import ErrorResponse, Health, Login, StatusResponse, safe_text
from .search import MAX_K

router = APIRouter(tags=["status"])


@router.get("/healthz", response_model=Health, summary="Liveness (no token needed)")
async def healthz() -> Health:
    # async: answered on the event loop itself, even while every worker thread is busy
    return Health(status="ok")


@router.get(
    "/api/status",
    response_model=StatusResponse,
    summary="Image count, model and last update of the index",
    dependencies=[Depends(require_token)],
    responses={
        401: {"model": ErrorResponse, "description": "Token missing or wrong"},
        503: {"model": ErrorResponse, "description": "The index was rebuilt: restart"},
    },
)
def status(service: ServiceDep, settings: SettingsDep) -> StatusResponse:
    index = service.status()
    return StatusResponse(
        images=index.images,
        model=safe_text(index.model),  # a model directory may have a non-UTF-8 name
        dim=index.dim,
        last_update=index.last_update_iso,
        version=index.version,
        auth=bool(settings.token),
        max_upload_bytes=settings.max_upload_bytes,
        max_k=MAX_K,
    )


@router.post(
    "/api/login",
    status_code=204,
    summary="Trade the token for an HttpOnly session cookie (used by the web page)",
    responses={
        400: {"model": ErrorResponse, "description": "A body that can't be read"},
        401: {"model": ErrorResponse, "description": "Wrong token"},
        413: {"model": ErrorResponse, "description": "A body over 64 KiB"},
        422: {"model": ErrorResponse, "description": 'Not `{"token": string}`'},
    },
)
def login(body: Login, settings: SettingsDep) -> Response:
    import hmac

    given = body.token.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates
    if settings.token and not hmac.compare_digest(given, settings.token.encode()):
        raise HTTPException(401, "wrong token")
    response = Response(status_code=204)
    if settings.token:
        response.set_cookie(
            COOKIE,
            session_value(settings.token),
            httponly=True,
            samesite="strict",
            path="/api",
            max_age=30 * 24 * 3600,
        )
    return response


@router.post("/api/logout", status_code=204, summary="Forget the session cookie")
def logout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/api", httponly=True, samesite="strict")
    return response
