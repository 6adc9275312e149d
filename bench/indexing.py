"""Indexing throughput on real photos, as they are and upscaled to phone size (4000x3000 JPEG q90).

For each model (ViT-B-32 with stand-in RANDOM weights: speed only; and the small pixfind-tiny)
and each photo set, in the same process and at the same batch size:
  end to end  `run_index` on the folder (scan, decode workers, encode, LanceDB writes, FAISS)
  ceiling     encode_image on ready tensors (the model alone: no decoding at all)
  naive       PIL open + open_clip preprocess per image in the main process, then encode
Targets: end to end >= 90% of the ceiling; >= 2x naive on phone-size JPEGs.

    python bench/indexing.py --n 500 --models ViT-B-32,pixfind-tiny
Photos come from ../shared/photos/images/flickr8k; the phone-size copies are generated into a
temp folder (reused across runs), never into the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `pixfind index` sets (cli.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PHOTOS, use_standin  # noqa: E402

SPECS = {"ViT-B-32": ("ViT-B-32", "laion2b_s34b_b79k"), "pixfind-tiny": ("pixfind-tiny", None)}


def _upscale(job: tuple[str, str]) -> None:
    from PIL import Image

    src, dst = job
    with Image.open(src) as im:
        im.convert("RGB").resize((4000, 3000), Image.BICUBIC).save(dst, "JPEG", quality=90)


def photo_sets(n: int, work: Path) -> dict[str, Path]:
    sources = sorted((PHOTOS / "flickr8k").glob("*.jpg"))[:n]
    if len(sources) < n:
        sys.exit(f"need {n} photos in {PHOTOS / 'flickr8k'}, found {len(sources)}")
    original = work / f"original-{n}"
    phone = work / f"phone-{n}"
    for folder in (original, phone):
        folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for src in sources:
        if not (original / src.name).exists():
            shutil.copy(src, original / src.name)
        if not (phone / src.name).exists():
            jobs.append((str(src), str(phone / src.name)))
    if jobs:
        print(f"generating {len(jobs)} phone-size JPEGs in {phone} ...", flush=True)
        with Pool(os.cpu_count() or 2) as pool:
            pool.map(_upscale, jobs, chunksize=8)
    return {"original": original, "phone 4000x3000": phone}


def ceiling(encoder, batch: int, images: int) -> float:
    import torch

    size = encoder.image_size
    x = torch.randn(batch, 3, size, size)
    encoder.encode_image_tensors(x)  # warm-up
    start = time.perf_counter()
    done = 0
    while done < images:
        encoder.encode_image_tensors(x)
        done += batch
    return done / (time.perf_counter() - start)


def naive(encoder, paths: list[Path], batch: int) -> float:
    import torch
    from PIL import Image

    start = time.perf_counter()
    for i in range(0, len(paths), batch):
        tensors = []
        for p in paths[i : i + batch]:
            with Image.open(p) as im:
                tensors.append(encoder.preprocess(im.convert("RGB")))
        encoder.encode_image_tensors(torch.stack(tensors))
    return len(paths) / (time.perf_counter() - start)


def end_to_end(encoder, folder: Path, batch: int, workers: int) -> tuple[float, dict]:
    from pixfind.indexer import IndexOptions, run_index

    home = Path(tempfile.mkdtemp(prefix="pixfind-idx-"))
    try:
        report = run_index(
            home, IndexOptions([str(folder)], batch_size=batch, workers=workers), encoder=encoder
        )
        return report.embedded / report.seconds, report.to_dict()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--models", default="ViT-B-32,pixfind-tiny")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=-1, help="decode workers (-1: pixfind's)")
    ap.add_argument("--sets", default="original,phone", help="photo sets: original, phone")
    ap.add_argument("--naive-n", type=int, default=200, help="images timed in the naive loop")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pixfind-bench")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pixfind-standin")
    args = ap.parse_args()
    use_standin(args.cache)
    import lancedb  # noqa: F401 - loaded up front like the model: process start, not per photo
    import torch
    from pixfind.search.encoder import load_encoder
    from pixfind.search.types import EncoderSpec

    sets = photo_sets(args.n, args.work)
    print(
        f"\n{args.n} photos, batch {args.batch}, torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} cores shared with other work: compare ratios, not absolutes"
    )
    print(
        "model | photos | end-to-end img/s | ceiling img/s | naive img/s | e2e/ceiling | e2e/naive"
    )
    for name in args.models.split(","):
        encoder = load_encoder(EncoderSpec(*SPECS[name]), "cpu")
        for label, folder in sets.items():
            if label.split()[0] not in args.sets.split(","):
                continue
            paths = sorted(folder.glob("*.jpg"))
            # baselines before and after the run, averaged: load from other work drifts
            ceil = ceiling(encoder, args.batch, min(args.n, 128))
            slow = naive(encoder, paths[: args.naive_n // 2], args.batch)
            e2e, report = end_to_end(encoder, folder, args.batch, args.workers)
            ceil = (ceil + ceiling(encoder, args.batch, min(args.n, 128))) / 2
            slow = (slow + naive(encoder, paths[args.naive_n // 2 : args.naive_n], args.batch)) / 2
            print(
                f"{name} | {label} | {e2e:.1f} | {ceil:.1f} | {slow:.1f} | "
                f"{e2e / ceil:.0%} | {e2e / slow:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
