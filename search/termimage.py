"""Escape sequences that draw a picture in a terminal: kitty's graphics protocol, iTerm2's
inline images, and DEC sixel.

Pure functions from a PIL image to bytes; choosing the protocol and laying out search results
is search/preview.py's job. Sixel is encoded here (about 50 lines) because no well-kept
package writes it: ``libsixel-python`` and ``pysixel`` have been unmaintained since 2015-2018
and need the C libsixel. The image is quantized to a palette of at most ``SIXEL_COLOURS``
colour registers (an xterm started as a VT340 has 16 unless told more: see README).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

KITTY_CHUNK = 4096  # base64 bytes per APC escape: the protocol's limit
SIXEL_COLOURS = 256
ESC = b"\x1b"
ST = b"\x1b\\"  # string terminator


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def kitty(img: Image.Image) -> bytes:
    """kitty graphics protocol: transmit-and-display a PNG (a=T, f=100), in chunks of 4096
    base64 bytes; q=2 asks the terminal for no reply, which would land on our stdin."""
    data = base64.standard_b64encode(png_bytes(img))
    chunks = [data[i : i + KITTY_CHUNK] for i in range(0, len(data), KITTY_CHUNK)] or [b""]
    parts = []
    for i, chunk in enumerate(chunks):
        more = b"1" if i < len(chunks) - 1 else b"0"
        keys = b"a=T,f=100,q=2,m=" + more if i == 0 else b"m=" + more
        parts.append(ESC + b"_G" + keys + b";" + chunk + ST)
    return b"".join(parts)


def iterm(img: Image.Image, name: str = "") -> bytes:
    """iTerm2 inline image (OSC 1337 File=), as a PNG shown at its own pixel size."""
    data = png_bytes(img)
    label = base64.standard_b64encode(name.encode("utf-8", "surrogateescape")).decode()
    args = f"name={label};size={len(data)};width={img.width}px;height={img.height}px;inline=1"
    return b"\x1b]1337;File=" + args.encode() + b":" + base64.standard_b64encode(data) + b"\x07"


def sixel(img: Image.Image, colours: int = SIXEL_COLOURS) -> bytes:
    """DEC sixel: a palette of ``colours`` registers, then bands of six pixel rows, each band
    one pass per colour present (``#n`` picks it, ``$`` returns to the band's start, ``-`` goes
    to the next band), runs of one sixel written ``!count`` (run-length)."""
    img = img.convert("RGB")
    quantized = img.quantize(colours, dither=Image.Dither.NONE)
    palette = np.array(quantized.getpalette()[: 3 * colours], dtype=np.int64).reshape(-1, 3)
    pixels = np.asarray(quantized, dtype=np.int64)
    height, width = pixels.shape
    used = np.unique(pixels)
    registers = np.zeros(int(used.max()) + 1, dtype=np.int64)
    registers[used] = np.arange(len(used))  # registers 0..n-1: fits a terminal with fewer
    pixels = registers[pixels]
    # "1;1: pixels of colour 0 keep the background; raster attributes: 1:1 aspect, W x H
    out = [b'\x1bP0;1;0q"1;1;%d;%d' % (width, height)]
    for register, index in enumerate(used.tolist()):
        r, g, b = (palette[index] * 100 + 127) // 255  # sixel colours are percentages
        out.append(b"#%d;2;%d;%d;%d" % (register, r, g, b))
    weights = (1 << np.arange(6, dtype=np.int64))[:, None]
    for top in range(0, height, 6):
        band = pixels[top : top + 6]
        passes = []
        for index in np.unique(band):
            bits = ((band == index) * weights[: len(band)]).sum(axis=0)
            last = int(np.flatnonzero(bits).max()) + 1  # trailing empty sixels are implied
            passes.append(b"#%d" % index + _runs(bits[:last]))
        out.append(b"$".join(passes) + b"-")
    out.append(ST)
    return b"".join(out)


def _runs(bits: np.ndarray) -> bytes:
    """Sixel characters (63 + six bits) with runs over three written as ``!count char``."""
    starts = np.flatnonzero(np.diff(bits, prepend=-1))
    ends = np.append(starts[1:], len(bits))
    parts = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        char = bytes([63 + int(bits[start])])
        count = end - start
        parts.append(b"!%d%s" % (count, char) if count > 3 else char * count)
    return b"".join(parts)
