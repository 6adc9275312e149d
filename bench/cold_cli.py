"""Cold CLI: `pixfind search "x"` from process start to printed results, ViT-B-32.

A 1,000-row index whose model is ViT-B-32/laion2b_s34b_b79k (stand-in RANDOM weights from
../shared/tools/standin-hub-cache.py: speed only), with its query snapshot and text-tower
recipe written as the indexer writes them. Baselines in the same run: the ordinary path
(PIXFIND_FAST_PATH=0: open_clip's text tower alone, LanceDB for the records), the same loading
the full model (also PIXFIND_TEXT_TOWER=0, the core's behaviour), and the import floors of
each (`import torch, faiss` for the fast path; `import torch, open_clip, lancedb`).

    python bench/cold_cli.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, standin_env, use_standin  # noqa: E402


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pixfind-standin")
    args = ap.parse_args()
    env = standin_env(args.cache)
    use_standin(args.cache)
    tmp = Path(tempfile.mkdtemp(prefix="pixfind-cold-"))
    try:
        from pixfind.search.encoder import text_recipe
        from pixfind.search.index import VectorIndex
        from pixfind.search.types import EncoderSpec

        from bench.query_latency import make_store

        store, _ = make_store(tmp / "home", 1000)
        recipe = text_recipe(EncoderSpec("ViT-B-32", "laion2b_s34b_b79k"))
        if recipe is None:
            sys.exit("no text-tower recipe for ViT-B-32 (is the stand-in cache complete?)")
        VectorIndex.for_store(store, recipe)
        search = [sys.executable, "-m", "pixfind.cli", "--index", str(tmp / "home"), "search", "x"]
        ordinary = {**env, "PIXFIND_FAST_PATH": "0"}
        full = {**ordinary, "PIXFIND_TEXT_TOWER": "0"}
        py = sys.executable
        cases = [
            ("pixfind search (fast path: snapshot + plain text tower)", search, env),
            ("pixfind search (ordinary path: open_clip text tower)", search, ordinary),
            ("pixfind search (full model: core path)", search, full),
            ("import torch, faiss (fast path floor)", [py, "-c", "import torch, faiss"], env),
            ("import torch, open_clip, lancedb", [py, "-c", "import torch,open_clip,lancedb"], env),
            ("pixfind --help", [py, "-m", "pixfind.cli", "--help"], env),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        run(search, env)  # page cache warm, as on a machine that ran pixfind before
        for _ in range(args.repeat):  # interleaved, so load from other work hits all alike
            for name, cmd, e in cases:
                times[name].append(run(cmd, e))
        print("cold process start -> printed results (2 shared cores: compare within the run)")
        ours = statistics.median(times[cases[0][0]])
        for name, _, _ in cases:
            med = statistics.median(times[name])
            print(
                f"{name} | median {med:.2f} s | min {min(times[name]):.2f} s | "
                f"vs fast path {med / ours:.2f}x"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
