"""The FastAPI app: ``create_app(settings)``. The index and its model are opened once, in
``lifespan``, and kept on ``app.state`` for every request.

Run it with ``pixfind serve``, or ``uvicorn --factory pixfind.api.app:create_app`` (settings from
PIXFIND_* environment variables).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pixfind.search.errors import (
    BadQuery,
    DamagedIndex,
    EmptyIndex,
    IndexMismatch,
    NoIndex,
    NotFound,
    PixfindError,
    UnknownModel,
    UnsupportedImage,
    UnusableIndex,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from .deps import get_settings
from .routes import duplicates, images, search, status
from .schemas import ErrorResponse, safe_text
from .service import FileGone, Service
from .settings import Settings
from .upload import MULTIPART_SLACK, TooLarge, limit_message

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

# library errors -> (status, code); the message is the exception's own
ERRORS: list[tuple[type[Exception], int, str]] = [
    (NotFound, 404, "not_found"),
    (FileGone, 410, "gone"),
    (BadQuery, 400, "bad_query"),
    (TooLarge, 413, "payload_too_large"),
    (UnsupportedImage, 415, "unsupported_media_type"),
    (EmptyIndex, 503, "empty_index"),
    (NoIndex, 503, "no_index"),
    (IndexMismatch, 503, "index_mismatch"),
    (UnknownModel, 503, "model_unavailable"),
    (DamagedIndex, 503, "damaged_index"),
    (UnusableIndex, 503, "unusable_index"),
    (PixfindError, 500, "internal_error"),
]
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}

PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from the jsdelivr CDN with inline
# script; they show only the schema. The search page itself uses nothing external.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)


# Request bodies other than an image upload (POST /api/login: a token) are refused above this.
MAX_BODY_BYTES = 64 * 1024
UPLOAD_PATH = "/api/search/image"


def error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": code, "detail": safe_text(detail)}, status_code=status, headers=headers
    )


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, status_code, code in ERRORS:

        def handler(_request, exc, status_code=status_code, code=code):
            return error(status_code, code, str(exc))

        app.add_exception_handler(exc_type, handler)

    @app.exception_handler(RequestValidationError)
    async def validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path[:200]}"
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error(exc.status_code, code, str(detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # the client went away mid-request (closed the tab, cancelled an upload): not a fault
        # of the server, so no traceback; the answer goes nowhere
        log.info("client disconnected during %s %s", request.method, request.url.path[:200])
        return error(400, "client_disconnected", "the client closed the connection")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error(500, "internal_error", "internal server error (see the server's log)")


class SecurityHeaders:
    """nosniff/no-referrer/no-framing on every response; a strict CSP on the page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                path = scope["path"]
                if path in DOCS_PATHS:
                    headers.append((b"content-security-policy", DOCS_CSP.encode()))
                elif not path.startswith("/api/"):
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuse a request body larger than the route needs, before it is read: at once when
    Content-Length says so, otherwise as soon as the bytes received pass the limit (chunked).
    Image uploads may be ``max_upload`` bytes (plus multipart framing), anything else 64 KiB."""

    def __init__(self, app, max_upload: int):
        self.app = app
        self.max_upload = max_upload

    def limit_for(self, path: str) -> int:
        return self.max_upload + MULTIPART_SLACK if path == UPLOAD_PATH else MAX_BODY_BYTES

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        upload = scope["path"] == UPLOAD_PATH
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = error(413, "payload_too_large", limit_message(limit, upload))
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPExceptions met while reading a body
                    raise StarletteHTTPException(413, limit_message(limit, upload))
            return message

        await self.app(scope, limited_receive, send)


class TrustedHosts:
    """Refuse requests whose Host header is not one of ours (JSON 400, like other errors)."""

    def __init__(self, app, allowed: list[str]):
        self.app = app
        self.any = "*" in allowed
        self.allowed = {h.lower() for h in allowed}

    def host_ok(self, scope) -> bool:
        if self.any:
            return True
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        host = raw.rsplit(":", 1)[0] if raw.count(":") == 1 or "]:" in raw else raw
        return host in self.allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not self.host_ok(scope):
            response = error(
                400,
                "bad_host",
                "this server only answers to "
                + ", ".join(sorted(self.allowed))
                + " (start it with --allowed-host NAME to add a name)",
            )
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def install_openapi(app: FastAPI) -> None:
    """The schema tells what the app really sends: every error, 422 included, is
    ``{"error": CODE, "detail": MESSAGE}`` (FastAPI would document its own 422 list body)."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.get("responses", {})
                for code, response in responses.items():
                    if code.startswith(("4", "5")):
                        response["content"] = {"application/json": {"schema": ref}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ErrorResponse"] = ErrorResponse.model_json_schema()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """The app for one index. ``service`` (an opened index + model) is made at startup
    when not given; `pixfind serve` opens it first so that errors show before binding."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.service is None:
            app.state.service = await run_in_threadpool(Service.open, settings)
        yield

    app = FastAPI(
        title="pixfind",
        description="Search a photo index by text or by image. Errors are JSON "
        '`{"error": CODE, "detail": MESSAGE}`. When the server has a token, every /api '
        "route needs `Authorization: Bearer TOKEN`.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    install_error_handlers(app)
    install_openapi(app)
    for router in (search.router, images.router, status.router, duplicates.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_upload=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrustedHosts, allowed=settings.trusted_hosts())
    return app
