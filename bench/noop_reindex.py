"""Re-index with nothing changed: `pixfind index DIR` from process start to exit, per size.

For each size N: N tiny image files (a few hundred bytes each, 500 per folder) and an index
of them whose rows are written directly (random vectors of the pixfind-tiny model: no image
is embedded, which at 100k files would take an hour here), then one ordinary run that builds
the keyword index, the FAISS index and the saved file states exactly as after any complete
run. Timed, interleaved: the quick path (`pixfind index DIR`, saved states fresh), and as the
same-run baseline the same command with the saved states removed first (LanceDB imported
and the table read: what every no-op re-index paid before, minus the model load). The
import floor is `python -c "import pixfind.cli"`.

    python bench/noop_reindex.py --sizes 300,10000,100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cold_cli import run  # noqa: E402
from bench.common import ROOT, sizes_arg  # noqa: E402

PER_FOLDER = 500


def make_files(folder: Path, n: int) -> None:
    """``n`` small distinct PNGs (a 1x1 image with a per-file text chunk)."""
    import zlib

    head = b"\x89PNG\r\n\x1a\n"

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\x80\x80\x80"))
    end = chunk(b"IEND", b"")
    for i in range(n):
        sub = folder / f"d{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        text = chunk(b"tEXt", b"n\x00" + str(i).encode())
        (sub / f"img{i:06d}.png").write_bytes(head + ihdr + text + idat + end)


def write_rows(home: Path, folder: Path) -> None:
    """The rows an index of ``folder`` holds, written directly (random unit vectors)."""
    import numpy as np
    from pixfind.indexer.scan import scan
    from pixfind.search.keywords import keyword_text
    from pixfind.search.store import Store, path_id
    from pixfind.search.types import ImageRecord, ModelInfo

    info = ModelInfo("pixfind-tiny", None, "pixfind-tiny:random", 128, 64, (0.5,) * 3, (0.5,) * 3)
    store = Store.create(home, info)
    found = list(scan([str(folder)]))
    rng = np.random.default_rng(0)
    for start in range(0, len(found), 20_000):
        part = found[start : start + 20_000]
        records = [
            ImageRecord(path_id(s.path), s.path, s.mtime, s.size, 1, 1, f"h{start + i}", 0.0)
            for i, s in enumerate(part)
        ]
        vectors = rng.standard_normal((len(part), info.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(records, vectors, None, [keyword_text(r.path, [str(folder)]) for r in records])
    store.compact()


def check_noop(cmd: list[str], env: dict, n: int) -> None:
    """The timed command really found nothing to do."""
    proc = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, cwd=ROOT)
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    if (report["unchanged"], report["added"] + report["updated"] + report["removed"]) != (n, 0):
        sys.exit(f"not a no-op run: {proc.stdout[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=sizes_arg, default=[300, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep files here (reused)")
    args = parser.parse_args()
    from pixfind.indexer import IndexOptions, run_index
    from pixfind.indexer.filestate import STATE_FILE

    work = args.work or Path(tempfile.mkdtemp(prefix="pixfind-noop-"))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    floor = [run([sys.executable, "-c", "import pixfind.cli"], env) for _ in range(args.repeat)]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores; figures are noisy)")
    print(f"import floor (python -c 'import pixfind.cli'): {statistics.median(floor):.2f} s\n")
    print("| files | no-op re-index | per 10k files | without saved states | ratio |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        folder, home = work / f"files-{n}", work / f"index-{n}"
        if not folder.is_dir():
            make_files(folder, n)
        if not (home / STATE_FILE).is_file():
            shutil.rmtree(home, ignore_errors=True)
            write_rows(home, folder)
            run_index(home, IndexOptions(roots=[str(folder)], workers=0))
        cmd = [sys.executable, "-m", "pixfind.cli", "--index", str(home), "index", str(folder)]
        quick, slow = [], []
        for _ in range(args.repeat):
            quick.append(run(cmd, env))
            (home / STATE_FILE).unlink()
            slow.append(run(cmd, env))  # reads the table, then saves the states again
        check_noop(cmd, env, n)
        q, s = statistics.median(quick), statistics.median(slow)
        per = f"{q / n * 10_000:.2f} s" if n >= 10_000 else "(start-up bound)"
        print(f"| {n:,} | {q:.2f} s | {per} | {s:.2f} s | {s / q:.1f}x |")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
