"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2) through LibRaw (``rawpy``).

A RAW is read through the JPEG preview the camera embedded in it (the camera's own rendering,
usually full size or near it, and a JPEG decodes fast, at reduced DCT scale), else through an
embedded bitmap preview, else it is developed at half size. The picture's orientation and
capture date come from LibRaw, which reads them from the RAW's own metadata; search/images.py
turns the result into a ``Decoded`` like any other file's.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
# files a camera writes beside a RAW as its rendering of the same shot
RENDERED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".heic", ".heif"})
MIN_PREVIEW_SIDE = 448  # a smaller embedded preview is not enough for the model: develop instead
# LibRaw's ``flip`` -> EXIF orientation
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
_TAG_DNG_VERSION = 50706


class RawError(Exception):
    """A RAW file LibRaw can't read; the message is the reason shown to users."""


@dataclass
class RawPicture:
    """What a RAW gives: either its embedded JPEG (to be decoded as a JPEG) or pixels."""

    width: int  # the RAW's own picture size, upright
    height: int
    orientation: int  # EXIF orientation still to apply to ``jpeg`` / ``image`` (1: upright)
    taken_at: float | None
    jpeg: bytes | None = None
    image: Image.Image | None = None


def raw_available() -> bool:
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


def raw_kind(path: str | os.PathLike) -> str | None:
    """``"cr2"`` for ``x.CR2``...: the RAW kind a file name says, or None."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    return ext[1:] if ext in RAW_EXTENSIONS else None


def sniff_raw(data: bytes) -> str | None:
    """The RAW kind of bytes whose header says so unambiguously (CR2, CR3, RAF, ORF, RW2, and
    DNG: a TIFF whose first directory has a DNGVersion tag); None for anything else. NEF and
    ARW are plain TIFFs inside and are known by their file names only."""
    head = data[:16]
    if head.startswith(b"II*\x00") and head[8:10] == b"CR":
        return "cr2"
    if head[4:12] == b"ftypcrx ":
        return "cr3"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "raf"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "orf"
    if head[:4] == b"IIU\x00":
        return "rw2"
    if head[:4] in (b"II*\x00", b"MM\x00*") and _TAG_DNG_VERSION in _ifd0_tags(data):
        return "dng"
    return None


def _ifd0_tags(data: bytes) -> set[int]:
    try:
        order = "<" if data[:2] == b"II" else ">"
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        return {
            struct.unpack_from(order + "H", data, offset + 2 + 12 * i)[0]
            for i in range(min(count, 512))
        }
    except struct.error:
        return set()


def read_raw(data: bytes, max_megapixels: float) -> RawPicture:
    """Open a RAW in memory and take its picture (see the module's docstring)."""
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            width, height = sizes.width, sizes.height
            if width * height > max_megapixels * 1e6:
                raise RawError(
                    f"too large: {width}x{height} = {width * height / 1e6:.0f} MP "
                    f"> --max-megapixels {max_megapixels:g}"
                )
            orientation = _FLIP_TO_ORIENTATION.get(sizes.flip, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            picture = RawPicture(width, height, orientation, _timestamp(raw))
            least = min(MIN_PREVIEW_SIDE, width, height)
            _embedded_preview(raw, picture, least)
            if picture.jpeg is None and picture.image is None:
                # LibRaw applies the orientation itself when it develops
                developed = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
                picture.image, picture.orientation = Image.fromarray(developed), 1
            return picture
    except RawError:
        raise
    except rawpy.LibRawError as exc:
        raise RawError(f"unreadable RAW: {type(exc).__name__}: {exc}") from exc
    except (MemoryError, ValueError) as exc:
        raise RawError(f"unreadable RAW: {exc}") from exc


def _embedded_preview(raw, picture: RawPicture, least: int) -> None:
    """Fill ``picture.jpeg`` or ``.image`` from the embedded preview when it is big enough."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # none, or one in a format LibRaw can't hand over
        return
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            preview = Image.open(io.BytesIO(thumb.data))
            size = preview.size
            own = preview.getexif().get(0x0112)
        except Exception:
            return
        if min(size) >= least:
            picture.jpeg = thumb.data
            if own is not None:  # the preview carries its own orientation: decoding applies it
                picture.orientation = 1
    elif thumb.format == rawpy.ThumbFormat.BITMAP and min(thumb.data.shape[:2]) >= least:
        picture.image = Image.fromarray(thumb.data).convert("RGB")


def _timestamp(raw) -> float | None:
    """The capture time LibRaw read (local time, like EXIF's), as POSIX seconds."""
    try:
        stamp = raw.other.timestamp
        seconds = stamp.timestamp() if stamp is not None else None
    except (AttributeError, OSError, OverflowError, ValueError):
        return None
    return seconds if seconds and seconds > 0 else None


def tiff_camera(data: bytes) -> tuple[str | None, str | None]:
    """(make, model) from a TIFF-based RAW's first directory (DNG, CR2, NEF, ARW), else Nones."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None, None
    try:
        exif = Image.Exif()
        exif.load(data)
        make, model = exif.get(0x010F), exif.get(0x0110)
    except Exception:
        return None, None
    return _clean(make), _clean(model)


def _clean(value) -> str | None:
    return (value.replace("\x00", "").strip()[:200] or None) if isinstance(value, str) else None


TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(img: Image.Image, orientation: int) -> Image.Image:
    method = TRANSPOSE.get(orientation)
    return img.transpose(method) if method is not None else img


def raw_siblings(paths: Sequence[str]) -> dict[str, str]:
    """{path: its RAW sibling on disk} for the JPEG/HEIF ``paths`` that have one (the other
    half of a pair the indexer stored once); one folder listing per folder, none if no path
    is a JPEG/HEIF."""
    listings: dict[str, dict[str, str]] = {}
    found = {}
    for path in paths:
        folder, name = os.path.split(path)
        stem, ext = os.path.splitext(name)
        if ext.lower() not in RENDERED_EXTENSIONS:
            continue
        if folder not in listings:
            listings[folder] = _raws_in(folder)
        raw = listings[folder].get(stem.lower())
        if raw:
            found[path] = os.path.join(folder, raw)
    return found


def _raws_in(folder: str) -> dict[str, str]:
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return {}
    raws = {}
    for name in sorted(names):
        stem, ext = os.path.splitext(name)
        if ext.lower() in RAW_EXTENSIONS:
            raws.setdefault(stem.lower(), name)
    return raws
