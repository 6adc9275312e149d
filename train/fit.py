"""Contrastive training and fine-tuning of open_clip dual encoders on a captioned collection.

The recipe is CLIP's: symmetric InfoNCE (open_clip's ClipLoss) with a learnable temperature,
AdamW without weight decay on gains/biases, linear warmup then cosine decay. Images are
decoded and preprocessed once (kept as uint8 at the model's resolution), so an epoch costs
only the forward/backward passes. Augmentations keep what captions say true: small shifts,
brightness/contrast and noise, never flips (captions say "on the left").

Validation-driven by default: a seeded slice of the photos (10%, at most 1,000) is held out,
text->image recall on it is measured after every epoch, the model directory keeps the best
epoch's weights, and `--epochs auto` stops once validation R@5 has not improved for
``patience`` epochs (its maximum is set from the number of steps: validate.auto_epochs).

Output: a model directory (open_clip_config.json + open_clip_model.safetensors) that
``search.encoder`` loads like any model, ``train.json`` (options, per-epoch history, best
epoch) and ``checkpoints/last.pt`` written atomically after every epoch; running the same
command again resumes from it (or returns at once when done).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pixfind.search.atomic import write_json

from . import validate as V
from .data import DataArg, TrainError, augment, epoch_batches, prepare, simple_rows, tile
from .data import folders as data_folders
from .model import DEMO_MODEL, adamw, build_model, count_params, custom_name, lock

__all__ = ["DEMO_MODEL", "build_model", "count_params", "lr_at", "train", "TrainOptions"]

CHECKPOINT = Path("checkpoints") / "last.pt"
STATE_FILE = "train.json"
SCRATCH_LR = 2e-3
FINETUNE_LR = 2e-4


@dataclass
class TrainOptions:
    model: str = DEMO_MODEL  # open_clip architecture name or a JSON model config file
    init: str | None = None  # --from: model dir, checkpoint file or pretrained tag
    epochs: int | None = None  # None: auto (early stopping, at most validate.auto_epochs)
    batch_size: int = 32
    lr: float | None = None  # None: SCRATCH_LR, or FINETUNE_LR with --from
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of all steps (at most validate.WARMUP_MAX_STEPS)
    seed: int = 0
    freeze: str | None = None  # "image" or "text": that tower is not trained
    unlocked_layers: int | None = None  # train only the last N blocks of each tower
    augment: bool = True
    # share of batches whose captions share a word (harder negatives). 0 by default: on short
    # captions ("a star") such batches are full of identical captions, and halved validation
    # R@5 (0.30 vs 0.50 after 18 epochs, README "Training and fine-tuning")
    hard_batches: float = 0.0
    # share of the epochs trained first on the collection's simple part alone (photos whose
    # shortest caption has at most half the median's content words: data.simple_rows), when
    # it has one: the demo's old warm-up stage, learnt by the command (0: off)
    simple_first: float = 0.3
    device: str = "cpu"
    max_images: int | None = None  # use only the first N captioned images
    val_fraction: float = V.VAL_FRACTION  # share of photos held out for validation (0: none)
    val: str | None = None  # a separate captioned folder to validate on (then nothing held out)
    patience: int = V.PATIENCE  # auto: stop after this many epochs without a better val R@5

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return FINETUNE_LR if self.init else SCRATCH_LR

    def key(self) -> str:
        """What must match for a checkpoint to be resumed (device, length, patience don't)."""
        skip = ("device", "epochs", "patience")
        data = {k: v for k, v in asdict(self).items() if k not in skip}
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EpochStats:
    epoch: int
    loss: float
    seconds: float
    lr: float
    temperature: float  # 1 / logit_scale
    val: dict | None = None  # validation text->image {"R@1", "R@5", "R@10"}
    best: bool = False  # the best validation score so far (its weights are the model's)


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0  # this run's training time (0 when already trained)
    resumed_from: int = 0  # epochs found done in a checkpoint
    images: int = 0  # photos trained on (validation ones not counted)
    captions: int = 0
    problems: list[str] = field(default_factory=list)
    params: int = 0
    val_images: int = 0
    max_epochs: int = 0
    best_epoch: int = 0  # the epoch whose weights the model directory holds
    stopped_early: bool = False

    @property
    def best(self) -> EpochStats | None:
        return next((h for h in self.history if h.epoch == self.best_epoch), None)

    def to_dict(self) -> dict:
        best = self.best
        return {
            "out": str(self.out),
            "epochs_done": self.epochs_done,
            "max_epochs": self.max_epochs,
            "best_epoch": self.best_epoch,
            "best_val": best.val if best else None,
            "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 2),
            "images": self.images,
            "val_images": self.val_images,
            "captions": self.captions,
            "params": self.params,
            "problems": self.problems,
            "history": [asdict(h) for h in self.history],
        }


StepCallback = Callable[[int, int, int, float, float], None]  # epoch, step, steps, loss, img/s


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup to ``base`` over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))


# -- state ---------------------------------------------------------------------------------
def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_state(out: str | os.PathLike) -> dict | None:
    path = Path(out) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _write_state(out: Path, state: dict) -> None:
    write_json(out / STATE_FILE, state)


def _finished(state: dict | None, epoch: int, options: TrainOptions) -> bool:
    """Whether a resumed run has nothing left to do."""
    if not state:
        return False
    if options.epochs is not None:
        return epoch >= options.epochs
    return bool(state.get("stopped_early")) or epoch >= state.get("max_epochs", 10**9)


def _resume(out: Path, options: TrainOptions, folders: list[str]) -> tuple[dict | None, Any]:
    import torch

    ckpt_path = out / CHECKPOINT
    state = read_state(out)
    if not ckpt_path.is_file():
        return state, None
    if not state or state.get("key") != options.key():
        raise TrainError(
            f"{out} holds a checkpoint of a different training run (other data, model or "
            "options); pick another --out, or delete the folder to start over"
        )
    if state.get("data", folders) != folders:
        raise TrainError(
            f"{out} was trained on other data ({', '.join(state['data'])}); pick another "
            "--out, or delete the folder to start over"
        )
    return state, torch.load(ckpt_path, map_location="cpu", weights_only=False)


def _result_of(out: Path, state: dict, resumed_from: int) -> TrainResult:
    history = [EpochStats(**h) for h in state.get("history", [])]
    return TrainResult(
        out,
        state["epoch"],
        history,
        resumed_from=resumed_from,
        params=state.get("params", 0),
        images=state.get("images", 0),
        captions=state.get("captions", 0),
        val_images=state.get("val_images", 0),
        max_epochs=state.get("max_epochs", state["epoch"]),
        best_epoch=state.get("best_epoch", state["epoch"]),
        stopped_early=bool(state.get("stopped_early")),
    )


def train(
    data: DataArg,
    out: str | os.PathLike,
    options: TrainOptions | None = None,
    on_step: StepCallback | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_prepare: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) and write a loadable model directory at ``out``."""
    import torch
    from open_clip.loss import ClipLoss
    from pixfind.search.encoder import save_model_dir

    options = options or TrainOptions()
    if (options.epochs is not None and options.epochs < 1) or options.batch_size < 2:
        raise TrainError("--epochs must be >= 1 (or auto) and --batch-size >= 2")
    if options.patience < 0:
        raise TrainError("--patience must be >= 0 (0: never stop early)")
    if not 0 <= options.simple_first < 1:
        raise TrainError(f"--simple-first must be in [0, 1), not {options.simple_first}")
    V.val_count(100, options.val_fraction)  # checks the fraction
    out = Path(out).expanduser().resolve()
    folders = data_folders(data)
    state, resume = _resume(out, options, folders)
    if resume and _finished(state, resume["epoch"], options):
        return _result_of(out, state, resume["epoch"])

    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    model, preprocess, tokenizer, model_cfg = build_model(options)
    arch = custom_name(model_cfg)
    device = options.device
    # channels-last convolutions: a conv image tower's step is ~20% quicker on CPU (no-op
    # for a ViT's linear layers)
    model.to(device, memory_format=torch.channels_last)
    lock(model, options)
    prepared = prepare(data, preprocess, tokenizer, options.max_images, on_prepare)
    if options.val:
        rows = np.arange(len(prepared.captions_of))
        val_prep = prepare(options.val, preprocess, tokenizer)
        val = V.val_set(val_prep, np.arange(len(val_prep.captions_of)))
    else:
        rows, val_rows = V.split(len(prepared.captions_of), options.val_fraction, options.seed)
        val = V.val_set(prepared, val_rows) if len(val_rows) else None
    n = len(rows)
    batch_size = min(options.batch_size, n)
    # ragged batches are dropped: InfoNCE wants full batches
    steps_per_epoch = len(
        epoch_batches(np.random.default_rng(0), [[]] * n, batch_size, options.hard_batches)
    )
    if steps_per_epoch == 0:  # hard and random batches are drawn apart: each needs a batch
        most = max(2, int(n * min(options.hard_batches, 1 - options.hard_batches)))
        raise TrainError(
            f"{n} captioned images are too few for batches of {batch_size}; "
            f"use --batch-size {most} or less"
        )
    max_epochs = options.epochs or V.auto_epochs(steps_per_epoch)
    total = steps_per_epoch * max_epochs
    warmup = V.warmup_steps(total, options.warmup)
    optimizer = adamw(model, options)
    loss_fn = ClipLoss()
    history: list[EpochStats] = []
    start_epoch = 0
    gen = torch.Generator().manual_seed(options.seed)
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        start_epoch = resume["epoch"]
        history = [EpochStats(**h) for h in state.get("history", [])]
    rng = np.random.default_rng([options.seed, start_epoch])
    simple = simple_rows(prepared.words, prepared.captions_of, rows, batch_size)
    simple_epochs = 0 if simple is None else round(options.simple_first * max_epochs)
    mean, std = prepared.mean.to(device), prepared.std.to(device)
    result = TrainResult(
        out,
        start_epoch,
        history,
        resumed_from=start_epoch,
        images=n,
        captions=sum(len(prepared.captions_of[r]) for r in rows),
        problems=prepared.skipped,
        params=count_params(model),
        val_images=0 if val is None else len(val.pixels),
        max_epochs=max_epochs,
        best_epoch=(state or {}).get("best_epoch", 0) if resume else 0,
    )
    best = next((h.val for h in history if h.epoch == result.best_epoch), None)
    began = time.perf_counter()
    for epoch in range(start_epoch, max_epochs):
        model.train()
        t0 = time.perf_counter()
        # the simple photos alone first (as many steps as a whole epoch), then all of them
        epoch_rows = rows if epoch >= simple_epochs else tile(rng, simple, n)
        # one caption per image per epoch, drawn afresh each epoch
        caption_rows = np.array([rng.choice(prepared.captions_of[r]) for r in epoch_rows])
        batches = epoch_batches(
            rng, [prepared.words[c] for c in caption_rows], batch_size, options.hard_batches
        )
        losses = []
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            lr = lr_at(step, total, options.learning_rate, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = batches[s]
            images = prepared.pixels[torch.from_numpy(epoch_rows[batch])].float().div_(255)
            if options.augment:
                images = augment(images, gen)
            images = ((images.to(device) - mean) / std).contiguous(
                memory_format=torch.channels_last
            )
            texts = prepared.tokens[torch.from_numpy(caption_rows[batch])].to(device)
            image_f, text_f, scale = model(images, texts)[:3]
            loss = loss_fn(image_f, text_f, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            if on_step:
                elapsed = max(time.perf_counter() - t0, 1e-9)
                on_step(
                    epoch + 1, s + 1, steps_per_epoch, losses[-1], (s + 1) * batch_size / elapsed
                )
        model.eval()
        score = V.recall(model, val, mean, std, device) if val is not None else None
        improved = score is None or V.better(score, best)
        if improved:
            best, result.best_epoch = score, epoch + 1
        stats = EpochStats(
            epoch + 1,
            float(np.mean(losses)) if losses else float("nan"),
            time.perf_counter() - t0,
            lr,
            float(1 / model.logit_scale.detach().exp()),
            score,
            improved and score is not None,
        )
        history.append(stats)
        stop = (
            options.epochs is None
            and score is not None
            # only the epochs after the simple part count (none yet: no stop)
            and V.should_stop([h.val for h in history[simple_epochs:] if h.val], options.patience)
        )
        # model dir (best weights) first, then the checkpoint: a crash in between only
        # repeats an epoch
        if improved:
            save_model_dir(
                model,
                out,
                model_cfg,
                extra={
                    "trained_from": options.init,
                    "epochs": epoch + 1,
                    "data": ", ".join(folders),
                    "val": score,
                },
            )
        _atomic_save(
            {
                "pixfind_train": 1,
                "arch": arch,
                "model_cfg": model_cfg,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": gen.get_state(),
            },
            out / CHECKPOINT,
        )
        _write_state(
            out,
            {
                "key": options.key(),
                "options": asdict(options),
                "data": folders,
                "epoch": epoch + 1,
                "max_epochs": max_epochs,
                "best_epoch": result.best_epoch,
                "stopped_early": stop,
                "params": result.params,
                "images": result.images,
                "captions": result.captions,
                "val_images": result.val_images,
                "history": [asdict(h) for h in history],
            },
        )
        result.epochs_done = epoch + 1
        if on_epoch:
            on_epoch(stats)
        if stop:
            result.stopped_early = True
            break
    result.seconds = time.perf_counter() - began
    result.history = history
    return result
