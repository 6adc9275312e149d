"""Single-process `pixfind index` vs `--engine ray` on a local 2-node Ray cluster, same folder,
same run, each into a fresh index, both through the CLI (process start and model load count).

    python bench/ray_engine.py --n 200 --model pixfind-tiny
    python bench/ray_engine.py --n 500 --model ViT-B-32     # stand-in random weights: speed only

The cluster is two `ray start` nodes on 127.0.0.2/127.0.0.3 with --cpus each (tests/raycluster.py),
stopped by the process groups this script started. On one small machine both nodes share its
cores, so the ratio shows Ray's fixed costs (driver connect, actor start, one model per actor)
against one process that already has every core; it is not a scaling figure. ``--overhead``
also indexes a single photo with Ray: the fixed cost alone.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PHOTOS, standin_env  # noqa: E402
from tests.raycluster import LocalCluster  # noqa: E402

SPECS = {"ViT-B-32": ("ViT-B-32", "laion2b_s34b_b79k"), "pixfind-tiny": ("pixfind-tiny", "none")}


def index(folder: Path, home: Path, spec, env: dict, *extra: str) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", str(home), "index", str(folder)]
    cmd += ["--model", spec[0], "--pretrained", spec[1], "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout[done.stdout.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--model", choices=sorted(SPECS), default="pixfind-tiny")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per Ray node")
    parser.add_argument("--overhead", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    spec = SPECS[args.model]
    sources = sorted((PHOTOS / "flickr8k").glob("*.jpg"))[: args.n]
    if len(sources) < args.n:
        sys.exit(f"need {args.n} photos in {PHOTOS / 'flickr8k'}, found {len(sources)}")
    work = Path(tempfile.mkdtemp(prefix="pixfind-ray-bench-"))
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 2))
    if args.model == "ViT-B-32":
        env = standin_env(Path(tempfile.gettempdir()) / "pixfind-standin")
    if "PYTHONPATH" in os.environ:  # a checkout run through a shim: the nodes import it too
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    try:
        folder = work / "photos"
        folder.mkdir()
        for src in sources:
            shutil.copy(src, folder / src.name)
        single = work / "one" / sources[0].name
        single.parent.mkdir()
        shutil.copy(sources[0], single)
        print(f"{args.n} flickr8k photos, {args.model}, {os.cpu_count()} cores", flush=True)
        local_s, local = index(folder, work / "local", spec, env)
        print(f"single process : {local_s:6.1f}s  {args.n / local_s:6.1f} img/s", flush=True)
        node_env = {k: env[k] for k in ("PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE") if k in env}
        started = time.perf_counter()
        with LocalCluster(nodes=2, cpus=args.cpus, env=node_env) as cluster:
            print(f"cluster start  : {time.perf_counter() - started:6.1f}s (not counted)")
            ray = ("--engine", "ray", "--ray-address", cluster.address, "--actors", "2")
            env.update(cluster.driver_env)
            ray_s, report = index(folder, work / "ray", spec, {**env, "OMP_NUM_THREADS": "1"}, *ray)
            print(f"ray, 2 nodes   : {ray_s:6.1f}s  {args.n / ray_s:6.1f} img/s")
            print(f"ratio          : ray / single = {ray_s / local_s:.2f}x the time")
            print(f"ray stages     : {report['stages']} (decode/embed: actor-seconds)")
            print(f"local stages   : {local['stages']}")
            if args.overhead:
                one_s, _ = index(single.parent, work / "ray1", spec, env, *ray)
                print(f"ray, 1 photo   : {one_s:6.1f}s (fixed cost: connect, actors, models)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
