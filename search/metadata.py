"""What an image file says about itself: capture date, camera, GPS and embedded captions.

Read from EXIF (DateTimeOriginal, Make, Model, GPS, ImageDescription), XMP (dc:description)
and IPTC (2:120 caption). Every reader is defensive: hostile metadata yields nothing, never an
error, because metadata must not stop an image from being indexed.

Every reader is also bounded: the XMP packet is scanned once, left to right (no regular
expression that backtracks, so time grows linearly with the packet), only its first
``MAX_XMP_CHARS`` characters are looked at, and every field kept is cut to ``MAX_FIELD_CHARS``
(at most ``MAX_CAPTIONS`` captions per image).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime

from PIL import Image

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
TAG_DESCRIPTION = 0x010E
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_DATETIME = 0x0132
TAG_DATETIME_ORIGINAL = 0x9003
TAG_ORIENTATION = 0x0112

MAX_XMP_CHARS = 2 * 1024 * 1024  # an XMP packet beyond this is not read (real ones: < 64 KB)
MAX_FIELD_CHARS = 2000  # any text field kept (caption, camera make/model, date)
MAX_CAPTIONS = 16  # embedded captions kept per image
MAX_XMP_BLOCKS = 64  # dc:description blocks / rdf:li items looked at

# Placeholders cameras write into ImageDescription: not captions.
_JUNK_DESCRIPTIONS = {"", "default", "olympus digital camera", "sony dsc", "image", "picture"}


@dataclass
class ImageMeta:
    taken_at: float | None = None  # POSIX seconds (EXIF local time read as local time)
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    captions: list[str] = field(default_factory=list)  # embedded: EXIF, XMP, IPTC (deduplicated)


def _text(value, limit: int = MAX_FIELD_CHARS) -> str | None:
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value[: limit * 4].replace("\x00", "").strip()[:limit].strip()
    return value or None


def parse_exif_datetime(value) -> float | None:
    text = _text(value)
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            stamp = datetime.strptime(text[: len(datetime(2000, 1, 1).strftime(fmt))], fmt)
        except ValueError:
            continue
        if stamp.year < 1800:
            return None
        return stamp.timestamp()
    return None


def _rational(value) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return float(value[0]) / float(value[1])
    return float(value)


def _gps_degrees(dms, ref) -> float | None:
    try:
        d, m, s = (_rational(x) for x in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    deg = d + m / 60 + s / 3600
    ref = _text(ref) or ""
    return -deg if ref.upper() in ("S", "W") else deg


def _elements(text: str, tag: str, limit: int = MAX_XMP_BLOCKS) -> list[str]:
    """The contents of ``<tag ...>...</tag>`` elements, in one left-to-right pass.

    Each search starts where the previous one stopped, so a packet of a million opening tags
    and no closing one costs one scan, not one per tag. Nested same-name tags are not
    supported (XMP does not nest them)."""
    found: list[str] = []
    opening, closing = f"<{tag}", f"</{tag}>"
    pos = 0
    while len(found) < limit:
        start = text.find(opening, pos)
        if start < 0:
            break
        after = start + len(opening)
        if after < len(text) and text[after] not in " \t\r\n/>":
            pos = after  # <dc:descriptionFoo>: another tag
            continue
        gt = text.find(">", after)
        if gt < 0:
            break
        if text[gt - 1] == "/":  # <tag/>: empty
            pos = gt + 1
            continue
        end = text.find(closing, gt + 1)
        if end < 0:
            break  # no closing tag after this one: none of the later openings closes either
        found.append(text[gt + 1 : end])
        pos = end + len(closing)
    return found


def _strip_tags(text: str) -> str:
    """Text without its markup, in one pass (``<`` with no ``>`` is kept as text)."""
    out: list[str] = []
    pos = 0
    while True:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        gt = text.find(">", lt + 1)
        if gt < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        pos = gt + 1
    return "".join(out)


def _attributes(text: str, name: str, limit: int = MAX_XMP_BLOCKS) -> list[str]:
    """Values of ``name="..."`` attributes, in one pass."""
    found: list[str] = []
    key = f'{name}="'
    pos = 0
    while len(found) < limit:
        start = text.find(key, pos)
        if start < 0:
            break
        end = text.find('"', start + len(key))
        if end < 0:
            break
        found.append(text[start + len(key) : end])
        pos = end + 1
    return found


def _xmp_descriptions(xmp: bytes | str) -> list[str]:
    """dc:description values of an XMP packet (its first MAX_XMP_CHARS characters)."""
    if isinstance(xmp, bytes):
        text = xmp[: MAX_XMP_CHARS * 4].decode("utf-8", errors="replace")
    else:
        text = str(xmp)
    text = text[:MAX_XMP_CHARS]
    found: list[str] = []
    for block in _elements(text, "dc:description"):
        items = _elements(block, "rdf:li") or [block]
        found += [html.unescape(_strip_tags(i)) for i in items]
    found += [html.unescape(v) for v in _attributes(text, "dc:description")]
    kept = (_text(f) for f in found)
    return [f for f in kept if f][:MAX_CAPTIONS]


def _xmp_packet(img: Image.Image) -> bytes | str | None:
    info = img.info
    for key in ("xmp", "XML:com.adobe.xmp"):
        if info.get(key):
            return info[key]
    return None


def _iptc_caption(img: Image.Image) -> str | None:
    try:
        from PIL import IptcImagePlugin

        iptc = IptcImagePlugin.getiptcinfo(img) or {}
    except Exception:
        return None
    value = iptc.get((2, 120))
    if isinstance(value, list):
        value = value[0] if value else None
    return _text(value)


def read_metadata(img: Image.Image) -> ImageMeta:
    """Metadata of an opened (not necessarily loaded) image; never raises."""
    meta = ImageMeta()
    captions: list[str] = []
    try:
        exif = img.getexif()
    except Exception:
        exif = None
    if exif:
        try:
            sub = exif.get_ifd(EXIF_IFD)
        except Exception:
            sub = {}
        meta.taken_at = parse_exif_datetime(sub.get(TAG_DATETIME_ORIGINAL)) or parse_exif_datetime(
            exif.get(TAG_DATETIME)
        )
        meta.camera_make = _text(exif.get(TAG_MAKE))
        meta.camera_model = _text(exif.get(TAG_MODEL))
        desc = _text(exif.get(TAG_DESCRIPTION))
        if desc and desc.lower() not in _JUNK_DESCRIPTIONS:
            captions.append(desc)
        try:
            gps = exif.get_ifd(GPS_IFD)
        except Exception:
            gps = {}
        if gps and 2 in gps and 4 in gps:
            meta.gps_lat = _gps_degrees(gps[2], gps.get(1))
            meta.gps_lon = _gps_degrees(gps[4], gps.get(3))
    try:
        packet = _xmp_packet(img)
        if packet:
            captions += _xmp_descriptions(packet)
    except Exception:
        pass
    iptc = _iptc_caption(img)
    if iptc:
        captions.append(iptc)
    meta.captions = list(dict.fromkeys(c for c in captions if c.lower() not in _JUNK_DESCRIPTIONS))[
        :MAX_CAPTIONS
    ]
    return meta
