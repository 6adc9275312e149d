"""Helpers shared by the bench scripts: timing percentiles, synthetic vectors, a standin model.

Absolute figures from a shared 2-core machine are inflated by other work running at the same
time; each script therefore measures its own baseline in the same run and prints the ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pixfind.search.types import ModelInfo

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PHOTOS = SHARED / "photos" / "images"
STANDIN_TOOL = SHARED / "tools" / "standin-hub-cache.py"


def sizes_arg(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s]


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ms = np.asarray(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(fn, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def clustered(n: int, dim: int = 512, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres (photo collections are clumpy: pets, beaches...)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)]
        block += 0.7 * rng.standard_normal((m, dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def queries_like(x: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Held-out queries: points near the data, not the data itself."""
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), n)] + 0.5 * rng.standard_normal((n, x.shape[1])) / 22
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def standin_env(cache: Path) -> dict:
    """Environment in which open_clip loads ViT-B-32/laion2b_s34b_b79k offline, with RANDOM
    weights of the real architecture (speed and memory only, never quality)."""
    if not (cache / "hub").is_dir():
        if not STANDIN_TOOL.is_file():
            sys.exit(f"{STANDIN_TOOL} not found: can't make stand-in ViT-B-32 weights")
        subprocess.run([sys.executable, str(STANDIN_TOOL), str(cache)], check=True)
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    env = dict(os.environ, HF_HOME=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=path)
    return env


def use_standin(cache: Path) -> None:
    os.environ.update({k: v for k, v in standin_env(cache).items() if k.startswith("HF_")})


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def row(*cells) -> str:
    return " | ".join(str(c) for c in cells)


def train_timed(data, out: Path, options, plot: Path | None = None, title: str = "") -> dict:
    """Run pixfind.train.fit.train; its result plus wall and CPU seconds and the load average
    at the end (a shared machine inflates wall time: read the CPU time and load beside it).
    ``plot``: also write the learning curves there."""
    from dataclasses import asdict

    from pixfind.train.fit import train

    t0, cpu0 = time.perf_counter(), time.process_time()
    result = train(data, out, options)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if plot:
        from pixfind.train.validate import plot_curves

        plot_curves([asdict(h) for h in result.history], plot, title)
    best = result.best
    return {
        "result": result,
        "summary": {
            "train_photos": result.images,
            "val_photos": result.val_images,
            "epochs_done": result.epochs_done,
            "max_epochs": result.max_epochs,
            "best_epoch": result.best_epoch,
            "best_val_text_to_image": best.val if best else None,
            "stopped_early": result.stopped_early,
            "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu, 1),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
    }


# the model a synthetic store claims (its vectors are random, never encoded)
SYNTHETIC_INFO = ModelInfo("test-model", None, "test-model:random", 512, 64, (0.5,) * 3, (0.5,) * 3)


def clustered_block(rng, centres: np.ndarray, spreads: np.ndarray, n: int) -> np.ndarray:
    """Unit vectors around the centres, spread along a few directions of their own cluster
    plus a little noise: neighbours that differ along a low-dimensional spread, as photo
    embeddings do (isotropic noise in 512-d would make every neighbour a tie)."""
    which = rng.integers(0, len(centres), n)
    x = rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
    x *= 0.02 / np.sqrt(centres.shape[1])
    x += centres[which]
    coeff = 0.3 * rng.standard_normal((n, spreads.shape[1]), dtype=np.float32)
    order = np.argsort(which, kind="stable")
    clusters, starts = np.unique(which[order], return_index=True)
    for c, rows in zip(clusters, np.split(order, starts[1:]), strict=True):
        x[rows] += coeff[rows] @ spreads[c]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def synthetic_store(home: Path, rows: int, seed: int = 0, chunk: int = 50_000) -> None:
    """A pixfind store (real LanceDB) of ``rows`` synthetic photos, written as Arrow
    batches (about a minute for 1M on 2 busy cores)."""
    import pyarrow as pa
    from pixfind.search.store import Store, path_id

    store = Store.create(home, SYNTHETIC_INFO)
    schema = store.table.schema
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(SYNTHETIC_INFO.dim)  # unit-length centres and spread directions
    centres = scale * rng.standard_normal((1000, SYNTHETIC_INFO.dim)).astype(np.float32)
    spreads = scale * rng.standard_normal((1000, 8, SYNTHETIC_INFO.dim)).astype(np.float32)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        paths = [f"/p/{i}.jpg" for i in range(start, start + n)]
        cols = {
            "id": pa.array([path_id(p) for p in paths], pa.int64()),
            "path": pa.array(paths),
            "width": pa.array(np.full(n, 640, np.int32)),
            "height": pa.array(np.full(n, 480, np.int32)),
            "taken_at": pa.array(np.arange(start, start + n, dtype=np.float64)),
            "indexed_at": pa.array(np.full(n, 1.7e9)),
            "file_type": pa.array(["jpeg"] * n),
            "has_caption": pa.array(np.zeros(n, bool)),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(clustered_block(rng, centres, spreads, n).reshape(-1)), SYNTHETIC_INFO.dim
            ),
        }
        arrays = [cols.get(f.name, pa.nulls(n, f.type)) for f in schema]
        store.table.add(pa.Table.from_arrays(arrays, schema=schema))
