"""The FAISS index: a derived, rebuildable artifact of the store, saved with an infos json.

``faiss/index.faiss`` holds the vectors in store-scan order, ``faiss/ids.npy`` maps FAISS
positions back to store ids, and ``faiss/infos.json`` says which store version it reflects.
When the store has moved on (or the files are missing) the index is rebuilt on open.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .store import Store

INDEX_DIR = "faiss"


@dataclass
class IndexInfos:
    index_type: str  # FAISS factory string, e.g. "Flat"
    rows: int
    dim: int
    store_version: int
    model: str  # encoder identity
    built_at: float
    build_seconds: float
    recall_at_10: float = 1.0  # measured against exact search; 1.0 for exact indexes

    @classmethod
    def read(cls, path: Path) -> IndexInfos | None:
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None


class VectorIndex:
    """Inner-product search over the store's (unit-norm) vectors: scores are cosine similarities."""

    def __init__(self, faiss_index, ids: np.ndarray, infos: IndexInfos):
        self.faiss_index = faiss_index
        self.ids = ids
        self.infos = infos

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, store: Store) -> VectorIndex:
        import faiss

        start = time.perf_counter()
        ids, vectors = store.all_vectors()
        dim = store.info.dim
        index = faiss.IndexFlatIP(dim)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        infos = IndexInfos(
            index_type="Flat",
            rows=len(ids),
            dim=dim,
            store_version=store.version,
            model=store.info.identity,
            built_at=time.time(),
            build_seconds=round(time.perf_counter() - start, 4),
        )
        built = cls(index, ids, infos)
        built.save(store.home / INDEX_DIR)
        return built

    def save(self, directory: Path) -> None:
        """Write to a temp folder and swap it in, so readers never see a half-written index."""
        import faiss

        tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
        np.save(tmp / "ids.npy", self.ids)
        (tmp / "infos.json").write_text(json.dumps(asdict(self.infos), indent=2))
        old = directory.with_name(directory.name + f".old{os.getpid()}")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> VectorIndex | None:
        import faiss

        infos = IndexInfos.read(directory / "infos.json")
        if infos is None:
            return None
        try:
            index = faiss.read_index(str(directory / "index.faiss"))
            ids = np.load(directory / "ids.npy")
        except (OSError, RuntimeError, ValueError):
            return None
        if index.ntotal != len(ids) or len(ids) != infos.rows:
            return None
        return cls(index, ids, infos)

    @classmethod
    def for_store(cls, store: Store) -> VectorIndex:
        """The saved index if it reflects the store's current version, else a fresh build."""
        loaded = cls.load(store.home / INDEX_DIR)
        if (
            loaded is not None
            and loaded.infos.store_version == store.version
            and loaded.infos.model == store.info.identity
        ):
            return loaded
        return cls.build(store)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k rows exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self.ids)))
        if len(self.ids) == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, pos = self.faiss_index.search(queries, k)
        ids = np.where(pos >= 0, self.ids[np.clip(pos, 0, None)], -1)
        return scores, ids
