"""An index on s3:// (moto's S3 server on loopback) vs a folder, and photos read from an
s3:// prefix into a folder index, same photos, same run, each command through the CLI in
its own process (process start and imports count):

    python bench/object_store.py --n 200

Rows: a first index, a re-index with nothing to do, a text search (median of --queries),
`status`. The ratios are each s3:// column over the folder's. Moto on loopback has no
network latency and its own Python overhead per request, so this measures pixfind's extra
work on object storage (the LanceDB round trips, the lease, the derived files' copies, no
cold query path; a GET per photo), not a real bucket's latency, which adds tens of
milliseconds per request on top.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PHOTOS  # noqa: E402

MODEL = ["--model", "pixfind-tiny", "--pretrained", "none"]
QUERIES = ["a dog running on grass", "children playing", "a man on a bike", "a red car"]


def run(index: str, env: dict, *args: str) -> float:
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", index, *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--queries", type=int, default=4)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sources = sorted((PHOTOS / "flickr8k").glob("*.jpg"))[: args.n]
    if len(sources) < args.n:
        sys.exit(f"need {args.n} photos in {PHOTOS / 'flickr8k'}, found {len(sources)}")
    work = Path(tempfile.mkdtemp(prefix="pixfind-s3-bench-"))
    folder = work / "photos"
    folder.mkdir()
    for src in sources:
        shutil.copy(src, folder / src.name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
        XDG_CACHE_HOME=str(work / "cache"),
        PIXFIND_RUNTIME="torch",
    )
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client.create_bucket(Bucket="bench")
    for src in sources:
        client.put_object(Bucket="bench", Key=f"photos/{src.name}", Body=src.read_bytes())
    rows: dict[str, list[float]] = {}
    try:
        for index, photos in (
            (str(work / "local-index"), str(folder)),
            ("s3://bench/idx", str(folder)),
            (str(work / "s3-photos-index"), "s3://bench/photos"),
        ):
            times = [
                run(index, env, "index", photos, *MODEL),
                run(index, env, "index", photos, *MODEL),
            ]
            searches = [run(index, env, "search", q, "-k", "10") for q in QUERIES[: args.queries]]
            times += [statistics.median(searches), run(index, env, "status")]
            rows[index] = times
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    local, remote, photos_s3 = rows.values()
    print(f"{args.n} photos, pixfind-tiny; load average {os.getloadavg()[0]:.1f}")
    head = (
        f"{'command':<26} {'folder':>8} {'index s3':>9} {'ratio':>6} {'photos s3':>10} {'ratio':>6}"
    )
    print(head)
    names = ["index (first)", "index (nothing to do)", "search (median)", "status"]
    for name, a, b, c in zip(names, local, remote, photos_s3, strict=True):
        print(f"{name:<26} {a:>7.2f}s {b:>8.2f}s {b / a:>5.2f}x {c:>9.2f}s {c / a:>5.2f}x")


if __name__ == "__main__":
    main()
