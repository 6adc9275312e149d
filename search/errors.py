"""Typed errors. Library code raises them; only cli.py and api/ turn them into exits."""

from __future__ import annotations

import contextlib
import errno
import re
from pathlib import Path


class PixfindError(Exception):
    """Base class: the message says what went wrong and what to do."""


class UnknownModel(PixfindError):
    """A model name, pretrained tag or checkpoint path that open_clip can't resolve."""


class NeedsTorch(UnknownModel):
    """Something only torch and open_clip do (training, exporting, an open_clip model without
    its ONNX model folder, --runtime torch), asked of an install without them."""


class IndexMismatch(PixfindError):
    """The index was built with another model (or schema) than the one asked for."""


class EmptyIndex(PixfindError):
    """The index holds no images yet."""


class NoIndex(PixfindError):
    """No index exists at the given location."""


class BadQuery(PixfindError):
    """A query that can't be run: empty text, unreadable image, bad k."""


class UnsupportedImage(BadQuery):
    """An image query (an upload) that is not a decodable image."""


class ImageDownloadError(BadQuery):
    """An image query given by URL that could not be downloaded (status, timeout, size)."""


class IndexLocked(PixfindError):
    """Another process is writing to this index."""


class NotFound(PixfindError):
    """An id or path that is not in the index."""


class OcrUnavailable(PixfindError):
    """--ocr asked for, but Tesseract (or the language asked for) is not installed."""


class DamagedIndex(PixfindError):
    """The index's table (or a file it needs) can't be read; `pixfind doctor` says what can
    be recovered."""


class UnusableIndex(PixfindError):
    """The index location can't be used as it is: a file where a folder belongs, a folder
    where pixfind keeps a file, no write access, a full disk."""


class ReadOnlyIndex(UnusableIndex):
    """Writing is needed (indexing) but the index can't be written; searching still works."""


class MissingExtra(PixfindError):
    """A feature needs an optional extra that is not installed (`pip install 'pixfind[x]'`)."""


class DiskFull(UnusableIndex):
    """No space left while writing; what was committed before is kept."""


def _short(exc: BaseException) -> str:
    """The useful part of a backend error: its first line, without Rust source locations."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.removeprefix("lance error: ").replace("LanceError(IO): ", "")
    text = re.split(r",? /(?:root|rustc|home)/\S+", text)[0]
    return text[:160]


def backend_error(exc: BaseException, home: Path, doing: str) -> PixfindError | None:
    """The typed error for an OSError or a LanceDB/Lance failure, or None for anything else
    (a bug in pixfind stays a traceback)."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    lance = isinstance(exc, RuntimeError) and "lance error" in text.lower()
    if isinstance(exc, ValueError) and "was not found" in text:
        lance = True
    if not (lance or isinstance(exc, OSError)):
        return None
    from .location import location_of

    where = location_of(Path(home))
    if where.remote:  # not a disk: a URI, credentials or the network
        return UnusableIndex(
            f"the index at {where.uri} can't be used ({_short(exc)}, while {doing}); check the "
            "URI, the credentials (AWS_* variables or --storage-option) and the network"
        )
    if code == errno.ENOSPC or "No space left" in text:
        return DiskFull(
            f"no space left on the device holding {home} while {doing}; free some space and "
            "run the same command again (everything committed before is kept)"
        )
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or (
        "Read-only file system" in text or "Permission denied" in text
    ):
        return ReadOnlyIndex(
            f"can't write to the index at {home} while {doing} ({_short(exc)}); indexing needs "
            "write access to it (searching does not)"
        )
    return DamagedIndex(
        f"the index at {home} is damaged: {_short(exc)} (while {doing}); run "
        f"`pixfind --index {home} doctor` to check it and recover its newest intact version"
    )


@contextlib.contextmanager
def backend_errors(home: Path, doing: str):
    """Turn LanceDB/Lance and OS failures into one clear, typed error (see backend_error)."""
    try:
        yield
    except PixfindError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        typed = backend_error(exc, home, doing)
        if typed is None:
            raise
        raise typed from exc
