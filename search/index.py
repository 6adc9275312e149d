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

Knobs (environment, all optional): PIXFIND_INDEX_KIND (auto|flat|ivfpq|hnsw),
PIXFIND_FLAT_MAX_ROWS, PIXFIND_INDEX_MEMORY_MB, PIXFIND_TARGET_RECALL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cold import bm25, snapshot
from .errors import DamagedIndex
from .settings import get_settings
from .store import Store

INDEX_DIR = "faiss"
RECALL_QUERIES = 200
NPROBES = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
K_FACTORS = (4, 8, 16, 32, 64)
EFS = (16, 32, 64, 96, 128, 192, 256, 384, 512)
KINDS = ("auto", "flat", "ivfpq", "hnsw")


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
    bytes_per_vector: float = 0.0  # index.faiss + ids.npy on disk, per row
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


@dataclass(frozen=True)
class IndexPlan:
    """What to build for a collection: ``kind`` plus the FAISS factory string."""

    kind: str  # flat | ivfpq | hnsw
    factory: str
    nlist: int = 0
    estimated_bytes: int = 0


def choose_index(
    rows: int,
    dim: int,
    memory_budget_mb: float | None = None,
    flat_max_rows: int | None = None,
    kind: str | None = None,
) -> IndexPlan:
    """Pick the index for ``rows`` vectors of ``dim`` floats within a memory budget.

    Exact below ``flat_max_rows`` (when the float32 vectors fit the budget); above it an
    IVF-PQ index whose candidates are re-ranked with fp16 vectors, or 8-bit ones when fp16
    would not fit, or with no re-ranking at all when even that would not fit.
    """
    budget = (
        memory_budget_mb if memory_budget_mb is not None else get_settings().index_memory_mb
    ) * 2**20
    flat_max = int(flat_max_rows if flat_max_rows is not None else get_settings().flat_max_rows)
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
        with _faiss_threads():
            index.train(sample)
    if rows:
        with _faiss_threads():
            for start in range(0, rows, 100_000):
                index.add(vectors[start : start + 100_000])
    params, recall, nq = tune(index, plan, vectors, target)
    return index, params, recall, nq


@contextlib.contextmanager
def _faiss_threads():
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
        wanted = [*snapshot.COLUMNS[1:], "has_caption", *bm25.columns(store)]
        ids, vectors, rows = store.index_rows(wanted)
        dim = store.info.dim
        plan = plan or choose_index(len(ids), dim)
        index, params, recall, nq = build_faiss(vectors, plan)
        del vectors
        infos = IndexInfos(
            index_type=plan.factory, rows=len(ids), dim=dim, store_version=store.version,
            model=store.info.identity, built_at=time.time(),
            build_seconds=round(time.perf_counter() - start, 4), recall_at_10=recall,
            params=params, recall_queries=nq,
        )  # fmt: skip
        built = cls(index, ids, infos)
        directory = store.home / INDEX_DIR
        if recipe is None:
            recipe = (snapshot.read_meta(directory) or {}).get("recipe")

        def write_snapshot(tmp: Path) -> None:
            snapshot.write(tmp, store.home, rows, store.version, store.info.identity, dim, recipe)
            bm25.write(tmp, store, ids, rows)  # the keyword half of a cold hybrid query

        built.directory = snapshot.save_somewhere(
            lambda where: built.save(where, write_snapshot), directory, store.home
        )
        return built

    def save(self, directory: Path, extra: Callable[[Path], None] | None = None) -> None:
        """Write to a temp folder and swap it in, so readers never see a half-written index;
        ``extra`` writes more files (the query snapshot) into the temp folder first."""
        import faiss

        tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
            np.save(tmp / "ids.npy", self.ids)
            size = (tmp / "index.faiss").stat().st_size + (tmp / "ids.npy").stat().st_size
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
        try:
            index = faiss.read_index(str(directory / "index.faiss"))
            ids = np.load(directory / "ids.npy", allow_pickle=False)
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
