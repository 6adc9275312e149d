"""Bounded load test of `pixfind serve`: N concurrent clients for T seconds on loopback.

Starts the real server (`pixfind serve`, a separate process) on 127.0.0.1 at a free port, then
runs N client threads (stdlib http.client, one keep-alive connection each) that send
GET /api/search?q=...&k=20 until T seconds have passed, and reports QPS and p50/p90/p99
latency. Baselines measured in the same run: the same text search called in-process (no HTTP),
and one HTTP client alone, so the figures read as ratios too.

    python bench/load_api.py                       # temp index of 200 photos, pixfind-tiny
    python bench/load_api.py --model ViT-B-32      # the default model's size (random weights)
    python bench/load_api.py --clients 8 --seconds 20
    python bench/load_api.py --index ~/.local/share/pixfind   # an existing index, its model
    python bench/load_api.py --synthetic 10000,100000,1000000 --clients 1
        # N synthetic 512-d vectors written into a real store whose model is ViT-B-32
        # (stand-in random weights from ../shared/tools/standin-hub-cache.py): latency by size

Hard caps: at most 64 clients, 120 seconds, 200,000 requests; loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_CLIENTS = 64
MAX_SECONDS = 120.0
MAX_REQUESTS = 200_000
QUERIES = [
    "a dog running on the grass",
    "two children playing in the snow",
    "a man riding a bicycle",
    "people at the beach",
    "a red car parked on a street",
    "a woman with a hat",
    "a group of people at a concert",
    "a boy jumping into a swimming pool",
    "a black and white cat",
    "sunset over the water",
    "a climber on a rock wall",
    "a crowd watching a parade",
    "two dogs playing with a ball",
    "a girl in a pink dress",
    "skiers on a snowy mountain",
    "a city at night",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[pos]


def build_index(home: Path, images: int, model: str) -> None:
    """A temp index: real photos from ../shared/photos when present, else generated ones."""
    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.types import EncoderSpec

    folder = home.parent / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    real = ROOT.parent / "shared" / "photos" / "images" / "flickr8k"
    if real.is_dir():
        for p in sorted(real.glob("*.jpg"))[:images]:
            shutil.copy(p, folder / p.name)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_picture

        for i in range(images):
            make_picture(folder / f"pic{i:04d}.jpg", seed=i, size=(320, 240))
    # random weights (no download): the architecture sets the cost, which is what is measured
    run_index(home, IndexOptions(roots=[str(folder)]), spec=EncoderSpec(model, None))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_synthetic(home: Path, n: int) -> None:
    """n synthetic vectors in a real store (model ViT-B-32) and the FAISS index pixfind picks."""
    from pixfind.search.index import VectorIndex

    from bench.query_latency import make_store

    store, _ = make_store(home, n)
    VectorIndex.for_store(store)


def start_server(index: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIXFIND_TOKEN": ""}
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", str(index), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not start in 180 s")


def client_loop(port: int, k: int, until: float, cap: int, seed: int, out: list, errors: list):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = 0
    while time.perf_counter() < until and done < cap:
        q = urllib.parse.quote(rng.choice(QUERIES))
        start = time.perf_counter()
        try:
            conn.request("GET", f"/api/search?q={q}&k={k}")
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        elapsed = time.perf_counter() - start
        if response.status == 200:
            out.append(elapsed)
        else:
            errors.append(f"HTTP {response.status}")
        done += 1
    conn.close()


def run_load(port: int, clients: int, seconds: float, k: int) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    cap = MAX_REQUESTS // clients
    start = time.perf_counter()
    until = start + seconds
    threads = [
        threading.Thread(
            target=client_loop, args=(port, k, until, cap, i, latencies[i], errors), daemon=True
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    wall = time.perf_counter() - start
    flat = [x for lat in latencies for x in lat]
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": len(flat),
        "errors": len(errors),
        "qps": round(len(flat) / wall, 1),
        "p50_ms": round(percentile(flat, 50) * 1000, 2),
        "p90_ms": round(percentile(flat, 90) * 1000, 2),
        "p99_ms": round(percentile(flat, 99) * 1000, 2),
    }


def in_process_baseline(index: Path, k: int, seconds: float) -> dict:
    """The same searches without HTTP: what the server can at best approach per request.

    Run in a worker thread, as the server runs them (torch's threading behaves differently
    on the main thread, with long stalls when the CPUs are shared)."""
    from pixfind.search.engine import open_index

    searcher = open_index(index)
    times: list[float] = []

    def loop() -> None:
        searcher.search(QUERIES[0], k)  # warm: model loaded, FAISS index read
        until = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < until and i < MAX_REQUESTS:
            start = time.perf_counter()
            searcher.search(QUERIES[i % len(QUERIES)], k)
            times.append(time.perf_counter() - start)
            i += 1

    worker = threading.Thread(target=loop)
    worker.start()
    worker.join()
    return {
        "requests": len(times),
        "qps": round(len(times) / sum(times), 1),
        "p50_ms": round(percentile(times, 50) * 1000, 2),
        "p99_ms": round(percentile(times, 99) * 1000, 2),
    }


def measure(index: Path, clients: int, seconds: float, k: int) -> dict:
    """In-process baseline, one HTTP client, then N clients, against one running server."""
    load_at_start = round(os.getloadavg()[0], 2)
    port = free_port()
    server = start_server(index, port)
    try:
        run_load(port, min(clients, 4), 2.0, k)  # warm-up, not reported
        baseline = in_process_baseline(index, k, min(seconds, 5.0))
        single = run_load(port, 1, min(seconds, 5.0), k)
        loaded = run_load(port, clients, seconds, k)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "cpus": os.cpu_count(),
        "load_avg_1min_at_start": load_at_start,
        "k": k,
        "in_process": baseline,
        "http_1_client": single,
        "http_n_clients": loaded,
        "http_overhead_p50": round(single["p50_ms"] / baseline["p50_ms"], 2),
        "qps_vs_in_process": round(loaded["qps"] / baseline["qps"], 2),
    }


def print_report(title: str, report: dict, clients: int) -> None:
    baseline, single, loaded = (
        report["in_process"],
        report["http_1_client"],
        report["http_n_clients"],
    )
    print(
        f"{title}: GET /api/search?k={report['k']} on 127.0.0.1 ({report['cpus']} CPUs, load "
        f"average {report['load_avg_1min_at_start']} at start: other processes skew the figures)"
    )
    print(f"{'':22} {'requests':>8} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'in-process (no HTTP)':22} {baseline['requests']:>8} {baseline['qps']:>8} "
        f"{baseline['p50_ms']:>8} {baseline['p99_ms']:>8}"
    )
    for label, r in (("HTTP, 1 client", single), (f"HTTP, {clients} clients", loaded)):
        print(
            f"{label:22} {r['requests']:>8} {r['qps']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}"
            + (f"  ({r['errors']} errors)" if r["errors"] else "")
        )
    print(
        f"HTTP overhead at p50: x{report['http_overhead_p50']}; "
        f"{clients}-client QPS = x{report['qps_vs_in_process']} of in-process\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, help="existing index (default: a temp one)")
    parser.add_argument("--images", type=int, default=200, help="photos in the temp index")
    parser.add_argument(
        "--model",
        default="pixfind-tiny",
        help="architecture of the temp index, random weights (e.g. ViT-B-32: real cost)",
    )
    parser.add_argument(
        "--synthetic",
        help="sizes, e.g. 10000,100000,1000000: synthetic vectors in a ViT-B-32 store instead",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pixfind-standin",
        help="stand-in ViT-B-32 hub cache for --synthetic (written if missing)",
    )
    parser.add_argument("--clients", type=int, default=8, help=f"at most {MAX_CLIENTS}")
    parser.add_argument("--seconds", type=float, default=15.0, help=f"at most {MAX_SECONDS:g}")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))

    if args.synthetic:
        from bench.common import sizes_arg, use_standin

        use_standin(args.cache)  # the server process inherits HF_HOME / HF_HUB_OFFLINE
        reports = {}
        for n in sizes_arg(args.synthetic):
            tmp = Path(tempfile.mkdtemp(prefix="pixfind-load-"))
            try:
                print(f"writing {n:,} synthetic vectors into a real store...", file=sys.stderr)
                build_synthetic(tmp / "index", n)
                reports[n] = measure(tmp / "index", clients, seconds, args.k)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if not args.json:
                print_report(f"{n:,} vectors, ViT-B-32 (stand-in weights)", reports[n], clients)
        if args.json:
            print(json.dumps(reports, indent=2))
        return

    tmp = None
    index = args.index
    if index is None:
        tmp = Path(tempfile.mkdtemp(prefix="pixfind-load-"))
        index = tmp / "index"
        print(f"building a temp index of {args.images} photos ({args.model})...", file=sys.stderr)
        build_index(index, args.images, args.model)
    try:
        report = measure(index, clients, seconds, args.k)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_report(args.model if args.index is None else str(args.index), report, clients)


if __name__ == "__main__":
    main()
