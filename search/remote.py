"""Image queries by URL (`pixfind search --image https://...`, ``Searcher.search_image(url)``).

The image is downloaded into memory with a size cap and an overall deadline, decoded for
the query and dropped: it is never written to the index or to disk. Only the CLI and the
Python API take URLs; the HTTP API never fetches a URL a client names (that would let
anyone who can reach the server make it request addresses on its network).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from .errors import ImageDownloadError
from .settings import get_settings

SCHEMES = ("http", "https")
CHUNK = 64 * 1024


def is_url(value: str) -> bool:
    return urlsplit(value.strip()).scheme.lower() in SCHEMES and "://" in value


def _opener():
    """urllib, following redirects to http(s) only (it would also follow one to ftp);
    imported here: the search path never pays for it unless a URL is given."""
    import urllib.request

    class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if urlsplit(newurl).scheme.lower() not in SCHEMES:
                raise ImageDownloadError(f"{req.full_url} redirects to {newurl}, not http(s)")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(HttpOnlyRedirects)


def fetch_image(url: str, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
    """The bytes at ``url`` (at most ``max_bytes``, within ``timeout`` seconds overall;
    defaults: PIXFIND_URL_MAX_MB, PIXFIND_URL_TIMEOUT). Raises ImageDownloadError with
    one line that says what went wrong."""
    settings = get_settings()
    max_bytes = max_bytes or settings.url_max_bytes
    timeout = timeout or settings.url_timeout
    if not is_url(url):
        raise ImageDownloadError(f"not an http(s) URL: {url!r}")
    limit = f"{max_bytes / 1e6:g} MB"
    deadline = time.monotonic() + timeout
    import urllib.error
    import urllib.request

    opener = _opener()
    request = urllib.request.Request(url, headers={"User-Agent": "pixfind", "Accept": "image/*"})
    try:
        with opener.open(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if kind.startswith("text/") or kind in ("application/json", "application/xml"):
                raise ImageDownloadError(f"{url} is not an image (the server sent {kind})")
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ImageDownloadError(
                    f"the image at {url} is too large ({int(length) / 1e6:.1f} MB, limit "
                    f"{limit}; PIXFIND_URL_MAX_MB raises it)"
                )
            data = bytearray()
            while chunk := response.read1(CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise ImageDownloadError(
                        f"the image at {url} is larger than {limit} (PIXFIND_URL_MAX_MB raises it)"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError
    except urllib.error.HTTPError as exc:
        raise ImageDownloadError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        if isinstance(exc, TimeoutError) or "timed out" in str(exc):
            raise ImageDownloadError(
                f"downloading {url} took longer than {timeout:g} s (PIXFIND_URL_TIMEOUT raises "
                "the limit)"
            ) from None
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ImageDownloadError(f"can't download {url}: {reason}") from None
    except ValueError as exc:  # a malformed URL
        raise ImageDownloadError(f"can't download {url}: {exc}") from None
    if not data:
        raise ImageDownloadError(f"{url} sent no data")
    return bytes(data)
