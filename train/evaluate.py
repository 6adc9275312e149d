"""Retrieval evaluation as in CLIP_benchmark: Recall@k both ways, and zero-shot accuracy.

text->image: every caption is a query; it scores a hit at k when its own image is among the
k nearest images. image->text: every image is a query; a hit when any of its captions is
among the k nearest captions. Zero-shot: each image is classified by the nearest prompt
"a photo of a {label}" among all labels of the collection.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pixfind.search.captions import Collection, read_collection, read_labels
from pixfind.search.errors import PixfindError
from pixfind.search.images import DecodeError, decode_file

KS = (1, 5, 10)
PROMPT = "a photo of a {label}"


@dataclass
class RetrievalScores:
    images: int
    captions: int
    text_to_image: dict[int, float]  # k -> recall
    image_to_text: dict[int, float]
    skipped: list[str] = field(default_factory=list)
    # text->image recall attainable when captions repeat (recall_ceiling); 1.0 when they don't
    ceiling: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "captions": self.captions,
            "text_to_image": {f"R@{k}": round(v, 4) for k, v in self.text_to_image.items()},
            "image_to_text": {f"R@{k}": round(v, 4) for k, v in self.image_to_text.items()},
            "skipped": len(self.skipped),
            "text_to_image_ceiling": {f"R@{k}": round(v, 4) for k, v in self.ceiling.items()},
        }


@dataclass
class ZeroShotScores:
    images: int
    classes: int
    top1: float
    top5: float | None

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "classes": self.classes,
            "top1": round(self.top1, 4),
            "top5": None if self.top5 is None else round(self.top5, 4),
        }


Progress = Callable[[int, int], None]


def encode_paths(
    encoder: Any, paths: Sequence[str], batch_size: int = 64, on_progress: Progress | None = None
) -> tuple[np.ndarray, list[int], list[str]]:
    """Image vectors for the readable paths, the row of each, and a reason per unreadable one."""
    vectors, rows, skipped = [], [], []
    for start in range(0, len(paths), batch_size):
        images = []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                images.append(decode_file(paths[i], draft_size=encoder.image_size).image)
                rows.append(i)
            except DecodeError as exc:
                skipped.append(f"{paths[i]}: {exc}")
        if images:
            vectors.append(encoder.encode_images(images, batch_size=batch_size))
        if on_progress:
            on_progress(min(start + batch_size, len(paths)), len(paths))
    dim = encoder.dim
    return (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), rows, skipped


def retrieval_recall(
    image_vecs: np.ndarray,
    text_vecs: np.ndarray,
    caption_image: np.ndarray,
    ks: Sequence[int] = KS,
) -> tuple[dict[int, float], dict[int, float]]:
    """(text->image, image->text) recall at each k; caption_image[c] is caption c's image row."""
    sims = text_vecs @ image_vecs.T  # (captions, images)
    own = sims[np.arange(len(caption_image)), caption_image]
    # rank of the own image = number of images scoring strictly higher
    t2i_rank = (sims > own[:, None]).sum(axis=1)
    t2i = {k: float((t2i_rank < k).mean()) for k in ks}
    i2t = {}
    order = np.argsort(-sims.T, axis=1, kind="stable")  # (images, captions)
    match = caption_image[order] == np.arange(len(image_vecs))[:, None]
    first = np.where(match.any(axis=1), match.argmax(axis=1), len(caption_image))
    for k in ks:
        i2t[k] = float((first < k).mean())
    return t2i, i2t


def recall_ceiling(
    texts: Sequence[str], caption_image: np.ndarray, ks: Sequence[int] = KS
) -> dict[int, float]:
    """The text->image recall at each k of a model that ranks first, in random order, every
    photo given the same caption as the query: what can be expected when captions repeat.

    A caption shared by m photos finds its own among the first k with odds min(1, k / m): "a
    photo of a cat" over 200 cats caps R@5 at 0.025, "a star" over 40 stars at 0.125.
    """
    holders: dict[str, set[int]] = {}
    keys = [" ".join(t.lower().split()) for t in texts]
    for key, row in zip(keys, caption_image, strict=True):
        holders.setdefault(key, set()).add(int(row))
    shared = np.array([len(holders[key]) for key in keys], dtype=np.float64)
    return {k: float(np.minimum(1.0, k / shared).mean()) if len(keys) else 0.0 for k in ks}


def _subset(coll: Collection, limit: int | None, seed: int) -> list[str]:
    images = coll.images
    if limit and limit < len(images):
        images = sorted(random.Random(seed).sample(images, limit), key=images.index)
    return images


def retrieval(
    encoder: Any,
    data: str | os.PathLike | Collection,
    limit: int | None = None,
    seed: int = 0,
    ks: Sequence[int] = KS,
    on_progress: Progress | None = None,
) -> RetrievalScores:
    coll = data if isinstance(data, Collection) else read_collection(data)
    images = _subset(coll, limit, seed)
    vecs, rows, skipped = encode_paths(encoder, images, on_progress=on_progress)
    kept = [images[r] for r in rows]
    if not kept:
        raise PixfindError(f"no readable captioned images in {coll.root}")
    texts, owner = [], []
    for row, path in enumerate(kept):
        texts.extend(coll.captions[path])
        owner.extend([row] * len(coll.captions[path]))
    text_vecs = encoder.encode_texts(texts)
    t2i, i2t = retrieval_recall(vecs, text_vecs, np.asarray(owner), ks)
    ceiling = recall_ceiling(texts, np.asarray(owner), ks)
    problems = list(coll.problems) + skipped
    return RetrievalScores(len(kept), len(texts), t2i, i2t, problems, ceiling)


def zero_shot(
    encoder: Any,
    data: str | os.PathLike,
    limit: int | None = None,
    seed: int = 0,
    prompt: str = PROMPT,
    on_progress: Progress | None = None,
) -> ZeroShotScores:
    pairs, _ = read_labels(data)
    if not pairs:
        raise PixfindError(f"no usable lines in {Path(data) / 'labels.jsonl'}")
    if limit and limit < len(pairs):
        pairs = random.Random(seed).sample(pairs, limit)
    labels = sorted({lab for _, lab in pairs})
    class_vecs = encoder.encode_texts([prompt.format(label=lab) for lab in labels])
    vecs, rows, _ = encode_paths(encoder, [p for p, _ in pairs], on_progress=on_progress)
    truth = np.array([labels.index(pairs[r][1]) for r in rows])
    order = np.argsort(-(vecs @ class_vecs.T), axis=1)
    top1 = float((order[:, 0] == truth).mean())
    top5 = float((order[:, :5] == truth[:, None]).any(axis=1).mean()) if len(labels) > 5 else None
    return ZeroShotScores(len(rows), len(labels), top1, top5)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; a clear error where it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PixfindError(
            "--plot needs matplotlib: pip install matplotlib (or pip install -e '.[dev]')"
        ) from exc
    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int) -> Path:
    """Lay out, write (making the folder) and close a pyplot figure; returns its path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def plot(scores: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Bar chart of the recalls (and zero-shot accuracy) as a PNG; needs matplotlib."""
    plt = pyplot()
    bars: list[tuple[str, float]] = []
    ret = scores.get("retrieval")
    if ret:
        for direction in ("text_to_image", "image_to_text"):
            short = "t->i" if direction == "text_to_image" else "i->t"
            bars += [(f"{short} {k}", v) for k, v in ret[direction].items()]
    zs = scores.get("zero_shot")
    if zs:
        bars.append(("zero-shot top1", zs["top1"]))
        if zs.get("top5") is not None:
            bars.append(("zero-shot top5", zs["top5"]))
    fig, ax = plt.subplots(figsize=(max(4, len(bars) * 0.9), 3.5))
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color="#4c72b0")
    for i, (_, v) in enumerate(bars):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("recall / accuracy")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    return save_figure(fig, path, dpi=120)


def attribute_queries() -> list[Any]:
    """The demo photos' 24 attribute queries ("a red circle"), fixed by a rule, not picked
    from results: colour i with shapes i, i+1 and i+2 (mod the number of shapes); the third
    also names a size (large for even i, small for odd), as in "a small purple star"."""
    from .demodata import COLOURS, SHAPES, AttrQuery

    def query(colour: str, shape: str, size: str | None) -> AttrQuery:
        words = [w for w in (size, colour, shape) if w]
        text = " ".join(["an" if words[0][0] in "aeiou" else "a", *words])
        return AttrQuery(text, colour, shape, size)

    return [
        query(colour, SHAPES[(i + k) % len(SHAPES)], ("large", "small")[i % 2] if k == 2 else None)
        for i, colour in enumerate(COLOURS)
        for k in range(3)
    ]
