"""Photos whose only distinguishing fact is text rendered inside them (issue 16, kind (d)):
street signs on a demo scene, receipts on a table, phone screenshots; in the fonts the
system has (DejaVu, Liberation, Noto, URW: Debian's fonts-* packages), sizes, slight angles
and backgrounds drawn at random. Used by bench/hybrid.py and bench/ocr.py."""

from __future__ import annotations

import os
import random

from PIL import Image, ImageDraw, ImageFont

_FONTS = "/usr/share/fonts/"
SANS = (  # those found are used; Pillow's own font when none is
    _FONTS + "truetype/dejavu/DejaVuSans-Bold.ttf",
    _FONTS + "truetype/dejavu/DejaVuSansCondensed.ttf",
    _FONTS + "truetype/liberation/LiberationSans-Regular.ttf",
    _FONTS + "opentype/urw-base35/NimbusSans-Bold.otf",
    _FONTS + "opentype/urw-base35/URWGothic-Book.otf",
)
SERIF = (
    _FONTS + "truetype/dejavu/DejaVuSerif.ttf",
    _FONTS + "truetype/liberation/LiberationSerif-Bold.ttf",
    _FONTS + "opentype/urw-base35/C059-Roman.otf",
)
MONO = (
    _FONTS + "truetype/dejavu/DejaVuSansMono.ttf",
    _FONTS + "truetype/noto/NotoSansMono-Regular.ttf",
)
STYLES = ("sign", "receipt", "screenshot")
PLATES = (((20, 70, 160), "white"), ((10, 110, 50), "white"), ("white", "black"))
SIZE = (320, 240)  # small: OCR costs about its pixels, and a test reads a few dozen


def font_files(kinds=(SANS, SERIF, MONO)) -> list[str]:
    return [f for kind in kinds for f in kind if os.path.exists(f)]


def _font(rng: random.Random, size: int, kinds=(SANS, SERIF, MONO)) -> ImageFont.ImageFont:
    files = font_files(kinds)
    if files:
        return ImageFont.truetype(rng.choice(files), size)
    return ImageFont.load_default(size)  # Pillow >= 10.1: a scalable built-in font


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return tuple(rng.randint(low, high) for _ in range(3))  # type: ignore[return-value]


def _sign(word: str, rng: random.Random, background: Image.Image) -> Image.Image:
    img = background.convert("RGB").resize(SIZE)
    draw = ImageDraw.Draw(img)
    text = rng.choice((word.upper(), word.capitalize(), f"{word.capitalize()} St"))
    font = _font(rng, rng.randint(24, 36), (SANS, SERIF))  # street signs: no typewriter faces
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 24, bottom - top + 20
    x, y = rng.randint(4, max(4, SIZE[0] - w - 4)), rng.randint(10, SIZE[1] - h - 10)
    plate, ink = rng.choice(PLATES)
    draw.rounded_rectangle((x, y, x + w, y + h), radius=6, fill=plate)
    draw.text((x + 12 - left, y + 10 - top), text, font=font, fill=ink)
    return img


def _receipt(word: str, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", SIZE, _colour(rng, 30, 90))  # a table
    draw = ImageDraw.Draw(img)
    paper = (rng.randint(235, 255), rng.randint(232, 250), rng.randint(220, 245))
    x0 = rng.randint(30, 80)
    draw.rectangle((x0, 0, x0 + 210, SIZE[1]), fill=paper)
    font = _font(rng, rng.randint(17, 21), (MONO, SANS))  # till printers
    lines = [f"CAFE {word.upper()}", "TEA     2.50", "BREAD   3.10", "TOTAL   5.60"]
    for i, line in enumerate(lines):
        draw.text((x0 + 10, 12 + i * 28), line, font=font, fill=_colour(rng, 0, 60))
    return img


def _screenshot(word: str, rng: random.Random) -> Image.Image:
    dark = rng.random() < 0.4
    bg, ink = ((28, 28, 32), (235, 235, 235)) if dark else ((250, 250, 250), (20, 20, 20))
    img = Image.new("RGB", SIZE, bg)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, SIZE[0], 40), fill=_colour(rng, 40, 160))
    draw.text((12, 8), "Settings", font=_font(rng, 20, (SANS,)), fill="white")
    font = _font(rng, rng.randint(17, 22), (SANS,))  # user-interface faces
    lines = ["Wi-Fi network", word.lower(), "Password", f"{rng.randint(1000, 9999)}-guest"]
    for i, line in enumerate(lines):
        draw.text((14, 54 + i * 42), line, font=font, fill=ink)
    return img


def render_text_photo(
    word: str, rng: random.Random, background: Image.Image, style: str | None = None
) -> Image.Image:
    """A photo showing ``word``: a sign (on ``background``), a receipt or a screenshot (one
    of STYLES, drawn at random unless given), turned by up to 6 degrees."""
    style = style or rng.choice(STYLES)
    if style == "sign":
        img = _sign(word, rng, background)
    else:
        img = _receipt(word, rng) if style == "receipt" else _screenshot(word, rng)
    angle = rng.uniform(-6, 6)
    edge = img.getpixel((0, 0))
    return img.rotate(angle, resample=Image.BICUBIC, fillcolor=edge)
