"""OCR's pure parts (indexer/ocr.py, search/keywords.py): which words are kept, where the
text goes in a photo's keywords, and the one-line errors when Tesseract can't be used."""

from __future__ import annotations

import pytest
from pixfind.indexer import ocr
from pixfind.search.errors import OcrUnavailable
from pixfind.search.keywords import fields_of, keyword_text, with_ocr


def test_clean_keeps_confident_words_once_and_drops_texture_noise():
    words = [("CAFE", 96.0), ("Velmora", 88.0), ("|", 95.0), ("ge", 91.0), ("~~", 80.0)]
    words += [("3.50", 93.0), ("Wnrz", 21.0), ("Velmora", 70.0), ("street,", 75.0)]
    assert ocr.clean(words) == "CAFE Velmora 3.50 street"
    assert ocr.clean([]) == ""


def test_ocr_text_replaces_only_the_ocr_line_of_the_keywords():
    text = keyword_text("/r/Tokyo 2023/IMG_1.jpg", ["/r"], ["a caption"], "Canon", None, "old")
    fields = fields_of(with_ocr(text, "  Velmora   coffee "))
    assert fields["ocr"] == "Velmora coffee"
    assert (fields["folder"], fields["camera"], fields["caption"]) == (
        "r Tokyo 2023",
        "Canon",
        "a caption",
    )
    assert fields_of(with_ocr(None, "sign"))["ocr"] == "sign"  # a row without keywords yet


def test_a_missing_language_names_its_package(tmp_path, monkeypatch):
    (tmp_path / "eng.traineddata").write_bytes(b"")
    (tmp_path / "osd.traineddata").write_bytes(b"")
    pytest.importorskip("tesserocr")
    monkeypatch.setattr(ocr, "find_tessdata", lambda prefix=None: str(tmp_path))
    assert ocr.ocr_reader("eng+eng").lang == "eng"
    with pytest.raises(OcrUnavailable) as err:
        ocr.ocr_reader("eng+deu+chi_sim")
    message = str(err.value)
    assert "\n" not in message and "deu+chi_sim" in message and "(it has: eng)" in message
    assert "apt install tesseract-ocr-deu tesseract-ocr-chi-sim" in message
    with pytest.raises(OcrUnavailable, match="names no language"):
        ocr.ocr_reader("+")


def test_tessdata_is_found_from_the_prefix_first(tmp_path):
    (tmp_path / "tessdata").mkdir()
    (tmp_path / "tessdata" / "eng.traineddata").write_bytes(b"")
    assert ocr.find_tessdata(str(tmp_path)) == str(tmp_path / "tessdata")
    assert ocr.find_tessdata(str(tmp_path / "tessdata")) == str(tmp_path / "tessdata")
