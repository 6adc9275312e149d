"""Recall measurement and search-effort tuning of approximate vector indexes.

Sample queries drawn from the collection, their exact top-k (in blocks, so a million rows fit
in memory), the recall of an approximate top-k against it, and ``tune``: the smallest search
effort (nprobe, re-rank depth, efSearch) whose recall@10 reaches the target. Used by the
in-memory indexes (search/indexplan.py) and the disk one (search/bigindex.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .indexplan import IndexPlan

RECALL_QUERIES = 200
NPROBES = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
K_FACTORS = (4, 8, 16, 32, 64)
EFS = (16, 32, 64, 96, 128, 192, 256, 384, 512)


def sample_queries(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Recall-measurement queries drawn from the collection: half are stored vectors with
    noise, half blends of two stored vectors (queries that fall between clusters)."""
    rng = np.random.default_rng(seed)
    rows, dim = vectors.shape
    picks = rng.integers(0, rows, size=(n, 2))
    noise = rng.standard_normal((n, dim)).astype(np.float32) / math.sqrt(dim)
    q = vectors[picks[:, 0]] + 0.5 * noise
    half = n // 2
    q[half:] = vectors[picks[half:, 0]] + vectors[picks[half:, 1]] + 0.5 * noise[half:]
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    return np.ascontiguousarray(q, dtype=np.float32)


class RunningTopK:
    """The exact inner-product top-k of some queries over vectors that arrive in blocks."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), 0), -np.inf, np.float32)
        self.positions = np.zeros((len(queries), 0), np.int64)
        self.seen = 0

    def add(self, block: np.ndarray) -> None:
        """The next block of vectors (its positions follow the blocks before it)."""
        if not len(block):
            return
        sims = self.queries @ block.T
        kk = min(self.k, block.shape[0])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        scores = np.concatenate([self.scores, np.take_along_axis(sims, part, 1)], axis=1)
        positions = np.concatenate([self.positions, part + self.seen], axis=1)
        keep = np.argsort(-scores, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, keep, 1)
        self.positions = np.take_along_axis(positions, keep, 1)
        self.seen += len(block)


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions of the exact inner-product top-k, in blocks so 1M rows fit in memory."""
    top = RunningTopK(queries, k)
    for start in range(0, len(vectors), 262_144):
        top.add(vectors[start : start + 262_144])
    return top.positions


def neighbour_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each exact top-k found in the approximate top-k."""
    pairs = zip(found, truth, strict=True)
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in pairs)
    return hits / max(1, truth.size)


def apply_params(index, params: dict) -> None:
    """Set search-time knobs (nprobe, k_factor, efSearch) on a built or loaded index."""
    import faiss

    if "k_factor" in params and hasattr(index, "k_factor"):
        index.k_factor = float(params["k_factor"])
    if "nprobe" in params:
        # the disk index (search/bigindex.py) is not a FAISS index: it holds its own knobs
        holder = faiss.extract_index_ivf(index) if isinstance(index, faiss.Index) else index
        holder.nprobe = int(params["nprobe"])
    if "efSearch" in params:
        base = faiss.downcast_index(index.base_index if hasattr(index, "base_index") else index)
        base.hnsw.efSearch = int(params["efSearch"])


def tune(
    index, plan: IndexPlan, vectors: np.ndarray, target: float, n_queries: int = RECALL_QUERIES
) -> tuple[dict, float, int]:
    """Smallest search effort whose recall@10 on sample queries reaches ``target``.

    Returns (params, measured recall@10, number of queries); effort grows until the target
    is met or the knobs run out (then the best recall found is recorded, honestly)."""
    if plan.kind == "flat":
        return {}, 1.0, 0
    queries = sample_queries(vectors, n_queries)
    return tune_on(
        index, plan, queries, exact_topk(vectors, queries, min(10, len(vectors))), target
    )


def tune_on(
    index, plan: IndexPlan, queries: np.ndarray, truth: np.ndarray, target: float
) -> tuple[dict, float, int]:
    """``tune`` with the queries and their exact top-k given (a disk index computes them
    while it streams the vectors, which it never holds all at once)."""
    k = truth.shape[1]
    if plan.kind == "hnsw":
        grid = [{"efSearch": ef} for ef in EFS]
    else:
        nprobes = [p for p in NPROBES if p <= plan.nlist] or [plan.nlist]
        refined = "Refine" in plan.factory or plan.kind == "ivfpq-disk"
        refine = [{"k_factor": kf} for kf in K_FACTORS] if refined else [{}]
        grid = [{"nprobe": p, **r} for p in nprobes for r in refine]
    best: tuple[dict, float] = ({}, -1.0)
    half = len(queries) // 2
    for params in grid:
        apply_params(index, params)
        _, found = index.search(queries, k)
        # the target must hold for both kinds of query, not just on average: near-duplicate
        # queries inside a dense cluster are the hard case for PQ (ties among near neighbours)
        recall = min(
            neighbour_recall(found[:half], truth[:half]),
            neighbour_recall(found[half:], truth[half:]),
        )
        if recall > best[1]:
            best = (params, recall)
        if recall >= target:
            return params, round(recall, 4), len(queries)
    apply_params(index, best[0])
    return best[0], round(best[1], 4), len(queries)
