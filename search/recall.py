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


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions of the exact inner-product top-k, in blocks so 1M rows fit in memory."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_p = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), 262_144):
        block = vectors[start : start + 262_144]
        sims = queries @ block.T
        kk = min(k, block.shape[0])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        best_p = np.concatenate([best_p, part + start], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s = np.take_along_axis(best_s, keep, 1)
        best_p = np.take_along_axis(best_p, keep, 1)
    return best_p


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
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
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
    k = min(10, len(vectors))
    truth = exact_topk(vectors, queries, k)
    if plan.kind == "hnsw":
        grid = [{"efSearch": ef} for ef in EFS]
    else:
        nprobes = [p for p in NPROBES if p <= plan.nlist] or [plan.nlist]
        refine = [{"k_factor": kf} for kf in K_FACTORS] if "Refine" in plan.factory else [{}]
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
