"""Running the app under uvicorn with limits suited to a photo server on a home network.

uvicorn itself closes idle keep-alive connections but never times out a request whose headers
(or body) arrive too slowly, so a few hundred slow clients could hold connections open for
ever. ``GuardedH11Protocol`` closes a connection whose request headers are not complete within
``header_timeout`` seconds (from connect, or from the end of the previous response) and one
whose body is still arriving ``body_timeout`` seconds after its headers; ``limit_concurrency``
bounds open connections and running requests together (uvicorn answers 503 above it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0  # seconds for a request's headers to arrive
    body_timeout: float = 120.0  # seconds for its body (a 20 MB upload at ~170 KB/s)
    keep_alive: int = 5  # seconds an idle keep-alive connection stays open
    max_connections: int = 100  # open connections + running requests; 503 above
    max_header_bytes: int = 16 * 1024  # request line + headers
    graceful_shutdown: int = 5  # seconds Ctrl-C waits for requests in flight


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with deadlines for a request's headers and for its body."""

    limits = ServerLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm(self.limits.header_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, self.conn.their_state)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, state) -> None:
        self._deadline = None
        # still waiting for the same part of the request (headers: IDLE, body: SEND_BODY)
        if self.conn.their_state is state and not self.transport.is_closing():
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # the app sees ClientDisconnect
                self.cycle.message_event.set()
            self.transport.close()

    def handle_events(self) -> None:
        before = self.conn.their_state
        super().handle_events()
        after = self.conn.their_state
        if after is before:
            return
        if after is h11.SEND_BODY:
            self._arm(self.limits.body_timeout)
        elif after is not h11.IDLE:
            self._disarm()  # the whole request is in: the app takes its time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.limits.keep_alive + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_for(limits: ServerLimits) -> type[GuardedH11Protocol]:
    return type("GuardedH11", (GuardedH11Protocol,), {"limits": limits})


def serve(app, host: str, port: int, limits: ServerLimits | None = None) -> None:
    """Serve ``app`` (blocking) with ``limits`` (see ServerLimits for the defaults)."""
    import uvicorn

    limits = limits or ServerLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=protocol_for(limits),
        timeout_keep_alive=limits.keep_alive,
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=limits.graceful_shutdown,
    )
    uvicorn.Server(config).run()
