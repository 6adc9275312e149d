"""Contact sheets of duplicate groups (`pixfind duplicates --sheet DIR`): one JPEG per group,
its photos side by side with size, date and path under each, the best copy framed green."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .duplicates import Copy, Duplicates, Group
from .errors import UnusableIndex
from .images import decode_file
from .types import printable_path

THUMB = 240  # longest side of a thumbnail
PAD = 12
TEXT_LINES = 7
LINE = 16
BEST, OTHER = (40, 160, 60), (200, 200, 200)


def write_sheets(found: Duplicates, folder: Path) -> list[Path]:
    """One sheet per group in ``folder`` (created): ``group-0001.jpg``... in report order."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnusableIndex(f"can't write contact sheets into {folder}: {exc.strerror}") from None
    written = []
    for n, group in enumerate(found.groups, 1):
        path = folder / f"group-{n:04d}.jpg"
        sheet(group, n).save(path, quality=88)
        written.append(path)
    return written


def sheet(group: Group, number: int = 1) -> Image.Image:
    """The contact sheet of one group."""
    font = _font()
    cell_w, cell_h = THUMB + 2 * PAD, THUMB + 2 * PAD + TEXT_LINES * LINE
    title_h = 2 * LINE
    canvas = Image.new("RGB", (cell_w * len(group.copies), title_h + cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    title = f"group {number}: {len(group.copies)} photos, {group.kind} copies"
    draw.text((PAD, PAD // 2), title, fill="black", font=font)
    for k, copy in enumerate(group.copies):
        x, y = k * cell_w, title_h
        frame = BEST if copy.best else OTHER
        draw.rectangle((x + 3, y + 3, x + cell_w - 4, y + cell_h - 4), outline=frame, width=4)
        thumb = _thumbnail(copy)
        canvas.paste(thumb, (x + PAD + (THUMB - thumb.width) // 2, y + PAD))
        lines = _caption(copy, cell_w - 2 * PAD, font)
        for i, line in enumerate(lines[:TEXT_LINES]):
            colour = BEST if copy.best and i == 0 else (30, 30, 30)
            draw.text((x + PAD, y + THUMB + PAD + 4 + i * LINE), line, fill=colour, font=font)
    return canvas


def _caption(copy: Copy, width: int, font) -> list[str]:
    if copy.best:
        head = "BEST - keep"
    elif copy.same_file:
        head = "copy: same bytes"
    else:
        head = f"copy: {copy.distance} bits apart"
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(copy.taken_at))
    lines = [
        head,
        f"{copy.width} x {copy.height} px, {copy.size / 1e3:,.0f} KB, {copy.file_type}",
        f"{day} ({copy.taken_source})",
    ]
    chars = max(10, int(width / max(font.getlength("m"), 1) * 1.15))
    lines += textwrap.wrap(printable_path(copy.path), chars, break_on_hyphens=False)
    if len(lines) > TEXT_LINES:  # keep the file name: cut the middle of the path
        lines = [*lines[:4], "...", *lines[-(TEXT_LINES - 5) :]]
    return lines


def _thumbnail(copy: Copy) -> Image.Image:
    try:
        image = decode_file(copy.path, THUMB).image
    except Exception:  # gone or unreadable since it was indexed: a grey box says so
        image = Image.new("RGB", (THUMB, THUMB * 3 // 4), (150, 150, 150))
        ImageDraw.Draw(image).text((10, 10), "can't read the file", fill="white", font=_font())
    image.thumbnail((THUMB, THUMB))
    return image


def _font():
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the bitmap font
        return ImageFont.load_default()
