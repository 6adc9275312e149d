"""pixfind against its closest peer, rclip 3.3.0, on the same folders, interleaved (A, B, A, B).

Both tools run with RANDOM stand-in weights of their real architectures (speed and memory
only, never quality): pixfind's default model through ../shared/tools/standin-hub-cache.py,
rclip's ViT-B-32-256 exported to ONNX exactly as rclip's scripts/convert_model.py does it
(open_clip, FP32, opset 18, TorchScript exporter, MHA fast path off, input "input", output
"output", dynamic batch axis; ``visual = model.visual``, ``textual = model.encode_text``)
into ``$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx`` with the
tokenizer at ``$RCLIP_DATADIR/tokenizer/bpe_simple_vocab_16e6.txt.gz``: rclip uses them
without downloading anything. rclip runs from its own venv (``--install`` makes it).

Folders: 300 Flickr photos from ../shared/photos, and 120 phone-size JPEGs (4000x3000,
made by upscaling Flickr photos). Measures, each a median of runs, both tools in turn:

- cold text query: `pixfind search "a dog"` vs `rclip -n "a dog"` (no re-indexing);
- re-index with nothing changed: `pixfind index DIR` vs `rclip -f "a dog"` (rclip has no
  index-only command: its run is the incremental index check plus one query);
- full index from empty: a fresh index folder / a fresh rclip database each run;
- model-only image encoding on 2 threads: pixfind's Encoder.encode_image_tensors (224 px;
  torch eager, ONNX Runtime float32, and the tower `pixfind index` picks: int8 where its
  check passed) vs rclip's visual.onnx in ONNX Runtime (256 px), batches of 32 random images.

    python bench/peer_rclip.py --install            # once: rclip 3.3.0 into /tmp/rclip-venv
    python bench/peer_rclip.py --repeat 5 --full-repeat 3
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

from bench.common import PHOTOS, ROOT, standin_env  # noqa: E402

RCLIP_VERSION = "3.3.0"
RCLIP_MODEL = "ViT-B-32-256-datacomp_s34b_b86k"
QUERY = "a dog"
ROWS = ("cold", "noop", "full", "phone", "encode")  # the table's rows, in order
# pixfind's image towers the encode row measures: (runtime, precision)
ENCODERS = {
    "torch eager": ("torch", "fp32"),
    "ONNX fp32": ("onnx", "fp32"),
    "ONNX, index default": ("auto", "auto"),
}

EXPORT = """
import shutil, sys
from pathlib import Path
import open_clip, torch

out = Path(sys.argv[1])
model_dir = out / "ViT-B-32-256-datacomp_s34b_b86k"
model_dir.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
model, _, _ = open_clip.create_model_and_transforms("ViT-B-32-256", pretrained=None)
model.eval()

class Visual(torch.nn.Module):
    def __init__(self, visual):
        super().__init__()
        self.visual = visual
    def forward(self, inputs):
        return self.visual(inputs)

class Textual(torch.nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.clip_model = clip_model
    def forward(self, inputs):
        return self.clip_model.encode_text(inputs)

torch.backends.mha.set_fastpath_enabled(False)
for wrapper, dummy, name in (
    (Visual(model.visual), torch.randn(1, 3, 256, 256), "visual.onnx"),
    (Textual(model), torch.zeros(1, 77, dtype=torch.long), "textual.onnx"),
):
    wrapper.eval()
    torch.onnx.export(
        wrapper, (dummy,), str(model_dir / name), input_names=["input"],
        output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=18, dynamo=False,
    )
vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
(out / "tokenizer").mkdir(exist_ok=True)
shutil.copy2(vocab, out / "tokenizer" / vocab.name)
"""

PIXFIND_ENCODE = """
import sys, time, torch
from pixfind.search.encoder import load_encoder
torch.set_num_threads(2)
enc = load_encoder(None, "cpu", sys.argv[2])
size = enc.image_size
batch = torch.randn(32, 3, size, size)
enc.start_run(sys.argv[3])  # as `pixfind index` does: its first batch picks the image tower
enc.onnx_towers(batch)
enc.encode_image_tensors(batch)
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    enc.encode_image_tensors(batch)
print(32 * int(sys.argv[1]) / (time.perf_counter() - start), size, enc.precision)
"""

RCLIP_ENCODE = """
import sys, time, numpy as np, onnxruntime as ort
opts = ort.SessionOptions()
opts.intra_op_num_threads = 2
session = ort.InferenceSession(sys.argv[2], opts, providers=["CPUExecutionProvider"])
batch = np.random.default_rng(0).standard_normal((32, 3, 256, 256), dtype=np.float32)
session.run(None, {"input": batch})
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    session.run(None, {"input": batch})
print(32 * int(sys.argv[1]) / (time.perf_counter() - start), 256)
"""


def install(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"rclip=={RCLIP_VERSION}"], check=True)


def rclip_models(datadir: Path) -> Path:
    """rclip's model files with random weights (exported once, kept in ``datadir``)."""
    if not (datadir / RCLIP_MODEL / "textual.onnx").is_file():
        print("exporting rclip's ViT-B-32-256 to ONNX (random weights)...", file=sys.stderr)
        subprocess.run([sys.executable, "-c", EXPORT, str(datadir)], check=True)
    return datadir


def fresh_rclip_datadir(models: Path, where: Path) -> Path:
    """An rclip data folder without a database, sharing the exported model files."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for name in (RCLIP_MODEL, "tokenizer"):
        (where / name).symlink_to(models / name)
    return where


def flickr_folder(work: Path, n: int) -> Path:
    folder = work / f"flickr{n}"
    if not folder.is_dir():
        photos = sorted((PHOTOS / "flickr8k").glob("*.jpg"))[:n]
        if len(photos) < n:
            sys.exit(f"{PHOTOS / 'flickr8k'} has {len(photos)} photos, {n} needed")
        folder.mkdir(parents=True)
        for p in photos:
            shutil.copy2(p, folder / p.name)
    return folder


def phone_folder(work: Path, n: int) -> Path:
    """``n`` 4000x3000 JPEGs (quality 90) upscaled from Flickr photos: phone-size files."""
    from PIL import Image

    folder = work / f"phone{n}"
    if not folder.is_dir():
        tmp = work / f"phone{n}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(sorted((PHOTOS / "flickr8k").glob("*.jpg"))[1000 - n : 1000]):
            with Image.open(p) as im:
                im.convert("RGB").resize((4000, 3000), Image.BICUBIC).save(
                    tmp / f"IMG_{i:04d}.jpg", quality=90
                )
        tmp.rename(folder)
    return folder


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one run of ``cmd``."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        took = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        return took, int(rss.read().split()[-1]) / 1024


def median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


class Peer:
    """The two tools' commands, environments and state folders."""

    def __init__(self, work: Path, venv: Path, standin: Path):
        self.work = work
        self.pix_env = {**standin_env(standin), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        self.models = rclip_models(work / "rclip-models")
        self.rclip = str(venv / "bin" / "rclip")
        self.rclip_python = str(venv / "bin" / "python")
        self.rclip_env = dict(os.environ, HF_HUB_OFFLINE="1")

    def pixfind(self, index: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "pixfind.cli", "--index", str(index), *args]

    def rclip_run(self, datadir: Path, folder: Path, *args: str) -> tuple[float, float]:
        env = {**self.rclip_env, "RCLIP_DATADIR": str(datadir)}
        return timed([self.rclip, *args, QUERY], env, folder)

    def prepare(self, folder: Path) -> None:
        """pixfind's model files, made before any timed run as rclip's are: its ONNX export
        and int8 image tower (made by the first index run into the model cache, once), from
        one batch of ``folder``'s photos."""
        index, batch = self.work / "pix-prepare", self.work / "prepare"
        shutil.rmtree(index, ignore_errors=True)
        shutil.rmtree(batch, ignore_errors=True)
        batch.mkdir()
        for photo in sorted(folder.iterdir())[:32]:
            (batch / photo.name).symlink_to(photo)
        timed(self.pixfind(index, "index", str(batch)), self.pix_env, ROOT)

    def full_index(self, folder: Path, tag: str, repeat: int) -> tuple[list, list]:
        pix, rc = [], []
        for i in range(repeat):
            index = self.work / f"pix-{tag}-full"
            shutil.rmtree(index, ignore_errors=True)
            pix.append(timed(self.pixfind(index, "index", str(folder)), self.pix_env, ROOT))
            datadir = fresh_rclip_datadir(self.models, self.work / f"rclip-{tag}-full")
            rc.append(self.rclip_run(datadir, folder, "-f"))
            print(f"  full index {tag} run {i + 1}: {pix[-1][0]:.1f} s / {rc[-1][0]:.1f} s")
        return pix, rc

    def encode_rates(self, batches: int, repeat: int) -> tuple[dict, list]:
        """Images per second of pixfind's image tower in each runtime and precision
        (ENCODERS; the last is what `pixfind index` uses by default) and of rclip's."""
        pix: dict[str, list] = {name: [] for name in ENCODERS}
        rc = []
        visual = str(self.models / RCLIP_MODEL / "visual.onnx")
        for _ in range(repeat):
            for name, (runtime, precision) in ENCODERS.items():
                out = subprocess.run(
                    [sys.executable, "-c", PIXFIND_ENCODE, str(batches), runtime, precision],
                    env=self.pix_env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                pix[name].append((float(out[0]), int(out[1]), out[2]))
            out = subprocess.run(
                [self.rclip_python, "-c", RCLIP_ENCODE, str(batches), visual],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            rc.append((float(out[0]), int(out[1])))
        return pix, rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true", help=f"install rclip {RCLIP_VERSION}")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/rclip-venv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/pixfind-peer-rclip"))
    parser.add_argument("--standin", type=Path, default=Path("/tmp/pixfind-standin"))
    parser.add_argument("--repeat", type=int, default=5, help="runs of the quick measures")
    parser.add_argument("--full-repeat", type=int, default=3, help="runs of each full index")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--phone", type=int, default=120)
    parser.add_argument("--batches", type=int, default=4, help="batches of 32 per encode run")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"comma-separated rows to measure, of {','.join(ROWS)} (default: all)",
    )
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    if wanted - set(ROWS):
        sys.exit(f"--rows takes some of {','.join(ROWS)}")
    if args.install:
        install(args.venv)
    if not (args.venv / "bin" / "rclip").is_file():
        sys.exit(f"no rclip in {args.venv}: run with --install first")
    args.work.mkdir(parents=True, exist_ok=True)
    peer = Peer(args.work, args.venv, args.standin)
    flickr = flickr_folder(args.work, args.photos)
    load = [os.getloadavg()[0]]
    started = time.perf_counter()

    # a populated index and rclip database of the Flickr folder for the query and no-op rows
    index = args.work / "pix-flickr"
    datadir = args.work / "rclip-flickr"
    quick = wanted & {"cold", "noop"}
    if quick and not (index / "files.state").is_file():
        shutil.rmtree(index, ignore_errors=True)
        timed(peer.pixfind(index, "index", str(flickr)), peer.pix_env, ROOT)
    if quick and not (datadir / "db.sqlite3").is_file():
        peer.rclip_run(fresh_rclip_datadir(peer.models, datadir), flickr, "-f")
    query, noop = ([], []), ([], [])
    for _ in range(args.repeat if quick else 0):
        if "cold" in wanted:
            query[0].append(timed(peer.pixfind(index, "search", QUERY), peer.pix_env, ROOT))
            query[1].append(peer.rclip_run(datadir, flickr, "-n", "-f"))
        if "noop" in wanted:
            noop[0].append(timed(peer.pixfind(index, "index", str(flickr)), peer.pix_env, ROOT))
            noop[1].append(peer.rclip_run(datadir, flickr, "-f"))
    load.append(os.getloadavg()[0])
    full = big = ([], [])
    if wanted & {"full", "phone"}:
        peer.prepare(flickr)
    if "full" in wanted:
        full = peer.full_index(flickr, "flickr", args.full_repeat)
        load.append(os.getloadavg()[0])
    if "phone" in wanted:
        big = peer.full_index(phone_folder(args.work, args.phone), "phone", args.full_repeat)
        load.append(os.getloadavg()[0])
    rates: tuple[dict, list] = ({}, [])
    if "encode" in wanted:
        rates = peer.encode_rates(args.batches, args.repeat)
        load.append(os.getloadavg()[0])

    n, m = args.photos, args.phone
    print(f"\n| measure | pixfind | rclip {RCLIP_VERSION} | pixfind/rclip time |")
    print("|---|---|---|---|")
    rows = [
        (f'cold text query, {n} photos (`search "{QUERY}"` / `rclip -n`)', query, None),
        (f"re-index, nothing changed, {n} photos (`index` / `rclip -f`)", noop, None),
        (f"full index from empty, {n} Flickr photos", full, n),
        (f"full index from empty, {m} phone JPEGs 4000x3000", big, m),
    ]
    for label, (a, b), images in rows:
        if not a:
            continue
        (ta, ma), (tb, mb) = median(a), median(b)
        rate_a = f", {images / ta:.1f} img/s" if images else ""
        rate_b = f", {images / tb:.1f} img/s" if images else ""
        print(
            f"| {label} | {ta:.2f} s ({ma:.0f} MB{rate_a}) | {tb:.2f} s ({mb:.0f} MB{rate_b}) "
            f"| {ta / tb:.2f}x |"
        )
    for name, runs in rates[0].items():
        ra = statistics.median(r[0] for r in runs)
        rb = statistics.median(r[0] for r in rates[1])
        print(
            f"| model-only image encoding, 2 threads, pixfind {name} ({runs[0][2]} used) "
            f"| {ra:.1f} img/s ({runs[0][1]} px) | {rb:.1f} img/s ({rates[1][0][1]} px) "
            f"| {ra / rb:.2f}x the rate |"
        )
    print(
        f"\nmedians of {args.repeat} (full index: {args.full_repeat}) interleaved runs; peak RSS "
        f"in parentheses; {time.perf_counter() - started:.0f} s in all; load average (1 min) "
        f"at the start and after each part: {', '.join(f'{x:.2f}' for x in load)} on "
        f"{os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
