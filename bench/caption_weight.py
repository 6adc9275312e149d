"""Choose the caption fusion weight: an eval over a partly captioned real photo collection.

Half of N Flickr8k photos (../shared/photos) get their first human caption as a
captions.jsonl entry and are indexed with it; the other half have no caption. Every photo's
other captions (written by different people, different words) are the queries. For each
weight w the figures are R@1, R@10 and MRR of finding the query's photo, over all queries
and separately for captioned / uncaptioned targets (fusion must not bury the uncaptioned).

    PYTHONPATH=. python bench/caption_weight.py --n 300            # pixfind-tiny, random weights
    PYTHONPATH=. python bench/caption_weight.py --model ViT-B-32 --pretrained laion2b_s34b_b79k
    # the demo data's held-out split with the trained demo model (what chose the default):
    PYTHONPATH=. python bench/caption_weight.py --data .cache/demo-data-n5000-s0/test \
        --model .cache/demo-model-... --n 1000

Prints a table, and the smallest weight whose MRR is within 2% of the best one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "photos"
WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="photos (half of them captioned)")
    parser.add_argument("--model", default="pixfind-tiny")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--queries-per-photo", type=int, default=2)
    parser.add_argument("--raw", action="store_true", help="fuse raw (uncalibrated) scores")
    parser.add_argument(
        "--data", type=Path, help="a captioned folder (captions.jsonl) instead of Flickr8k"
    )
    args = parser.parse_args()

    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.encoder import load_encoder
    from pixfind.search.engine import Searcher
    from pixfind.search.types import EncoderSpec

    by_image: dict[str, list[str]] = defaultdict(list)
    if args.data:
        from pixfind.search.captions import read_collection

        images_dir = args.data.resolve()
        for path, caps in read_collection(images_dir).captions.items():
            by_image[str(Path(path).relative_to(images_dir))] = caps
    else:
        images_dir = SHARED / "images"
        lines = (SHARED / "captions.jsonl").read_text().splitlines() if SHARED.is_dir() else []
        for line in lines:
            row = json.loads(line)
            if row["image"].startswith("flickr8k/"):
                by_image[row["image"]].append(row["caption"])
    if not by_image:
        sys.exit(f"skipped: no captions found in {args.data or SHARED}")
    images = sorted(i for i, c in by_image.items() if len(c) >= 1 + args.queries_per_photo)
    images = images[: args.n]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        root.mkdir()
        jsonl = []
        for i, rel in enumerate(images):
            name = rel.replace(os.sep, "_")
            os.symlink(images_dir / rel, root / name)
            if i % 2 == 0:
                jsonl.append(json.dumps({"image": name, "caption": by_image[rel][0]}))
        (root / "captions.jsonl").write_text("\n".join(jsonl) + "\n")
        encoder = load_encoder(EncoderSpec(args.model, args.pretrained), "auto")
        t0 = time.perf_counter()
        run_index(Path(tmp) / "index", IndexOptions(roots=[str(root)]), encoder=encoder)
        searcher = Searcher(Path(tmp) / "index")
        searcher._encoder = encoder
        searcher.calibrate = not args.raw
        print(
            f"indexed {len(images)} photos ({len(jsonl)} captioned) in "
            f"{time.perf_counter() - t0:.1f}s with {encoder.info.label}"
        )

        queries = []  # (text, target path, captioned?)
        for i, rel in enumerate(images):
            for text in by_image[rel][1 : 1 + args.queries_per_photo]:
                queries.append((text, str(root / rel.replace(os.sep, "_")), i % 2 == 0))
        vectors = encoder.encode_texts([q for q, _, _ in queries])
        print(f"{len(queries)} queries (held-out captions by other annotators)\n")
        print(
            f"{'w':>4}  {'R@1':>5}  {'R@10':>5}  {'MRR':>6}  {'MRR capt.':>9}  {'MRR uncapt.':>11}"
        )
        results = {}
        for w in WEIGHTS:
            rr = []
            for vec, (_, target, _) in zip(vectors, queries, strict=True):
                hits = searcher.search_vector(vec, k=len(images), caption_weight=w)
                paths = [h.path for h in hits]
                rr.append(1.0 / (paths.index(target) + 1) if target in paths else 0.0)
            rr = np.array(rr)
            capt = np.array([c for _, _, c in queries])
            results[w] = float(rr.mean())
            print(
                f"{w:>4.1f}  {np.mean(rr == 1):>5.3f}  {np.mean(rr >= 0.1):>5.3f}  "
                f"{rr.mean():>6.4f}  {rr[capt].mean():>9.4f}  {rr[~capt].mean():>11.4f}"
            )
        best = max(results.values())
        chosen = min(w for w, v in results.items() if v >= 0.98 * best)
        print(f"\nbest MRR {best:.4f}; smallest weight within 2% of it: {chosen}")


if __name__ == "__main__":
    main()
