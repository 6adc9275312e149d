"""``ivfpq-disk``: the FAISS index of a collection whose vectors don't fit in memory.

The in-memory kinds (search/indexplan.py) read every vector of the table at once: 2 KB a
512-d photo, 205 GB at 100M. This one never holds them all, neither to build nor to search:

- build: the IVF-PQ quantisers are trained on a random sample of the table (a ``take`` of
  ``train_rows``); then the table is streamed in windows of CHUNK_ROWS rows (the id, the
  vector and the query snapshot's columns only): each window's vectors get their PQ codes in
  the inverted lists and are appended as fp16 to ``vectors.f16``, a raw row-major file;
- search: the IVF-PQ top ``k * k_factor`` candidates are re-ranked exactly against their
  fp16 vectors, read from ``vectors.f16`` row by row (only the candidates, about 1 KB each).

What a query needs in memory: the inverted lists (a 64-byte PQ code and an 8-byte id per
512-d vector), read from ``index.faiss`` by memory map too. ``nprobe`` and the re-rank depth
are tuned like the in-memory kinds', against the exact top-10 of the sample queries over
every vector (computed while the vectors stream by), so the recall recorded in
``infos.json`` is the whole collection's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .indexplan import IndexPlan, faiss_threads
from .recall import RECALL_QUERIES, RunningTopK, sample_queries, tune_on

KIND = "ivfpq-disk"
VECTORS = "vectors.f16"
# rows per streamed window (20 MB of 512-d float32 vectors) and Lance's scan I/O buffer (its
# default, GBs, would hold the table): 1M rows built with a peak RSS of 1.0-1.15 GB, against
# 1.2-1.4 GB with 20k windows and a 32 MB buffer
CHUNK_ROWS = 10_000
SCAN_BUFFER = 16 << 20
EXACT_SUBSET_MAX = 20_000  # a filter leaving fewer rows: score them all exactly (< 0.1 s)
RERANK_BLOCK = 32  # queries re-ranked at a time (bounds the fp16 rows held: 32 * k * k_factor)


def is_disk(index_type: str) -> bool:
    return index_type.startswith(KIND)


def label(plan: IndexPlan) -> str:
    """The ``index_type`` recorded in infos.json (and shown by ``pixfind status``)."""
    return f"{KIND} {plan.factory},Refine({VECTORS})"


def train_rows(plan: IndexPlan) -> int:
    """Rows trained on: 40 per inverted list is what k-means needs (41k rows, 84 MB, at 1M
    photos; 655k rows, 1.3 GB, at 100M, where nlist reaches 16,384)."""
    return max(40 * plan.nlist, 20_000)


def sample_vectors(dataset, dim: int, n: int, seed: int = 0) -> np.ndarray:
    """The vectors of ``n`` random rows of a Lance dataset (all rows when it has fewer)."""
    rows = dataset.count_rows()
    rng = np.random.default_rng(seed)
    picks = np.arange(rows) if rows <= n else np.sort(rng.choice(rows, n, replace=False))
    return batch_vectors(dataset.take(picks.tolist(), columns=["vector"]), dim)


def stream(dataset, columns: list[str], chunk_rows: int = CHUNK_ROWS) -> Iterator:
    """The table in scan order (the order of the store's scans), ``chunk_rows`` at a time;
    one window read ahead at most, so memory holds about two windows."""
    return dataset.to_batches(
        columns=columns,
        batch_size=chunk_rows,
        batch_readahead=1,
        fragment_readahead=1,
        io_buffer_size=SCAN_BUFFER,
        scan_in_order=True,
    )


def batch_vectors(batch, dim: int) -> np.ndarray:
    """float32 (rows, dim) of a batch's fixed-size-list ``vector`` column."""
    col = batch.column("vector")
    if hasattr(col, "combine_chunks"):
        col = col.combine_chunks()
    flat = col.values.to_numpy(zero_copy_only=False) if len(col) else np.zeros(0, np.float32)
    return np.ascontiguousarray(flat.reshape(len(col), dim), dtype=np.float32)


class DiskIVFPQ:
    """IVF-PQ candidates re-ranked exactly with fp16 vectors on disk. Quacks like the FAISS
    indexes VectorIndex holds: ``search``, ``ntotal``, ``reconstruct_batch`` and the search
    knobs ``nprobe`` and ``k_factor`` (set by recall.apply_params)."""

    def __init__(self, ivf, vectors_path: Path):
        self.ivf = ivf
        self.ntotal = int(ivf.ntotal)
        self.d = int(ivf.d)
        self.nprobe = 1
        self.k_factor = 1.0
        self.exact_subset_max = EXACT_SUBSET_MAX  # read by ranking.search_positions
        self.vectors_path = vectors_path
        expected = self.ntotal * self.d * 2
        size = vectors_path.stat().st_size
        if size != expected:
            raise ValueError(f"{vectors_path}: {size} bytes, expected {expected}")
        self._file = open(vectors_path, "rb")  # noqa: SIM115 - read as long as the index lives

    @classmethod
    def load(cls, directory: Path) -> DiskIVFPQ:
        """Read by memory map: the inverted lists stay in the page cache, not the heap."""
        import faiss

        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
        return cls(faiss.read_index(str(directory / "index.faiss"), flags), directory / VECTORS)

    def write(self, directory: Path) -> None:
        """``index.faiss`` and a link to (or a copy of) the fp16 vectors in ``directory``."""
        import shutil

        import faiss

        faiss.write_index(self.ivf, str(directory / "index.faiss"))
        try:
            os.link(self.vectors_path, directory / VECTORS)
        except OSError:  # another file system (the cache folder of a read-only index)
            shutil.copyfile(self.vectors_path, directory / VECTORS)

    def search(self, queries: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, positions); ``params.sel`` (an IDSelector) limits the rows."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        depth = int(min(self.ntotal, max(k, round(k * self.k_factor))))
        ivf_params = faiss.SearchParametersIVF()
        ivf_params.nprobe = int(self.nprobe)
        selector = getattr(params, "sel", None)
        if selector is not None:
            ivf_params.sel = selector
        _, candidates = self.ivf.search(queries, depth, params=ivf_params)
        if selector is not None and (candidates < 0).any() and self.nprobe < self.ivf.nlist:
            # a filter leaves too few rows in the probed lists: probe every list (a scan of
            # the small PQ codes), so a filtered search still finds what the filter allows
            ivf_params.nprobe = int(self.ivf.nlist)
            _, candidates = self.ivf.search(queries, depth, params=ivf_params)
        return self._rerank(queries, candidates, k)

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int):
        scores = np.full((len(queries), k), -np.finfo(np.float32).max, np.float32)
        positions = np.full((len(queries), k), -1, np.int64)
        for start in range(0, len(queries), RERANK_BLOCK):
            block = candidates[start : start + RERANK_BLOCK]
            rows = np.unique(block[block >= 0])  # sorted: the reads go forward through the file
            exact = self.read_rows(rows)
            for i, found in enumerate(block, start):
                found = found[found >= 0]
                sims = exact[np.searchsorted(rows, found)] @ queries[i]
                top = np.argsort(-sims, kind="stable")[:k]
                scores[i, : len(top)] = sims[top]
                positions[i, : len(top)] = found[top]
        return scores, positions

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """float32 copies of the fp16 vectors at ``rows``, read with one pread per row: a
        memory map would count every page the kernel maps around a read (64 KB and more)
        as the process's memory, and re-ranking soon maps the whole file."""
        out = np.empty((len(rows), self.d), np.float16)
        if not len(rows):
            return out.astype(np.float32)
        view = memoryview(out).cast("B")
        size = self.d * 2
        fd = self._file.fileno()
        for i, row in enumerate(np.asarray(rows, np.int64).tolist()):
            if os.preadv(fd, [view[i * size : (i + 1) * size]], row * size) != size:
                raise ValueError(f"{self.vectors_path} is shorter than its index says")
        return out.astype(np.float32)

    def reconstruct_batch(self, positions: np.ndarray) -> np.ndarray:
        return self.read_rows(positions)


class DiskBuilder:
    """Builds a DiskIVFPQ from vectors added window by window, into ``staging``."""

    def __init__(self, plan: IndexPlan, sample: np.ndarray, staging: Path):
        import faiss

        dim = sample.shape[1]
        self.plan = plan
        self.ivf = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
        with faiss_threads():
            self.ivf.train(sample)
        self.truth = RunningTopK(sample_queries(sample, RECALL_QUERIES), 10)
        self.path = staging / VECTORS
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by finish()

    def add(self, vectors: np.ndarray) -> None:
        with faiss_threads():
            self.ivf.add(vectors)
        vectors.astype(np.float16).tofile(self._file)
        self.truth.add(vectors)

    def finish(self, target: float) -> tuple[DiskIVFPQ, dict, float, int]:
        """The index, tuned: (index, search params, recall@10, number of queries)."""
        self._file.close()
        index = DiskIVFPQ(self.ivf, self.path)
        truth = self.truth.positions[:, : min(10, index.ntotal)]
        params, recall, nq = tune_on(index, self.plan, self.truth.queries, truth, target)
        return index, params, recall, nq
