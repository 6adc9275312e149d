"""Metadata, captions and caption fusion, filters with exact top-k, --explain, --sort date."""

from __future__ import annotations

import fnmatch
import io
import json
import os
import random
import struct
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.encoder import load_encoder
from pixfind.search.engine import Searcher
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec, Filters

from ..conftest import TINY, json_out, make_picture

WORDS = [
    "red",
    "blue",
    "cat",
    "dog",
    "tree",
    "house",
    "river",
    "mountain",
    "car",
    "boat",
    "beach",
    "snow",
    "city",
    "night",
    "bird",
    "flower",
    "child",
    "old",
    "man",
    "woman",
    "bicycle",
    "bridge",
    "train",
    "market",
    "garden",
    "lamp",
    "window",
    "kite",
    "horse",
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec("pixfind-tiny", None), "cpu")


def _index(home: Path, root: Path, encoder) -> None:
    run_index(home, IndexOptions(roots=[str(root)], workers=0, batch_size=16), encoder=encoder)


def _exif(taken: str | None = None, make=None, model=None, description=None, gps=None):
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if description:
        exif[0x010E] = description
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if gps:
        (lat, lat_ref), (lon, lon_ref) = gps
        exif.get_ifd(0x8825).update({1: lat_ref, 2: lat, 3: lon_ref, 4: lon})
    return exif


def _iptc_jpeg(img: Image.Image, caption: str) -> bytes:
    """A JPEG with an IPTC 2:120 caption in a Photoshop APP13 segment."""
    text = caption.encode()
    record = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    if len(record) % 2:
        record += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(record))
    payload = b"Photoshop 3.0\x00" + resource + record
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    data = buf.getvalue()
    return data[:2] + segment + data[2:]


XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    '22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
    '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">fish &amp; chips on a pier'
    "</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def test_metadata_and_every_caption_source_are_stored(tmp_path, encoder):
    root = tmp_path / "p"
    root.mkdir()
    pic = Image.new("RGB", (64, 48), (10, 120, 200))
    gps = ((52.0, 30.0, 0.0), "N"), ((13.0, 24.0, 36.0), "E")
    exif = _exif("2019:07:14 10:30:00", "Canon", "EOS 5D", "a red kite over the dunes", gps)
    pic.save(root / "exif.jpg", exif=exif)
    (root / "iptc.jpg").write_bytes(_iptc_jpeg(pic, "harbour at dawn"))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    pic.save(root / "xmp.png", pnginfo=info)
    pic.save(root / "sidecar.jpg")
    (root / "sidecar.jpg.txt").write_text("first sidecar line\n\nsecond one\n")
    (root / "sub").mkdir()
    pic.save(root / "sub" / "listed.webp")
    lines = [
        {"image": "sub/listed.webp", "caption": "listed in jsonl"},
        {"image": "sidecar.jpg", "caption": "also from jsonl"},
        {"image": "missing.jpg", "caption": "no such file"},
    ]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    pic.save(root / "plain.png")

    _index(tmp_path / "index", root, encoder)
    store = Store.open(tmp_path / "index")

    def rec(name):
        return store.record(store.id_for_path(str(root / name)))

    r = rec("exif.jpg")
    assert r.taken_at == datetime(2019, 7, 14, 10, 30).timestamp() and r.taken_source == "exif"
    assert (r.camera_make, r.camera_model) == ("Canon", "EOS 5D")
    assert r.gps_lat == pytest.approx(52.5) and r.gps_lon == pytest.approx(13.41)
    assert r.captions == ("a red kite over the dunes",) and r.file_type == "jpeg"
    assert rec("iptc.jpg").captions == ("harbour at dawn",)
    assert rec("xmp.png").captions == ("fish & chips on a pier",)
    assert rec("sidecar.jpg").captions == ("first sidecar line", "second one", "also from jsonl")
    assert rec("sub/listed.webp").captions == ("listed in jsonl",)
    plain = rec("plain.png")
    assert plain.captions == () and plain.taken_source == "mtime"
    assert plain.taken_at == pytest.approx((root / "plain.png").stat().st_mtime)

    # caption vectors are the text tower's vectors of the caption texts
    cap = store.captioned()
    assert sorted(cap.texts) == sorted(
        c
        for name in ("exif.jpg", "iptc.jpg", "xmp.png", "sidecar.jpg", "sub/listed.webp")
        for c in rec(name).captions
    )
    np.testing.assert_allclose(cap.vectors, encoder.encode_texts(cap.texts), atol=1e-5)

    # a caption added later is picked up once the photo is touched, without re-embedding it
    (root / "plain.png.txt").write_text("added afterwards\n")
    os.utime(root / "plain.png", (2e9, 2e9))
    report = run_index(
        tmp_path / "index", IndexOptions(roots=[str(root)], workers=0), encoder=encoder
    )
    assert (report.updated, report.reused, report.captioned) == (1, 1, 1)
    store = Store.open(tmp_path / "index")
    assert rec("plain.png").captions == ("added afterwards",)


def _captioned_corpus(root: Path, n: int = 40, n_captioned: int = 16) -> dict[str, str]:
    """n random pictures; the first n_captioned get a caption of 4 random words."""
    rng = random.Random(3)
    captions = {}
    lines = []
    for i in range(n):
        name = f"img{i:02d}.jpg"
        make_picture(root / name, seed=100 + i)
        if i < n_captioned:
            captions[name] = " ".join(rng.sample(WORDS, 4))
            lines.append(json.dumps({"image": name, "caption": captions[name]}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return captions


def test_caption_fusion_beats_image_only_on_caption_queries(tmp_path, encoder):
    root = tmp_path / "p"
    captions = _captioned_corpus(root)
    _index(tmp_path / "index", root, encoder)
    searcher = Searcher(tmp_path / "index")
    searcher._encoder = encoder

    def recalls(weight: float) -> tuple[float, float]:
        """(R@1, R@5) of caption texts used as queries, finding their own image."""
        ranks = []
        for name, caption in captions.items():
            paths = [
                h.path for h in searcher.search(caption, k=5, caption_weight=weight, mode="vector")
            ]
            ranks.append(paths.index(str(root / name)) if str(root / name) in paths else 99)
        return float(np.mean([r < 1 for r in ranks])), float(np.mean([r < 5 for r in ranks]))

    image_only = recalls(0.0)
    fused = recalls(searcher.caption_weight)
    print(
        f"\ncaption queries ({len(captions)}): image-only R@1 {image_only[0]:.2f} "
        f"R@5 {image_only[1]:.2f}; fused (w={searcher.caption_weight}) "
        f"R@1 {fused[0]:.2f} R@5 {fused[1]:.2f}"
    )
    assert fused[0] >= image_only[0] + 0.4 and fused[1] == 1.0 > image_only[1] + 0.5

    # the fused score is exactly (1-w)*image + w*best caption, for every hit
    hits = searcher.search(captions["img03.jpg"], k=10, caption_weight=0.3, mode="vector")
    target = next(h for h in hits if h.path == str(root / "img03.jpg"))
    assert target.caption.text == captions["img03.jpg"]
    assert target.caption.cosine == pytest.approx(1.0, abs=1e-4)
    for h in hits:
        img = h.image_score
        if h.caption is not None:
            scaled = h.caption.scaled
            assert h.caption.weight == 0.3
            assert h.score == pytest.approx(0.7 * img + 0.3 * scaled, abs=1e-5)
            assert scaled != pytest.approx(h.caption.cosine, abs=1e-3)  # calibrated
        else:
            assert h.score == pytest.approx(img, abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_explain_shows_both_parts_of_each_score(tmp_path, cli):
    root = tmp_path / "p"
    captions = _captioned_corpus(root, n=12, n_captioned=4)
    cli("index", root, "--model", TINY[0], "--pretrained", TINY[1])
    query = captions["img01.jpg"]
    lines = cli("search", query, "-k", "5", "--explain").stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "image", "caption", "path"]
    rank, score, image, caption, path = lines[1].split()
    assert path == str(root / "img01.jpg") and float(caption) == pytest.approx(1.0, abs=1e-3)
    as_json = json_out(cli("search", query, "-k", "5", "--json"))["results"]
    top = as_json[0]
    assert top["caption"] == query and top["caption_score"] == pytest.approx(1.0, abs=1e-4)
    w = top["caption_weight"]
    # hybrid (the default here): the vector part is the caption-fused score
    assert top["vector_score"] <= top["score"]
    assert top["vector_score"] == pytest.approx(
        (1 - w) * top["image_score"] + w * top["caption_scaled"], abs=1e-5
    )
    assert lines[2].strip().startswith(f"= {1 - w:.2f} x image {top['image_score']:.3f}")
    assert f"+ {w:.2f} x caption {top['caption_scaled']:.3f}" in lines[2]
    assert repr(query) in lines[2]


@pytest.fixture(scope="module")
def filter_index(tmp_path_factory, encoder):
    """60 photos: two folders, sizes, types, EXIF dates across 2018-2023 (some without)."""
    tmp = tmp_path_factory.mktemp("filters")
    root = tmp / "p"
    rng = random.Random(7)
    for i in range(60):
        folder = root / ("trips" if i % 3 == 0 else "home") / ("old" if i % 4 == 0 else "")
        size = (rng.choice([80, 160, 320]), rng.choice([60, 120, 240]))
        path = make_picture(folder / f"f{i:02d}.{rng.choice(['jpg', 'png', 'webp'])}", i, size)
        if path.suffix == ".jpg" and i % 5:
            taken = f"{2018 + i % 6}:0{1 + i % 9}:1{i % 10} 12:00:00"
            Image.open(path).save(path, exif=_exif(taken))
    home = tmp / "index"
    _index(home, root, encoder)
    searcher = Searcher(home)
    searcher._encoder = encoder
    return root, searcher


def _brute_force(searcher: Searcher, query: np.ndarray, keep, k: int):
    """The exact answer by numpy over every row that passes ``keep(record)``."""
    ids, vectors = searcher.store.all_vectors()
    records = searcher.store.records(list(ids))
    mask = np.array([keep(records[int(i)]) for i in ids])
    scores = vectors[mask] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in ids[mask][order]], scores[order]


JAN_2019, DEC_2021 = datetime(2019, 1, 1).timestamp(), datetime(2021, 12, 31).timestamp()
FILTER_CASES = {
    "folder prefix": (
        lambda root: Filters(folder=str(root / "trips")),
        lambda root, r: r.path.startswith(str(root / "trips") + "/"),
    ),
    "folder glob": (
        lambda root: Filters(folder="*/old/*"),
        lambda root, r: fnmatch.fnmatchcase(r.path, "*/old/*"),
    ),
    "date range": (
        lambda root: Filters(
            after=datetime(2019, 1, 1).timestamp(), before=datetime(2021, 12, 31).timestamp()
        ),
        lambda root, r: (
            datetime(2019, 1, 1).timestamp() <= r.taken_at <= datetime(2021, 12, 31).timestamp()
        ),
    ),
    "min size": (
        lambda root: Filters(min_width=160, min_height=120),
        lambda root, r: r.width >= 160 and r.height >= 120,
    ),
    "file type": (
        lambda root: Filters(file_types=("png", "jpg")),
        lambda root, r: r.file_type in ("png", "jpeg"),
    ),
    "all at once": (
        lambda root: Filters(folder=str(root / "home"), min_width=160, file_types=("webp", "png")),  # noqa: E501
        lambda root, r: (
            r.path.startswith(str(root / "home") + "/")
            and r.width >= 160
            and r.file_type in ("webp", "png")
        ),
    ),
}


@pytest.mark.parametrize("case", list(FILTER_CASES))
def test_filters_keep_top_k_exact(filter_index, case):
    root, searcher = filter_index
    make_filters, keep = FILTER_CASES[case]
    rng = np.random.default_rng(len(case))
    for _ in range(3):
        query = rng.standard_normal(searcher.store.info.dim).astype(np.float32)
        query /= np.linalg.norm(query)
        want_ids, want_scores = _brute_force(searcher, query, lambda r: keep(root, r), 10)
        assert len(want_ids) >= 3, f"filter {case} leaves too few rows to test"
        hits = searcher.search_vector(query, k=10, filters=make_filters(root))
        assert [h.id for h in hits] == want_ids
        np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-5)


def test_min_score_and_sort_by_date(filter_index):
    root, searcher = filter_index
    query = (
        searcher.store.vector(
            searcher.store.id_for_path(str(root / "trips" / "old" / "f00.png")) or 0
        )
        if False
        else None
    )
    ids, vectors = searcher.store.all_vectors()
    query = vectors[0]
    hits = searcher.search_vector(query, k=20)
    cut = hits[5].score
    above = searcher.search_vector(query, k=20, min_score=cut)
    assert [h.id for h in above] == [h.id for h in hits if h.score >= cut] and len(above) >= 6
    dated = searcher.search_vector(query, k=20, sort="date")
    assert {h.id for h in dated} == {h.id for h in hits}
    stamps = [h.taken_at for h in dated]
    assert stamps == sorted(stamps, reverse=True)


def test_cli_filters_and_query_algebra(filter_index, tmp_path, monkeypatch):
    from pixfind import cli as cli_module
    from typer.testing import CliRunner

    root, searcher = filter_index
    monkeypatch.setenv("PIXFIND_HOME", str(searcher.home))
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli_module.app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return json_out(result)["results"]

    hits = run(
        "search", "a blue house", "-k", "10", "--folder", root / "trips", "--type", "png", "--json"
    )
    assert hits and all(h["path"].startswith(str(root / "trips")) for h in hits)
    assert all(h["file_type"] == "png" for h in hits)
    hits = run(
        "search",
        "a blue house",
        "-k",
        "60",
        "--after",
        "2019-01-01",
        "--before",
        "2019-12-31",
        "--json",
    )
    assert hits and all(h["taken_at"].startswith("2019") for h in hits)

    # algebra through the CLI equals the same vector math done by hand
    enc = searcher.encoder
    dog, beach, people = enc.encode_texts(["dog", "beach", "people"])
    img_path = (
        root / "trips" / "f03.webp"
        if (root / "trips" / "f03.webp").exists()
        else next((root / "trips").glob("*.jpg"))
    )
    img = enc.encode_images([Image.open(img_path).convert("RGB")])[0]
    want = dog + 2 * beach - people + img
    want /= np.linalg.norm(want)
    expected = searcher.search_vector(
        want,
        k=5,
        exclude=[searcher.store.id_for_path(str(img_path))],
        caption_weight=searcher.caption_weight,
    )
    hits = run(
        "search",
        "dog",
        "--add",
        "2:beach",
        "--subtract",
        "people",
        "--add-image",
        img_path,
        "-k",
        "5",
        "--json",
    )
    assert [h["id"] for h in hits] == [h.id for h in expected]
    assert str(img_path) not in [h["path"] for h in hits]
