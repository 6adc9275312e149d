"""What OCR costs and reads (issue 16): milliseconds per photo and the share of generated
text photos (bench/text_photos.py: signs, receipts, screenshots) whose word it reads, for
Tesseract's defaults and for what pixfind does; the same on real photos (../shared/photos),
where what it "reads" is mostly noise; and whether a cheap pre-filter (edge density of a
small grey copy) would save time without missing text.

    PYTHONPATH=. python bench/ocr.py [--n 60] [--real 100]
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "photos" / "images"


def text_photos(n: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """(word, JPEG bytes) of ``n`` generated text photos."""
    from pixfind.bench.hybrid import made_up_words
    from pixfind.bench.text_photos import render_text_photo
    from pixfind.train.demodata import random_scene, render

    out = []
    for i, word in enumerate(made_up_words(n, random.Random(seed))):
        rng = random.Random(seed * 1000 + i)
        background = render(random_scene(random.Random(i)), random.Random(i), 256)
        img = render_text_photo(word, rng, background)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append((word, buf.getvalue()))
    return out


def real_photos(n: int) -> list[bytes]:
    paths = sorted((REAL / "flickr8k").glob("*.jpg"))[: n // 2]
    paths += sorted((REAL / "coco").glob("*.jpg"))[: n - len(paths)]
    return [p.read_bytes() for p in paths]


def _upscaled(data: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((4000, 3000)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def edge_density(data: bytes, side: int = 256, threshold: float = 48.0) -> float:
    """Share of a small grey copy's pixels on a strong edge: the pre-filter measured."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.draft("L", (side, side))
    img = img.convert("L")
    img.thumbnail((side, side))
    a = np.asarray(img, np.float32)
    gx, gy = np.abs(np.diff(a, axis=1))[:-1], np.abs(np.diff(a, axis=0))[:, :-1]
    return float(np.mean(np.maximum(gx, gy) > threshold))


class TesseractDefaults:
    """One pass with Tesseract's defaults (page layout analysis, Otsu), for comparison."""

    def __init__(self, reader):
        import tesserocr

        self.api = tesserocr.PyTessBaseAPI(path=reader.tessdata, lang=reader.lang)

    def read(self, data: bytes):
        from pixfind.indexer.ocr import OCR_MAX_SIDE
        from pixfind.search.images import decode_bytes
        from pixfind.search.types import OcrText

        image = decode_bytes(data, draft_size=OCR_MAX_SIDE // 3).image
        image.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE))
        self.api.SetImage(image.convert("L"))
        return OcrText(self.api.GetUTF8Text(), "eng")


def run(reader, photos: list[bytes]) -> tuple[list[str], list[float]]:
    texts, ms = [], []
    for data in photos:
        start = time.perf_counter()
        texts.append(reader.read(data).text)
        ms.append((time.perf_counter() - start) * 1000)
    return texts, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="generated text photos")
    parser.add_argument("--real", type=int, default=100, help="real photos, if ../shared is there")
    args = parser.parse_args()

    from pixfind.indexer import ocr
    from pixfind.search.settings import get_settings

    reader = ocr.ocr_reader("eng", get_settings().tessdata)
    generated = text_photos(args.n)
    reader.read(generated[0][1])  # the engine loads once per process: not counted
    data = [d for _, d in generated]
    for label, how in (("pixfind", reader), ("Tesseract's defaults", TesseractDefaults(reader))):
        texts, ms = run(how, data)
        found = sum(w in t.lower() for (w, _), t in zip(generated, texts, strict=True))
        print(
            f"text photos, {label}: {found}/{len(data)} words read, "
            f"{statistics.median(ms):.0f} ms/photo median"
        )
    dens_text = [edge_density(d) for d in data]
    if not REAL.is_dir() or not args.real:
        print("real photos: ../shared/photos not present, skipped")
        return
    photos = real_photos(args.real)
    texts_r, ms_r = run(reader, photos)
    words = [len(t.split()) for t in texts_r]
    print(
        f"real photos ({len(photos)}, flickr8k + coco): {statistics.median(ms_r):.0f} ms/photo "
        f"median, {np.mean(ms_r):.0f} mean; words read per photo: median "
        f"{statistics.median(words):.0f}, photos with any {sum(1 for w in words if w)}: "
        f"{[t for t in texts_r if t][:8]}"
    )
    if reader.tessdata and shutil.which("tesseract"):  # the pytesseract fallback, same passes
        _, ms_t = run(ocr.OcrReader(reader.lang, None), photos[:10])
        print(
            f"pytesseract (one tesseract process per pass): {statistics.median(ms_t):.0f} ms/photo "
            f"median on 10 of them, against {statistics.median(ms_r[:10]):.0f} with tesserocr"
        )
    phone = [_upscaled(d) for d in photos[:10]]
    _, ms_p = run(reader, phone)
    print(
        f"phone-size photos (10 of them upscaled to 4000x3000, JPEG q90; read at "
        f"{ocr.OCR_MAX_SIDE} px): {statistics.median(ms_p):.0f} ms/photo median"
    )
    start = time.perf_counter()
    dens_real = [edge_density(d) for d in photos]
    filter_ms = (time.perf_counter() - start) * 1000 / len(photos)
    floor = min(dens_text)  # the least edgy text photo: a filter must keep it
    skipped = [i for i, d in enumerate(dens_real) if d < floor]
    saved = sum(ms_r[i] for i in skipped) / len(photos)
    print(
        f"pre-filter (edge density, {filter_ms:.1f} ms/photo): every text photo has >= "
        f"{floor:.3f}; it would skip {len(skipped)}/{len(photos)} real photos, saving "
        f"{saved:.1f} ms/photo on average against {filter_ms:.1f} spent on every photo"
    )


if __name__ == "__main__":
    main()
