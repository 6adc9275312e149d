"""Training data: every captioned image decoded and preprocessed once (uint8 at the model's
resolution), captions tokenized, batches drawn per epoch, and augmentations that keep what
captions say true (small shifts, brightness/contrast and noise, never flips)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pixfind.search.captions import read_collections
from pixfind.search.errors import PixfindError
from pixfind.search.images import DecodeError, decode_file

DataArg = str | os.PathLike | Sequence[str | os.PathLike]  # one captioned folder or several


class TrainError(PixfindError):
    """Training can't start or continue (bad options, data, or an incompatible checkpoint)."""


def folders(data: DataArg) -> list[str]:
    """The captioned folders of ``data``, as absolute paths."""
    many = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    return [str(Path(d).expanduser().resolve()) for d in many]


def describe(data: DataArg) -> str:
    return ", ".join(folders(data))


@dataclass
class Prepared:
    pixels: Any  # uint8 tensor (N, 3, H, W): preprocessed, before normalisation
    tokens: Any  # int tensor (C, context)
    words: list[list[str]]  # content words of each caption
    caption_image: np.ndarray  # (C,) image row of each caption
    captions_of: list[np.ndarray]  # image row -> its caption rows
    mean: Any
    std: Any
    skipped: list[str]


def prepare(
    data: DataArg,
    preprocess: Any,
    tokenizer: Any,
    max_images: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Prepared:
    """Decode + preprocess every captioned image once; tokenize every caption."""
    import torch

    coll = read_collections(data)
    images = coll.images[:max_images] if max_images else coll.images
    norm = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    size = _image_size(preprocess)
    pixels, kept, skipped = [], [], list(coll.problems)
    for i, path in enumerate(images):
        try:
            img = decode_file(path, draft_size=size).image
        except DecodeError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        x = preprocess(img).unsqueeze(0) * std + mean
        pixels.append((x * 255).round_().clamp_(0, 255).to(torch.uint8))
        kept.append(path)
        if on_progress:
            on_progress(i + 1, len(images))
    if len(kept) < 2:
        raise TrainError(
            f"need at least 2 readable captioned images in {describe(data)}, found {len(kept)}"
        )
    texts, owner, captions_of = [], [], []
    for row, path in enumerate(kept):
        caps = coll.captions[path]
        captions_of.append(np.arange(len(texts), len(texts) + len(caps)))
        texts.extend(caps)
        owner.extend([row] * len(caps))
    tokens = torch.cat([tokenizer(texts[i : i + 4096]) for i in range(0, len(texts), 4096)])
    words = [[w for w in t.lower().replace(",", " ").split() if w not in STOPWORDS] for t in texts]
    return Prepared(
        torch.cat(pixels), tokens, words, np.asarray(owner), captions_of, mean, std, skipped
    )


STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "to",
        "and",
        "with",
        "next",
        "near",
        "is",
        "are",
        "photo",
        "image",
        "picture",
        "drawing",
    ]
)


def epoch_batches(
    rng: np.random.Generator, words: list[list[str]], batch_size: int, hard: float
) -> list[np.ndarray]:
    """Image rows per batch for one epoch (``words[i]``: content words of image i's caption).

    A ``hard`` share of the batches gathers images whose captions share a random word ("red"),
    so the loss must tell them apart by everything else (shape, size, position): in random
    batches a colour alone often identifies a photo, and shapes are learnt much later.
    """
    n = len(words)
    perm = rng.permutation(n)
    n_hard = int(n * hard)
    hard_rows, easy_rows = perm[:n_hard], perm[n_hard:]
    keys = np.array([rng.choice(words[i]) if words[i] else "" for i in hard_rows], dtype=object)
    hard_rows = hard_rows[np.argsort(keys, kind="stable")]
    batches = [
        rows[i : i + batch_size]
        for rows in (hard_rows, easy_rows)
        for i in range(0, len(rows) - batch_size + 1, batch_size)
    ]
    return [batches[i] for i in rng.permutation(len(batches))]


def simple_rows(
    words: list[list[str]], captions_of: list[np.ndarray], rows: np.ndarray, batch_size: int
) -> np.ndarray | None:
    """The collection's simple photos among ``rows``: those whose shortest caption has at most
    half as many content words as the median photo's ("a star" among scenes described in
    three words or more), when they are 10% to 60% of the photos and fill a few batches; else
    None (no such part: every photo captioned alike, or free captions of varied length)."""
    if not len(rows):
        return None
    shortest = np.array([min(len(words[c]) for c in captions_of[r]) for r in rows])
    simple = rows[shortest <= np.median(shortest) / 2]
    share = len(simple) / len(rows)
    return simple if 0.1 <= share <= 0.6 and len(simple) >= 4 * batch_size else None


def tile(rng: np.random.Generator, rows: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows drawn as successive shuffles of ``rows`` (each used once per shuffle)."""
    shuffles = [rng.permutation(rows) for _ in range(-(-n // len(rows)))]
    return np.concatenate(shuffles)[:n]


def _image_size(preprocess: Any) -> int:
    for t in preprocess.transforms:
        size = getattr(t, "size", None)
        if size is not None:
            return int(size if isinstance(size, int) else size[0])
    return 224


def augment(batch: Any, generator: Any) -> Any:
    """Shift by up to 1/16 of the side, jitter brightness/contrast, add noise (float 0..1)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = batch.shape
    pad = max(1, h // 16)
    padded = F.pad(batch, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.3
    bright = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.12
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    out = out + torch.randn(out.shape, generator=generator) * 0.02
    return out.clamp_(0, 1)


# -- training ----------------------------------------------------------------------------------
