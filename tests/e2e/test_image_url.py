"""Issue 19 part 5: image queries by URL (`pixfind search --image https://...`, `--add-image
URL`), downloaded into memory with a size cap and a deadline, never written to the index.

A real HTTP server on 127.0.0.1 (started here) serves a photo, a 404, an HTML page, bytes that
are no image, a body over the cap and a body that arrives too slowly."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pixfind.search.errors import ImageDownloadError
from pixfind.search.remote import fetch_image, is_url

from ..conftest import TINY, json_out, make_picture


class Handler(BaseHTTPRequestHandler):
    photo = b""

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, kind: str, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/photo.jpg":
            self._send(200, "image/jpeg", self.photo)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/photo.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/page":
            self._send(200, "text/html; charset=utf-8", b"<html>not a photo</html>")
        elif self.path == "/noise.bin":
            self._send(200, "application/octet-stream", bytes(range(256)) * 40)
        elif self.path == "/big.jpg":  # says it is small, sends more than the cap
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(64):
                    self.wfile.write(b"\xff" * 65536)
        elif self.path == "/slow.jpg":  # a trickle: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(40):
                    self.wfile.write(self.photo[:16])
                    self.wfile.flush()
                    time.sleep(0.1)
        else:
            self._send(404, "text/plain", b"no such thing")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    """(index, the photo the server sends): 6 pictures indexed with pixfind-tiny."""
    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.encoder import load_encoder
    from pixfind.search.types import EncoderSpec

    base = tmp_path_factory.mktemp("url")
    photos = [make_picture(base / "photos" / f"p{i}.jpg", i) for i in range(6)]
    encoder = load_encoder(EncoderSpec(*TINY), "cpu")
    run_index(base / "index", IndexOptions([str(base / "photos")], workers=0), encoder=encoder)
    Handler.photo = photos[0].read_bytes()
    return base / "index", photos[0]


def test_search_by_url_finds_the_photo_and_writes_nothing(server, indexed, cli):
    home, photo = indexed
    before = json_out(cli("--index", home, "status", "--json"))

    for url in (f"{server}/photo.jpg", f"{server}/moved"):  # a redirect is followed
        hits = json_out(cli("--index", home, "search", "--image", url, "-k", "3", "--json"))
        assert hits["query"] == url
        assert hits["results"][0]["path"] == str(photo)  # the same picture, first
        assert hits["results"][0]["score"] > 0.99

    mixed = cli("--index", home, "search", "a photo", "--add-image", f"2:{server}/photo.jpg")
    assert str(photo) in mixed.stdout

    after = json_out(cli("--index", home, "status", "--json"))
    assert after["images"] == before["images"] == 6  # nothing was added
    assert not list(home.rglob("photo.jpg"))  # nor saved anywhere in the index folder


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/missing.jpg", "answered 404"),
        ("/page", "not an image (the server sent text/html)"),
        ("/noise.bin", "can't use"),
        ("/big.jpg", "larger than 1 MB"),
        ("/slow.jpg", "took longer than 1 s"),
    ],
)
def test_url_errors_are_one_line_and_exit_1(server, indexed, cli, monkeypatch, path, says):
    monkeypatch.setenv("PIXFIND_URL_MAX_MB", "1")
    monkeypatch.setenv("PIXFIND_URL_TIMEOUT", "1")
    home = indexed[0]
    started = time.monotonic()
    result = cli("--index", home, "search", "--image", f"{server}{path}", ok=False)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], result.output
    assert time.monotonic() - started < 10


def test_fetch_refuses_what_is_not_http_and_a_dead_port():
    assert is_url("https://example.org/x.jpg") and is_url("HTTP://h/x")
    assert not is_url("./https:x.jpg") and not is_url("file:///etc/passwd")
    with pytest.raises(ImageDownloadError, match="not an http"):
        fetch_image("file:///etc/passwd")
    with pytest.raises(ImageDownloadError, match="can't download"):
        fetch_image("http://127.0.0.1:9/x.jpg", timeout=2)  # discard port: refused


def test_a_local_file_named_like_a_url_scheme_is_still_a_file(tmp_path):
    assert not is_url(str(Path(tmp_path) / "http:" / "x.jpg"))
