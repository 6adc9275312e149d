"""Embedded metadata (search/metadata.py): real captions are read, hostile packets cost linear
time and every field kept is bounded (issue 15, item 1). Hostile files are generated here."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image, PngImagePlugin
from pixfind.search import metadata
from pixfind.search.images import decode_bytes
from pixfind.search.metadata import MAX_CAPTIONS, MAX_FIELD_CHARS, _xmp_descriptions

MB = 1024 * 1024


def png_with_xmp(packet: str, compressed: bool = True) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet, zip=compressed)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def webp_with_xmp(packet: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(out, "WEBP", xmp=packet.encode())
    return out.getvalue()


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>
<rdf:Description rdf:about="" dc:description="attribute caption &amp; more">
<dc:description><rdf:Alt>
<rdf:li xml:lang="x-default">A dog on the <b>beach</b> &lt;3</rdf:li>
<rdf:li xml:lang="fr">Un chien</rdf:li>
</rdf:Alt></dc:description>
</rdf:Description></rdf:RDF></x:xmpmeta>"""


def test_real_xmp_captions_are_read():
    expected = ["A dog on the beach <3", "Un chien", "attribute caption & more"]
    assert _xmp_descriptions(XMP) == expected
    assert _xmp_descriptions(XMP.encode()) == _xmp_descriptions(XMP)
    assert _xmp_descriptions("<dc:description>plain</dc:description>") == ["plain"]
    assert _xmp_descriptions("<dc:description/><dc:descriptionX>no</dc:descriptionX>") == []
    decoded = decode_bytes(png_with_xmp(XMP))
    assert decoded.meta.captions[:2] == ["A dog on the beach <3", "Un chien"]


HOSTILE = {
    "opening tags only": "<dc:description>",  # the 612-byte PNG of the issue, 85x bigger
    "opening tags without >": "<dc:description ",
    "list items without end": "<dc:description><rdf:li>",
    "tag starts without >": "<",
    "attributes without end": 'dc:description="',
}


@pytest.mark.parametrize("shape", HOSTILE)
def test_a_1mb_hostile_xmp_packet_is_read_in_linear_time(shape):
    unit = HOSTILE[shape]
    packet = unit * ((MB - 64) // len(unit))  # Pillow refuses text chunks over 1 MB
    if shape == "list items without end":
        packet = packet + "</dc:description>"
    _, took = timed(_xmp_descriptions, packet)
    assert took < 0.5, f"{shape}: {took:.2f}s for 1 MB"
    # and through the image decoder, from a compressed PNG chunk of a few kilobytes
    data = png_with_xmp(packet)
    assert len(data) < 20_000
    decoded, took = timed(decode_bytes, data)
    assert took < 1.0, f"{shape}: decoding a {len(data)}-byte PNG took {took:.2f}s"
    assert decoded.width == 8


def test_hostile_xmp_in_webp_is_linear_too():
    data = webp_with_xmp("<dc:description>" * (192 * 1024 // 16))
    _, took = timed(decode_bytes, data)
    assert took < 1.0, took


def test_many_and_long_captions_are_capped():
    long = "x" * (50 * MAX_FIELD_CHARS)
    packet = "".join(f"<dc:description>{i} {long}</dc:description>" for i in range(100))
    found = _xmp_descriptions(packet)
    assert len(found) == MAX_CAPTIONS
    assert all(len(c) <= MAX_FIELD_CHARS for c in found)
    # beyond the packet cap nothing is read
    far = " " * (metadata.MAX_XMP_CHARS + 10) + "<dc:description>late</dc:description>"
    assert _xmp_descriptions(far) == []


def test_exif_text_fields_are_capped():
    exif = Image.Exif()
    exif[metadata.TAG_DESCRIPTION] = "d" * 30_000
    exif[metadata.TAG_MAKE] = "m" * 30_000
    exif[metadata.TAG_MODEL] = "Model X"
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "JPEG", exif=exif.tobytes())
    meta = decode_bytes(out.getvalue()).meta
    assert meta.camera_model == "Model X"
    assert len(meta.camera_make) == MAX_FIELD_CHARS
    assert [len(c) for c in meta.captions] == [MAX_FIELD_CHARS]
