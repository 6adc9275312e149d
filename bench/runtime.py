"""CPU inference runtimes for the image tower: torch eager against ONNX Runtime, same run.

Variants: torch eager fp32 (the baseline), torch with bf16 autocast (AVX-512 BF16 / AMX),
ONNX Runtime fp32 without and with graph optimizations, and ONNX Runtime with int8 dynamic
quantization of the MatMuls (VNNI; pixfind's int8 tower, search/quantize.py); with
``--extra``: torch channels-last, ``torch.compile`` (inductor), and OpenVINO on the same
ONNX file in f32 and bf16 (``pip install openvino``; skipped with a line where it is
missing); each at the thread counts and batch sizes asked for.
Speed: images per second of preprocessed 224 px photos (the model alone, no decoding).
Rankings: bf16 and int8 change numbers, so each variant's effect is measured as the top-10
overlap of text-to-image rankings against torch fp32 on the same photos (queries: captions
of ../shared/photos). With stand-in random weights (the default, speed only) the overlap
measures numerical perturbation, not semantics; pass a trained model (``--model DIR`` of
`pixfind train`/`make demo`) for rankings with meaning. Also prints the parity of the
export (the check pixfind runs at export: least cosine ONNX vs torch, both towers).

    HF_HOME=/tmp/pixfind-standin HF_HUB_OFFLINE=1 python bench/runtime.py --photos 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PHOTOS, SHARED  # noqa: E402


def load_photos(encoder, n: int):
    import torch
    from PIL import Image

    paths = sorted((PHOTOS / "flickr8k").glob("*.jpg"))[:n]
    if len(paths) < n:
        sys.exit(f"need {n} photos under {PHOTOS / 'flickr8k'}, found {len(paths)}")
    return paths, torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])


def captions(n: int) -> list[str]:
    lines = (SHARED / "photos" / "captions.jsonl").read_text().splitlines()
    step = max(1, len(lines) // n)
    return [json.loads(line)["caption"] for line in lines[::step][:n]]


def ort_session(path: Path, threads: int, optimize: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as pixfind
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def variants(encoder, visual: Path, folder: Path, threads: int, extra: set[str]) -> dict:
    """name -> fn(pixels float32 tensor) -> unnormalised numpy features."""
    import torch
    from pixfind.search.quantize import quantize

    model = encoder.model

    def torch_fp32(x):
        with torch.inference_mode():
            return model.encode_image(x).numpy()

    def torch_bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encode_image(x).float().numpy()

    int8 = visual.parent / "visual.int8.onnx"  # the one `pixfind index` made, else made here
    if not int8.is_file():
        int8 = folder / int8.name
        quantize(visual, int8)
    sessions = {
        "onnx fp32, no graph optimization": ort_session(visual, threads, False),
        "onnx fp32, graph optimizations": ort_session(visual, threads, True),
        "onnx int8 dynamic (MatMul, per channel)": ort_session(int8, threads, True),
    }
    out = {"torch eager fp32": torch_fp32, "torch bf16 autocast": torch_bf16}
    for name, session in sessions.items():
        out[name] = lambda x, s=session: s.run(None, {"pixels": x.numpy()})[0]
    out.update(extra_variants(model, visual, threads, extra))
    return out


def extra_variants(model, visual: Path, threads: int, extra: set[str]) -> dict:
    """torch channels-last and torch.compile, OpenVINO f32 / bf16 (where installed)."""
    import copy

    import torch

    out = {}
    if "channels-last" in extra:
        last = copy.deepcopy(model).to(memory_format=torch.channels_last)

        def channels_last(x):
            with torch.inference_mode():
                return last.encode_image(x.contiguous(memory_format=torch.channels_last)).numpy()

        out["torch channels-last fp32"] = channels_last
    if "compile" in extra:
        compiled = torch.compile(copy.deepcopy(model).encode_image, dynamic=True)

        def torch_compiled(x):
            with torch.inference_mode():
                return compiled(x).numpy()

        start = time.perf_counter()
        torch_compiled(torch.zeros(2, 3, 224, 224))  # the compile itself, not timed below
        print(f"torch.compile (inductor): compiled in {time.perf_counter() - start:.1f} s")
        out["torch.compile fp32 (inductor)"] = torch_compiled
    if "openvino" in extra:
        try:
            import openvino as ov
        except ImportError:
            print("OpenVINO rows skipped: pip install openvino")
            return out
        core = ov.Core()
        for hint in ("f32", "bf16"):
            config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint}
            compiled_model = core.compile_model(str(visual), "CPU", config)
            out[f"openvino {hint}"] = lambda x, m=compiled_model: m(x.numpy())[0]
    return out


def rate(fn, pixels, batch: int, seconds: float) -> float:
    """Images per second encoding ``pixels`` in batches, for at least ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done == 0:
        at = done % max(1, len(pixels) - batch + 1)
        fn(pixels[at : at + batch])
        done += batch
    return done / (time.perf_counter() - start)


def top10(image_vectors: np.ndarray, text_vectors: np.ndarray) -> np.ndarray:
    norm = image_vectors / np.linalg.norm(image_vectors, axis=1, keepdims=True)
    return np.argsort(-(text_vectors @ norm.T), axis=1)[:, :10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="laion2b_s34b_b79k")
    ap.add_argument("--photos", type=int, default=200, help="photos for the ranking overlap")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--threads", default="2", help="comma-separated thread counts")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--seconds", type=float, default=6.0, help="per speed measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument(
        "--extra",
        default="",
        help="comma-separated extra variants: channels-last, compile, openvino",
    )
    args = ap.parse_args()
    extra = set(filter(None, args.extra.split(",")))

    import torch
    from pixfind.search import onnxexport
    from pixfind.search.encoder import exported_towers, load_encoder
    from pixfind.search.models import requested_spec
    from pixfind.search.onnxrt import OnnxTowers

    load_start = os.getloadavg()
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    pretrained = None if Path(args.model).is_dir() else args.pretrained
    encoder = load_encoder(requested_spec(args.model, pretrained), "cpu", "torch")
    paths, pixels = load_photos(encoder, args.photos)
    folder = Path(tempfile.mkdtemp(prefix="pixfind-runtime-"))
    towers = exported_towers(encoder.spec)  # pixfind's own export where there is one
    if towers is None:
        start = time.perf_counter()
        text = onnxexport.export_towers(encoder, folder)
        print(f"exported in {time.perf_counter() - start:.1f} s")
        towers = OnnxTowers(folder, {"dim": encoder.dim, "text": text, "key": "bench"})
    parity = onnxexport.parity(encoder, towers, pixels[:32])
    print(f"model {encoder.spec.label}, {len(paths)} photos, image size {encoder.image_size}")
    print(f"parity (least cosine ONNX vs torch, {min(32, len(paths))} photos): {parity}")

    queries = encoder.torch_encode_texts(captions(args.queries))
    report: dict[tuple[str, int], dict] = {}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        fns = variants(encoder, towers.directory / "visual.onnx", folder, n_threads, extra)
        reference = None
        for name, fn in fns.items():
            vectors = np.concatenate([fn(pixels[i : i + 32]) for i in range(0, len(pixels), 32)])
            ranks = top10(vectors, queries)
            if reference is None:
                reference = ranks
            overlap = statistics.mean(
                len(set(a) & set(b)) / 10 for a, b in zip(ranks, reference, strict=True)
            )
            report[name, n_threads] = {"speeds": {b: [] for b in batches}, "overlap": overlap}
        # speeds interleaved over rounds, so a change of load hits every variant alike
        for _ in range(args.rounds):
            for b in batches:
                for name, fn in fns.items():
                    fn(pixels[:b])  # warm up (allocations, kernels)
                    speed = rate(fn, pixels, b, args.seconds / args.rounds)
                    report[name, n_threads]["speeds"][b].append(speed)
    load_end = os.getloadavg()
    for row in report.values():
        row["speeds"] = {b: statistics.median(v) for b, v in row["speeds"].items()}

    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} (2 cores)")
    head = " | ".join(f"batch {b} img/s (x torch)" for b in batches)
    print(f"| runtime | threads | {head} | top-10 overlap vs torch fp32 |")
    for (name, n_threads), row in report.items():
        base = report["torch eager fp32", n_threads]["speeds"]
        cells = " | ".join(
            f"{row['speeds'][b]:.1f} ({row['speeds'][b] / base[b]:.2f}x)" for b in batches
        )
        print(f"| {name} | {n_threads} | {cells} | {row['overlap']:.3f} |")


if __name__ == "__main__":
    main()
