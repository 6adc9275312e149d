"""`pixfind index --ocr` (issue 16): words printed inside photos are found by keyword and
hybrid search, with real Tesseract, real LanceDB and the CLI; an --ocr run over an index built
without it reads the photos without re-embedding them. Skipped where Tesseract is absent."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixfind.bench.text_photos import render_text_photo
from pixfind.indexer import IndexOptions, run_index
from pixfind.indexer.ocr import ocr_reader
from pixfind.search import keywords
from pixfind.search.errors import OcrUnavailable
from pixfind.search.settings import get_settings
from pixfind.search.store import Store

from ..conftest import TINY, json_out, make_picture


@pytest.fixture(scope="module")
def tesseract():
    try:
        return ocr_reader("eng", get_settings().tessdata)
    except OcrUnavailable as exc:
        pytest.skip(f"Tesseract is not installed here ({exc})")


def _photos(root: Path) -> Path:
    """Two photos showing a word (a receipt, a screenshot) and three without text."""
    background = Image.new("RGB", (256, 256), (200, 190, 170))
    for i, (word, style) in enumerate((("quillet", "receipt"), ("zanfora", "screenshot"))):
        path = root / f"IMG_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        render_text_photo(word, random.Random(i), background, style).save(path, quality=92)
    for i in range(3):
        make_picture(root / f"IMG_{10 + i:04d}.jpg", seed=i)
    return root


def test_cli_index_ocr_finds_words_inside_photos(tmp_path, cli, tesseract):
    root = _photos(tmp_path / "photos")
    out = cli("index", root, "--model", TINY[0], "--pretrained", TINY[1], "--ocr", "--json")
    report = json_out(out)
    assert report["ocr_read"] == 5 and report["ocr_found"] >= 2
    assert report["stages"]["ocr"] > 0 and report["ocr_ms_per_photo"] > 0
    hits = json_out(cli("search", "quillet", "-k", "3", "--json"))["results"]
    assert Path(hits[0]["path"]).name == "IMG_0000.jpg"  # a receipt's line: CAFE QUILLET
    assert hits[0]["matched_fields"] == ["ocr"] and hits[0]["matched_words"] == ["QUILLET"]
    explained = cli("search", "zanfora", "-k", "1", "--explain").stdout
    assert "IMG_0001.jpg" in explained and "in ocr: zanfora" in explained  # a screenshot


def test_ocr_run_on_an_index_built_without_it_reads_without_re_embedding(tmp_path, tesseract):
    from pixfind.search.encoder import load_encoder
    from pixfind.search.types import EncoderSpec

    root, home = _photos(tmp_path / "photos"), tmp_path / "index"
    encoder = load_encoder(EncoderSpec(TINY[0], None), "cpu")
    plain = run_index(home, IndexOptions([str(root)], workers=0), encoder=encoder)
    assert plain.ocr_read == 0 and plain.added == 5
    store = Store.open(home)
    ids, before = store.all_vectors()
    assert keywords.ocr_pending(store, "eng") == {str(p) for p in root.iterdir()}

    read = run_index(home, IndexOptions([str(root)], workers=0, ocr=True), encoder=encoder)
    assert (read.added, read.updated, read.unchanged, read.ocr_read) == (0, 0, 5, 5)
    store = Store.open(home)
    ids_after, after = store.all_vectors()
    order = np.argsort(ids), np.argsort(ids_after)
    assert np.array_equal(ids[order[0]], ids_after[order[1]])
    assert np.array_equal(before[order[0]], after[order[1]])  # vectors kept as they were
    found, _ = keywords.search(store, keywords.parse_keywords("quillet"), 5)
    assert list(found[:1]) == [store.id_for_path(str(root / "IMG_0000.jpg"))]
    assert keywords.ocr_pending(store, "eng") == set()
    assert len(keywords.ocr_pending(store, "eng+deu")) == 5  # another language: read again

    again = run_index(home, IndexOptions([str(root)], workers=0, ocr=True), encoder=encoder)
    assert again.ocr_read == 0  # read once per photo and language
    # a changed photo indexed without --ocr loses its stale text (it may show something else)
    make_picture(root / "IMG_0000.jpg", seed=7, size=(200, 150))
    changed = run_index(home, IndexOptions([str(root)], workers=0), encoder=encoder)
    assert changed.updated == 1
    store = Store.open(home)
    assert keywords.ocr_pending(store, "eng") == {str(root / "IMG_0000.jpg")}
    assert len(keywords.search(store, keywords.parse_keywords("quillet"), 5)[0]) == 0


def test_ocr_without_tesseract_fails_in_one_line_before_indexing(tmp_path, cli, monkeypatch):
    from pixfind.indexer import ocr

    monkeypatch.setattr(ocr, "find_tessdata", lambda prefix=None: None)
    root = _photos(tmp_path / "photos")
    result = cli("index", root, "--model", TINY[0], "--pretrained", TINY[1], "--ocr", ok=False)
    assert result.exit_code == 1
    (line,) = [x for x in result.output.splitlines() if x.startswith("error")]
    assert "apt install tesseract-ocr tesseract-ocr-eng" in line and "brew install" in line
    assert "new," not in result.output  # stopped before scanning
    assert not (tmp_path / "index" / "db").exists()  # nothing indexed, nothing loaded


def test_without_tesserocr_pytesseract_reads_the_same(monkeypatch, tesseract):
    import io
    import shutil
    import sys

    pytest.importorskip("pytesseract")
    if not shutil.which("tesseract"):
        pytest.skip("no tesseract program for pytesseract")
    monkeypatch.setitem(sys.modules, "tesserocr", None)  # as if it were not installed
    reader = ocr_reader("eng")
    assert reader.tessdata is None  # pytesseract: the tesseract program finds its own data
    buf = io.BytesIO()
    background = Image.new("RGB", (256, 256))
    render_text_photo("quillet", random.Random(0), background, "receipt").save(buf, "JPEG")
    assert "QUILLET" in reader.read(buf.getvalue()).text.split()
