"""OCR: the words printed inside a photo (a sign, a receipt, a slide, a screenshot), for its
keywords. Runs in the decoding workers, offline, with Tesseract.

Tesseract is driven in-process through ``tesserocr`` (one engine per worker process, kept for
the run): 35-70 ms a photo on a shared 2-core machine, where ``pytesseract`` (one
``tesseract`` process per photo, which loads its model each time) took 500-1000 ms. When only
``pytesseract`` is installed it is used, slower. Language data comes from the system's
Tesseract (Debian's ``tesseract-ocr-eng``, Homebrew's ``tesseract``...)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import time
from dataclasses import dataclass

from PIL import ImageOps
from pixfind.search.errors import OcrUnavailable
from pixfind.search.images import decode_bytes
from pixfind.search.types import OcrText

OCR_MAX_SIDE = 1280  # the long side Tesseract reads at: its time grows with the pixels
MIN_CONFIDENCE = 60  # Tesseract's word confidence (0-100) below which a word is noise
MIN_LETTERS = 3  # shorter words read in photos are mostly textures ("|", "ge", "ik")
MAX_CHARS = 2000  # the text kept per photo (as for any metadata field)
# Sparse text (page segmentation mode 11: words anywhere, no page layout) with a tiled,
# adaptive Otsu threshold (thresholding_method 1), on the photo and on its negative (light
# words on dark plates): bench/ocr.py reads 88% of its signs, receipts and screenshots so,
# against 67% with Tesseract's defaults (page layout, one global threshold), which miss short
# words on plates.
SPARSE, ADAPTIVE_OTSU = 11, "1"
INSTALL = (
    "install Tesseract and its English data (Debian/Ubuntu: apt install tesseract-ocr "
    "tesseract-ocr-eng; macOS: brew install tesseract; Windows: winget install "
    "UB-Mannheim.TesseractOCR) and pip install 'pixfind[ocr]'"
)
_TESSDATA = (
    "/usr/share/tesseract-ocr/*/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/usr/local/share/tesseract-ocr/tessdata",
    "/opt/homebrew/share/tessdata",
    "/opt/local/share/tessdata",
    r"C:\Program Files\Tesseract-OCR\tessdata",
)
_WORD = re.compile(r"\w[\w'&.-]*\w|\w")


@dataclass(frozen=True)
class OcrReader:
    """Reads photos' text; small and picklable, so decoding workers get a copy each."""

    lang: str = "eng"
    tessdata: str | None = None  # folder of *.traineddata (tesserocr); None: pytesseract's own

    def read(self, data: bytes, raw: str | None = None) -> OcrText:
        """The words in an image file's bytes (``raw``: its RAW kind, search/raw.py); never
        raises (OCR must not stop indexing)."""
        start = time.perf_counter()
        try:
            # JPEG draft: short side >= 2/3 of OCR_MAX_SIDE, then down to OCR_MAX_SIDE
            image = decode_bytes(data, OCR_MAX_SIDE // 3, raw=raw).image
            image.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE))
            with _quiet_stderr():
                words = _engine(self.lang, self.tessdata)(image.convert("L"))
        except Exception:  # a hostile file or a Tesseract failure: no text, the photo stays
            words = []
        return OcrText(clean(words), self.lang, time.perf_counter() - start)


def clean(words: list[tuple[str, float]]) -> str:
    """The words Tesseract is sure of, once each, as one line: noise from textures (``|``,
    ``~~``, low-confidence letters) left out."""
    kept: dict[str, None] = {}
    for word, confidence in words:
        if confidence >= MIN_CONFIDENCE:
            kept.update((w, None) for w in _WORD.findall(word) if _letters(w) >= MIN_LETTERS)
    return " ".join(kept)[:MAX_CHARS].strip()


@contextlib.contextmanager
def _quiet_stderr():
    """Leptonica (under Tesseract) prints its own complaints ("Error in boxClipToRectangle")
    on the process's stderr, between the progress bar's lines: silenced while it runs."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _letters(word: str) -> int:
    return sum(c.isalnum() for c in word)


_ENGINES: dict = {}  # (pid, lang, tessdata) -> callable: one Tesseract engine per process


def _engine(lang: str, tessdata: str | None):
    key = (os.getpid(), lang, tessdata)  # a forked worker must not use its parent's engine
    if key not in _ENGINES:
        _ENGINES[key] = _tesserocr(lang, tessdata) if tessdata else _pytesseract(lang)
    return _ENGINES[key]


def _tesserocr(lang: str, tessdata: str):
    import tesserocr

    api = tesserocr.PyTessBaseAPI(path=tessdata, lang=lang, psm=SPARSE)
    api.SetVariable("thresholding_method", ADAPTIVE_OTSU)

    def words(image) -> list[tuple[str, float]]:
        api.SetImage(image)
        api.Recognize()
        # (MapWordConfidences prints an error on a page without words: asked only if any)
        return api.MapWordConfidences() if api.GetUTF8Text().strip() else []

    return lambda grey: words(grey) + words(ImageOps.invert(grey))


def _pytesseract(lang: str):
    import pytesseract

    def words(image, config: str) -> list[tuple[str, float]]:
        data = pytesseract.image_to_data(
            image, lang=lang, config=config, output_type=pytesseract.Output.DICT
        )
        return [(w, float(c)) for w, c in zip(data["text"], data["conf"], strict=True) if w]

    config = f"--psm {SPARSE} -c thresholding_method={ADAPTIVE_OTSU}"
    return lambda grey: words(grey, config) + words(ImageOps.invert(grey), config)


def find_tessdata(prefix: str | None = None) -> str | None:
    """The folder of Tesseract's language data: ``prefix`` (TESSDATA_PREFIX), else where
    the usual packages put it."""
    candidates = [prefix, os.path.join(prefix, "tessdata")] if prefix else []
    for pattern in _TESSDATA:
        candidates += sorted(glob.glob(pattern), reverse=True)  # newest version first
    for folder in candidates:
        if folder and glob.glob(os.path.join(folder, "*.traineddata")):
            return folder
    return None


def _languages(folder: str) -> set[str]:
    names = glob.glob(os.path.join(folder, "*.traineddata"))
    return {os.path.basename(n)[: -len(".traineddata")] for n in names}


def ocr_reader(lang: str = "eng", tessdata_prefix: str | None = None) -> OcrReader:
    """A reader for ``lang`` ("eng", "eng+deu"), or OcrUnavailable saying in one line what
    to install: checked before indexing starts, so a run never fails halfway for it."""
    wanted = list(dict.fromkeys(x for x in lang.split("+") if x))
    if not wanted:
        raise OcrUnavailable(f"--ocr-lang {lang!r} names no language; e.g. eng or eng+deu")
    try:
        import tesserocr  # noqa: F401

        folder = find_tessdata(tessdata_prefix)
        if folder is None:
            raise OcrUnavailable(f"OCR found no Tesseract language data: {INSTALL}")
        have = _languages(folder)
    except ImportError:
        folder, have = None, _pytesseract_languages()
    missing = [x for x in wanted if x not in have]
    if missing:
        package = " ".join(f"tesseract-ocr-{x.lower().replace('_', '-')}" for x in missing)
        raise OcrUnavailable(
            f"Tesseract has no data for {'+'.join(missing)} (it has: "
            f"{', '.join(sorted(have - {'osd'})) or 'none'}); install it (Debian/Ubuntu: "
            f"apt install {package}) or pick another --ocr-lang"
        )
    return OcrReader("+".join(wanted), folder)


def _pytesseract_languages() -> set[str]:
    try:
        import pytesseract

        return set(pytesseract.get_languages(config=""))
    except ImportError:
        raise OcrUnavailable(f"OCR needs tesserocr: {INSTALL}") from None
    except Exception:  # TesseractNotFoundError and friends: no tesseract program
        raise OcrUnavailable(f"OCR needs Tesseract: {INSTALL}") from None
