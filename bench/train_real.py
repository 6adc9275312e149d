"""`pixfind train` from scratch on real photos: CIFAR-10 test images from ../shared/photos.

Captions are built from the labels ("a photo of a {label}"), 8,000 photos are trained on with
the CLI's defaults (validation slice, early stopping), and zero-shot top-1 over the ten
classes is measured on the 2,000 held out (chance 0.10). A small model from scratch on
32x32 photos upscaled: what it shows is that the default training path learns real photos,
not a pretrained model's quality.

`--captions`: the human-written captions instead (the 1,159 Flickr8k and COCO photos with five
captions each in ../shared/photos/captions.jsonl); 200 photos are held out and text->image
recall is measured on them (chance R@5 0.025): a small from-scratch model on 959 photos.

    python bench/train_real.py                      # 8,000 / 2,000, --epochs auto
    python bench/train_real.py --n-train 2000 --n-test 500 --epochs 5   # a quick look
    python bench/train_real.py --captions           # Flickr8k + COCO captions, 200 held out
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixfind.search.encoder import load_encoder  # noqa: E402
from pixfind.search.types import EncoderSpec  # noqa: E402
from pixfind.train.evaluate import PROMPT, retrieval, zero_shot  # noqa: E402
from pixfind.train.fit import TrainOptions  # noqa: E402

from bench.common import train_timed  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"


def write_splits(root: Path, n_train: int, n_test: int, seed: int) -> tuple[Path, Path]:
    rows = [json.loads(x) for x in (PHOTOS / "labels.jsonl").read_text().splitlines() if x]
    rows = [r for r in rows if r.get("dataset") == "cifar10_test"]
    random.Random(seed).shuffle(rows)
    if n_train + n_test > len(rows):
        raise SystemExit(f"only {len(rows)} CIFAR-10 photos in {PHOTOS}")
    splits = {"train": rows[:n_train], "test": rows[n_train : n_train + n_test]}
    for name, part in splits.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "images").symlink_to(PHOTOS / "images")
        caps = [{"image": r["image"], "caption": PROMPT.format(label=r["label"])} for r in part]
        labels = [{"image": r["image"], "label": r["label"]} for r in part]
        (folder / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in caps))
        (folder / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    return root / "train", root / "test"


def write_caption_splits(root: Path, n_test: int, seed: int) -> tuple[Path, Path]:
    """Photos of ../shared/photos/captions.jsonl with all their captions, ``n_test`` of them
    (seeded) held out."""
    by_image: dict[str, list[str]] = {}
    for line in (PHOTOS / "captions.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_image.setdefault(row["image"], []).append(row["caption"])
    images = sorted(by_image)
    random.Random(seed).shuffle(images)
    for name, part in (("test", images[:n_test]), ("train", images[n_test:])):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "images").symlink_to(PHOTOS / "images")
        lines = [json.dumps({"image": i, "caption": c}) for i in part for c in by_image[i]]
        (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root / "train", root / "test"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--epochs", default="auto", help="auto (the CLI default) or N")
    ap.add_argument("--model", default="pixfind-demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="model directory (default: a temporary one)")
    ap.add_argument("--plot", type=Path, help="write the learning curves here")
    ap.add_argument(
        "--captions", action="store_true", help="Flickr8k + COCO captions, retrieval figure"
    )
    args = ap.parse_args()
    needs = PHOTOS / ("captions.jsonl" if args.captions else "labels.jsonl")
    if not needs.is_file():
        raise SystemExit(f"no {needs}: this bench needs ../shared/photos")
    with tempfile.TemporaryDirectory() as tmp:
        if args.captions:
            n_test = 200 if args.n_test == 2000 else args.n_test
            train_dir, test_dir = write_caption_splits(Path(tmp), n_test, args.seed)
        else:
            train_dir, test_dir = write_splits(Path(tmp), args.n_train, args.n_test, args.seed)
        out = args.out or Path(tmp) / "model"
        epochs = None if args.epochs == "auto" else int(args.epochs)
        options = TrainOptions(model=args.model, epochs=epochs, seed=args.seed)
        title = "Flickr8k + COCO captions" if args.captions else "CIFAR-10"
        run = train_timed(train_dir, out, options, args.plot, f"{title} from scratch")
        encoder = load_encoder(EncoderSpec(str(out), None), "cpu")
        if args.captions:
            scores = {"retrieval": retrieval(encoder, test_dir).to_dict()}
        else:
            scores = {"zero_shot": zero_shot(encoder, test_dir).to_dict()}
    print(json.dumps({**run["summary"], **scores}, indent=2))


if __name__ == "__main__":
    main()
