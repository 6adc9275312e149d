"""The ``ivfpq-disk`` index (search/bigindex.py): a vector index past memory.

Real LanceDB tables, real FAISS, real files. The second test is the big one of the suite
(1M synthetic 512-d vectors, 2 GB of float32; about 3 minutes on the 2-core machine): it
builds the index in a child process whose address space is limited (RLIMIT_AS, what `ulimit
-v` sets) below the vectors' size, checks that the same limit makes loading every vector in
memory fail, and checks the build's peak memory (VmHWM) and its recall against exact search.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from pixfind.search import bigindex
from pixfind.search.engine import Searcher
from pixfind.search.index import INDEX_DIR, VectorIndex
from pixfind.search.recall import RunningTopK, neighbour_recall
from pixfind.search.status import index_status
from pixfind.search.store import Store

from bench.common import SYNTHETIC_INFO as INFO
from bench.common import synthetic_store as write_synthetic


def scan_vectors(home: Path):
    """(ids, vectors) blocks of the table in scan order, without holding them all."""
    dataset = Store.open(home).table.to_lance()
    for batch in bigindex.stream(dataset, ["id", "vector"]):
        yield batch.column("id").to_numpy(), bigindex.batch_vectors(batch, INFO.dim)


def test_disk_index_through_store_and_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXFIND_INDEX_KIND", "ivfpq-disk")
    write_synthetic(tmp_path, 20_000, chunk=5_000)
    searcher = Searcher(tmp_path)
    index = searcher.index
    assert bigindex.is_disk(index.infos.index_type) and index.infos.rows == 20_000
    assert index.infos.recall_at_10 >= 0.95 and index.infos.params["nprobe"] >= 1
    saved = tmp_path / INDEX_DIR
    assert (saved / bigindex.VECTORS).stat().st_size == 20_000 * INFO.dim * 2
    assert not list(tmp_path.glob("faiss.build*"))  # the staging folder is gone
    status = index_status(searcher.store)
    assert status.faiss.type.startswith("ivfpq-disk") and status.faiss.up_to_date

    ids, vectors = next(scan_vectors(tmp_path))
    for row in range(0, 5_000, 500):  # a stored photo's vector finds that photo first
        hits = searcher.search_vector(vectors[row], k=5)
        assert hits[0].id == ids[row] and hits[0].path == f"/p/{row}.jpg"
        assert abs(hits[0].score - 1.0) < 1e-2  # re-ranked against its fp16 vector
    # the saved index loads (the cold path's way in) and answers the same, from a new process
    loaded = VectorIndex.load(saved)
    assert loaded is not None and loaded.records() is not None
    _, pos = loaded.search_positions(vectors[:3], 1)
    assert pos[:, 0].tolist() == [0, 1, 2]
    # a filter (a FAISS selector over positions) ranks the allowed rows, even when they lie
    # outside the lists the query probes
    hits = searcher.search_vector(vectors[7], k=3, only=ids[100:200])
    exact = ids[100:200][np.argsort(-(vectors[100:200] @ vectors[7]))[:3]]
    assert [h.id for h in hits] == exact.tolist()
    index.faiss_index.exact_subset_max = 0  # the same through the IVF lists and a selector
    hits = searcher.search_vector(vectors[7], k=3, only=ids[100:200])
    assert hits[0].id == exact[0] and {h.id for h in hits} <= set(ids[100:200].tolist())


# THE BIG ONE (about 3 minutes, a third of it writing the table): 1M vectors, built in a
# child process under a 1 GB index budget and an address-space limit below the vectors' 2 GB.
# A process's virtual size is far above what it uses: each thread reserves a stack (8 MB by
# default, Rust's 2 MB), each malloc arena 64 MB or more, and the native libraries are mapped
# whole (Lance and LanceDB: 400 MB). So the child runs with few threads, two arenas and 1 MB
# thread stacks, under which the limit is near what the build really touches.
ADDRESS_LIMIT = 1_850 << 20  # bytes (1.94 GB): below the 2.05 GB of float32 vectors
THREAD_STACK = 1 << 20  # RLIMIT_STACK: glibc's default thread stack (read at exec)
LIMITED_ENV = {
    "MALLOC_ARENA_MAX": "2",
    "OMP_NUM_THREADS": "1",  # FAISS; its OpenBLAS reserves a 128 MB buffer per thread
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "LANCE_CPU_THREADS": "2",  # Lance's compute and I/O runtimes (one thread per core else)
    "LANCE_IO_THREADS": "2",
    "TOKIO_WORKER_THREADS": "2",  # LanceDB's runtime (one thread per core else)
    "ARROW_IO_THREADS": "2",  # pyarrow's I/O pool (8 else)
    "ARROW_DEFAULT_MEMORY_POOL": "system",  # its jemalloc pool reserves 1 GB when Lance loads
    "PIXFIND_INDEX_MEMORY_MB": "1024",  # lower than the vectors: the disk kind, by itself
}
# exec()s argv[3:] with the limits set: RLIMIT_STACK must be in place when the process
# starts (glibc reads it once), and everything the child maps counts against RLIMIT_AS
LIMITED = textwrap.dedent(
    """
    import os, resource, sys
    address, stack = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_STACK, (stack, resource.getrlimit(resource.RLIMIT_STACK)[1]))
    resource.setrlimit(resource.RLIMIT_AS, (address, address))
    os.execv(sys.argv[3], sys.argv[3:])
    """
)


def run_limited(code: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -c code args`` in a child under ADDRESS_LIMIT and LIMITED_ENV."""
    limits = [str(ADDRESS_LIMIT), str(THREAD_STACK)]
    return subprocess.run(
        [sys.executable, "-c", LIMITED, *limits, sys.executable, "-c", code, *args],
        env=dict(os.environ, **LIMITED_ENV), capture_output=True, text=True, check=False,
        timeout=timeout,
    )  # fmt: skip


BUILD_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from pixfind.search.index import VectorIndex
    from pixfind.search.store import Store

    start = time.perf_counter()
    index = VectorIndex.build(Store.open(Path(sys.argv[1])))
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(status.split("VmHWM:")[1].split()[0])
    peak_kb = int(status.split("VmPeak:")[1].split()[0])
    print(json.dumps({
        "type": index.infos.index_type, "recall": index.infos.recall_at_10,
        "params": index.infos.params, "peak_bytes": hwm_kb * 1024,
        "seconds": time.perf_counter() - start, "vm_peak": peak_kb * 1024,
        "limit": resource.getrlimit(resource.RLIMIT_AS)[0],
    }))
    """
)
# what the in-memory index kinds do first: every vector of the table in memory at once
LOAD_ALL_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pixfind.search.store import Store

    try:
        table = Store.open(Path(sys.argv[1])).table.to_lance().to_table(columns=["vector"])
    except MemoryError as exc:
        sys.exit(f"MemoryError: {exc}")
    print("loaded", table.nbytes)
    """
)


def test_a_million_vectors_past_memory(tmp_path):
    rows = 1_000_000
    write_synthetic(tmp_path, rows)
    vector_bytes = rows * INFO.dim * 4  # 2 GB of float32
    assert vector_bytes > ADDRESS_LIMIT
    # the limit bites: the same child can't hold every vector at once
    loading = run_limited(LOAD_ALL_CHILD, str(tmp_path), timeout=300)
    assert loading.returncode != 0 and "loaded" not in loading.stdout, loading.stdout
    assert "memory" in loading.stderr.lower() or loading.returncode < 0, loading.stderr[-2000:]

    child = run_limited(BUILD_CHILD, str(tmp_path))
    assert child.returncode == 0, child.stderr[-3000:]
    built = json.loads(child.stdout.strip().splitlines()[-1])
    print(built)
    assert built["limit"] == ADDRESS_LIMIT and built["vm_peak"] <= ADDRESS_LIMIT, built
    assert built["type"].startswith("ivfpq-disk")
    assert built["peak_bytes"] < 0.75 * vector_bytes, built
    assert built["recall"] >= 0.95, built

    # held-out queries (not the tuning ones): recall@10 against exact search over every row
    rng = np.random.default_rng(99)
    index = VectorIndex.load(tmp_path / INDEX_DIR)
    picks = np.sort(rng.choice(rows, 200, replace=False))
    truth, queries, seen = None, [], 0
    for _, block in scan_vectors(tmp_path):
        inside = picks[(picks >= seen) & (picks < seen + len(block))] - seen
        queries.append(block[inside])
        seen += len(block)
    queries = np.concatenate(queries)
    queries += 0.02 * rng.standard_normal(queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = RunningTopK(queries, 10)
    for _, block in scan_vectors(tmp_path):
        truth.add(block)
    _, found = index.search_positions(queries, 10)
    assert neighbour_recall(found, truth.positions) >= 0.95
