"""Cold CLI: `pixfind search "x"` from process start to printed results, ViT-B-32.

An index of ``--photos N`` rows (default 1,000) whose model is ViT-B-32/laion2b_s34b_b79k
(stand-in RANDOM weights from ../shared/tools/standin-hub-cache.py: speed only): the paths
are real photos' (../shared/photos, their names and folders the keyword column, with its
full-text index, so the default query is hybrid), the vectors synthetic (clustered unit
vectors: embedding 10,000 photos would take an hour here), the query snapshot, keyword
index and text-tower recipe written as the indexer writes them, and the ONNX export of the
model in the model cache (made once, checked against torch on real photos). The default
cold path (numpy text tower, search/cold/nptower.py: neither torch nor ONNX Runtime, nor
LanceDB, nor Typer) against, in the same run: the cold path on ONNX Runtime
(PIXFIND_RUNTIME=onnx), the cold path on the plain torch text tower (PIXFIND_RUNTIME=torch),
the ordinary path (PIXFIND_FAST_PATH=0: open_clip's text tower, LanceDB), the same loading
the full model (also PIXFIND_TEXT_TOWER=0), and import floors (`import numpy`; `import
onnxruntime, faiss, pyarrow`; `import torch, open_clip, lancedb`). ``--importtime`` also
prints the slowest imports of one default cold query (``python -X importtime``).

    python bench/cold_cli.py --repeat 3 --photos 10000
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
    ap.add_argument("--importtime", action="store_true", help="the slowest imports")
    ap.add_argument("--photos", type=int, default=1000, help="rows of the index")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pixfind-standin")
    args = ap.parse_args()
    env = standin_env(args.cache)
    use_standin(args.cache)
    tmp = Path(tempfile.mkdtemp(prefix="pixfind-cold-"))
    try:
        from pixfind.search.encoder import text_recipe
        from pixfind.search.index import VectorIndex
        from pixfind.search.types import EncoderSpec

        store = photo_store(tmp / "home", args.photos)
        spec = EncoderSpec("ViT-B-32", "laion2b_s34b_b79k")
        export_onnx(spec)
        recipe = text_recipe(spec)
        if recipe is None or "onnx" not in recipe:
            sys.exit("no text-tower recipe for ViT-B-32 (is the stand-in cache complete?)")
        VectorIndex.for_store(store, recipe)
        search = [sys.executable, "-m", "pixfind.cli", "--index", str(tmp / "home"), "search", "x"]
        env = {**env, "PIXFIND_RUNTIME": "auto"}
        on_torch = {**env, "PIXFIND_RUNTIME": "torch"}
        ordinary = {**on_torch, "PIXFIND_FAST_PATH": "0"}
        full = {**ordinary, "PIXFIND_TEXT_TOWER": "0"}
        py = sys.executable
        floor = "import onnxruntime, faiss, pyarrow"
        on_onnx = {**env, "PIXFIND_RUNTIME": "onnx"}
        cases = [
            ("pixfind search (cold path: numpy text tower)", search, env),
            ("pixfind search (cold path: ONNX text tower)", search, on_onnx),
            ("pixfind search (cold path: plain torch text tower)", search, on_torch),
            ("pixfind search (ordinary path: open_clip text tower)", search, ordinary),
            ("pixfind search (full model: core path)", search, full),
            ("import numpy", [py, "-c", "import numpy"], env),
            (f"{floor} (the ONNX cold path's floor before)", [py, "-c", floor], env),
            ("import torch, faiss (torch cold path floor)", [py, "-c", "import torch, faiss"], env),
            ("import torch, open_clip, lancedb", [py, "-c", "import torch,open_clip,lancedb"], env),
            ("pixfind --help", [py, "-m", "pixfind.cli", "--help"], env),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        run(search, env)  # page cache warm, as on a machine that ran pixfind before
        for _ in range(args.repeat):  # interleaved, so load from other work hits all alike
            for name, cmd, e in cases:
                times[name].append(run(cmd, e))
        print(f"cold process start -> printed results, {args.photos} photos, hybrid query")
        print("(2 shared cores: compare within the run)")
        print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
        ours = statistics.median(times[cases[0][0]])
        for name, _, _ in cases:
            med = statistics.median(times[name])
            print(
                f"{name} | median {med:.2f} s | min {min(times[name]):.2f} s | "
                f"vs the cold path {med / ours:.2f}x"
            )
        if args.importtime:
            slowest_imports([py, "-X", "importtime", *search[1:]], env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def photo_store(home: Path, n: int):
    """A store of ``n`` rows named after real photos (cycled past the 12k there), keyword
    column and full-text index included; synthetic vectors."""
    from pixfind.search import keywords
    from pixfind.search.rows import records_table
    from pixfind.search.store import path_id
    from pixfind.search.types import ImageRecord

    from bench.common import PHOTOS, clustered
    from bench.query_latency import make_store

    store, _ = make_store(home, 0)
    names = sorted(str(p) for p in PHOTOS.glob("*/*.*"))
    if not names:
        sys.exit(f"no photos in {PHOTOS}")
    x = clustered(n, 512)
    recs, texts = [], []
    for i in range(n):
        path = names[i % len(names)] if i < len(names) else f"{names[i % len(names)]}.{i}.jpg"
        size = (1.7e9, 300_000, 500, 375, f"{i:032x}", 1.7e9)
        recs.append(ImageRecord(path_id(path), path, *size))
        texts.append(keywords.keyword_text(path, [str(PHOTOS)]))
    store.table.add(records_table(recs, x, store.table.schema, keywords=texts))
    keywords.update_index(store)
    return store


def export_onnx(spec) -> None:
    """The model's ONNX export in the model cache, as the first `pixfind index` makes it."""
    from pixfind.search.encoder import load_encoder

    from bench.runtime import load_photos

    encoder = load_encoder(spec, "cpu", "onnx")
    if encoder.onnx_towers(load_photos(encoder, 16)[1]) is None:
        sys.exit("the ONNX export of the model failed its parity check (see above)")


def slowest_imports(cmd: list[str], env: dict, top: int = 12) -> None:
    """The top-level imports of one cold query by cumulative time (``-X importtime``)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line[12:].split("|")
            top_level = len(name) - len(name.lstrip()) == 1  # nested ones are indented more
            if cumulative.strip().isdigit() and top_level:
                rows.append((int(cumulative), name.strip()))
    total = sum(us for us, _ in rows)
    print(f"imports of one cold query: {total / 1e6:.2f} s in all; the slowest:")
    for us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {us / 1e6:.3f} s  {name}")


if __name__ == "__main__":
    main()
