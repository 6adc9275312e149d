"""Text query latency in a warm process: encode + ANN search + metadata, at 10k/100k/1M.

Synthetic clustered 512-d vectors are written into a real pixfind store (LanceDB on disk)
whose model is ViT-B-32/laion2b_s34b_b79k; the text tower loads with stand-in RANDOM
weights (speed only). pixfind's path (text tower alone, unpadded tokens, the index pixfind
chooses, metadata by row offset) is compared in the same run with the core's path: the full
model encoding all 77 token positions, exact FAISS Flat with default threads, and metadata
through an ``id IN (...)`` filter.

    python bench/query_latency.py --sizes 10000,100000,1000000 --queries 100
Through `pixfind serve` (HTTP on loopback) at the same sizes: bench/load_api.py --synthetic.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import clustered, percentiles, sizes_arg, use_standin  # noqa: E402

WORDS = [
    "dog",
    "cat",
    "beach",
    "night",
    "city",
    "snow",
    "mountain",
    "red",
    "car",
    "child",
    "birthday",
    "cake",
    "sunset",
    "boat",
]


def make_store(home: Path, n: int):
    from pixfind.search.rows import records_table
    from pixfind.search.store import Store, path_id
    from pixfind.search.types import ImageRecord, ModelInfo

    info = ModelInfo(
        "ViT-B-32",
        "laion2b_s34b_b79k",
        "ViT-B-32:laion2b_s34b_b79k",
        512,
        224,
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    )
    store = Store.create(home, info)
    x = clustered(n, 512)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        recs = [
            ImageRecord(path_id(p), p, 1.7e9, 3_000_000, 4000, 3000, f"{i:032x}", 1.7e9)
            for i in range(start, start + m)
            for p in [f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg"]
        ]
        store.table.add(records_table(recs, x[start : start + m], store.table.schema))
    return store, x


def texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 6))) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=sizes_arg, default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--baseline-queries", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pixfind-standin")
    args = ap.parse_args()
    use_standin(args.cache)
    import faiss
    import torch
    from pixfind.search.encoder import load_encoder
    from pixfind.search.engine import Searcher

    print("warm in-process text queries; 2 shared cores: absolute times are inflated, compare")
    print("the ratio against the core path measured in the same run\n")
    print(
        "rows | index | build s | encode p50 | search p50 | metadata p50 | end-to-end p50 / p99"
        " ms | core path p50 / p99 ms | speedup p50"
    )
    full = None
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="pixfind-q-"))
        try:
            store, x = make_store(tmp / "home", n)
            searcher = Searcher(tmp / "home", device="cpu")
            start = time.perf_counter()
            index = searcher.index
            build = time.perf_counter() - start
            qs = texts(args.queries)
            for q in qs[:3]:
                searcher.search(q, 10)
            enc, srch, meta, total = [], [], [], []
            for q in qs:
                t0 = time.perf_counter()
                v = searcher.text_vector(q)
                t1 = time.perf_counter()
                scores, pos = index.search_positions(v[None], 10)
                t2 = time.perf_counter()
                ids = index.ids[pos[0]].tolist()
                searcher._records(index, ids, dict(zip(ids, pos[0].tolist(), strict=True)))
                t3 = time.perf_counter()
                hits = searcher.search(q, 10)
                t4 = time.perf_counter()
                assert len(hits) == 10
                enc.append(t1 - t0)
                srch.append(t2 - t1)
                meta.append(t3 - t2)
                total.append(t4 - t3)
            # the core's path, same process, same store
            if full is None:
                full = load_encoder(searcher.spec, "cpu")
            flat = faiss.IndexFlatIP(512)
            flat.add(x)
            core = []
            for q in qs[: args.baseline_queries]:
                t0 = time.perf_counter()
                with torch.inference_mode():
                    f = full.model.encode_text(full.tokenizer([q]))
                    f = torch.nn.functional.normalize(f, dim=-1).numpy()
                _, p = flat.search(f, 10)
                store.records([int(i) for i in index.ids[p[0]]])
                core.append(time.perf_counter() - t0)
            p50, p99 = percentiles(total)
            c50, c99 = percentiles(core)
            print(
                f"{n:,} | {index.infos.index_type} (recall@10 {index.infos.recall_at_10:.3f}) | "
                f"{build:.1f} | {percentiles(enc)[0]:.1f} | {percentiles(srch)[0]:.2f} | "
                f"{percentiles(meta)[0]:.1f} | {p50:.1f} / {p99:.1f} | {c50:.1f} / {c99:.1f} | "
                f"{c50 / p50:.1f}x",
                flush=True,
            )
            del searcher, index, flat, x
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
