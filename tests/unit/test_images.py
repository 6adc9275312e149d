"""Image decoding (search/images.py) on real files written by Pillow: orientation, modes,
reduced JPEG decoding, hashes and the reasons given for files that are not images."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pixfind.search.images import (
    DecodeError,
    content_hash,
    decode_bytes,
    decode_file,
    limit_aspect,
    to_rgb,
)


def jpeg(size=(64, 48), colour=(200, 30, 30), exif_orientation: int | None = None) -> bytes:
    img = Image.new("RGB", size, colour)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", exif=exif)
    else:
        img.save(buf, "JPEG")
    return buf.getvalue()


def test_exif_rotation_gives_upright_size_and_pixels():
    data = jpeg((64, 48), exif_orientation=6)  # stored landscape, shown portrait
    decoded = decode_bytes(data)
    assert (decoded.width, decoded.height) == (48, 64)
    assert decoded.image.size == (48, 64) and decoded.image.mode == "RGB"
    assert decoded.file_type == "jpeg" and decoded.content_hash == content_hash(data)


def test_file_and_bytes_agree_and_the_file_stat_is_kept(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg())
    from_file, from_bytes = decode_file(path), decode_bytes(path.read_bytes())
    assert from_file.content_hash == from_bytes.content_hash
    assert from_file.image.tobytes() == from_bytes.image.tobytes()
    assert from_file.size == path.stat().st_size and from_file.mtime == path.stat().st_mtime


def test_large_jpegs_decode_reduced_but_never_below_the_draft_size():
    decoded = decode_bytes(jpeg((2000, 1000)), draft_size=224)
    assert (decoded.width, decoded.height) == (2000, 1000)  # the original size is reported
    assert min(decoded.image.size) >= 224 and decoded.image.size[0] < 2000


def test_transparency_becomes_white_and_16_bit_grey_is_divided_by_257():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    levels = [0, 1000, 3000, 32896, 65535]  # faithful: the file's levels, not stretched
    grey16 = Image.new("I;16", (len(levels), 1))
    for x, v in enumerate(levels):
        grey16.putpixel((x, 0), v)
    out = to_rgb(grey16)
    assert [out.getpixel((x, 0)) for x in range(len(levels))] == [
        (v, v, v) for v in (0, 4, 12, 128, 255)
    ]


def test_extreme_panoramas_are_centre_cropped():
    strip = Image.new("RGB", (10_000, 10))
    assert max(limit_aspect(strip).size) < 10_000
    normal = Image.new("RGB", (400, 300))
    assert limit_aspect(normal) is normal


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, not an image at all", "not an image"),
        (jpeg()[:200], "truncated|corrupt"),
    ],
)
def test_files_that_are_not_images_say_why(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_bytes(data)


def test_the_megapixel_cap_refuses_before_decoding():
    with pytest.raises(DecodeError, match="too large"):
        decode_bytes(jpeg((3000, 2000)), max_megapixels=1.0)
