"""Dependencies: settings, the shared service, and the bearer-token check.

Routes take them as ``Annotated`` aliases; tests can swap them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from .service import Service
from .settings import Settings

COOKIE = "pixfind_session"


@functools.cache
def get_settings() -> Settings:
    return Settings.from_env()


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def service_of(request: Request) -> Service:
    return request.app.state.service


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, so the token itself is not in it."""
    return hmac.new(token.encode(), b"pixfind-session-v1", hashlib.sha256).hexdigest()


def token_ok(settings: Settings, request: Request) -> bool:
    if not settings.token:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.token.encode()
    ):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(
        cookie.encode(), session_value(settings.token).encode()
    )


def require_token(request: Request) -> None:
    if not token_ok(settings_of(request), request):
        raise HTTPException(
            401,
            "a bearer token is required: send `Authorization: Bearer TOKEN` "
            "(the token given to `pixfind serve --token` or PIXFIND_TOKEN)",
            headers={"WWW-Authenticate": 'Bearer realm="pixfind"'},
        )


SettingsDep = Annotated[Settings, Depends(settings_of)]
ServiceDep = Annotated[Service, Depends(service_of)]
