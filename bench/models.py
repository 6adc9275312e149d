"""The default model: published zero-shot quality against CPU speed measured here.

For each candidate open_clip offers, the published figures (cited below) next to what this
machine measures with stand-in RANDOM weights of the real architecture, loaded through
open_clip's own pretrained path from a hub cache made by ../shared/tools/standin-hub-cache.py
(speed and memory only: the weights are random). Each model runs in a fresh process on
``--threads`` threads: image encoding in images/s (random batches at the model's own input
size), one text query in ms with the query padded to the context length (what open_clip runs)
and unpadded to 8 tokens (pixfind's trick, exact only for a causal text tower: MobileCLIP's
and MobileCLIP2's are not causal, so they pay the padded figure), and the seconds to load.
MobileCLIP's image towers are reparameterised for inference first (timm
``reparameterize_model``), as their authors prescribe.

    python bench/models.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import STANDIN_TOOL  # noqa: E402

# (model, tag): (ImageNet-1k zero-shot top-1 %, average over the 38 datasets %, Flickr30k
# image retrieval R@1 %, MSCOCO image retrieval R@1 %, source). None: not published there.
OPENCLIP_CSV = "open_clip docs/openclip_results.csv + openclip_retrieval_results.csv"
CARD_MC = "apple/MobileCLIP-S2-OpenCLIP model card (MobileCLIP paper, CVPR 2024)"
CARD_MC2 = "apple/MobileCLIP2-B model card (MobileCLIP2 paper, TMLR 2025)"
PUBLISHED = {
    ("ViT-B-32", "laion2b_s34b_b79k"): (66.6, 56.9, 66.8, 39.3, OPENCLIP_CSV),
    ("ViT-B-32-256", "datacomp_s34b_b86k"): (72.8, 60.9, 64.9, 39.9, OPENCLIP_CSV),
    ("MobileCLIP2-S0", "dfndr2b"): (71.5, 59.7, None, None, CARD_MC2),
    ("MobileCLIP2-S2", "dfndr2b"): (77.2, 64.1, None, None, CARD_MC2),
    ("MobileCLIP-S1", "datacompdr"): (72.6, 61.3, None, None, CARD_MC),
    ("MobileCLIP-S2", "datacompdr"): (74.4, 63.7, None, None, CARD_MC),
    ("ViT-B-32-SigLIP2-256", "webli"): (None, None, None, None, "SigLIP 2 paper, arXiv:2502.14786"),
}

MEASURE = """
import json, sys, time, torch
import open_clip

name, tag, threads, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
start = time.perf_counter()
model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=tag)
if name.startswith("MobileCLIP"):
    from timm.utils import reparameterize_model
    model = reparameterize_model(model)
model.eval()
load = time.perf_counter() - start
cfg = open_clip.get_model_config(name)
size = cfg["vision_cfg"].get("image_size", 224)
size = size if isinstance(size, int) else size[0]
ctx = cfg["text_cfg"].get("context_length", 77)
text_cfg = cfg["text_cfg"]
causal = not text_cfg.get("no_causal_mask", False) and "hf_model_name" not in text_cfg
images = torch.randn(16, 3, size, size)

def tokens(n):
    t = torch.zeros(1, n, dtype=torch.long)
    t[0, : min(n, 8)] = torch.randint(300, 40000, (min(n, 8),))
    t[0, min(n, 8) - 1] = 49407  # end of text: the argmax pooling's position
    return t

def unpadded(t):
    # CLIP's causal text tower on the first positions only (pixfind's trick)
    n = t.shape[1]
    x = model.token_embedding(t) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    return x[torch.arange(1), t.argmax(-1)] @ model.text_projection

def ms(fn, runs=5):
    fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1000

with torch.inference_mode():
    model.encode_image(images[:4])
    start = time.perf_counter()
    for _ in range(batches):
        model.encode_image(images)
    rate = 16 * batches / (time.perf_counter() - start)
    padded = ms(lambda: model.encode_text(tokens(ctx)))
    short = ms(lambda: unpadded(tokens(8))) if causal and hasattr(model, "attn_mask") else None
params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6
print(json.dumps({
    "size": size, "rate": rate, "padded_ms": padded, "short_ms": short, "load_s": load,
    "causal": causal, "image_m": params(model.visual),
    "text_m": params(model) - params(model.visual),
}))
"""


def standin(cache: Path, model: str, tag: str) -> None:
    done = cache / f".standin-{model}-{tag}"
    if not done.exists():
        subprocess.run([sys.executable, str(STANDIN_TOOL), str(cache), model, tag], check=True)
        done.touch()


def measure(cache: Path, model: str, tag: str, threads: int, batches: int) -> dict:
    env = dict(os.environ, HF_HOME=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads on a shared machine: 4x slower
    args = [model, tag, str(threads), str(batches)]
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pareto(rows: list[tuple[tuple[str, str], dict]]) -> set[tuple[str, str]]:
    """Candidates no other one beats on both published ImageNet accuracy and measured img/s."""
    known = [(k, PUBLISHED[k][0], m["rate"]) for k, m in rows if PUBLISHED[k][0] and "rate" in m]
    return {
        k
        for k, acc, rate in known
        if not any(a >= acc and r >= rate and (a, r) != (acc, rate) for _, a, r in known)
    }


def fmt(value, spec: str = ".1f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2, help="batches of 16 images timed")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/pixfind-standin-models"))
    parser.add_argument("--only", nargs="*", help="model names to measure (default: all)")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    rows = []
    for model, tag in PUBLISHED:
        if args.only and model not in args.only:
            continue
        standin(args.cache, model, tag)
        rows.append(((model, tag), measure(args.cache, model, tag, args.threads, args.batches)))
        print(f"  {model}/{tag}: {rows[-1][1]}", file=sys.stderr)
    load.append(os.getloadavg()[0])
    base = next((m for k, m in rows if k[0] == "ViT-B-32" and "rate" in m), None)
    front = pareto(rows)
    print(
        "| model | px | IN-1k 0-shot % | avg 38 % | Flickr / COCO img R@1 % | img/s "
        f"({args.threads} thr) | vs ViT-B-32 | text query ms (77 tok / 8 tok) | load s "
        "| params img+txt M | Pareto |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, m in rows:
        acc, avg, flickr, coco, _ = PUBLISHED[key]
        if "rate" not in m:
            print(f"| {key[0]} {key[1]} | | | | | failed: {m['error']} | | | | | |")
            continue
        ratio = f"{m['rate'] / base['rate']:.2f}x" if base else "n/a"
        short = fmt(m["short_ms"], ".0f", "not causal")
        print(
            f"| {key[0]} {key[1]} | {m['size']} | {fmt(acc)} | {fmt(avg)} "
            f"| {fmt(flickr)} / {fmt(coco)} | {m['rate']:.1f} | {ratio} "
            f"| {m['padded_ms']:.0f} / {short} | {m['load_s']:.1f} "
            f"| {m['image_m']:.0f}+{m['text_m']:.0f} | {'yes' if key in front else ''} |"
        )
    print("\nsources of the published figures:")
    for source in dict.fromkeys(p[4] for p in PUBLISHED.values()):
        print(f"- {source}")
    print(
        f"\nstand-in random weights (speed only); load average {load[0]:.2f} at the start, "
        f"{load[1]:.2f} at the end, on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
