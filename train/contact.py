"""Contact sheets: the top results of a query in a grid, each with its rank and score."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pixfind.search.images import DecodeError, decode_file
from pixfind.search.types import Hit

GOOD = (40, 160, 60)
BAD = (200, 40, 40)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def contact_sheet(
    title: str,
    hits: Sequence[Hit],
    path: str | os.PathLike,
    thumb: int = 160,
    columns: int = 4,
    marks: Sequence[bool | None] | None = None,
) -> Path:
    """Write a PNG grid of the hits' images; ``marks`` outlines a thumbnail green or red."""
    rows = max(1, -(-len(hits) // columns))
    pad, label_h, title_h = 8, 22, 34
    width = columns * (thumb + pad) + pad
    height = title_h + rows * (thumb + label_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 8), title, fill=(20, 20, 20), font=_font(18))
    small = _font(14)
    for i, hit in enumerate(hits):
        x = pad + (i % columns) * (thumb + pad)
        y = title_h + (i // columns) * (thumb + label_h + pad)
        try:
            img = decode_file(hit.path, draft_size=thumb).image
            img.thumbnail((thumb, thumb))
        except DecodeError:
            img = Image.new("RGB", (thumb, thumb), (200, 200, 200))
        sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
        mark = marks[i] if marks is not None and i < len(marks) else None
        if mark is not None:
            draw.rectangle(
                (x - 2, y - 2, x + thumb + 1, y + thumb + 1), outline=GOOD if mark else BAD, width=3
            )
        draw.text(
            (x, y + thumb + 4), f"#{hit.rank}  score {hit.score:.3f}", fill=(40, 40, 40), font=small
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
