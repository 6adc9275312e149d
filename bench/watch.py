"""Live index latency: from a photo copied into a watched folder to a search that finds it.

A ``Watcher`` (indexer/watch.py, the code behind `pixfind watch`) runs in a thread on a folder
of ``--base`` photos; one photo at a time is copied in, and a searcher in this process
(refreshed each poll, as `pixfind serve` does) is polled every 20 ms until the photo is among
its hits. Baseline, same run: ``run_index`` called directly on the same folder with the same
change (what the watcher itself must do), so the ratio is the watching's own cost (grouping
the events, the quiet time, the search's refresh). Model: pixfind-tiny (random weights: speed
only, never quality).

    python bench/watch.py --adds 20
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _picture(path: Path, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).resize((640, 480), Image.BILINEAR).save(path, quality=90)
    return path


def _searchable(searcher, path: str, k: int) -> bool:
    from pixfind.search.query import Query

    searcher.refresh()
    return any(h.path == path for h in searcher.run(Query.text("a photo", k=k)).hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adds", type=int, default=20, help="single-file adds to time")
    parser.add_argument("--base", type=int, default=50, help="photos in the folder at start")
    args = parser.parse_args()

    from pixfind.indexer import IndexOptions, run_index
    from pixfind.indexer.watch import Watcher, WatchSettings
    from pixfind.search.encoder import load_encoder
    from pixfind.search.engine import Searcher
    from pixfind.search.types import EncoderSpec

    encoder = load_encoder(EncoderSpec("pixfind-tiny", None), "cpu")
    k = args.base + args.adds + 10
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos, home, camera = tmp / "photos", tmp / "index", tmp / "camera"
        for i in range(args.base):
            _picture(photos / f"base{i:04d}.jpg", i)
        sources = [_picture(camera / f"new{i:03d}.jpg", 10_000 + i) for i in range(args.adds)]
        options = IndexOptions([str(photos)], workers=0)

        # baseline: the indexer run itself, on a second folder holding the same photos
        direct_home, direct = tmp / "direct-index", tmp / "direct"
        shutil.copytree(photos, direct)
        run_index(direct_home, IndexOptions([str(direct)], workers=0), encoder=encoder)
        direct_s = []
        for src in sources:
            shutil.copy(src, direct / src.name)
            start = time.perf_counter()
            only = IndexOptions([str(direct)], workers=0, only=[str(direct / src.name)])
            run_index(direct_home, only, encoder=encoder)
            direct_s.append(time.perf_counter() - start)

        watcher = Watcher(home, options, encoder, WatchSettings(rescan_minutes=0))
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        while watcher.runs < 1:
            time.sleep(0.05)
        searcher = Searcher(home, device="cpu", cold=False)
        latency_s = []
        for src in sources:
            target = str(photos / src.name)
            start = time.perf_counter()
            shutil.copy(src, target)
            deadline = start + 60
            while not _searchable(searcher, target, k) and time.perf_counter() < deadline:
                time.sleep(0.02)
            latency_s.append(time.perf_counter() - start)
        watcher.stop()
        thread.join(timeout=60)

    def row(name: str, xs: list[float]) -> str:
        return f"{name:<34} median {statistics.median(xs):6.2f} s   worst {max(xs):6.2f} s"

    print(f"{args.adds} single-file adds into a watched folder of {args.base} photos")
    print(row("copy -> found by a search (watch)", latency_s))
    print(row("run_index on the file (baseline)", direct_s))
    ratio = statistics.median(latency_s) / statistics.median(direct_s)
    print(f"watch latency / indexer run (median): {ratio:.1f}x")


if __name__ == "__main__":
    main()
