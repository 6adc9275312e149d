"""Decode cost per 12 MP phone JPEG (4000x3000, q90): the reference path against pixfind's.

Reference: ``preprocess(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))``, a full-size
decode. pixfind: ``decode_bytes(data, draft_size=224)`` (a DCT-reduced decode, then the resample
that keeps it aligned with the full picture) followed by the same preprocess. Both include the
model transform (ViT-B-32's: 224 px bicubic) and run one thread, interleaved photo by photo, so
that other work on the machine slows both alike. The JPEGs are generated in a temporary folder
from the largest photos in ../shared/photos when present (upscaled), else from noise:
    python bench/decode.py --n 12
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PHOTOS  # noqa: E402


def phone_jpegs(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    sources = sorted((PHOTOS / "flickr8k").glob("*.jpg"))[:n] if PHOTOS.is_dir() else []
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        if i < len(sources):
            img = Image.open(sources[i]).convert("RGB").resize((4000, 3000), Image.BICUBIC)
        else:
            img = Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
        path = folder / f"phone{i:03d}.jpg"
        img.save(path, "JPEG", quality=90)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="generated 12 MP JPEGs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image, ImageOps
    from pixfind.search.images import decode_bytes

    torch.set_num_threads(1)
    preprocess = image_transform_v2(PreprocessCfg(size=224), is_train=False)

    def reference(data: bytes):
        return preprocess(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))

    def pixfind(data: bytes):
        return preprocess(decode_bytes(data, draft_size=224).image)

    with tempfile.TemporaryDirectory() as tmp:
        photos = [p.read_bytes() for p in phone_jpegs(Path(tmp), args.n)]
    times: dict[str, list[float]] = {"reference": [], "pixfind": []}
    reference(photos[0]), pixfind(photos[0])  # warm up
    for _ in range(args.rounds):
        for data in photos:
            for name, fn in (("reference", reference), ("pixfind", pixfind)):
                start = time.perf_counter()
                fn(data)
                times[name].append(time.perf_counter() - start)
    ref, ours = (statistics.median(times[k]) * 1000 for k in ("reference", "pixfind"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.n} JPEGs 4000x3000 q90 x {args.rounds} rounds, one thread, load average {load}")
    print(f"reference (full decode + preprocess): {ref:.1f} ms per photo (median)")
    print(f"pixfind   (decode_bytes + preprocess): {ours:.1f} ms per photo (median)")
    print(f"pixfind is {ref / ours:.1f}x faster")


if __name__ == "__main__":
    main()
