"""Which FAISS index to build for a collection, and the in-memory build of it.

Exact ``Flat`` below ``flat_max_rows``, else IVF-PQ with re-ranked candidates, or HNSW by
name; see search/index.py for the trade-offs and knobs.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from .recall import tune
from .settings import get_settings

KINDS = ("auto", "flat", "ivfpq", "hnsw", "ivfpq-disk")


@dataclass(frozen=True)
class IndexPlan:
    """What to build for a collection: ``kind`` plus the FAISS factory string."""

    kind: str  # flat | ivfpq | hnsw | ivfpq-disk
    factory: str
    nlist: int = 0
    estimated_bytes: int = 0


def choose_index(
    rows: int,
    dim: int,
    memory_budget_mb: float | None = None,
    flat_max_rows: int | None = None,
    kind: str | None = None,
    big_rows: int | None = None,
) -> IndexPlan:
    """Pick the index for ``rows`` vectors of ``dim`` floats within a memory budget.

    Exact below ``flat_max_rows`` (when the float32 vectors fit the budget); from
    ``big_rows`` on, or when the float32 vectors (which the in-memory build holds) exceed the
    budget, IVF-PQ on disk (search/bigindex.py); in between an IVF-PQ index whose candidates
    are re-ranked with fp16 vectors, or (asked for by name on a tight budget) 8-bit ones, or
    no re-ranking at all when even that would not fit.
    """
    budget = (
        memory_budget_mb if memory_budget_mb is not None else get_settings().index_memory_mb
    ) * 2**20
    flat_max = int(flat_max_rows if flat_max_rows is not None else get_settings().flat_max_rows)
    big = int(big_rows if big_rows is not None else get_settings().big_index_rows)
    kind = (kind or get_settings().index_kind).lower()
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; one of {', '.join(KINDS)}")
    flat_bytes = rows * dim * 4
    if kind == "flat" or (kind == "auto" and (rows < flat_max and flat_bytes <= budget)):
        return IndexPlan("flat", "Flat", estimated_bytes=flat_bytes)
    if rows < 1000:  # too few vectors to train quantisers: exact is both right and fast
        return IndexPlan("flat", "Flat", estimated_bytes=flat_bytes)
    if kind == "hnsw":
        return IndexPlan("hnsw", "HNSW32", estimated_bytes=rows * (dim * 4 + 32 * 2 * 4 + 8))
    nlist = _nlist(rows)
    m = _pq_m(dim)
    if kind == "ivfpq-disk" or (kind == "auto" and (rows >= big or flat_bytes > budget)):
        # in memory: the PQ codes and their ids in the inverted lists; the rest is on disk
        return IndexPlan("ivfpq-disk", f"IVF{nlist},PQ{m}x8np", nlist, rows * (m + 8))
    overhead = m + 8 + 8  # PQ code + id in the inverted list + ids.npy
    for refine, extra in (("SQfp16", dim * 2), ("SQ8", dim)):
        if rows * (overhead + extra) <= budget:
            factory = f"IVF{nlist},PQ{m}x8np,Refine({refine})"
            return IndexPlan("ivfpq", factory, nlist, rows * (overhead + extra))
    return IndexPlan("ivfpq", f"IVF{nlist},PQ{m}x8np", nlist, rows * overhead)


def _nlist(rows: int) -> int:
    """Inverted lists: a power of two near sqrt(rows), so training stays short on a laptop."""
    return int(min(65536, max(16, 2 ** round(math.log2(math.sqrt(rows))))))


def _pq_m(dim: int) -> int:
    """Sub-quantisers: 8 dimensions each (64 bytes for 512-d), dividing ``dim`` exactly."""
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m >= 1 and dim % m == 0:
            return m
    return dim


def build_faiss(
    vectors: np.ndarray,
    plan: IndexPlan,
    target_recall: float | None = None,
    train_max: int | None = None,
):
    """Build (train, add, tune) the FAISS index of a plan; returns (index, params, recall, nq)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    target = target_recall if target_recall is not None else get_settings().target_recall
    if plan.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if plan.kind == "ivfpq":
        # k-means on a sample: 40 points per list is plenty and keeps a 1M build in minutes
        limit = train_max or max(40 * plan.nlist, 20_000)
        rng = np.random.default_rng(0)
        sample = vectors if rows <= limit else vectors[np.sort(rng.choice(rows, limit, False))]
        with faiss_threads():
            index.train(sample)
    if rows:
        with faiss_threads():
            for start in range(0, rows, 100_000):
                index.add(vectors[start : start + 100_000])
    params, recall, nq = tune(index, plan, vectors, target)
    return index, params, recall, nq


@contextlib.contextmanager
def faiss_threads():
    """FAISS's OpenMP threads spin while they wait: on a busy machine more threads than idle
    cores makes training several times slower (measured 35 s vs 7 s on 2 loaded cores), so
    use only the cores that the load average leaves free."""
    import faiss

    before = faiss.omp_get_max_threads()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    faiss.omp_set_num_threads(max(1, min(before, round((os.cpu_count() or 1) - load + 1))))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
