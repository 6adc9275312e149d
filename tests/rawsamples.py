"""Small synthetic RAW files for tests: DNGs (a TIFF with a preview in its first directory and
a Bayer CFA image in a SubIFD), written with tifffile, that LibRaw (rawpy) reads like a
camera's. A few KB each: generated, never committed."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

TAKEN = "2021:06:05 10:11:12"
MAKE, MODEL = "Pixcam", "Pixcam One"


def halves(size: tuple[int, int], left=(200, 30, 30), right=(30, 30, 200)) -> Image.Image:
    """Left half one colour, right half another: shows which way a picture was turned."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def dng(
    preview: Image.Image | None,
    raw_size: tuple[int, int] = (64, 48),
    orientation: int = 1,
    jpeg: bool = True,
) -> bytes:
    """A DNG of ``raw_size`` (W, H) sensor pixels with ``preview`` as its embedded JPEG
    (``jpeg``) or uncompressed RGB bitmap; EXIF orientation, date, make and model in IFD0."""
    import tifffile

    width, height = raw_size
    cfa = np.random.default_rng(0).integers(500, 3500, (height, width)).astype(np.uint16)
    preview = preview or Image.new("RGB", (8, 6), (128, 128, 128))
    pixels = np.asarray(preview.convert("RGB"))
    encoded = b""
    if jpeg:  # written as raw strip bytes, then marked JPEG: tifffile needs no codec for that
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=95)
        encoded = buf.getvalue()
        room = pixels.size
        assert len(encoded) <= room, "preview JPEG larger than its strip: use a bigger preview"
        pixels = np.frombuffer(encoded + bytes(room - len(encoded)), np.uint8)
        pixels = pixels.reshape(preview.height, preview.width, 3)
    out = io.BytesIO()
    ifd0_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, f"{MAKE} {MODEL}", True),  # UniqueCameraModel
        (0x0112, "H", 1, orientation, True),
        (0x0132, "s", 0, TAKEN, True),  # DateTime
        (0x010F, "s", 0, MAKE, True),
        (0x0110, "s", 0, MODEL, True),
    ]
    with tifffile.TiffWriter(out) as tif:
        tif.write(
            pixels,
            photometric="rgb",
            subfiletype=1,
            subifds=1,
            rowsperstrip=preview.height,
            extratags=ifd0_tags,
        )
        tif.write(
            cfa,
            photometric=32803,  # CFA
            subfiletype=0,
            extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)],
        )
    data = bytearray(out.getvalue())
    if jpeg:
        _set_ifd0(data, {259: 7, 262: 6})  # Compression JPEG, YCbCr
    return bytes(data)


def _set_ifd0(data: bytearray, values: dict[int, int]) -> None:
    (offset,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, offset)
    for i in range(count):
        entry = offset + 2 + 12 * i
        (tag,) = struct.unpack_from("<H", data, entry)
        if tag in values:
            struct.pack_into("<H", data, entry + 8, values[tag])


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
