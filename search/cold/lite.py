"""Exact search over a Flat FAISS index's own file, without importing FAISS (0.1-0.15 s of a
cold query on the project's busy 2 cores).

A Flat inner-product index (collections under 50,000 photos, search/index.py) is a short
header and the vectors as float32 rows: mapped into memory, a query is one matrix-vector
product. numpy sums in another order than FAISS, so scores differ in the last bits (about
2e-8 measured) and two hits closer than that could swap; and FAISS orders equal scores
(duplicate photos) in a way that depends on k. So wherever the top scores come within
``NEAR`` of each other, FAISS itself answers (loaded then): the hits are FAISS's, always.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from . import snapshot

# fourcc "IxFI", d, ntotal, two unused, is_trained, metric type (0: inner product), code size
_HEADER = struct.Struct("<4siqqq?iq")
NEAR = 1e-6  # 50x the largest numpy/FAISS difference measured (ViT-B-32, 300 photos)


class LiteFlatIndex:
    """What the cold path asks of a VectorIndex (``ids``, ``infos``, ``records``,
    ``search_positions``, and ``search_among`` for ranking.search_positions)."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, infos, directory: Path):
        self.vectors = vectors
        self.ids = ids
        self.infos = infos
        self.directory = directory
        self._faiss = None

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def load(cls, directory: Path) -> LiteFlatIndex | None:
        """The saved Flat index mapped, if intact and in the layout this module reads."""
        from ..index import IndexInfos

        infos = IndexInfos.read(directory / "infos.json")
        if infos is None or infos.index_type != "Flat" or infos.rows == 0:
            return None
        if snapshot.damage(directory, infos.checksums) is not None:
            return None
        path = directory / "index.faiss"
        try:
            with open(path, "rb") as fh:
                head = fh.read(_HEADER.size)
            fourcc, dim, rows, _, _, _, metric, _ = _HEADER.unpack(head)
            size = path.stat().st_size
            ids = np.load(directory / "ids.npy", allow_pickle=False)
        except (OSError, ValueError, struct.error):
            return None
        if fourcc != b"IxFI" or metric != 0 or (dim, rows) != (infos.dim, infos.rows):
            return None
        if size != _HEADER.size + rows * dim * 4 or ids.shape != (rows,):
            return None
        vectors = np.memmap(path, np.float32, mode="r", offset=_HEADER.size, shape=(rows, dim))
        return cls(vectors, ids, infos, directory)

    def records(self) -> snapshot.Records | None:
        try:
            return snapshot.Records(self.directory, self.infos.rows)
        except (OSError, ValueError):
            return None

    def search_positions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """VectorIndex.search_positions for one query: (scores, positions), shape (1, k)."""
        query = np.asarray(queries, np.float32).reshape(-1)
        found = self._top(self.vectors @ query, np.arange(len(self.ids)), k)
        if found is None:
            return self._faiss_index().search_positions(query[None, :], k)
        return found[0][None, :], found[1][None, :]

    def search_among(self, query: np.ndarray, k: int, positions: np.ndarray):
        """ranking.search_positions: top-k (scores, ids, positions) among ``positions``."""
        from ..ranking import search_positions

        query = np.asarray(query, np.float32).reshape(-1)
        found = self._top(self.vectors[positions] @ query, positions, k)
        if found is None:
            return search_positions(self._faiss_index(), query, k, positions)
        return found[0], self.ids[found[1]], found[1]

    def _top(self, scores: np.ndarray, positions: np.ndarray, k: int):
        """(scores, positions) of the best ``k``, best first; None where two of the best
        ``k + 1`` come within NEAR of each other (FAISS must order them)."""
        k = max(1, min(k, len(scores)))
        best = np.argpartition(-scores, k)[: k + 1] if len(scores) > k else np.arange(len(scores))
        best = best[np.argsort(-scores[best])]
        if len(best) > 1 and np.min(scores[best[:-1]] - scores[best[1:]]) < NEAR:
            return None
        return scores[best[:k]], positions[best[:k]]

    def _faiss_index(self):
        from ..index import VectorIndex

        if self._faiss is None:
            self._faiss = VectorIndex.load(self.directory)
            if self._faiss is None:
                raise ValueError(f"{self.directory} can't be loaded")
        return self._faiss
