"""The FAISS index: a derived, rebuildable artifact of the store, saved with an infos json.

``faiss/index.faiss`` holds the vectors in store-scan order, ``faiss/ids.npy`` maps FAISS
positions back to store ids, and ``faiss/infos.json`` says which store version it reflects.
When the store has moved on (or the files are missing) the index is rebuilt on open.

Which index: exact ``Flat`` below ``flat_max_rows`` (default 50k; exact, and a scan of 50k
512-d vectors takes a few ms), else an inverted file with product-quantised codes whose top
candidates are re-ranked with fp16 (or, on a tight memory budget, 8-bit) copies of the vectors:
``IVF{nlist},PQ{dim/8}x8np,Refine(SQfp16)`` (np: no slow polysemous training), about
1.1 KB per 512-d vector against 2 KB for Flat.
After a build, ``nprobe`` and the re-rank depth are tuned on sample queries until recall@10
against exact search reaches ``target_recall``, and the measured recall is written to
``infos.json`` (``pixfind status`` prints it). HNSW is available by name (``kind="hnsw"``).
From PIXFIND_BIG_INDEX_ROWS rows on (500k), or when the float32 vectors exceed the memory
budget, the index lives on disk (``ivfpq-disk``, search/bigindex.py): built from a stream of
the table, its re-rank vectors read from ``vectors.f16`` per query, never all in memory.
The choice and the in-memory build live in search/indexplan.py, the recall measurement and
tuning in search/recall.py.

Knobs (environment, all optional): PIXFIND_INDEX_KIND (auto|flat|ivfpq|hnsw|ivfpq-disk),
PIXFIND_FLAT_MAX_ROWS, PIXFIND_BIG_INDEX_ROWS, PIXFIND_INDEX_MEMORY_MB, PIXFIND_TARGET_RECALL.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import bigindex
from .cold import bm25, records, snapshot
from .errors import DamagedIndex
from .indexplan import IndexPlan, build_faiss, choose_index
from .recall import apply_params
from .settings import get_settings
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
    params: dict = field(default_factory=dict)  # search-time knobs: nprobe, k_factor, efSearch
    bytes_per_vector: float = 0.0  # index.faiss + ids.npy (+ vectors.f16) on disk, per row
    recall_queries: int = 0  # how many sample queries measured recall_at_10
    checksums: dict = field(default_factory=dict)  # file name -> [size, crc32], when saved

    @classmethod
    def read(cls, path: Path) -> IndexInfos | None:
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None


def saved_damage(directory: Path) -> str | None:
    """What is wrong with the saved FAISS files against their checksums (None: intact)."""
    infos = IndexInfos.read(directory / "infos.json")
    return snapshot.damage(directory, infos.checksums) if infos is not None else None


def _infos(store: Store, index_type: str, rows: int, start: float, params, recall, nq):
    return IndexInfos(
        index_type=index_type,
        rows=rows,
        dim=store.info.dim,
        store_version=store.version,
        model=store.info.identity,
        built_at=time.time(),
        build_seconds=round(time.perf_counter() - start, 4),
        recall_at_10=recall,
        params=params,
        recall_queries=nq,
    )


class VectorIndex:
    """Inner-product search over the store's (unit-norm) vectors: scores are cosine similarities."""

    def __init__(
        self, faiss_index, ids: np.ndarray, infos: IndexInfos, directory: Path | None = None
    ):
        self.faiss_index = faiss_index
        self.ids = ids
        self.infos = infos
        self.directory = directory  # where it was saved (holds the query snapshot)
        self._records: snapshot.Records | None | bool = None
        apply_params(faiss_index, infos.params)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls, store: Store, plan: IndexPlan | None = None, recipe: dict | None = None
    ) -> VectorIndex:
        """Build from the store's current version and save it with its query snapshot;
        ``recipe``: the text tower's (search/texttower.py), kept from the last snapshot of
        the same model when not given."""
        start = time.perf_counter()
        plan = plan or choose_index(store.count(), store.info.dim)
        if recipe is None:
            recipe = (snapshot.read_meta(store.home / INDEX_DIR) or {}).get("recipe")
        if plan.kind == bigindex.KIND:
            return cls._build_on_disk(store, plan, recipe, start)
        wanted = [*snapshot.COLUMNS[1:], "has_caption", *bm25.columns(store)]
        ids, vectors, rows = store.index_rows(wanted)
        index, params, recall, nq = build_faiss(vectors, plan)
        del vectors
        infos = _infos(store, plan.factory, len(ids), start, params, recall, nq)

        def write_snapshot(tmp: Path) -> None:
            info = store.info
            snapshot.write(tmp, store.home, rows, store.version, info.identity, info.dim, recipe)
            bm25.write(tmp, store, ids, rows)  # the keyword half of a cold hybrid query

        return cls(index, ids, infos)._saved(store, write_snapshot)

    @classmethod
    def _build_on_disk(cls, store: Store, plan: IndexPlan, recipe, start: float) -> VectorIndex:
        """The ``ivfpq-disk`` build (search/bigindex.py): one pass over the table in windows
        feeds the inverted lists, the fp16 vectors file and the query snapshot's records."""
        info = store.info
        directory = store.home / INDEX_DIR
        staging = directory.with_name(directory.name + f".build{os.getpid()}")
        try:
            staging.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only index: build where save_somewhere will put it
            staging = snapshot.cache_dir(store.home).with_name(staging.name)
            staging.mkdir(parents=True, exist_ok=True)
        try:
            dataset = store.table.to_lance()
            sample = bigindex.sample_vectors(dataset, info.dim, bigindex.train_rows(plan))
            builder = bigindex.DiskBuilder(plan, sample, staging)
            del sample
            ids = []
            columns = ["id", "vector", *snapshot.COLUMNS[1:], "has_caption"]
            with records.RecordsWriter(staging / snapshot.RECORDS) as written:
                for batch in bigindex.stream(dataset, columns):
                    ids.append(batch.column("id").to_numpy().astype(np.int64))
                    builder.add(bigindex.batch_vectors(batch, info.dim))
                    written.add(batch)
            index, params, recall, nq = builder.finish(get_settings().target_recall)
            ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
            infos = _infos(store, bigindex.label(plan), len(ids), start, params, recall, nq)

            # no keyword half (search/cold/bm25.py): it is built in memory, up to its
            # MAX_ROWS only; a cold hybrid query on a disk index goes warm
            def write_snapshot(tmp: Path) -> None:
                snapshot.write_streamed(
                    tmp, store.home, written, store.version, info.identity, info.dim, recipe
                )

            return cls(index, ids, infos)._saved(store, write_snapshot)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # the saved index holds links to its files

    def _saved(self, store: Store, write_snapshot: Callable[[Path], None]) -> VectorIndex:
        self.directory = snapshot.save_somewhere(
            lambda where: self.save(where, write_snapshot), store.home / INDEX_DIR, store.home
        )
        return self

    def save(self, directory: Path, extra: Callable[[Path], None] | None = None) -> None:
        """Write to a temp folder and swap it in, so readers never see a half-written index;
        ``extra`` writes more files (the query snapshot) into the temp folder first."""
        import faiss

        tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            if isinstance(self.faiss_index, bigindex.DiskIVFPQ):
                self.faiss_index.write(tmp)
            else:
                faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
            np.save(tmp / "ids.npy", self.ids)
            files = ("index.faiss", "ids.npy", bigindex.VECTORS)
            size = sum((tmp / name).stat().st_size for name in files if (tmp / name).exists())
            self.infos.bytes_per_vector = round(size / max(1, self.infos.rows), 1)
            if extra is not None:
                extra(tmp)
            self.infos.checksums = snapshot.checksums(tmp)
            (tmp / "infos.json").write_text(json.dumps(asdict(self.infos), indent=2))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = directory.with_name(directory.name + f".old{os.getpid()}")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        self.directory = directory

    @classmethod
    def load(cls, directory: Path, problems: list[str] | None = None) -> VectorIndex | None:
        """The saved index if its files are intact, else None (+ what is wrong in ``problems``)."""
        import faiss

        infos = IndexInfos.read(directory / "infos.json")
        if infos is None:
            return None
        problems = [] if problems is None else problems
        damage = snapshot.damage(directory, infos.checksums)
        if damage is not None:
            problems += [damage] if infos.checksums else []  # older pixfind: rebuilt quietly
            return None
        disk = bigindex.is_disk(infos.index_type)
        try:
            if disk:
                index = bigindex.DiskIVFPQ.load(directory)
            else:
                index = faiss.read_index(str(directory / "index.faiss"))
            ids = np.load(
                directory / "ids.npy", allow_pickle=False, mmap_mode="r" if disk else None
            )
        except (OSError, RuntimeError, ValueError) as exc:
            problems.append(f"{directory} can't be loaded ({exc})")
            return None
        if ids.ndim != 1 or index.ntotal != len(ids) or len(ids) != infos.rows:
            problems.append(f"{directory}: its files don't agree on the number of rows")
            return None
        return cls(index, ids, infos, directory)

    @classmethod
    def for_store(cls, store: Store, recipe: dict | None = None) -> VectorIndex:
        """The saved index if intact and of the store's current version, else a fresh build."""
        problems: list[str] = []
        for directory in (store.home / INDEX_DIR, snapshot.cache_dir(store.home)):
            loaded = cls.load(directory, problems)
            if (
                loaded is not None
                and loaded.infos.store_version == store.version
                and loaded.infos.model == store.info.identity
                and snapshot.same_table(loaded.snapshot_meta(), store.home, store.version)
                and not snapshot.outdated(directory)
            ):
                if recipe is not None and loaded.directory is not None:
                    snapshot.set_recipe(loaded.directory, recipe)
                return loaded
        if problems:
            snapshot.notice(f"{problems[0]}; rebuilding it from the table (it is derived)")
        return cls.build(store, recipe=recipe)

    def snapshot_meta(self) -> dict:
        return (snapshot.read_meta(self.directory) if self.directory else None) or {}

    def records(self) -> snapshot.Records | None:
        """The snapshot's records (memory-mapped) when this index was saved with them."""
        if self._records is None:
            self._records = False
            meta = self.snapshot_meta()
            if meta.get("store_version") == self.infos.store_version:
                try:
                    self._records = snapshot.Records(self.directory, self.infos.rows)
                except (OSError, ValueError):
                    self._records = False
        return self._records or None

    def to_gpu(self) -> bool:
        """Move the index to the first GPU when faiss-gpu is installed (UNMEASURED here: the
        development machine has no GPU). Returns whether it moved."""
        import faiss

        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            return False
        try:
            self._gpu_res = faiss.StandardGpuResources()
            self.faiss_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self.faiss_index)
        except Exception:  # index types without a GPU version (HNSW, refine): stay on CPU
            return False
        apply_params(self.faiss_index, self.infos.params)
        return True

    def search_positions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, FAISS positions) per query row; positions are -1 past the end."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self.ids)))
        if len(self.ids) == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        if len(queries) > 4:
            return self._checked(*self.faiss_index.search(queries, k))
        # One query: OpenMP threads spinning for each other cost more than they save (a 50k
        # Flat scan: 68 ms with 2 threads vs 21 ms with 1 on 2 busy cores).
        import faiss

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self._checked(*self.faiss_index.search(queries, k))
        finally:
            faiss.omp_set_num_threads(before)

    def _checked(self, scores: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if snapshot.impossible(scores, pos, len(self.ids), self.infos.index_type == "Flat"):
            raise DamagedIndex(f"the FAISS index in {self.directory} is damaged; delete it")
        return scores, pos

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k rows exist."""
        scores, pos = self.search_positions(queries, k)
        if pos.size == 0:
            return scores, pos
        ids = np.where(pos >= 0, self.ids[np.clip(pos, 0, None)], -1)
        return scores, ids
