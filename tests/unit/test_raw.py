"""RAW, HEIC and AVIF files: RAWs through their embedded JPEG or bitmap preview, or developed,
upright, with their date and camera; HEIC/AVIF read out of the box; a RAW beside its JPEG is
one photo."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixfind.indexer.decode import Skipped, decode_one
from pixfind.indexer.scan import pair_raws, scan
from pixfind.search.images import decode_bytes, decode_file, supported_extensions
from pixfind.search.raw import raw_siblings, sniff_raw
from pixfind.search.types import FileStat

from ..rawsamples import MAKE, MODEL, TAKEN, dng, halves, write

pytest.importorskip("rawpy")
pytest.importorskip("tifffile")

RED, BLUE = (200, 30, 30), (30, 30, 200)


def colour_at(img: Image.Image, fx: float, fy: float) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=int)[int(fy * img.height), int(fx * img.width)]


def near(a, b, tol: int = 40) -> bool:
    return bool(np.abs(np.asarray(a, dtype=int) - b).max() <= tol)


def test_dng_through_its_embedded_jpeg_turned_upright_with_date_and_camera(tmp_path):
    path = write(tmp_path / "IMG_0001.DNG", dng(halves((64, 48)), orientation=6))
    decoded = decode_file(path)
    # orientation 6: the camera was turned clockwise; the left half ends on top
    assert (decoded.width, decoded.height) == (48, 64)
    assert decoded.image.size == (48, 64)
    assert near(colour_at(decoded.image, 0.5, 0.2), RED)
    assert near(colour_at(decoded.image, 0.5, 0.8), BLUE)
    assert decoded.file_type == "dng"
    assert decoded.meta.taken_at == datetime.strptime(TAKEN, "%Y:%m:%d %H:%M:%S").timestamp()
    assert (decoded.meta.camera_make, decoded.meta.camera_model) == (MAKE, MODEL)


def test_dng_through_an_embedded_bitmap(tmp_path):
    decoded = decode_file(write(tmp_path / "a.dng", dng(halves((64, 48)), jpeg=False)))
    assert decoded.image.size == (64, 48)
    assert near(colour_at(decoded.image, 0.2, 0.5), RED, 2)
    assert near(colour_at(decoded.image, 0.8, 0.5), BLUE, 2)


def test_raw_with_only_a_tiny_preview_is_developed_at_half_size_and_turned(tmp_path):
    # the 8x6 preview is too small for the model: LibRaw develops the sensor data instead
    data = dng(halves((8, 6)), raw_size=(64, 48), orientation=8, jpeg=False)
    decoded = decode_file(write(tmp_path / "b.dng", data))
    assert (decoded.width, decoded.height) == (48, 64)
    assert decoded.image.size == (24, 32)  # half size, upright
    assert decoded.meta.taken_at is not None


def test_raw_recognised_from_its_bytes_without_a_name():
    data = dng(halves((64, 48)))
    assert sniff_raw(data) == "dng"
    assert decode_bytes(data).file_type == "dng"  # an upload: no file name
    assert sniff_raw(b"II*\x00\x10\x00\x00\x00CR\x02\x00") == "cr2"
    assert sniff_raw(b"\x00\x00\x00\x18ftypcrx \x00\x00") == "cr3"
    assert sniff_raw(b"FUJIFILMCCD-RAW 0201") == "raf"
    assert sniff_raw(b"IIRO\x08\x00\x00\x00") == "orf"
    assert sniff_raw(b"IIU\x00\x08\x00\x00\x00") == "rw2"
    plain_tiff = Image.new("RGB", (4, 4))
    buf = io.BytesIO()
    plain_tiff.save(buf, "TIFF")
    assert sniff_raw(buf.getvalue()) is None and sniff_raw(b"\xff\xd8\xff\xe0") is None


def test_a_broken_raw_is_skipped_with_its_reason(tmp_path):
    fake = write(tmp_path / "x.NEF", b"II*\x00" + bytes(200))
    stat = FileStat(str(fake), fake.stat().st_mtime, fake.stat().st_size)
    result = decode_one(stat, lambda img: img)
    assert isinstance(result, Skipped) and result.reason.startswith("NEF: unreadable RAW")


def test_heic_and_avif_are_read_out_of_the_box_with_their_exif_date(tmp_path):
    exts = supported_extensions()
    assert {".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw"} <= exts
    assert {".raf", ".orf", ".rw2"} <= exts
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0132] = "2020:01:02 03:04:05"
    for fmt, name, kind in (("HEIF", "p.heic", "heif"), ("AVIF", "p.avif", "avif")):
        halves((64, 48)).save(tmp_path / name, fmt, quality=90, exif=exif.tobytes())
        decoded = decode_file(tmp_path / name)
        assert decoded.file_type == kind and decoded.image.size == (64, 48)
        assert near(colour_at(decoded.image, 0.2, 0.5), RED)
        assert near(colour_at(decoded.image, 0.8, 0.5), BLUE)
        assert decoded.meta.taken_at == datetime(2020, 1, 2, 3, 4, 5).timestamp()


def test_a_raw_beside_its_jpeg_is_one_photo(tmp_path):
    folder = tmp_path / "shoot"
    halves((64, 48)).save(write(folder / "IMG_1.JPG", b""), "JPEG")
    write(folder / "IMG_1.CR2", b"raw")
    write(folder / "img_2.nef", dng(halves((64, 48))))  # no sibling: indexed itself
    halves((64, 48)).save(write(folder / "IMG_3.heic", b""), "PNG")
    write(folder / "IMG_3.ARW", b"raw")
    pairs: list[tuple[str, str]] = []
    found = [Path(s.path).name for s in scan([folder], on_pair=lambda r, s: pairs.append((r, s)))]
    assert found == ["IMG_1.JPG", "IMG_3.heic", "img_2.nef"]
    assert sorted((Path(r).name, Path(s).name) for r, s in pairs) == [
        ("IMG_1.CR2", "IMG_1.JPG"),
        ("IMG_3.ARW", "IMG_3.heic"),
    ]
    # a RAW given by name is indexed even with a sibling
    assert [Path(s.path).name for s in scan([folder / "IMG_1.CR2"])] == ["IMG_1.CR2"]
    # search results name the RAW half of a pair
    jpeg, heic, nef = (str(folder / n) for n in ("IMG_1.JPG", "IMG_3.heic", "img_2.nef"))
    assert raw_siblings([jpeg, heic, nef]) == {
        jpeg: str(folder / "IMG_1.CR2"),
        heic: str(folder / "IMG_3.ARW"),
    }


def test_pair_raws_is_by_folder_and_case_insensitive_stem():
    paths = ["/a/x.jpg", "/a/X.DNG", "/a/y.dng", "/a/x.png.cr2", "/b/y.jpeg"]
    assert pair_raws(paths) == ["/a/x.jpg", "/a/y.dng", "/a/x.png.cr2", "/b/y.jpeg"]


def test_the_web_pages_thumbnail_of_a_raw_is_an_upright_jpeg():
    from pixfind.api.service import make_thumbnail

    jpeg = make_thumbnail(dng(halves((64, 48)), orientation=6), 32, raw="nef")
    thumb = Image.open(io.BytesIO(jpeg))
    assert thumb.format == "JPEG" and thumb.size == (24, 32)
    assert near(colour_at(thumb, 0.5, 0.2), RED)
