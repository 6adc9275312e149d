"""ANN indexes against exact search on clustered synthetic 512-d vectors.

For each size: exact (FAISS Flat), pixfind's IVF-PQ + fp16 re-rank (tuned by pixfind to
recall@10 >= 0.95 on its own sample queries), FAISS HNSW32, and LanceDB's own IVF_PQ index
(nprobes raised until recall@10 >= 0.95, refine_factor 10). Measured on held-out queries:
recall@10, single-query p50/p99, build time, bytes per vector on disk. Ratios are against
exact search in the same run.

    python bench/ann.py --sizes 100000,1000000 --queries 200
    (HNSW above --hnsw-max and LanceDB above --lance-max rows are skipped: builds take many
    minutes on 2 shared cores)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixfind.search.index import IndexInfos, VectorIndex  # noqa: E402
from pixfind.search.indexplan import build_faiss, choose_index  # noqa: E402
from pixfind.search.recall import exact_topk, neighbour_recall  # noqa: E402

from bench.common import clustered, percentiles, queries_like, sizes_arg  # noqa: E402


def faiss_bytes(index, rows: int, tmp: Path) -> float:
    import faiss

    path = tmp / "x.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size + 8 * rows  # + ids.npy
    path.unlink()
    return size / rows


def single_queries(search, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    found, times = [], []
    for q in queries[:5]:
        search(q)
    for q in queries:
        start = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - start)
    return np.stack(found), times


def bench_faiss(name, x, plan, queries, truth, tmp):
    start = time.perf_counter()
    index, params, tuned_recall, _ = build_faiss(x, plan)
    build = time.perf_counter() - start
    vindex = VectorIndex(index, np.arange(len(x)), IndexInfos("", len(x), 0, 0, "", 0, 0))
    vindex.infos.params = params  # pixfind's own search path (one OpenMP thread per query)
    found, times = single_queries(lambda q: vindex.search_positions(q, 10)[1][0], queries)
    return {
        "method": name,
        "config": f"{plan.factory} {params}",
        "recall": neighbour_recall(found, truth),
        "times": times,
        "build_s": build,
        "bytes": faiss_bytes(index, len(x), tmp),
    }


def bench_lance(x, queries, truth, tmp):
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(tmp / "lance"))
    n, dim = x.shape
    table = None
    for start in range(0, n, 100_000):
        part = x[start : start + 100_000]
        data = pa.table(
            {
                "id": pa.array(np.arange(start, start + len(part)), pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), dim),
            }
        )
        table = db.create_table("v", data) if table is None else table
        if start:
            table.add(data)
    data_bytes = sum(p.stat().st_size for p in (tmp / "lance").rglob("*") if p.is_file())
    partitions = int(2 ** round(np.log2(np.sqrt(n))))
    start = time.perf_counter()
    table.create_index(
        metric="dot",
        vector_column_name="vector",
        index_type="IVF_PQ",
        num_partitions=partitions,
        num_sub_vectors=dim // 8,
    )
    build = time.perf_counter() - start
    index_bytes = sum(p.stat().st_size for p in (tmp / "lance").rglob("*") if p.is_file())
    index_bytes -= data_bytes

    def search(q, nprobes):
        t = (
            table.search(q, vector_column_name="vector")
            .distance_type("dot")
            .nprobes(nprobes)
            .refine_factor(10)
            .limit(10)
            .select(["id", "_distance"])
            .to_arrow()
        )
        ids = t["id"].to_numpy()
        return np.pad(ids, (0, 10 - len(ids)), constant_values=-1)

    for nprobes in (8, 16, 32, 64, 128, 256):
        found, times = single_queries(lambda q, p=nprobes: search(q, p), queries)
        recall = neighbour_recall(found, truth)
        if recall >= 0.95 or nprobes >= partitions:
            break
    return {
        "method": "LanceDB IVF_PQ",
        "config": f"IVF{partitions},PQ{dim // 8} nprobes={nprobes} refine_factor=10",
        "recall": recall,
        "times": times,
        "build_s": build,
        "bytes": index_bytes / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=sizes_arg, default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=200_000)
    ap.add_argument("--lance-max", type=int, default=200_000)
    args = ap.parse_args()
    print("ANN vs exact, clustered synthetic vectors, single-query latency (2 shared cores:")
    print("absolute times are inflated by other work; compare ratios within a size)\n")
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="pixfind-ann-"))
        try:
            x = clustered(n, args.dim)
            queries = queries_like(x, args.queries)
            truth = exact_topk(x, queries, 10)
            results = [
                bench_faiss(
                    "exact (FAISS Flat)",
                    x,
                    choose_index(n, args.dim, kind="flat"),
                    queries,
                    truth,
                    tmp,
                ),
                bench_faiss(
                    "pixfind IVF-PQ + fp16 re-rank",
                    x,
                    choose_index(n, args.dim, kind="ivfpq"),
                    queries,
                    truth,
                    tmp,
                ),
            ]
            if n <= args.hnsw_max:
                plan = choose_index(n, args.dim, kind="hnsw")
                results.append(bench_faiss("FAISS HNSW32", x, plan, queries, truth, tmp))
            if n <= args.lance_max:
                results.append(bench_lance(x, queries, truth, tmp))
            exact_p50 = percentiles(results[0]["times"])[0]
            print(f"## {n:,} vectors x {args.dim}-d, {args.queries} held-out queries")
            print(
                "method | recall@10 | p50 ms | p99 ms | speedup vs exact (p50) | build s | "
                "bytes/vector | config"
            )
            for r in results:
                p50, p99 = percentiles(r["times"])
                print(
                    f"{r['method']} | {r['recall']:.3f} | {p50:.2f} | {p99:.2f} | "
                    f"{exact_p50 / p50:.1f}x | {r['build_s']:.1f} | {r['bytes']:.0f} | "
                    f"{r['config']}"
                )
            print(flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
