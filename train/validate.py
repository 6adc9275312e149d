"""Validation-driven training: the held-out slice, per-epoch recall on it, early stopping,
the epoch budget of `--epochs auto`, and learning curves.

The slice is drawn by photo (all captions of a photo fall on one side), seeded, from the
already-prepared tensors, so evaluating it after an epoch costs one forward pass over a few
hundred photos and captions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pixfind.search.errors import PixfindError

VAL_FRACTION = 0.1
VAL_MAX = 1000  # photos held out at most
VAL_MIN = 20  # fewer than this and there is no validation (recall on 10 photos is noise)
# optimizer steps `--epochs auto` allows at most; early stopping usually ends sooner (a
# collection of one-object photos: about 20 epochs); the demo's validation recall climbs until
# about epoch 45 of its 50 (101 steps each)
AUTO_STEPS = 5000
AUTO_MIN_EPOCHS = 10
AUTO_MAX_EPOCHS = 60
PATIENCE = 6
WARMUP_MAX_STEPS = 1000


def val_count(n: int, fraction: float) -> int:
    """Photos to hold out of ``n``: ``fraction`` of them, at most VAL_MAX, none below VAL_MIN."""
    if not 0 <= fraction < 1:
        raise PixfindError(f"--val-fraction must be in [0, 1), not {fraction}")
    k = min(VAL_MAX, round(n * fraction))
    return k if k >= VAL_MIN and n - k >= 2 else 0


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of ``n`` photos, seeded; both sorted."""
    k = val_count(n, fraction)
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def auto_epochs(steps_per_epoch: int) -> int:
    """Maximum epochs of `--epochs auto`: about AUTO_STEPS steps, within [10, 60] epochs."""
    want = math.ceil(AUTO_STEPS / max(1, steps_per_epoch))
    return max(AUTO_MIN_EPOCHS, min(AUTO_MAX_EPOCHS, want))


def warmup_steps(total: int, fraction: float) -> int:
    """Warmup: ``fraction`` of all steps, at least 1 and at most WARMUP_MAX_STEPS."""
    return max(1, min(WARMUP_MAX_STEPS, int(fraction * total)))


def better(score: dict, best: dict | None) -> bool:
    """Validation R@5 higher (ties: R@1 higher) than the best so far."""
    if best is None:
        return True
    return (score["R@5"], score["R@1"]) > (best["R@5"], best["R@1"])


def should_stop(r5_history: list[dict], patience: int) -> bool:
    """True when the best validation score is ``patience`` or more epochs old."""
    if patience <= 0 or not r5_history:
        return False
    best_at, best = 0, None
    for i, score in enumerate(r5_history):
        if better(score, best):
            best_at, best = i, score
    return len(r5_history) - 1 - best_at >= patience


@dataclass
class ValSet:
    pixels: Any  # uint8 (V, 3, H, W)
    tokens: Any  # (C, context)
    caption_image: np.ndarray  # (C,) row in pixels


def val_set(prepared: Any, rows: np.ndarray) -> ValSet:
    import torch

    caps, owner = [], []
    for i, row in enumerate(rows):
        caps.extend(prepared.captions_of[row])
        owner.extend([i] * len(prepared.captions_of[row]))
    return ValSet(
        prepared.pixels[torch.from_numpy(np.asarray(rows))],
        prepared.tokens[torch.from_numpy(np.asarray(caps, dtype=np.int64))],
        np.asarray(owner),
    )


def recall(model: Any, val: ValSet, mean: Any, std: Any, device: str, batch: int = 256) -> dict:
    """Text->image R@1/5/10 of ``model`` on the validation slice."""
    import torch
    import torch.nn.functional as F

    from .evaluate import retrieval_recall

    was_training = model.training
    model.eval()
    images, texts = [], []
    with torch.no_grad():
        for i in range(0, len(val.pixels), batch):
            x = val.pixels[i : i + batch].float().div_(255).to(device)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            images.append(F.normalize(model.encode_image(x), dim=-1).float().cpu())
        for i in range(0, len(val.tokens), batch):
            t = val.tokens[i : i + batch].to(device)
            texts.append(F.normalize(model.encode_text(t), dim=-1).float().cpu())
    if was_training:
        model.train()
    t2i, _ = retrieval_recall(
        torch.cat(images).numpy(), torch.cat(texts).numpy(), val.caption_image
    )
    return {f"R@{k}": round(v, 4) for k, v in t2i.items()}


def plot_curves(history: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Loss, validation recall, learning rate and temperature per epoch, as a PNG."""
    from .evaluate import pyplot, save_figure

    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(epochs, [h["loss"] for h in history], color="#4c72b0")
    axes[0].set_title("training loss", fontsize=9)
    with_val = [h for h in history if h.get("val")]
    for k, colour in (("R@1", "#dd8452"), ("R@5", "#55a868"), ("R@10", "#8172b3")):
        axes[1].plot(
            [h["epoch"] for h in with_val], [h["val"][k] for h in with_val], label=k, color=colour
        )
    best = [h for h in with_val if h.get("best")]
    if best:
        axes[1].axvline(best[-1]["epoch"], color="grey", linestyle=":", label="best")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("validation text->image recall", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].plot(epochs, [h["lr"] for h in history], color="#c44e52", label="learning rate")
    axes[2].set_title("learning rate / temperature", fontsize=9)
    twin = axes[2].twinx()
    twin.plot(epochs, [h["temperature"] for h in history], color="#937860", label="temperature")
    axes[2].legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="upper right")
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=110)
