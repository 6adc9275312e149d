"""Server settings: one frozen dataclass, filled by `pixfind serve` or from the environment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from pixfind.search.settings import DEFAULT_MAX_UPLOAD_BYTES, get_settings, resolve_home

THUMBNAIL_SIZES = (64, 128, 256, 512, 1024)  # requested sizes snap up to one of these


@dataclass(frozen=True)
class Settings:
    index: Path
    token: str | None = None  # bearer token required on /api/* when set
    device: str = "auto"
    host: str = "127.0.0.1"
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are listed
    allowed_hosts: tuple[str, ...] = field(default=())  # empty: derived from host
    refresh_seconds: float = 2.0  # how often to look for writes by `pixfind index`

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from PIXFIND_* variables (`uvicorn --factory pixfind.api.app:create_app`)."""
        env = get_settings()
        return cls(
            index=resolve_home(env.index),
            token=env.token,
            device=env.device,
            max_upload_bytes=env.max_upload_bytes,
            cors_origins=env.cors_origins,
        )

    def trusted_hosts(self) -> list[str]:
        """Host headers the server answers to.

        On loopback only local names: a web page on another site can't reach the API through
        DNS rebinding. Bound to another address, any name (protect it with a token)."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        if is_loopback(self.host):
            return ["127.0.0.1", "localhost", "::1", "[::1]"]
        return ["*"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
