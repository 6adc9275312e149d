"""Decoding image files into upright RGB PIL images: shared by the indexer and image queries."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadQuery

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jpe", ".jfif"}
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
DEFAULT_MAX_MEGAPIXELS = 200.0


def heif_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def register_heif() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def supported_extensions() -> frozenset[str]:
    return IMAGE_EXTENSIONS | HEIF_EXTENSIONS if heif_available() else IMAGE_EXTENSIONS


class DecodeError(Exception):
    """A file that can't be turned into an image; the message is the reason shown to users."""


@dataclass
class Decoded:
    image: Image.Image  # upright RGB, possibly draft-reduced
    width: int  # original pixel size, after EXIF rotation
    height: int
    content_hash: str


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
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/float greyscale: scale to 8 bits instead of clipping to white.
        img = img.convert("I") if img.mode.startswith("I;16") else img
        lo, hi = img.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        img = img.point(lambda v: (v - lo) * scale).convert("L")
    return img.convert("RGB")


def decode_bytes(
    data: bytes,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> Decoded:
    """Decode bytes into an upright RGB image. ``draft_size`` lets JPEGs decode at reduced
    scale (DCT scaling), never below that size on the short side: much faster for phone photos."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_megapixels * 1e6:
                raise DecodeError(
                    f"too large: {width}x{height} = {width * height / 1e6:.0f} MP "
                    f"> --max-megapixels {max_megapixels:g}"
                )
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if draft_size and img.format == "JPEG":
                scale = min(img.size) / draft_size
                if scale >= 2:
                    img.draft("RGB", (int(img.size[0] / scale), int(img.size[1] / scale)))
            img.seek(0)  # first frame of animations
            img.load()
            img = ImageOps.exif_transpose(img) or img
            img = to_rgb(img)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not an image (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"corrupt image: {exc}") from exc
    except Exception as exc:  # Pillow plugins raise many types on hostile files
        raise DecodeError(f"undecodable image: {type(exc).__name__}: {exc}") from exc
    return Decoded(img, width, height, content_hash(data))


def decode_file(
    path: str | Path,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> Decoded:
    try:
        data = Path(path).read_bytes()
    except PermissionError as exc:
        raise DecodeError("permission denied") from exc
    except FileNotFoundError as exc:
        raise DecodeError("file vanished during the run") from exc
    except OSError as exc:
        raise DecodeError(f"unreadable: {exc.strerror or exc}") from exc
    return decode_bytes(data, draft_size, max_megapixels)


def load_query_image(path: str | Path, draft_size: int | None = None) -> Decoded:
    """Decode an image given as a query; failures are BadQuery for the CLI/API."""
    try:
        return decode_file(path, draft_size)
    except DecodeError as exc:
        raise BadQuery(f"can't use {path} as a query image: {exc}") from exc
