"""A corpus of hostile and unusual image files: name -> expected outcome.

``None``: must be indexed (odd but valid); a string: must be skipped with a reason containing it.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

MAX_MP = 10.0  # --max-megapixels the corpus is indexed with


def _picture(size=(96, 64), seed=0) -> Image.Image:
    img = Image.new("RGB", size, ((seed * 37) % 256, 90, 160))
    draw = ImageDraw.Draw(img)
    draw.rectangle((5, 5, size[0] // 2, size[1] // 2), fill=(250, 220, 10))
    draw.ellipse((size[0] // 2, size[1] // 3, size[0] - 4, size[1] - 4), fill=(20, 30, 200))
    return img


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims an enormous size (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def rotated_pair(folder: Path) -> tuple[Path, Path]:
    """A JPEG stored sideways with EXIF orientation 6, and the same picture stored upright."""
    upright = _picture((120, 80), seed=5)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what orientation 6 undoes
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = folder / "rotated_exif6.jpg"
    rotated.write_bytes(_bytes(sideways, "JPEG", quality=95, exif=exif.tobytes()))
    reference = folder.parent / "reference_upright.jpg"
    upright_again = Image.open(io.BytesIO(_bytes(sideways, "JPEG", quality=95)))
    upright_again.transpose(Image.Transpose.ROTATE_270).save(reference, "JPEG", quality=95)
    return rotated, reference


def build(folder: Path) -> dict[str, str | None]:
    """Write the corpus into ``folder``; return name -> expected (None or reason substring)."""
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}

    def put(name: str, data: bytes, outcome: str | None) -> None:
        (folder / name).write_bytes(data)
        expect[name] = outcome

    rng = random.Random(5)
    jpeg = _bytes(_picture(), "JPEG", quality=90)
    png = _bytes(_picture(seed=1), "PNG")
    # --- skipped, with a reason ------------------------------------------------------
    put("empty.jpg", b"", "empty file")
    put("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    put("truncated.png", png[: len(png) // 2], "truncated")
    put("header_only.jpg", jpeg[:200], "truncated")
    put("text_named.jpg", b"hello, I am a shopping list\n" * 20, "not an image")
    put("random_bytes.png", rng.randbytes(3000), "not an image")
    put("html_named.webp", b"<!doctype html><html><body>404</body></html>", "not an image")
    bad_idat = bytearray(png)
    at = bad_idat.index(b"IDAT")
    length = struct.unpack(">I", bad_idat[at - 4 : at])[0]
    bad_idat[at + 4 : at + 4 + length] = b"\xff" * length  # not a zlib stream any more
    put("corrupt_idat.png", bytes(bad_idat), "corrupt")
    put("bomb_header.png", huge_png_header(100_000, 100_000), "too large")
    put("over_cap.png", _bytes(Image.new("RGB", (4000, 3000), (9, 9, 9)), "PNG"), "too large")
    webp = _bytes(_picture(seed=2), "WEBP")
    put("truncated.webp", webp[: len(webp) // 3], "corrupt")
    tif = _bytes(_picture(seed=3), "TIFF")
    put("truncated.tif", tif[:60], "not an image")
    put("bogus.bmp", b"BM" + rng.randbytes(100), "truncated")

    os.symlink(folder / "does_not_exist.jpg", folder / "broken_link.jpg")
    expect["broken_link.jpg"] = "broken symlink"
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    expect["loop_a.jpg"] = expect["loop_b.jpg"] = "symlink loop"
    os.symlink(folder / "self_loop.jpg", folder / "self_loop.jpg")
    expect["self_loop.jpg"] = "symlink loop"
    os.mkfifo(folder / "fifo.jpg")
    expect["fifo.jpg"] = "not a regular file"
    (folder / "subdir").mkdir()
    os.symlink(folder, folder / "subdir" / "loop_dir")  # a folder loop: not followed

    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    put("truncated.gif", gif[: len(gif) // 3], "truncated")

    # --- odd but valid: indexed --------------------------------------------------------
    put("cmyk.jpg", _bytes(_picture(seed=4).convert("CMYK"), "JPEG"), None)
    grey16 = Image.new("I;16", (64, 48))
    grey16.putdata([(x * 1000) % 65536 for x in range(64 * 48)])
    put("grey16.png", _bytes(grey16, "PNG"), None)
    put("int32.tif", _bytes(_picture(seed=6).convert("L").convert("I"), "TIFF"), None)
    put("float32.tif", _bytes(_picture(seed=7).convert("L").convert("F"), "TIFF"), None)
    pal = _picture(seed=8).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette_transparent.png", _bytes(pal, "PNG", transparency=0), None)
    put("la.png", _bytes(_picture(seed=9).convert("LA"), "PNG"), None)
    put("rgba.webp", _bytes(_picture(seed=10).convert("RGBA"), "WEBP"), None)
    put("animated.gif", gif, None)
    put("animated.webp", _bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:]), None)
    put("multipage.tif", _bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:]), None)
    put("png_named.jpg", png, None)
    put("one_pixel.png", _bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), None)
    put("strip.png", _bytes(Image.new("RGB", (4, 6000), (0, 128, 255)), "PNG"), None)
    bad_exif = bytearray(_bytes(_picture(seed=11), "JPEG", exif=b"Exif\x00\x00" + b"\xff" * 40))
    put("bad_exif.jpg", bytes(bad_exif), None)
    odd_orientation = Image.Exif()
    odd_orientation[0x0112] = 99
    put("orientation99.jpg", _bytes(_picture(seed=12), "JPEG", exif=odd_orientation), None)
    rotated, _ = rotated_pair(folder)
    expect[rotated.name] = None
    outside = folder.parent / "outside.jpg"
    outside.write_bytes(_bytes(_picture(seed=13), "JPEG"))
    os.symlink(outside, folder / "link_to_file.jpg")
    expect["link_to_file.jpg"] = None
    non_utf8 = os.fsencode(folder) + b"/caf\xe9_latin1.jpg"
    with open(non_utf8, "wb") as fh:
        fh.write(_bytes(_picture(seed=14), "JPEG"))
    expect[os.fsdecode(b"caf\xe9_latin1.jpg")] = None
    # changed/vanished during the run are created by the test's on_plan hook
    put("vanishes.jpg", _bytes(_picture(seed=15), "JPEG"), "vanished")
    put("becomes_text.jpg", _bytes(_picture(seed=16), "JPEG"), "not an image")
    put("changes.jpg", _bytes(_picture(seed=17), "JPEG"), None)
    return expect


def mutate_during_run(folder: Path) -> bytes:
    """Called after the scan, before decoding: what 'files change during the run' means.
    Returns the new content of changes.jpg."""
    (folder / "vanishes.jpg").unlink()
    (folder / "becomes_text.jpg").write_bytes(b"overwritten by a text editor\n")
    new = _bytes(_picture((80, 80), seed=99), "JPEG")
    (folder / "changes.jpg").write_bytes(new)
    os.utime(folder / "changes.jpg", (1_600_000_000, 1_600_000_000))
    return new
