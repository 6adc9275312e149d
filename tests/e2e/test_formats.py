"""Every format people have, through the real indexer and CLI: real photos from
../shared/photos re-encoded as HEIC and AVIF and embedded as the preview of synthetic DNGs,
a RAW+JPEG pair indexed once, RAWs found by type, drawn by --preview and used as queries."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from ..conftest import TINY, json_out, shared_photos
from ..rawsamples import dng, write

pytest.importorskip("rawpy")
pytest.importorskip("tifffile")


@pytest.fixture
def shoot(tmp_path) -> Path:
    """IMG_1.JPG + IMG_1.DNG (a pair), IMG_2.DNG alone, IMG_3.HEIC, IMG_4.AVIF."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    photos = [Image.open(p).convert("RGB") for p in shared_photos(4)]
    folder = tmp_path / "shoot"
    folder.mkdir()
    photos[0].save(folder / "IMG_1.JPG", "JPEG", quality=90)
    write(folder / "IMG_1.DNG", dng(photos[0], raw_size=(96, 64)))
    write(folder / "IMG_2.DNG", dng(photos[1], raw_size=(96, 64), orientation=6))
    photos[2].save(folder / "IMG_3.HEIC", "HEIF", quality=80)
    photos[3].save(folder / "IMG_4.avif", "AVIF", quality=80)
    return folder


def test_raw_heic_avif_and_a_raw_jpeg_pair_through_the_cli(cli, shoot):
    model, pretrained = TINY
    report = json_out(cli("index", shoot, "--model", model, "--pretrained", pretrained, "--json"))
    assert report["added"] == 4 and not report["skipped"], report
    assert [(Path(p["raw"]).name, Path(p["indexed_as"]).name) for p in report["raw_pairs"]] == [
        ("IMG_1.DNG", "IMG_1.JPG")
    ]
    found = json_out(cli("search", "a photo", "-k", "10", "--json"))["results"]
    by_name = {Path(r["path"]).name: r for r in found}
    assert sorted(by_name) == ["IMG_1.JPG", "IMG_2.DNG", "IMG_3.HEIC", "IMG_4.avif"]
    assert Path(by_name["IMG_1.JPG"]["raw"]).name == "IMG_1.DNG"  # the pair, shown once
    assert "raw" not in by_name["IMG_2.DNG"]
    assert by_name["IMG_2.DNG"]["taken_at"].startswith("2021-06-05T10:11:12")
    assert (by_name["IMG_2.DNG"]["width"], by_name["IMG_2.DNG"]["height"]) == (64, 96)  # upright
    for kind, name in (("dng", "IMG_2.DNG"), ("heic", "IMG_3.HEIC"), ("avif", "IMG_4.avif")):
        only = json_out(cli("search", "a photo", "--type", kind, "--json"))["results"]
        assert [Path(r["path"]).name for r in only] == [name], kind
    table = cli("search", "a photo", "-k", "10").stdout
    assert "IMG_1.JPG  (+ RAW IMG_1.DNG)" in table
    # a RAW as the query image, and drawn by the preview (decoded through its preview JPEG)
    assert cli("search", "--image", shoot / "IMG_2.DNG", "-k", "2").exit_code == 0
    drawn = cli("search", "a photo", "--type", "dng", "--preview=iterm").stdout
    payload = drawn.split(":", 1)[1].split("\x07", 1)[0]
    picture = Image.open(io.BytesIO(base64.standard_b64decode(payload)))
    assert picture.height > picture.width  # turned upright (orientation 6)
    # the JPEG half gone: the next run indexes the RAW in its place
    (shoot / "IMG_1.JPG").unlink()
    again = json_out(cli("index", shoot, "--json"))
    assert (again["added"], again["removed"], again["raw_pairs"]) == (1, 1, [])
    names = [Path(r["path"]).name for r in json_out(cli("search", "x", "--json"))["results"]]
    assert sorted(names) == ["IMG_1.DNG", "IMG_2.DNG", "IMG_3.HEIC", "IMG_4.avif"]
