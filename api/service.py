"""What the routes need from the core, shared by all requests: one searcher, one encoder.

The searcher is opened once (the encoder loaded once) and used from many worker threads.
Writes by `pixfind index` in another process are picked up every ``refresh_seconds``; the
FAISS index is rebuilt under a lock when the table moved on, so two requests never build it
at the same time.
"""

from __future__ import annotations

import io
import json
import logging
import mimetypes
import os
import stat
import threading
import time
from pathlib import Path

from pixfind.search.duplicates import Duplicates, find_duplicates
from pixfind.search.engine import Results, Searcher
from pixfind.search.errors import BadQuery, IndexMismatch, NotFound
from pixfind.search.images import (
    DEFAULT_MAX_MEGAPIXELS,
    DecodeError,
    content_hash,
    decode_bytes,
)
from pixfind.search.index import VectorIndex
from pixfind.search.location import is_uri
from pixfind.search.photobucket import ObjectStat, read_object, stat_object
from pixfind.search.query import Query
from pixfind.search.raw import raw_kind
from pixfind.search.status import IndexStatus, index_status
from pixfind.search.store import META_KEY
from pixfind.search.types import Filters, ImageRecord, ModelInfo

from .settings import THUMBNAIL_SIZES, Settings

log = logging.getLogger(__name__)

THUMBNAIL_DIR = "thumbnails"
# Decoding is where a request's memory goes (3 bytes a pixel): uploads and thumbnails of
# large photos (over LARGE_MEGAPIXELS) are decoded at most this many at a time; the other
# requests wait for a slot, so many of them at once can't multiply the peak.
DECODE_SLOTS = 2
LARGE_MEGAPIXELS = 24.0
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
}


class FileGone(Exception):
    """An indexed file that is missing or changed on disk since it was indexed."""


class LockedSearcher(Searcher):
    """A Searcher whose index (re)build and table refresh are serialised across threads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._mismatch: str | None = None

    @property
    def index(self) -> VectorIndex:
        with self._lock:
            return super().index

    def refresh_if_due(self, every: float) -> None:
        if self._mismatch:
            raise IndexMismatch(self._mismatch)
        if time.monotonic() - self._checked_at < every:
            return
        with self._lock:
            if time.monotonic() - self._checked_at < every:
                return
            before = self.store.version
            self.refresh()
            if self.store.version != before:
                self._check_same_model()
            self._checked_at = time.monotonic()

    def mark_stale(self) -> None:
        """The table moved on (a watcher in this process wrote to it): look on the next use."""
        self._checked_at = 0.0

    def _check_same_model(self) -> None:
        """`pixfind index --rebuild --model ...` while serving: the loaded encoder no longer
        matches the vectors, so refuse to search (silently wrong results otherwise)."""
        raw = (self.store.table.schema.metadata or {}).get(META_KEY)
        model = ModelInfo.from_dict(json.loads(raw)["model"]) if raw else None
        if model is None or model.identity != self.store.info.identity:
            label = model.label if model else "an unknown model"
            self._mismatch = (
                f"the index at {self.home} was rebuilt with {label} while this server was "
                f"running with {self.store.info.label}; restart `pixfind serve`"
            )
            raise IndexMismatch(self._mismatch)


class Service:
    def __init__(self, settings: Settings, searcher: LockedSearcher):
        self.settings = settings
        self.searcher = searcher
        self._decodes = threading.BoundedSemaphore(DECODE_SLOTS)

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open the index and load its encoder (raises NoIndex, IndexMismatch, UnknownModel)."""
        searcher = LockedSearcher(settings.index, device=settings.device, cold=False)
        searcher.encoder  # noqa: B018 - load the model now, not on the first request
        return cls(settings, searcher)

    @property
    def store(self):
        return self.searcher.store

    def _fresh(self) -> LockedSearcher:
        self.searcher.refresh_if_due(self.settings.refresh_seconds)
        return self.searcher

    def search(self, query: Query) -> Results:
        """One page of a text, "more like this" or uploaded-image search."""
        if query.upload is None:
            return self._fresh().run(query)
        with self._decodes:
            return self._fresh().run(query)

    # -- files -----------------------------------------------------------------
    def record(self, image_id: int) -> ImageRecord:
        return self._fresh().store.record(image_id)

    def read_original(self, image_id: int) -> tuple[ImageRecord, bytes, str]:
        """The bytes of an indexed file, only if it is still exactly what was indexed.

        The path comes from the index, never from the client; the file is opened once and
        checked through that descriptor (regular file, same size and mtime, same content hash),
        so a file swapped for a symlink or edited since indexing is never served."""
        rec = self.record(image_id)
        if is_uri(rec.path):
            return rec, _read_object(image_id, rec), media_type(rec.path)
        try:
            fd = os.open(rec.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise FileGone(
                f"image {image_id} is in the index but {_why(exc)}; run `pixfind index` "
                f"again to bring the index up to date"
            ) from exc
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not _same_file(st, rec):
                raise FileGone(
                    f"image {image_id} changed on disk since it was indexed; run `pixfind "
                    f"index` again to bring the index up to date"
                )
            data = f.read(rec.size + 1)
        if len(data) != rec.size or content_hash(data) != rec.content_hash:
            raise FileGone(f"image {image_id} changed on disk since it was indexed")
        return rec, data, media_type(rec.path)

    def thumbnail(self, image_id: int, size: int) -> tuple[Path | None, bytes | None]:
        """(cached file, None) or (None, JPEG bytes) when the cache can't be written."""
        size = snap_size(size)
        rec = self.record(image_id)
        folder = self.settings.index / THUMBNAIL_DIR
        cached = folder / f"{rec.id}-{size}-{rec.content_hash[:16]}.jpg"
        # the source must still be what was indexed, even when a thumbnail is cached
        if not _same_on_disk(rec):
            raise FileGone(
                f"image {image_id} is missing or changed on disk since it was indexed; run "
                f"`pixfind index` again"
            )
        if cached.is_file():
            return cached, None
        _, data, _ = self.read_original(image_id)
        megapixels = rec.width * rec.height / 1e6
        if megapixels > LARGE_MEGAPIXELS:
            with self._decodes:
                jpeg = make_thumbnail(data, size, megapixels, raw_kind(rec.path))
        else:
            jpeg = make_thumbnail(data, size, megapixels, raw_kind(rec.path))
        try:
            folder.mkdir(exist_ok=True)
            tmp = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(jpeg)
            os.replace(tmp, cached)
        except OSError as exc:  # read-only index: serve without caching
            log.warning("thumbnail cache not writable (%s): %s", folder, exc)
            return None, jpeg
        return cached, None

    def status(self) -> IndexStatus:
        return index_status(self._fresh().store)

    def duplicates(self, filters: Filters | None, threshold: int, keep: str) -> Duplicates:
        """Groups of copies in the index (search/duplicates.py)."""
        return find_duplicates(self._fresh().store, filters, threshold, keep)


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "its file no longer exists"
    if isinstance(exc, PermissionError):
        return "its file is not readable"
    return f"its file can't be opened ({exc.strerror or exc})"


def _same_file(st: os.stat_result | ObjectStat, rec: ImageRecord) -> bool:
    return st.st_size == rec.size and abs(st.st_mtime - rec.mtime) < 1e-6


def _read_object(image_id: int, rec: ImageRecord) -> bytes:
    """An indexed photo on s3:// (search/photobucket.py): one GET, served only if it is
    still exactly what was indexed (size, Last-Modified, content hash)."""
    try:
        data, st = read_object(rec.path)
    except DecodeError as exc:
        raise FileGone(
            f"image {image_id} is in the index but its object can't be read ({exc}); run "
            "`pixfind index` again to bring the index up to date"
        ) from exc
    if not _same_file(st, rec) or content_hash(data) != rec.content_hash:
        raise FileGone(f"image {image_id} changed in its bucket since it was indexed")
    return data


def _same_on_disk(rec: ImageRecord) -> bool:
    if is_uri(rec.path):
        st = stat_object(rec.path)
        return st is not None and _same_file(st, rec)
    try:
        st = os.stat(rec.path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and _same_file(st, rec)


def media_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return IMAGE_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def snap_size(size: int) -> int:
    """Round a requested thumbnail size up to an allowed one, so the cache stays bounded."""
    for allowed in THUMBNAIL_SIZES:
        if size <= allowed:
            return allowed
    return THUMBNAIL_SIZES[-1]


def make_thumbnail(
    data: bytes, size: int, megapixels: float = 0.0, raw: str | None = None
) -> bytes:
    """An upright JPEG whose longer side is at most ``size`` (``raw``: the RAW kind the
    file's name says, for NEF/ARW, whose bytes look like any TIFF).

    ``megapixels`` is the indexed size of the photo: a photo indexed with a raised
    ``--max-megapixels`` still gets its thumbnail (JPEGs decode at reduced scale, by draft)."""
    cap = max(DEFAULT_MAX_MEGAPIXELS, megapixels * 1.001 + 0.001)
    try:
        decoded = decode_bytes(data, draft_size=size, max_megapixels=cap, raw=raw)
    except DecodeError as exc:
        raise BadQuery(f"can't make a thumbnail: {exc}") from exc
    img = decoded.image
    img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def parse_id(raw: str) -> int:
    """Ids are opaque non-negative 63-bit integers, sent as decimal strings."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise NotFound(f"no image with id {raw[:40]!r} in the index")
    value = int(raw)
    if value >= 1 << 63:
        raise NotFound(f"no image with id {raw!r} in the index")
    return value
