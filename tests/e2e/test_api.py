"""The HTTP API against real indexes built by the real indexer (pixfind-tiny, real files).

Every endpoint and every error status, the token, CORS and host checks, upload limits, and
traversal attempts that must never return the bytes of a file outside the index.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pixfind.api.app import create_app
from pixfind.api.service import Service
from pixfind.api.settings import Settings
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.store import path_id
from pixfind.search.types import EncoderSpec

from ..conftest import TINY, make_picture
from ..live_server import live_server

SPEC = EncoderSpec(TINY[0], None)
MARKER = b"TOP-SECRET-MARKER-4242"
BASE = "http://127.0.0.1"


def index_folder(home: Path, *roots: Path):
    return run_index(home, IndexOptions(roots=[str(r) for r in roots]), spec=SPEC)


def exif_rotated(path: Path) -> Path:
    """A 200x100 JPEG whose EXIF says 'rotate 90°': upright it is 100 wide, 200 tall."""
    img = Image.new("RGB", (200, 100), (200, 30, 30))
    img.paste((20, 20, 220), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, "JPEG", exif=exif.tobytes())
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be width x height (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("api")
    photos = base / "photos"
    exts = [".jpg", ".png", ".webp", ".gif", ".bmp", ".jpeg"]
    files = [make_picture(photos / f"pic{i:02d}{exts[i % 6]}", seed=100 + i) for i in range(12)]
    files.append(exif_rotated(photos / "rotated.jpg"))
    other = make_picture(base / "other-photos" / "elsewhere.jpg", seed=999)
    secret_jpg = make_picture(base / "secret.jpg", seed=7)
    secret_txt = base / "secret.txt"
    secret_txt.write_bytes(MARKER + b"\n")
    index_folder(base / "index", photos)
    index_folder(base / "other-index", other.parent)
    (base / "empty").mkdir()
    index_folder(base / "empty-index", base / "empty")
    return SimpleNamespace(
        base=base,
        home=base / "index",
        files=files,
        other_id=path_id(str(other)),
        secret_jpg=secret_jpg,
        secret_txt=secret_txt,
    )


@pytest.fixture(scope="module")
def settings(corpus) -> Settings:
    return Settings(index=corpus.home, refresh_seconds=0.0)


@pytest.fixture(scope="module")
def service(settings) -> Service:
    return Service.open(settings)


@pytest.fixture(scope="module")
def client(settings, service):
    with TestClient(create_app(settings, service), base_url=BASE) as c:
        yield c


def ids_by_name(client) -> dict[str, str]:
    hits = client.get("/api/search", params={"q": "anything", "k": 200}).json()["results"]
    return {Path(h["path"]).name: h["id"] for h in hits}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]
    return body


# -- search --------------------------------------------------------------------------------
def test_text_search_shape_ranking_and_paging(client, corpus):
    r = client.get("/api/search", params={"q": "a red circle", "k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "a red circle" and body["k"] == 5 and body["offset"] == 0
    assert body["took_ms"] >= 0 and body["next_offset"] == 5
    results = body["results"]
    assert [h["rank"] for h in results] == [1, 2, 3, 4, 5]
    assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    indexed = {str(p) for p in corpus.files}
    for h in results:
        assert h["path"] in indexed and h["id"].isdigit()
        assert h["image_url"] == f"/api/images/{h['id']}"
        assert h["thumbnail_url"] == f"/api/thumbnails/{h['id']}?size=256"
        assert h["width"] > 0 and h["height"] > 0

    # pages put together are the single long result list, and the last page says so
    everything = client.get("/api/search", params={"q": "a red circle", "k": 20}).json()
    assert len(everything["results"]) == 13 and everything["next_offset"] is None
    paged = []
    offset = 0
    while offset is not None:
        page = client.get("/api/search", params={"q": "a red circle", "k": 4, "offset": offset})
        paged += page.json()["results"]
        offset = page.json()["next_offset"]
    assert [h["id"] for h in paged] == [h["id"] for h in everything["results"]]
    assert [h["rank"] for h in paged] == list(range(1, 14))
    past = client.get("/api/search", params={"q": "x", "k": 5, "offset": 50}).json()
    assert past["results"] == [] and past["next_offset"] is None


def test_similar_leaves_the_image_out_and_ranks_its_copy_first(client, corpus, tmp_path):
    ids = ids_by_name(client)
    target = ids["pic03.gif"]
    body = client.get(f"/api/search/similar/{target}", params={"k": 50}).json()
    assert body["query"] == target
    assert target not in [h["id"] for h in body["results"]] and len(body["results"]) == 12
    assert_error(client.get(f"/api/search/similar/{corpus.other_id}"), 404, "not_found")
    assert_error(client.get("/api/search/similar/not-an-id"), 404, "not_found")


def test_search_by_upload_multipart_and_raw(client, corpus):
    original = corpus.files[4]  # pic04.bmp
    data = original.read_bytes()
    r = client.post("/api/search/image", files={"file": ("query.bmp", data, "image/bmp")})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["path"] == str(original) and top["score"] > 0.99
    assert r.json()["query"] == "query.bmp"
    # a re-encoded copy (PNG of the same pixels) sent as the raw body
    png = io.BytesIO()
    Image.open(original).save(png, "PNG")
    r = client.post(
        "/api/search/image?k=3", content=png.getvalue(), headers={"content-type": "image/png"}
    )
    assert r.status_code == 200 and r.json()["results"][0]["path"] == str(original)
    assert len(r.json()["results"]) == 3


def test_upload_errors(client, corpus):
    def post(name, data, ctype="application/octet-stream"):
        return client.post("/api/search/image", files={"file": (name, data, ctype)})

    body = assert_error(
        post("notes.txt", b"just some text", "text/plain"), 415, "unsupported_media_type"
    )
    assert "not an image" in body["detail"]
    jpeg = corpus.files[0].read_bytes()
    assert_error(post("cut.jpg", jpeg[:300], "image/jpeg"), 415, "unsupported_media_type")
    body = assert_error(
        post("bomb.png", png_header_only(30_000, 30_000)), 415, "unsupported_media_type"
    )
    assert "decompression bomb" in body["detail"]  # refused from the header alone
    assert_error(post("empty.jpg", b""), 400, "bad_query")
    no_file = client.post("/api/search/image", data={"other": "x"}, files={"x": ("a", b"b")})
    assert_error(no_file, 400, "bad_query")
    assert_error(client.post("/api/search/image"), 400, "bad_query")


def test_upload_limit_413(settings, service, corpus):
    small = replace(settings, max_upload_bytes=48 * 1024)
    with TestClient(create_app(small, service), base_url=BASE) as c:
        ok = c.post("/api/search/image", files={"file": ("a.jpg", corpus.files[0].read_bytes())})
        assert ok.status_code == 200
        big = os.urandom(60_000)
        for response in (
            c.post("/api/search/image", files={"file": ("big.jpg", big, "image/jpeg")}),
            c.post("/api/search/image", content=big, headers={"content-type": "image/jpeg"}),
        ):
            body = assert_error(response, 413, "payload_too_large")
            assert "limit of 48 KiB" in body["detail"]


# -- files ---------------------------------------------------------------------------------
def test_original_bytes_and_content_types(client, corpus):
    ids = ids_by_name(client)
    expected = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
    expected.update({".gif": "image/gif", ".bmp": "image/bmp", ".jpeg": "image/jpeg"})
    for path in corpus.files:
        r = client.get(f"/api/images/{ids[path.name]}")
        assert r.status_code == 200
        assert r.content == path.read_bytes()
        assert r.headers["content-type"] == expected[path.suffix]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_thumbnails_lazy_cached_upright(client, corpus):
    ids = ids_by_name(client)
    rotated = ids["rotated.jpg"]
    cache = corpus.home / "thumbnails"
    before = set(cache.glob(f"{rotated}-*")) if cache.exists() else set()
    assert not before
    r = client.get(f"/api/thumbnails/{rotated}", params={"size": 100})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and max(img.size) <= 128  # 100 snaps up to 128
    assert img.height > img.width  # EXIF orientation applied: portrait
    assert img.getpixel((img.width // 2, 5))[2] > 150  # the blue half is on top once upright
    cached = list(cache.glob(f"{rotated}-128-*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.content
    again = client.get(f"/api/thumbnails/{rotated}", params={"size": 128})
    assert again.content == r.content
    default = client.get(f"/api/thumbnails/{ids['pic00.jpg']}")
    assert max(Image.open(io.BytesIO(default.content)).size) == 160  # never upscaled
    assert_error(client.get(f"/api/thumbnails/{rotated}?size=5000"), 422, "invalid_request")
    assert_error(client.get(f"/api/thumbnails/{rotated}?size=big"), 422, "invalid_request")
    assert_error(client.get(f"/api/thumbnails/{corpus.other_id}"), 404, "not_found")
    # search results report the upright size too
    hit = next(
        h for h in client.get("/api/search?q=x&k=50").json()["results"] if h["id"] == rotated
    )
    assert (hit["width"], hit["height"]) == (100, 200)


# -- status, health, errors ----------------------------------------------------------------
def test_status_and_health(client):
    s = client.get("/api/status").json()
    assert s["images"] == 13 and s["model"] == "pixfind-tiny" and s["dim"] == 128
    assert s["last_update"] and s["auth"] is False and s["max_upload_bytes"] == 20 * 1024 * 1024
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    schema = client.get("/openapi.json").json()
    for route in (
        "/api/search",
        "/api/search/image",
        "/api/search/similar/{image_id}",
        "/api/images/{image_id}",
        "/api/thumbnails/{image_id}",
        "/api/status",
        "/healthz",
    ):
        assert route in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_error_statuses_are_json(client):
    assert_error(client.get("/api/nope"), 404, "not_found")
    assert_error(client.get("/api/search/image"), 405, "method_not_allowed")
    assert_error(client.get("/api/search"), 422, "invalid_request")
    assert_error(client.get("/api/search?q="), 422, "invalid_request")
    assert_error(client.get("/api/search", params={"q": "x" * 501}), 422, "invalid_request")
    assert_error(client.get("/api/search?q=x&k=0"), 422, "invalid_request")
    assert_error(client.get("/api/search?q=x&k=201"), 422, "invalid_request")
    assert_error(client.get("/api/search?q=x&offset=-1"), 422, "invalid_request")
    assert_error(client.get("/api/search?q=x&offset=1001"), 422, "invalid_request")
    body = assert_error(client.get("/api/search?q=x&k=abc"), 422, "invalid_request")
    assert "k" in body["detail"]
    assert_error(client.get("/api/search", params={"q": "   "}), 400, "bad_query")
    assert client.get("/api/search", params={"q": "x" * 500}).status_code == 200


def test_empty_index_is_503(corpus):
    settings = Settings(index=corpus.base / "empty-index")
    with TestClient(create_app(settings), base_url=BASE) as c:
        assert c.get("/api/status").json()["images"] == 0
        body = assert_error(c.get("/api/search?q=dog"), 503, "empty_index")
        assert "pixfind" in body["detail"] and "index" in body["detail"]


# -- security ------------------------------------------------------------------------------
def test_token_required_on_every_api_route(settings, service, client):
    image_id = ids_by_name(client)["pic00.jpg"]
    secured = replace(settings, token="s3cret-token")
    api_calls = [
        ("GET", "/api/search?q=dog"),
        ("GET", f"/api/search/similar/{image_id}"),
        ("POST", "/api/search/image"),
        ("GET", f"/api/images/{image_id}"),
        ("GET", f"/api/thumbnails/{image_id}"),
        ("GET", "/api/status"),
    ]
    with TestClient(create_app(secured, service), base_url=BASE) as c:
        for method, url in api_calls:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "s3cret-token"},
            ):
                r = c.request(method, url, headers=headers)
                assert_error(r, 401, "unauthorized")
                assert r.headers["www-authenticate"].startswith("Bearer")
        good = {"Authorization": "Bearer s3cret-token"}
        assert c.get("/api/search?q=dog", headers=good).status_code == 200
        assert c.get(f"/api/images/{image_id}", headers=good).status_code == 200
        assert c.get("/api/status", headers=good).json()["auth"] is True
        # the page, its assets and the health check need no token (they hold no data)
        for url in ("/", "/static/app.js", "/healthz"):
            assert c.get(url).status_code == 200
        # the page trades the token for an HttpOnly cookie that <img> requests carry
        assert_error(c.post("/api/login", json={"token": "nope"}), 401, "unauthorized")
        r = c.post("/api/login", json={"token": "s3cret-token"})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret" not in cookie
        assert c.get(f"/api/thumbnails/{image_id}").status_code == 200
        c.post("/api/logout")
        c.cookies.clear()
        assert c.get("/api/status").status_code == 401


def test_cors_off_unless_configured(settings, service):
    origin = {"Origin": "https://photos.example"}
    with TestClient(create_app(settings, service), base_url=BASE) as c:
        r = c.get("/api/status", headers=origin)
        assert "access-control-allow-origin" not in r.headers
        pre = c.options("/api/status", headers={**origin, "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in pre.headers
    allowed = replace(settings, cors_origins=("https://photos.example",))
    with TestClient(create_app(allowed, service), base_url=BASE) as c:
        r = c.get("/api/status", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://photos.example"
        r = c.get("/api/status", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_loopback_server_refuses_foreign_host_names(client):
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 must get nothing
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
        r = client.get("/api/status", headers={"Host": host})
        assert_error(r, 400, "bad_host")
        assert b"images" not in r.content
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert client.get("/api/status", headers={"Host": host}).status_code == 200, host


def raw_get(base: str, raw_path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (no client-side normalisation of ../ or %2F)."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_traversal_attempts_never_return_outside_files(settings, service, corpus):
    secret = str(corpus.secret_txt)
    secret_jpg = corpus.secret_jpg.read_bytes()
    quoted = urllib.parse.quote(secret, safe="")
    rel = os.path.relpath(secret, corpus.home)
    attempts = [
        "/api/images/../../secret.txt",
        "/api/images/..%2F..%2Fsecret.txt",
        "/api/images/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/api/images/%252e%252e%252fsecret.txt",
        f"/api/images/{quoted}",
        f"/api/images/{secret}",
        f"/api/images/{urllib.parse.quote(rel, safe='')}",
        f"/api/thumbnails/{quoted}",
        "/api/thumbnails/..%2F..%2Fsecret.jpg?size=256",
        f"/api/images/{path_id(secret)}",
        f"/api/images/{path_id(str(corpus.secret_jpg))}",
        f"/api/thumbnails/{path_id(str(corpus.secret_jpg))}",
        f"/api/search/similar/{path_id(str(corpus.secret_jpg))}",
        f"/api/images/{corpus.other_id}",  # an id from another index
        f"/api/thumbnails/{corpus.other_id}",
        "/api/images/-1",
        "/api/images/0x1F",
        "/api/images/99999999999999999999999",
        "/api/images/1%00",
        "/static/../secret.txt",
        "/static/../../secret.txt",
        "/static/..%2F..%2F..%2Fsecret.txt",
        "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        f"/static/{quoted}",
        "/static/../../../../../../etc/passwd",
        "/..%2F..%2F..%2Fetc%2Fpasswd",
    ]
    with live_server(create_app(settings, service)) as base:
        for raw in attempts:
            status, body = raw_get(base, raw)
            assert status in (400, 404), (raw, status, body[:200])
            assert MARKER not in body and secret_jpg not in body and b"root:" not in body, raw


def read_reply(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers and Content-Length bytes of body) from a raw socket."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_upload_limit_enforced_while_reading(settings, service):
    """413 comes back before the client has sent the body: the server does not read it all."""
    small = replace(settings, max_upload_bytes=100_000)
    with live_server(create_app(small, service)) as base:
        host, port = urllib.parse.urlsplit(base).netloc.split(":")
        for ctype in ("image/jpeg", "multipart/form-data; boundary=xyz"):
            with socket.create_connection((host, int(port)), timeout=20) as s:
                s.sendall(
                    b"POST /api/search/image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + f"Content-Type: {ctype}\r\nContent-Length: 1000000000\r\n\r\n".encode()
                    + b"\xff" * 1000
                )
                reply = read_reply(s)
            assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
            assert b"payload_too_large" in reply
        # no length announced (chunked): refused once the bytes read pass the limit
        with socket.create_connection((host, int(port)), timeout=20) as s:
            s.sendall(
                b"POST /api/search/image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"\xff" * 20_000
            for _ in range(8):  # 160 kB sent, the stream never ends
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            reply = read_reply(s)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


# -- the index changing under a running server ---------------------------------------------
def test_files_deleted_or_changed_since_indexing_are_not_served(tmp_path):
    photos = tmp_path / "photos"
    keep, gone, edited, swapped = (
        make_picture(photos / f"{name}.jpg", seed=i)
        for i, name in enumerate(["keep", "gone", "edited", "swapped"])
    )
    secret = tmp_path / "secret.txt"
    secret.write_bytes(MARKER * 100)
    index_folder(tmp_path / "index", photos)
    settings = Settings(index=tmp_path / "index", refresh_seconds=0.0)
    with TestClient(create_app(settings), base_url=BASE) as c:
        ids = ids_by_name(c)
        for name in ("keep.jpg", "gone.jpg", "edited.jpg", "swapped.jpg"):
            assert c.get(f"/api/images/{ids[name]}").status_code == 200
        gone.unlink()
        # same size and mtime, different bytes: only the content hash can tell
        st = edited.stat()
        data = bytearray(edited.read_bytes())
        data[-10] ^= 0xFF
        edited.write_bytes(bytes(data))
        os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
        swapped.unlink()
        swapped.symlink_to(secret)
        for name in ("gone.jpg", "edited.jpg", "swapped.jpg"):
            for url in (f"/api/images/{ids[name]}", f"/api/thumbnails/{ids[name]}?size=64"):
                r = c.get(url)
                assert_error(r, 410, "gone")
                assert MARKER not in r.content
        assert c.get(f"/api/images/{ids['keep.jpg']}").content == keep.read_bytes()
        # once re-indexed, the deleted file's id is simply unknown
        index_folder(tmp_path / "index", photos)
        assert_error(c.get(f"/api/images/{ids['gone.jpg']}"), 404, "not_found")


def test_new_images_appear_while_serving_and_rebuild_is_not_raced(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        make_picture(photos / f"a{i}.jpg", seed=200 + i)
    home = tmp_path / "index"
    index_folder(home, photos)
    settings = Settings(index=home, refresh_seconds=0.0)
    with live_server(create_app(settings)) as base:
        import httpx

        with httpx.Client(base_url=base, timeout=60) as h:
            assert h.get("/api/status").json()["images"] == 3
            added = [make_picture(photos / f"b{i}.jpg", seed=300 + i) for i in range(4)]
            index_folder(home, photos)  # another writer, as `pixfind index` would be
            assert h.get("/api/status").json()["images"] == 7
            paths = {r["path"] for r in h.get("/api/search?q=x&k=50").json()["results"]}
            assert {str(p) for p in added} <= paths
            # a write that leaves the FAISS index stale: it is rebuilt once, under a lock,
            # while requests pour in
            from pixfind.search.store import Store

            Store.open(home).delete_paths([str(added[0])])
            errors: list[str] = []
            barrier = threading.Barrier(8)

            def query(i: int) -> list[str]:
                barrier.wait()
                r = h.get("/api/search", params={"q": "a photo", "k": 7})
                if r.status_code != 200:
                    errors.append(r.text)
                    return []
                return [x["id"] for x in r.json()["results"]]

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(query, range(8)))
            assert not errors
            assert all(r == results[0] and len(r) == 6 for r in results)
            assert str(path_id(str(added[0]))) not in results[0]


def test_pixfind_serve_command(corpus, cli, tmp_path):
    """The real command: refuses a missing index with one line, serves an existing one."""
    missing = cli("--index", tmp_path / "nowhere", "serve", ok=False)
    assert missing.exit_code == 1 and "no index at" in missing.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env["PIXFIND_TOKEN"] = "cli-token"
    cmd = [
        sys.executable,
        "-m",
        "pixfind.cli",
        "serve",
        "--index",
        str(corpus.home),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "pixfind serve did not start"
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/api/search?q=a+photo&k=3"
        assert httpx.get(url).status_code == 401
        r = httpx.get(url, headers={"Authorization": "Bearer cli-token"})
        assert r.status_code == 200 and len(r.json()["results"]) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "token required" in proc.stderr.read()


def test_index_rebuilt_with_another_model_while_serving_is_503(tmp_path):
    import torch
    from pixfind.search.models import get_open_clip

    photos = tmp_path / "photos"
    for i in range(3):
        make_picture(photos / f"p{i}.jpg", seed=400 + i)
    home = tmp_path / "index"
    index_folder(home, photos)
    with TestClient(create_app(Settings(index=home, refresh_seconds=0.0)), base_url=BASE) as c:
        assert c.get("/api/search?q=x").status_code == 200
        # same architecture and vector size, other weights: only the identity tells them apart
        other = tmp_path / "other.pt"
        torch.save(get_open_clip().create_model("pixfind-tiny").state_dict(), other)
        run_index(
            home,
            IndexOptions(roots=[str(photos)], rebuild=True),
            spec=EncoderSpec("pixfind-tiny", str(other)),
        )
        for url in ("/api/search?q=x", "/api/status", "/api/search?q=y"):
            body = assert_error(c.get(url), 503, "index_mismatch")
            assert "restart `pixfind serve`" in body["detail"]


def test_app_factory_reads_settings_from_the_environment(corpus, monkeypatch):
    """`uvicorn --factory pixfind.api.app:create_app`: settings come from PIXFIND_* variables."""
    from pixfind.api.deps import get_settings

    monkeypatch.setenv("PIXFIND_INDEX", str(corpus.home))
    monkeypatch.setenv("PIXFIND_TOKEN", "env-token")
    monkeypatch.setenv("PIXFIND_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), base_url=BASE) as c:
            assert_error(c.get("/api/status"), 401, "unauthorized")
            s = c.get("/api/status", headers={"Authorization": "Bearer env-token"}).json()
            assert s["images"] == 13 and s["max_upload_bytes"] == 1000
    finally:
        get_settings.cache_clear()
