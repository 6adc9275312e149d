"""Time and memory of `pixfind duplicates` on a million photos (synthetic hashes).

    python bench/duplicates.py --n 1000000 --baseline-n 20000

Synthetic library: n perceptual hashes whose bits are 1 with a per-bit probability drawn in
0.3..0.7 (real hashes are not uniform, which fills some FAISS buckets more than others), 2%
of them near copies of another (0..threshold bits flipped), centre-crop hashes 16 bits from
their photo's. Phases, each with its wall time and peak RSS above the process before it:

- pairs: the exact multi-index hashing search (search/phash.py near_pairs), whole picture
  and centre queries;
- groups: connected components of those pairs;
- end to end (--store): find_duplicates on a real LanceDB table of n rows (store scan,
  filters, pairs, groups, best copies), as `pixfind duplicates --json` runs it.

Baselines in the same run, at --baseline-n: near_pairs against FAISS's own multi-hash index
(IndexBinaryMultiHash, same exact layout), brute-force Hamming (IndexBinaryFlat) and a range
search of 512-d embeddings (IndexFlatIP), the alternative to hashes; the last two are
quadratic, so their 1M figure is extrapolated (x (n / baseline-n)^2) and printed as such.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import clustered  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Peak:
    """Wall seconds and peak RSS above the start of a ``with`` block (sampled every 5 ms)."""

    def __enter__(self):
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())
        self.mb = (self.peak - self.base) / 1e6


def synthetic_hashes(n: int, threshold: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(full, crop) as (n, 8) uint8 codes: biased bits, 2% planted near copies."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.3, 0.7, 64)
    bits = rng.random((n, 64)) < p
    copies = rng.choice(n, n // 50, replace=False)
    sources = rng.integers(0, n, len(copies))
    bits[copies] = bits[sources]
    for row in copies:
        bits[row, rng.choice(64, rng.integers(0, threshold + 1), replace=False)] ^= True
    crop = bits.copy()
    rows = np.arange(n)
    for quarter in range(16):  # 16 bits of each centre hash away from its photo's
        crop[rows, quarter * 4 + rng.integers(0, 4, n)] ^= True
    return np.packbits(bits, axis=1), np.packbits(crop, axis=1)


def fake_store(home: Path, full: np.ndarray, crop: np.ndarray):
    """A real LanceDB index of n rows (4-d vectors: the vectors are not read here)."""
    import pyarrow as pa
    from pixfind.search.store import Store, schema_for
    from pixfind.search.types import ModelInfo

    info = ModelInfo("bench", None, "bench", 4, 64, (0.5,) * 3, (0.5,) * 3)
    store = Store.create(home, info)
    schema = schema_for(info)
    n = len(full)
    as_int = full.view(">i8").reshape(-1), crop.view(">i8").reshape(-1)
    for start in range(0, n, 200_000):
        m = min(200_000, n - start)
        ids = np.arange(start, start + m, dtype=np.int64)
        cols = {
            "id": ids,
            "path": [f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg" for i in ids],
            "mtime": np.full(m, 1.7e9),
            "size": 2_000_000 + ids % 1000,
            "width": np.full(m, 4000, np.int32),
            "height": np.full(m, 3000, np.int32),
            "content_hash": [f"{i:032x}" for i in ids],
            "taken_at": 1.6e9 + ids.astype(np.float64),
            "taken_source": ["exif"] * m,
            "file_type": ["jpeg"] * m,
            "has_caption": np.zeros(m, bool),
            "phash": as_int[0][start : start + m].astype(np.int64),
            "phash_crop": as_int[1][start : start + m].astype(np.int64),
        }
        arrays = []
        for field in schema:
            if field.name == "vector":
                flat = pa.array(np.zeros(m * 4, np.float32))
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, 4))
            elif field.name in cols:
                arrays.append(pa.array(cols[field.name], type=field.type))
            else:
                arrays.append(pa.nulls(m, field.type))
        store.table.add(pa.Table.from_arrays(arrays, schema=schema))
    return Store.open(home)


def faiss_multihash(full: np.ndarray, crop: np.ndarray, threshold: int) -> float:
    import faiss
    from pixfind.search.phash import CROP_BITS

    index = faiss.IndexBinaryMultiHash(64, 4, 16)
    index.add(full)
    start = time.perf_counter()
    for queries, bits in ((full, threshold), (crop, min(threshold, CROP_BITS))):
        index.nflip = bits // 4
        index.range_search(queries, bits + 1)
    return time.perf_counter() - start


def brute_force_hamming(full: np.ndarray, threshold: int) -> float:
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(full)
    start = time.perf_counter()
    index.range_search(full, threshold + 1)
    return time.perf_counter() - start


def embedding_range(n: int, cosine: float = 0.95) -> float:
    import faiss

    x = clustered(n, 512)
    index = faiss.IndexFlatIP(512)
    index.add(x)
    start = time.perf_counter()
    index.range_search(x, cosine)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--baseline-n", type=int, default=20_000)
    parser.add_argument("--threshold", type=int, default=10)
    parser.add_argument("--store-n", type=int, default=100_000, help="end to end (0: skip)")
    args = parser.parse_args()
    from pixfind.search.duplicates import components, find_duplicates
    from pixfind.search.phash import near_pairs

    full, crop = synthetic_hashes(args.n, args.threshold)
    print(f"{args.n:,} synthetic photos, threshold {args.threshold} bits, {os.cpu_count()} CPUs")
    with Peak() as pairs:
        i, j = near_pairs(full, crop, args.threshold)
    print(f"pairs   {pairs.seconds:7.2f} s  {pairs.mb:7.0f} MB peak  {len(i):,} pairs")
    with Peak() as groups:
        found = components(len(full), i, j)
    print(f"groups  {groups.seconds:7.2f} s  {groups.mb:7.0f} MB peak  {len(found):,} groups")
    if args.store_n:
        with tempfile.TemporaryDirectory() as tmp:
            m = args.store_n
            store = fake_store(Path(tmp) / "index", full[:m], crop[:m])
            with Peak() as whole:
                report = find_duplicates(store, None, args.threshold)
            print(
                f"end to end at {m:,} (LanceDB scan, pairs, groups, best copies) "
                f"{whole.seconds:.2f} s  {whole.mb:.0f} MB peak  {len(report.groups):,} groups"
            )

    b = args.baseline_n
    scale = (args.n / b) ** 2
    small_full, small_crop = full[:b], crop[:b]
    start = time.perf_counter()
    near_pairs(small_full, small_crop, args.threshold)
    multi = time.perf_counter() - start
    fmh = faiss_multihash(small_full, small_crop, args.threshold)
    flat = brute_force_hamming(small_full, args.threshold)
    emb = embedding_range(b)
    print(f"at {b:,}: near_pairs {multi:.3f} s (whole + centre queries)")
    print(f"at {b:,}: FAISS IndexBinaryMultiHash, same queries {fmh:.3f} s ({fmh / multi:.1f}x)")
    print(
        f"at {b:,}: brute-force Hamming {flat:.3f} s, whole pictures only "
        f"({flat / multi:.1f}x near_pairs); at {args.n:,} ~{flat * scale:,.0f} s extrapolated"
    )
    print(
        f"at {b:,}: 512-d embedding range search {emb:.3f} s ({emb / multi:.1f}x); at "
        f"{args.n:,} ~{emb * scale:,.0f} s extrapolated (flat index)"
    )


if __name__ == "__main__":
    main()
