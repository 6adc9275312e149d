"""`pixfind serve`: a thin Typer command over api/, mounted by cli.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pixfind.search.cli_common import DeviceOpt, err, index_home
from pixfind.search.location import shown
from pixfind.search.settings import get_settings
from rich.markup import escape

app = typer.Typer()

# `serve --watch` runs the indexer's watcher beside the server. api/ does not import the
# indexer: cli.py, which mounts both, plugs it in. Called with (folders, index, the server's
# loaded encoder, on_change, on_note); returns stop().
StartWatcher = Callable[..., Callable[[], None]]
_watcher: list[StartWatcher] = []


def plug_watcher(start: StartWatcher) -> None:
    _watcher[:] = [start]


@app.command("serve")
def serve_cmd(
    index: Annotated[
        str | None,
        typer.Option(
            "--index", help="Index directory or URI (as the global --index).", metavar="DIR|URI"
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind. Other than loopback: use --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Require `Authorization: Bearer TOKEN` on every /api route. Default: "
            "$PIXFIND_TOKEN (prefer the variable: arguments show in `ps`).",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float,
        typer.Option("--max-upload-mb", min=0.01, help="Largest accepted image upload."),
    ] = 20.0,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Allow this origin to call the API (repeatable)."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Host names the server answers to (repeatable). Default: local names on "
            "loopback, any name otherwise.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    watch: Annotated[
        list[Path] | None,
        typer.Option(
            "--watch",
            help="Keep these folders indexed while serving (repeatable; see `pixfind watch`).",
            metavar="FOLDER",
        ),
    ] = None,
    header_timeout: Annotated[
        float, typer.Option("--header-timeout", min=0.1, help="Seconds to send the headers.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option("--body-timeout", min=0.1, help="Seconds to send a request's body.")
    ] = 120.0,
    keep_alive: Annotated[
        int,
        typer.Option("--keep-alive", min=1, help="Seconds an idle connection is kept open."),
    ] = 5,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=2, help="Connections at once; more: 503.")
    ] = 100,
) -> None:
    """Serve the search page and JSON API (open http://127.0.0.1:8000/, API docs at /docs).

    Example: PIXFIND_TOKEN=s3cret pixfind serve --host 0.0.0.0 --port 8080
    """
    from pixfind.api.app import create_app
    from pixfind.api.server import ServerLimits, serve
    from pixfind.api.service import Service
    from pixfind.api.settings import Settings, is_loopback

    settings = Settings(
        index=index_home(index),
        token=token or get_settings().token,
        device=device,
        host=host,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        cors_origins=tuple(cors_origin or ()),
        allowed_hosts=tuple(allowed_host or ()),
    )
    if not is_loopback(host) and not settings.token:
        err.print(
            f"[yellow]warning:[/] serving on {host} without a token: anyone who can reach this "
            "machine can search your photos and download them (set PIXFIND_TOKEN)"
        )
    err.print(f"index: {shown(settings.index)}; loading the model...")
    service = Service.open(settings)  # errors (no index, bad model) show before binding
    url_host = f"[{host}]" if ":" in host else host
    err.print(
        f"pixfind: {service.store.count()} images, model {service.store.info.label}; "
        f"open http://{url_host}:{port}/ (API docs /docs)"
        + ("; token required" if settings.token else "")
    )
    limits = ServerLimits(header_timeout, body_timeout, keep_alive, max_connections)
    stop = _watch(watch, settings.index, service) if watch else None
    try:
        serve(create_app(settings, service), host, port, limits)
    finally:
        if stop:
            stop()


def _watch(folders: list[Path], home: Path, service) -> Callable[[], None]:
    if not _watcher:
        raise typer.BadParameter("--watch needs the indexer (run `pixfind serve`)")
    err.print(f"watching {len(folders)} folder(s); new photos are searchable within seconds")
    return _watcher[0](
        folders,
        home,
        service.searcher.encoder,
        service.searcher.mark_stale,
        lambda line: err.print(f"[yellow]watch:[/] {escape(line)}"),
    )
