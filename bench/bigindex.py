"""The ``ivfpq-disk`` index (search/bigindex.py) against the in-memory IVF-PQ, same run.

A synthetic store (real LanceDB) of clustered 512-d vectors (bench/common.synthetic_store);
each index is built in a child process and queried in another, so each figure is that
process's own: build seconds, peak RSS of the build (VmHWM), bytes per vector on disk, RSS
after loading and answering the queries (what a server holds), recall@10 on held-out
queries against exact search over every row, single-query p50/p99 ms.

    python bench/bigindex.py --rows 1000000
    (writing the 1M-row table takes about a minute; the in-memory build holds every vector)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SYNTHETIC_INFO, percentiles, synthetic_store  # noqa: E402


def vm(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) * 1024


def child_build(home: Path, kind: str) -> dict:
    from pixfind.search.index import VectorIndex
    from pixfind.search.indexplan import choose_index
    from pixfind.search.store import Store

    store = Store.open(home)
    start = time.perf_counter()
    index = VectorIndex.build(store, choose_index(store.count(), store.info.dim, kind=kind))
    return {
        "build_s": time.perf_counter() - start,
        "build_peak_rss": vm("VmHWM"),
        "bytes_per_vector": index.infos.bytes_per_vector,
        "tuned_recall": index.infos.recall_at_10,
        "params": index.infos.params,
        "type": index.infos.index_type,
    }


def child_query(home: Path, queries: Path, out: Path) -> dict:
    import faiss  # noqa: F401 - its import is not the index's memory
    from pixfind.search.index import INDEX_DIR, VectorIndex

    before = vm("VmRSS")
    index = VectorIndex.load(home / INDEX_DIR)
    q = np.load(queries)
    times, found = [], []
    for _ in range(3):  # warm-up
        index.search_positions(q[:1], 10)
    for row in q:
        start = time.perf_counter()
        _, pos = index.search_positions(row[None], 10)
        times.append(time.perf_counter() - start)
        found.append(pos[0])
    np.save(out, np.array(found))
    p50, p99 = percentiles(times)
    return {"p50_ms": p50, "p99_ms": p99, "query_rss_above_start": vm("VmRSS") - before}


def in_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def held_out(home: Path, n: int, seed: int = 99) -> tuple[np.ndarray, np.ndarray]:
    """Queries near stored vectors (not the tuning ones) and their exact top-10 positions,
    over every row, streamed."""
    from pixfind.search import bigindex
    from pixfind.search.recall import RunningTopK
    from pixfind.search.store import Store

    dataset = Store.open(home).table.to_lance()
    rows = dataset.count_rows()
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(rows, n, replace=False))
    blocks, seen = [], 0
    for batch in bigindex.stream(dataset, ["vector"]):
        block = bigindex.batch_vectors(batch, SYNTHETIC_INFO.dim)
        blocks.append(block[picks[(picks >= seen) & (picks < seen + len(block))] - seen])
        seen += len(block)
    q = np.concatenate(blocks)
    q += 0.02 * rng.standard_normal(q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = RunningTopK(q, 10)
    for batch in bigindex.stream(dataset, ["vector"]):
        truth.add(bigindex.batch_vectors(batch, SYNTHETIC_INFO.dim))
    return q, truth.positions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dir", type=Path, help="keep the store here (reused when present)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        what, home, *rest = args.child
        if what == "build":
            result = child_build(Path(home), rest[0])
        else:
            result = child_query(Path(home), Path(rest[0]), Path(rest[1]))
        print(json.dumps(result))
        return

    from pixfind.search.recall import neighbour_recall

    work = args.dir or Path(tempfile.mkdtemp(prefix="pixfind-bigindex-"))
    home = work / f"store{args.rows}"
    if not (home / "db").is_dir():
        start = time.perf_counter()
        synthetic_store(home, args.rows)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - start:.0f} s")
    queries, truth = held_out(home, args.queries)
    np.save(work / "queries.npy", queries)
    print(f"load average at start: {os.getloadavg()}")
    header = "kind        build s  build peak MB  B/vector  query RSS MB  recall@10  p50 ms  p99 ms"
    print(header)
    for kind in ("ivfpq-disk", "ivfpq"):
        built = in_child("build", str(home), kind)
        asked = in_child("query", str(home), str(work / "queries.npy"), str(work / "found.npy"))
        recall = neighbour_recall(np.load(work / "found.npy"), truth)
        print(
            f"{kind:11} {built['build_s']:7.0f} {built['build_peak_rss'] / 1e6:14.0f} "
            f"{built['bytes_per_vector']:9.0f} {asked['query_rss_above_start'] / 1e6:13.0f} "
            f"{recall:10.3f} {asked['p50_ms']:7.2f} {asked['p99_ms']:7.2f}   {built['params']}"
        )
    print(f"vectors (float32): {args.rows * SYNTHETIC_INFO.dim * 4 / 1e6:.0f} MB; "
          f"load average at end: {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
