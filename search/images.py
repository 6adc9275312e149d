"""Decoding image files into upright RGB PIL images: shared by the indexer and image queries."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadQuery
from .location import is_uri
from .metadata import ImageMeta, read_metadata
from .raw import (
    RAW_EXTENSIONS,
    RawError,
    raw_available,
    raw_kind,
    read_raw,
    sniff_raw,
    tiff_camera,
    upright,
)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jpe", ".jfif"}
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
AVIF_EXTENSIONS = frozenset({".avif"})
DEFAULT_MAX_MEGAPIXELS = 150.0
DRAFT_MIN_SIDE = 448  # a reduced JPEG decode keeps at least this short side (2x 224)
MAX_ASPECT = 8.0  # longer/shorter side beyond which the long side is centre-cropped first


def heif_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


_heif_registered: list[bool] = []


def register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (pillow-heif), once per process."""
    if not _heif_registered:
        try:
            import pillow_heif
        except ImportError:
            _heif_registered.append(False)
        else:
            pillow_heif.register_heif_opener()
            _heif_registered.append(True)
    return _heif_registered[0]


def avif_available() -> bool:
    """Pillow reads AVIF itself from 11.3 on (its wheels carry libavif)."""
    from PIL import features

    return bool(features.check("avif"))


def supported_extensions() -> frozenset[str]:
    exts = IMAGE_EXTENSIONS
    if heif_available():
        exts |= HEIF_EXTENSIONS
    if avif_available():
        exts |= AVIF_EXTENSIONS
    if raw_available():
        exts |= RAW_EXTENSIONS
    return exts


class DecodeError(Exception):
    """A file that can't be turned into an image; the message is the reason shown to users."""


@dataclass
class Decoded:
    image: Image.Image  # upright RGB, possibly draft-reduced
    width: int  # original pixel size, after EXIF rotation
    height: int
    content_hash: str
    meta: ImageMeta = field(default_factory=ImageMeta)
    file_type: str = ""  # Pillow format, lower case: jpeg, png, webp, gif...
    mtime: float | None = None  # stat of the bytes that were read (decode_file only)
    size: int | None = None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparent pixels become white rather than black."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        canvas = Image.new("RGB", img.size, (255, 255, 255))
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit greyscale: v / 257 (65535 -> 255) keeps the file's own levels, where Pillow's
        # convert would clip everything above 255 to white.
        grey = np.asarray(img.convert("I") if img.mode != "I" else img, dtype=np.int64)
        img = Image.fromarray(((np.clip(grey, 0, 65535) + 128) // 257).astype(np.uint8), "L")
    elif img.mode == "F":  # float: no standard range, so stretch what is there to 0..255
        lo, hi = img.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        img = img.point(lambda v: (v - lo) * scale).convert("L")
    return img.convert("RGB")


def draft_scale(width: int, height: int, model_size: int | None) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) to decode at: the largest that keeps the short side
    at least twice the model's input size (and DRAFT_MIN_SIDE), so a real smoothing resize
    still follows. Small models (64 px) would otherwise see ordinary photos reduced, for
    no speed worth having and visibly other vectors."""
    least = max(2 * model_size, DRAFT_MIN_SIDE) if model_size else 0
    scale = 8
    while scale > 1 and (not model_size or min(width, height) < least * scale):
        scale //= 2
    return scale


def transpose_box(
    box: tuple[float, float, float, float], size: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """Where draft's region (top-left of the stored reduced image) lies after EXIF transpose."""
    x0, y0, x1, y1 = box
    w, h = size
    return {
        2: (w - x1, y0, w - x0, y1),
        3: (w - x1, h - y1, w - x0, h - y0),
        4: (x0, h - y1, x1, h - y0),
        5: (y0, x0, y1, x1),
        6: (h - y1, x0, h - y0, x1),
        7: (h - y1, w - x1, h - y0, w - x0),
        8: (y0, w - x1, y1, w - x0),
    }.get(orientation, box)


def unstretch(
    img: Image.Image,
    box: tuple[float, float, float, float],
    full: tuple[int, int],
    model_size: int,
) -> Image.Image:
    """Resample a reduced JPEG so that its pixels cover exactly the whole picture.

    The DCT-reduced image of a 4001x3001 photo at 1/8 is 501x376 pixels but only the region
    ``box`` (500.125 x 375.125) is picture; resizing all of it would stretch the picture by up
    to half a pixel. The result keeps about the reduced size, in the picture's proportions."""
    long, short = max(full), min(full)
    target = _model_sizes(long, short, model_size)
    # the size nearest the picture's proportions that leaves the model's own resize (shortest
    # or longest side) with the same output size as the full picture would
    sizes = [
        (n, m)
        for m in range(min(img.size) - 2, min(img.size) + 1)
        for n in range(round(m * long / short) - 2, round(m * long / short) + 3)
    ]
    matching = [nm for nm in sizes if _model_sizes(*nm, model_size) == target] or sizes
    n, m = min(matching, key=lambda nm: (abs(nm[0] / nm[1] - long / short), -nm[1]))
    size = (n, m) if img.width >= img.height else (m, n)
    return img.resize(size, Image.Resampling.BICUBIC, box=box)


def _model_sizes(long: int, short: int, size: int) -> tuple[int, int]:
    """The resized long side of open_clip's "shortest" mode (torchvision Resize) and the
    short side of its "longest" mode (ResizeKeepRatio) for a long x short picture."""
    return int(size * long / short), round(short / (long / size))


def limit_aspect(img: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Centre-crop the long side of extreme panoramas/strips: the model centre-crops a square
    anyway, and resizing a 1x20000 strip's short side to 224 would need gigabytes."""
    w, h = img.size
    if min(w, h) == 0 or max(w, h) / min(w, h) <= max_aspect:
        return img
    if w > h:
        keep = int(h * max_aspect)
        left = (w - keep) // 2
        return img.crop((left, 0, left + keep, h))
    keep = int(w * max_aspect)
    top = (h - keep) // 2
    return img.crop((0, top, w, top + keep))


def decode_bytes(
    data: bytes,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    raw: str | None = None,
) -> Decoded:
    """Decode bytes into an upright RGB image. ``draft_size`` lets JPEGs decode at reduced
    scale (DCT scaling), never below that size on the short side: much faster for phone photos.
    ``raw``: the RAW kind the file's name says (``"nef"``); RAWs with a telling header are
    recognised without it."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    kind = raw or sniff_raw(data)
    if kind:
        return _decode_raw(data, kind, draft_size, max_megapixels)
    register_heif()
    if Image.MAX_IMAGE_PIXELS and max_megapixels * 1e6 > Image.MAX_IMAGE_PIXELS:
        # Pillow's own guard fires at open (2x its limit): follow a cap the user raised.
        Image.MAX_IMAGE_PIXELS = int(max_megapixels * 1e6)
    try:
        with warnings.catch_warnings():
            # Our megapixel cap below replaces Pillow's warning (it fires at 89 MP).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # plugins warn on hostile files
            img = Image.open(io.BytesIO(data))
            file_type = (img.format or "").lower()
            width, height = img.size
            if width * height > max_megapixels * 1e6:
                raise DecodeError(
                    f"too large: {width}x{height} = {width * height / 1e6:.0f} MP "
                    f"> --max-megapixels {max_megapixels:g}"
                )
            box = None  # the part of a reduced JPEG that covers the picture (draft's region)
            scale = draft_scale(width, height, draft_size) if img.format == "JPEG" else 1
            if scale > 1:
                drafted = img.draft("RGB", (width // scale, height // scale))
                box = drafted[1] if drafted and img.size != (width, height) else None
            img.seek(0)  # first frame of animations
            # load before reading metadata: some plugins (PNG) load lazily inside getexif(),
            # where a decoding error would be swallowed and a half image kept
            img.load()
            meta = read_metadata(img)
            try:
                orientation = int(img.getexif().get(0x0112, 1))
            except Exception:  # a broken EXIF block must not lose the picture
                orientation = 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if orientation in range(2, 9):
                with contextlib.suppress(Exception):  # bad EXIF: keep the image as stored
                    upright = ImageOps.exif_transpose(img)
                    if upright is not None and upright is not img:
                        box = box and transpose_box(box, img.size, orientation)
                        img = upright
            img = to_rgb(img)
            if box is not None and draft_size:
                img = unstretch(img, box, (width, height), draft_size)
            img = limit_aspect(img)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too large (decompression bomb guard): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not an image (unrecognised format)") from exc
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise DecodeError(f"truncated image: {exc}") from exc
        raise DecodeError(f"corrupt image: {exc}") from exc
    except (SyntaxError, ValueError, EOFError, zlib.error) as exc:
        raise DecodeError(f"corrupt image: {exc}") from exc
    except Exception as exc:  # Pillow plugins raise many types on hostile files
        raise DecodeError(f"undecodable image: {type(exc).__name__}: {exc}") from exc
    return Decoded(img, width, height, content_hash(data), meta, file_type)


def _decode_raw(data: bytes, kind: str, draft_size: int | None, max_megapixels: float) -> Decoded:
    """A RAW through its embedded JPEG (decoded like any JPEG), bitmap or half-size
    development (search/raw.py); size, date and camera are the RAW's own."""
    if not raw_available():
        raise DecodeError(f"{kind.upper()} RAW files need rawpy (pip install rawpy)")
    try:
        picture = read_raw(data, max_megapixels)
    except RawError as exc:
        raise DecodeError(f"{kind.upper()}: {exc}") from exc
    if picture.jpeg is not None:
        preview = decode_bytes(picture.jpeg, draft_size, max_megapixels)
        img, meta = preview.image, preview.meta
    else:
        img, meta = limit_aspect(to_rgb(picture.image)), ImageMeta()
    img = upright(img, picture.orientation)
    meta.taken_at = meta.taken_at or picture.taken_at
    make, model = tiff_camera(data)  # the RAW's own tags (LibRaw's preview EXIF shortens them)
    if make or model:
        meta.camera_make, meta.camera_model = make, model
    return Decoded(img, picture.width, picture.height, content_hash(data), meta, kind)


def decode_file(
    path: str | Path,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> Decoded:
    data, st = read_photo(path)
    decoded = decode_bytes(data, draft_size, max_megapixels, raw_kind(path))
    decoded.mtime, decoded.size = st.st_mtime, st.st_size
    return decoded


def read_photo(path: str | Path, max_bytes: int = 1 << 30):
    """``read_stable`` for a file, or one GET for an object on s3:// (search/photobucket.py):
    (bytes, a stat with ``st_mtime`` and ``st_size``), DecodeError where it can't be read."""
    if is_uri(path):
        from .photobucket import read_object

        return read_object(path, max_bytes)
    return read_stable(path, max_bytes)


def read_stable(path: str | Path, max_bytes: int = 1 << 30) -> tuple[bytes, os.stat_result]:
    """The file's bytes and the stat they belong to; a file rewritten while it is being read
    is refused rather than stored with a size/mtime that doesn't match its vector. A file over
    ``max_bytes`` (1 GiB: 150 MP of 16-bit RGBA TIFF fits) is refused from its stat, before a
    byte is read, and the read stops there too if the file grows meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError as exc:
        raise DecodeError("permission denied") from exc
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise DecodeError("broken symlink") from exc
        raise DecodeError("file vanished during the run") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DecodeError("symlink loop") from exc
        raise DecodeError(f"unreadable: {exc.strerror or exc}") from exc
    too_big = DecodeError(f"file too large (over {max_bytes >> 20} MiB)")
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise DecodeError("not a regular file")
        if before.st_size > max_bytes:
            raise too_big
        chunks, total = [], 0
        while total <= max_bytes and (chunk := os.read(fd, min(1 << 24, max_bytes + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise too_big
        data = b"".join(chunks)
        del chunks
        after = os.fstat(fd)
    except OSError as exc:
        raise DecodeError(f"unreadable: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size) or len(
        data
    ) != after.st_size:
        raise DecodeError("file changed while it was being read; it is indexed on the next run")
    return data, after


def load_query_image(path: str | Path, draft_size: int | None = None) -> Decoded:
    """Decode an image given as a query (a file, or an http(s) URL: downloaded into memory,
    see search/remote.py); failures are BadQuery for the CLI/API."""
    from .remote import fetch_image, is_url

    try:
        if isinstance(path, str) and is_url(path):
            return decode_bytes(fetch_image(path), draft_size)
        return decode_file(path, draft_size)
    except DecodeError as exc:
        raise BadQuery(f"can't use {path} as a query image: {exc}") from exc
