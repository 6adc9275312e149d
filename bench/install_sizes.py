"""Issue 20 part 5: the size of each install variant, measured by really creating the venvs.

    python bench/install_sizes.py                      # all three variants, under /tmp
    python bench/install_sizes.py --variants light --keep

Variants (each a fresh ``python -m venv`` + ``pip install`` of this checkout, not editable):

- ``light``: ``pip install .``: ONNX Runtime, no torch (README "Install variants");
- ``cpu-torch``: ``pip install '.[torch]' torch==TORCH_CPU``: a CPU-only torch build;
- ``full``: ``pip install '.[torch]'``: torch as PyPI ships it for Linux (with its CUDA
  libraries), as every install was before the torch extra.

Prints the size of each venv (bytes of its files, as ``du --apparent-size``; blocks on disk
too), its largest packages, and the pip command. ``--rss`` also measures the peak memory
(RSS) of an index run of ``--photos`` and of a cold query, per venv and model (an ONNX model
folder written by `pixfind models export` in the light venv, the open_clip model in a torch
one), with ``--keep`` venvs of an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_CPU = "2.13.0"  # a CPU-only build lies on this machine's disk (pip's find-links)


def variants(repo: str) -> dict[str, list[str]]:
    return {
        "light": [repo],
        "cpu-torch": [f"{repo}[torch]", f"torch=={TORCH_CPU}"],
        "full": [f"{repo}[torch]"],
    }


def tree_size(path: Path) -> tuple[int, int]:
    """(apparent bytes, bytes of allocated blocks) of the files under ``path``."""
    apparent = blocks = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            apparent += st.st_size
            blocks += st.st_blocks * 512
    return apparent, blocks


def largest_packages(venv: Path, n: int = 8) -> list[tuple[str, int]]:
    site = next(venv.glob("lib/python*/site-packages"))
    sizes = [(p.name, tree_size(p)[0]) for p in site.iterdir() if p.is_dir()]
    return sorted(sizes, key=lambda x: -x[1])[:n]


def build(name: str, args: list[str], root: Path) -> dict:
    venv = root / name
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input"]
    start = time.perf_counter()
    proc = subprocess.run([*pip, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": name, "error": proc.stderr[-2000:], "pip": " ".join(args)}
    apparent, blocks = tree_size(venv)
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
    )
    versions = {p["name"].lower(): p["version"] for p in json.loads(freeze.stdout or "[]")}
    return {
        "variant": name,
        "pip": "pip install " + " ".join(args),
        "bytes": apparent,
        "disk_bytes": blocks,
        "seconds": round(time.perf_counter() - start, 1),
        "torch": versions.get("torch"),
        "onnxruntime": versions.get("onnxruntime"),
        "packages": len(versions),
        "largest": largest_packages(venv),
    }


def peak_rss(venv: Path, args: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``pixfind ARGS`` run by ``venv``'s Python."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(p.returncode, r / 1024, time.perf_counter() - t)\n"
    )
    cmd = [str(venv / "bin" / "python"), "-m", "pixfind.cli", *args]
    proc = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env, check=True
    )
    rc, mb, seconds = proc.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(cmd)} exited {rc}")
    return float(mb), float(seconds)


def rss_rows(root: Path, cases: list[tuple[str, list[str]]], photos: Path) -> list[dict]:
    """Peak RSS of ``pixfind index PHOTOS MODEL_ARGS`` into a fresh index, then of a cold
    query, per (venv, model arguments). A first run into a throwaway index makes the ONNX
    export of an open_clip model in the model cache (not measured): the runs measured are
    an everyday one on each install."""
    rows = []
    for name, model in cases:
        venv = root / name
        work = Path(tempfile.mkdtemp(prefix=f"rss-{name}-", dir=root))
        env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "PIXFIND_RUNTIME": "auto"}
        env.pop("PYTHONPATH", None)
        warm = ["--index", str(work / "warm"), "index", str(photos), *model]
        peak_rss(venv, warm, env)
        index = ["--index", str(work / "index")]
        mb_index, s_index = peak_rss(venv, [*index, "index", str(photos), *model], env)
        mb_query, s_query = peak_rss(venv, [*index, "search", "a dog on the beach"], env)
        rows.append(
            {
                "variant": name,
                "model": " ".join(model),
                "index_mb": mb_index,
                "index_s": s_index,
                "query_mb": mb_query,
                "query_s": s_query,
            }
        )
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="light,cpu-torch,full")
    parser.add_argument("--root", type=Path, default=Path("/tmp/pixfind-venvs"))
    parser.add_argument("--repo", default=str(ROOT), help="what to install (default: here)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs afterwards")
    parser.add_argument(
        "--rss",
        default="",
        help="VENV=MODEL_ARGS;... peak RSS of an index run and a query in built venvs, e.g. "
        "'light=--model /tmp/vit-onnx;full=--model ViT-B-32 --pretrained none'",
    )
    parser.add_argument("--photos", type=Path, help="a photo folder, for --rss")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; venvs under {args.root}")
    table = variants(args.repo)
    rows = []
    for name in [v for v in args.variants.split(",") if v]:
        row = build(name, table[name], args.root)
        rows.append(row)
        if "error" in row:
            print(f"{name}: pip failed:\n{row['error']}")
            continue
        top = ", ".join(f"{p} {b / 1e6:.0f} MB" for p, b in row["largest"][:5])
        print(
            f"{name:10s} {row['bytes'] / 1e9:6.2f} GB ({row['disk_bytes'] / 1e9:.2f} GB on disk) "
            f"torch {row['torch'] or '-'}, {row['packages']} packages, {row['seconds']} s: "
            f"{row['pip']}\n           largest: {top}"
        )
    rss = []
    if args.rss:
        if not args.photos:
            raise SystemExit("--rss needs --photos")
        cases = [c.split("=", 1) for c in args.rss.split(";") if c]
        rss = rss_rows(args.root, [(v, m.split()) for v, m in cases], args.photos)
        for r in rss:
            print(
                f"{r['variant']:10s} {r['model']}: peak RSS index {r['index_mb']:.0f} MB "
                f"({r['index_s']:.1f} s), cold query {r['query_mb']:.0f} MB ({r['query_s']:.2f} s)"
            )
    if args.json:
        args.json.write_text(json.dumps({"load": load, "sizes": rows, "rss": rss}, indent=2))
    if not args.keep:
        for row in rows:
            shutil.rmtree(args.root / row["variant"], ignore_errors=True)


if __name__ == "__main__":
    main()
