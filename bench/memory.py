"""Peak memory of `pixfind index` on 10k photos (../shared/photos cifar10) against 1k photos.

Indexing streams: files are decoded batch by batch in worker processes and written batch by
batch, so peak RSS must not grow with the number of photos (only a list of paths and sizes
does). Peak RSS is sampled from /proc for the whole process tree (main + decode workers):
    python bench/memory.py --n 10000 --baseline-n 1000
Model: pixfind-tiny (random weights), so the figure is pixfind's own footprint; ViT-B-32 adds
its weights (about 0.6 GB in fp32) on top.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PHOTOS, ROOT  # noqa: E402


def tree_rss(root: int) -> int:
    """Sum of RSS bytes of ``root`` and all its descendants."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(c for c, p in parents.items() if p == pid)
    return total


def peak_of(cmd: list[str], env: dict) -> tuple[float, float]:
    """(peak tree RSS in MB, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, stderr = proc.communicate()
    thread.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    return peak[0] / 2**20, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--baseline-n", type=int, default=1_000)
    args = ap.parse_args()
    photos = sorted((PHOTOS / "cifar10").glob("*.jpg"))
    if len(photos) < args.n:
        sys.exit(f"need {args.n} photos in {PHOTOS / 'cifar10'}, found {len(photos)}")
    tmp = Path(tempfile.mkdtemp(prefix="pixfind-mem-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), LANCE_LOG="error")
    try:
        results = {}
        for n in (args.baseline_n, args.n):
            folder = tmp / f"photos-{n}"
            folder.mkdir()
            for p in photos[:n]:
                os.symlink(p, folder / p.name)
            cmd = [
                sys.executable,
                "-m",
                "cli",
                "--index",
                str(tmp / f"index-{n}"),
                "index",
                str(folder),
                "--model",
                "pixfind-tiny",
                "--pretrained",
                "none",
                "--json",
            ]
            results[n] = peak_of(cmd, env)
        print("pixfind index, pixfind-tiny, peak RSS of the process tree (main + decode workers)")
        base = results[args.baseline_n][0]
        for n, (mb, secs) in results.items():
            print(
                f"{n:,} photos | peak {mb:.0f} MB | {secs:.0f} s | {mb / base:.2f}x the "
                f"{args.baseline_n:,}-photo peak"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
