"""The demo model's recipe, re-measured: `pixfind train SCENES OBJECTS --out M` on the demo's
2,400 scenes and 1,200 one-object photos (make demo's data, seed 0), then held-out
text->image recall on the 1,000 held-out scenes and the 24 attribute queries of
tests/e2e/test_train.py, counted with the held-out photos indexed `--no-captions` (only the
model ranks) and, for comparison, with their captions.

    python bench/train_demo.py                          # the demo now: --epochs auto
    python bench/train_demo.py --epochs 30 --simple-first 0   # the previous demo
    python bench/train_demo.py --threads 1 --plot curves.png

Training runs in this process; `--threads` sets torch's intra-op threads (results differ
slightly between thread counts: floating-point sums in another order).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixfind.search.encoder import load_encoder  # noqa: E402
from pixfind.search.types import EncoderSpec  # noqa: E402
from pixfind.train import demo  # noqa: E402
from pixfind.train.evaluate import retrieval  # noqa: E402
from pixfind.train.fit import TrainOptions  # noqa: E402
from rich.console import Console  # noqa: E402

from bench.common import train_timed  # noqa: E402
from bench.train_defaults import precision_at_5  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", default=str(demo.DEMO_EPOCHS or "auto"), help="auto or N")
    ap.add_argument("--simple-first", type=float, default=TrainOptions.simple_first)
    ap.add_argument("--hard-batches", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--cache", type=Path, default=Path(".cache"), help="demo data cache")
    ap.add_argument("--plot", type=Path, help="write the learning curves here")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    quiet = Console(quiet=True)
    data = demo.demo_data(args.cache.resolve(), demo.DEMO_N, args.seed, quiet)
    objects = demo.objects_data(args.cache.resolve(), args.seed, quiet)
    options = TrainOptions(
        epochs=None if args.epochs == "auto" else int(args.epochs),
        seed=args.seed,
        simple_first=args.simple_first,
        hard_batches=args.hard_batches,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        run = train_timed([data.train, objects.train], out, options, args.plot, "demo model")
        scores = retrieval(load_encoder(EncoderSpec(str(out), None), "cpu"), data.test)
        p5, _ = precision_at_5(out, data.test, Path(tmp) / "index")
        p5_captions, _ = precision_at_5(out, data.test, Path(tmp) / "index-c", captions=True)
    print(
        json.dumps(
            {
                **run["summary"],
                "options": {k: getattr(options, k) for k in ("epochs", "simple_first", "seed")},
                "held_out_text_to_image": scores.to_dict()["text_to_image"],
                "attribute_queries_p5_at_least_0.8": sum(p >= 0.8 for p in p5),
                "attribute_p5_mean": round(float(np.mean(p5)), 3),
                "with_captions_indexed": sum(p >= 0.8 for p in p5_captions),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
