"""Perceptual hashes: what finds a photo's resized, recompressed, re-exported, lightly edited
or cropped copies (``pixfind duplicates``).

Each photo stores two 64-bit DCT hashes (imagehash's ``phash``) of its decoded image: the
whole picture (``phash``) and its centre 90% (``phash_crop``). Two photos are near copies
when the Hamming distance of their whole-picture hashes is within the threshold, or that of
one's whole picture and the other's centre within the threshold and CROP_BITS: the second
pair is what finds a lightly cropped copy, which moves every DCT coefficient of the whole
picture (README, "Duplicates").

The columns are added in place to an index written before they existed, and the next
``pixfind index`` fills them by decoding the files again, without re-embedding.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .errors import backend_errors

COLUMNS = ("phash", "phash_crop")
CROP = 0.9  # the centre kept by phash_crop: finds copies cropped to about 85..95% a side
# most bits between a centre and a whole picture: a centred crop measures 0-2 (README
# "Duplicates"); a smaller radius than the threshold's keeps the centre search 8x cheaper
CROP_BITS = 7
BITS = 64

Hashes = tuple[int, int]  # (phash, phash_crop) as signed int64, what the store holds


def _as_int64(bits: np.ndarray) -> int:
    packed = np.packbits(bits.reshape(-1).astype(bool))
    return int(packed.view(">i8")[0])


def image_hashes(image) -> Hashes:
    """(whole picture, centre 90%) perceptual hashes of an RGB PIL image."""
    import imagehash

    w, h = image.size
    cw, ch = max(1, round(w * CROP)), max(1, round(h * CROP))
    x, y = (w - cw) // 2, (h - ch) // 2
    centre = image.crop((x, y, x + cw, y + ch))
    return _as_int64(imagehash.phash(image).hash), _as_int64(imagehash.phash(centre).hash)


def to_codes(values: Sequence[int]) -> np.ndarray:
    """Signed int64 hashes -> (n, 8) uint8 codes (big-endian bytes of the 64 bits)."""
    arr = np.asarray(values, dtype=">i8").reshape(-1)
    return np.ascontiguousarray(arr.view(np.uint8).reshape(-1, 8))


def _words(codes: np.ndarray) -> np.ndarray:
    return codes.view(">u8").reshape(-1).astype(np.uint64)


_POP = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(words)
    return _POP[words.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distance of (..., 8) codes ``a`` and ``b`` (broadcast)."""
    return _POP[np.bitwise_xor(a, b)].sum(axis=-1, dtype=np.int32)


def _flips(bits: int, radius: int) -> np.ndarray:
    """Every mask of ``bits`` bits with at most ``radius`` bits set."""
    out = [0]
    for r in range(1, radius + 1):
        out += [sum(1 << b for b in c) for c in itertools.combinations(range(bits), r)]
    return np.array(out, np.int64)


def near_pairs(
    full: np.ndarray, crop: np.ndarray, threshold: int, budget: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j: rows whose whole-picture hashes differ in at most ``threshold`` bits,
    or one's centre and the other's whole picture in at most ``min(threshold, CROP_BITS)``;
    ``full``, ``crop``: (n, 8) codes.

    Exact, by multi-index hashing: the 64 bits are four 16-bit quarters, and a pair within
    ``t`` bits has a quarter within ``t // 4`` bits (else it would differ in more), so each
    row probes the buckets of its quarters with up to ``t // 4`` bits flipped and checks
    the full distance of what is there. ``budget`` bounds the candidates held at once."""
    words, crops = _words(full), _words(crop)
    n = len(words)
    found = []
    passes = ((words, threshold, True), (crops, min(threshold, CROP_BITS), False))
    for quarter in range(4):
        shift = np.uint64(16 * quarter)
        keys = ((words >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=1 << 16)
        starts = np.cumsum(counts) - counts
        for queries, bits, whole in passes:
            qkeys = ((queries >> shift) & np.uint64(0xFFFF)).astype(np.int64)
            for flip in _flips(16, bits // 4):
                probe = qkeys ^ flip
                cnt = counts[probe]
                if whole and flip:  # each pair of buckets from one side only: the lower key
                    cnt = np.where(qkeys < probe, cnt, 0)
                found += _check(queries, words, order, starts[probe], cnt, bits, budget)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.sort(np.concatenate(found, axis=1), axis=0)  # each as (low, high)
    key = np.unique(pairs[0] * n + pairs[1])
    return key // n, key % n


def _check(queries, words, order, lo, cnt, threshold, budget) -> list[np.ndarray]:
    """The (query, row) pairs within ``threshold`` among the bucket ranges [lo, lo + cnt)
    of each query, in slices of about ``budget`` candidates."""
    out = []
    ends = np.cumsum(cnt)
    q0, n = 0, len(queries)
    while q0 < n:
        done = int(ends[q0 - 1]) if q0 else 0
        q1 = max(int(np.searchsorted(ends, done + budget, side="right")), q0 + 1)
        c = cnt[q0:q1]
        if total := int(c.sum()):
            qi = np.repeat(np.arange(q0, q1), c)
            cand = order[np.repeat(lo[q0:q1] - (np.cumsum(c) - c), c) + np.arange(total)]
            near = _popcount(queries[qi] ^ words[cand]) <= threshold
            near &= qi != cand  # never itself
            if near.any():
                out.append(np.stack([qi[near], cand[near]]))
        q0 = q1
    return out


# -- the columns in the store -----------------------------------------------------------------
def has_columns(store) -> bool:
    return all(c in store.table.schema.names for c in COLUMNS)


def add_columns(store) -> bool:
    """Give an index written before perceptual hashes its (empty) hash columns; the indexer
    fills them (``indexer/rehash.py``). Returns whether they were added."""
    import pyarrow as pa

    if has_columns(store):
        return False
    with backend_errors(store.home, "adding the perceptual hash columns"):
        missing = [c for c in COLUMNS if c not in store.table.schema.names]
        store.table.add_columns([pa.field(c, pa.int64()) for c in missing])
    return True


def unhashed(store) -> list[str]:
    """Paths of the rows that have no perceptual hash yet."""
    from .store import _real_paths

    if not has_columns(store):
        return []
    t = store._scan(["path", "path_raw"], f"{COLUMNS[0]} IS NULL")
    return _real_paths(t)


def fill(store, rows: Sequence[tuple[int, Hashes]]) -> None:
    """Write ``(id, hashes)`` into existing rows, in one commit."""
    import pyarrow as pa

    if not rows:
        return
    ids = [i for i, _ in rows]
    data = {"id": pa.array(ids, pa.int64())}
    for k, name in enumerate(COLUMNS):
        data[name] = pa.array([h[k] for _, h in rows], pa.int64())
    with backend_errors(store.home, "writing perceptual hashes"):
        store.table.merge_insert("id").when_matched_update_all().execute(pa.table(data))
