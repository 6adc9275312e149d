"""What an image file says about itself: capture date, camera, GPS and embedded captions.

Read from EXIF (DateTimeOriginal, Make, Model, GPS, ImageDescription), XMP (dc:description)
and IPTC (2:120 caption). Every reader is defensive: hostile metadata yields nothing, never an
error, because metadata must not stop an image from being indexed.
"""

from __future__ import annotations

import html
import re
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


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
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


def _xmp_descriptions(xmp: bytes | str) -> list[str]:
    text = xmp.decode("utf-8", errors="replace") if isinstance(xmp, bytes) else str(xmp)
    found: list[str] = []
    for block in re.findall(r"<dc:description[^>]*>(.*?)</dc:description>", text, re.S):
        items = re.findall(r"<rdf:li[^>]*>(.*?)</rdf:li>", block, re.S) or [block]
        found += [html.unescape(re.sub(r"<[^>]+>", "", i)).strip() for i in items]
    found += [html.unescape(v) for v in re.findall(r'dc:description="([^"]*)"', text)]
    return [f for f in found if f]


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
    meta.captions = list(dict.fromkeys(c for c in captions if c.lower() not in _JUNK_DESCRIPTIONS))
    return meta
