"""Contrastive training and fine-tuning of open_clip dual encoders on a captioned collection.

The recipe is CLIP's: symmetric InfoNCE (open_clip's ClipLoss) with a learnable temperature,
AdamW without weight decay on gains/biases, linear warmup then cosine decay. Images are
decoded and preprocessed once (kept as uint8 at the model's resolution), so an epoch costs
only the forward/backward passes. Augmentations keep what captions say true: small shifts,
brightness/contrast and noise, never flips (captions say "on the left").

Output: a model directory (open_clip_config.json + open_clip_model.safetensors) that
``search.encoder`` loads like any model, plus ``checkpoints/last.pt`` written atomically after
every epoch; running the same command again resumes from it (or returns at once when done).
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
from pixfind.search.errors import UnknownModel
from pixfind.search.models import CONFIG_NAME, get_open_clip, is_model_dir, register_config

from .data import DataArg, TrainError, augment, epoch_batches, prepare
from .data import folders as data_folders

DEMO_MODEL = "pixfind-demo"
CHECKPOINT = Path("checkpoints") / "last.pt"
STATE_FILE = "train.json"
SCRATCH_LR = 2e-3
FINETUNE_LR = 2e-4


@dataclass
class TrainOptions:
    model: str = DEMO_MODEL  # open_clip architecture name or a JSON model config file
    init: str | None = None  # --from: model dir, checkpoint file or pretrained tag
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None  # None: SCRATCH_LR, or FINETUNE_LR with --from
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of all steps
    seed: int = 0
    freeze: str | None = None  # "image" or "text": that tower is not trained
    unlocked_layers: int | None = None  # train only the last N blocks of each tower
    augment: bool = True
    hard_batches: float = 0.5  # share of batches whose captions share a word (harder negatives)
    device: str = "cpu"
    max_images: int | None = None  # use only the first N captioned images

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return FINETUNE_LR if self.init else SCRATCH_LR

    def key(self) -> str:
        """What must match for a checkpoint to be resumed (device doesn't)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("device", "epochs")}
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EpochStats:
    epoch: int
    loss: float
    seconds: float
    lr: float
    temperature: float  # 1 / logit_scale


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0  # this run's training time (0 when already trained)
    resumed_from: int = 0  # epochs found done in a checkpoint
    images: int = 0
    captions: int = 0
    problems: list[str] = field(default_factory=list)
    params: int = 0

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "epochs_done": self.epochs_done,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 2),
            "images": self.images,
            "captions": self.captions,
            "params": self.params,
            "problems": self.problems,
            "history": [asdict(h) for h in self.history],
        }


StepCallback = Callable[[int, int, int, float, float], None]  # epoch, step, steps, loss, img/s


def _custom_name(cfg: dict) -> str:
    digest = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return f"pixfind-custom-{digest}"


# -- model -------------------------------------------------------------------------------------
def _arch(model: str) -> tuple[str, dict]:
    """(registered name, model config) for an architecture name or a JSON config file."""
    open_clip = get_open_clip()
    path = Path(model).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UnknownModel(f"model config {model!r} not found")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UnknownModel(f"can't read model config {path}: {exc}") from exc
        cfg = cfg.get("model_cfg", cfg)  # also accept a model dir's open_clip_config.json
        if "vision_cfg" not in cfg or "text_cfg" not in cfg:
            raise UnknownModel(f"{path} is not an open_clip model config (no vision_cfg/text_cfg)")
        name = _custom_name(cfg)
        register_config(name, cfg)
        return name, cfg
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        names = open_clip.list_models()
        hint = ", ".join([DEMO_MODEL, "pixfind-tiny", "RN50", "ViT-B-32"])
        raise UnknownModel(
            f"unknown model {model!r}: give an open_clip architecture ({hint}, ... "
            f"{len(names)} in all, see `pixfind models --all`) or a JSON config file"
        )
    return model, cfg


def build_model(options: TrainOptions) -> tuple[Any, Any, Any, dict]:
    """(model, preprocess, tokenizer, model_cfg) for the options' starting point.

    --from accepts a model directory, a `pixfind train` checkpoint, an open_clip checkpoint file
    (with --model naming its architecture) or a pretrained tag of --model.
    """
    import torch

    open_clip = get_open_clip()
    init = options.init
    if init and is_model_dir(init):
        directory = Path(init).expanduser().resolve()
        name = f"local-dir:{directory}"
        model_cfg = json.loads((directory / CONFIG_NAME).read_text())["model_cfg"]
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name)
        except Exception as exc:
            raise UnknownModel(f"can't load model directory {directory}: {exc}") from exc
        return model, preprocess, open_clip.get_tokenizer(name), model_cfg
    if init and Path(init).expanduser().is_file():
        path = Path(init).expanduser()
        try:
            ckpt_state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise UnknownModel(f"can't read checkpoint {path}: {exc}") from exc
        if isinstance(ckpt_state, dict) and "pixfind_train" in ckpt_state:
            model_cfg = ckpt_state["model_cfg"]
            name = ckpt_state["arch"]
            register_config(name, model_cfg)
            model, _, preprocess = open_clip.create_model_and_transforms(name)
            model.load_state_dict(ckpt_state["model"])
            return model, preprocess, open_clip.get_tokenizer(name), model_cfg
        name, model_cfg = _arch(options.model)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(path))
        except Exception as exc:
            raise UnknownModel(f"can't load {path} into {name}: {exc}") from exc
        return model, preprocess, open_clip.get_tokenizer(name), model_cfg
    name, model_cfg = _arch(options.model)
    if init:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if init not in tags:
            raise UnknownModel(
                f"--from {init!r} is not a model directory, a checkpoint file or a pretrained "
                f"tag of {name} (tags: {', '.join(tags) or 'none'})"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=init)
        except Exception as exc:
            raise UnknownModel(
                f"could not load {name} {init}: {exc} (no model hub? pass a local checkpoint "
                "file or model directory to --from)"
            ) from exc
        return model, preprocess, open_clip.get_tokenizer(name), model_cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(name), model_cfg


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _lock(model: Any, options: TrainOptions) -> None:
    if options.freeze not in (None, "image", "text"):
        raise TrainError(f"--freeze must be 'image' or 'text', not {options.freeze!r}")
    n = options.unlocked_layers
    try:
        if options.freeze == "image":
            model.lock_image_tower(unlocked_groups=0)
        elif n is not None:
            model.lock_image_tower(unlocked_groups=n)
        if options.freeze == "text":
            model.lock_text_tower(unlocked_layers=0)
        elif n is not None:
            model.lock_text_tower(unlocked_layers=n)
    except (AssertionError, AttributeError, NotImplementedError) as exc:
        raise TrainError(
            f"this architecture can't train only the last blocks ({exc or type(exc).__name__}); "
            "use --freeze image|text or train all layers"
        ) from exc
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainError("nothing left to train: every parameter is frozen")


def _param_groups(model: Any, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def _adamw(model: Any, options: TrainOptions) -> Any:
    """AdamW; the fused kernel where torch has one for the device (on CPU it is ~8x quicker
    than the per-parameter loop over the 3M-weight token embedding of a small model)."""
    import torch

    groups = _param_groups(model, options.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=options.learning_rate, betas=(0.9, 0.98), fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or no fused kernel there
        return torch.optim.AdamW(groups, lr=options.learning_rate, betas=(0.9, 0.98))


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup to ``base`` over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))


# -- data --------------------------------------------------------------------------------------
def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_state(out: str | os.PathLike) -> dict | None:
    path = Path(out) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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
    if options.epochs < 1 or options.batch_size < 2:
        raise TrainError("--epochs must be >= 1 and --batch-size >= 2")
    out = Path(out).expanduser().resolve()
    ckpt_path = out / CHECKPOINT
    folders = data_folders(data)
    state = read_state(out)
    resume = None
    if ckpt_path.is_file() and state and state.get("key") == options.key():
        if state.get("data", folders) != folders:
            raise TrainError(
                f"{out} was trained on other data ({', '.join(state['data'])}); pick another "
                "--out, or delete the folder to start over"
            )
        resume = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    elif ckpt_path.is_file():
        raise TrainError(
            f"{out} holds a checkpoint of a different training run (other data, model or "
            "options); pick another --out, or delete the folder to start over"
        )
    if resume and resume["epoch"] >= options.epochs:
        return TrainResult(
            out,
            resume["epoch"],
            [EpochStats(**h) for h in state.get("history", [])],
            resumed_from=resume["epoch"],
            params=state.get("params", 0),
        )

    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    model, preprocess, tokenizer, model_cfg = build_model(options)
    arch = _custom_name(model_cfg)
    device = options.device
    # channels-last convolutions: a conv image tower's step is ~20% quicker on CPU (no-op
    # for a ViT's linear layers)
    model.to(device, memory_format=torch.channels_last)
    _lock(model, options)
    prepared = prepare(data, preprocess, tokenizer, options.max_images, on_prepare)
    n = len(prepared.captions_of)
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
    total = steps_per_epoch * options.epochs
    warmup = int(options.warmup * total)
    optimizer = _adamw(model, options)
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
    mean, std = prepared.mean.to(device), prepared.std.to(device)
    result = TrainResult(
        out,
        start_epoch,
        history,
        resumed_from=start_epoch,
        images=n,
        captions=len(prepared.tokens),
        problems=prepared.skipped,
        params=count_params(model),
    )
    began = time.perf_counter()
    for epoch in range(start_epoch, options.epochs):
        model.train()
        t0 = time.perf_counter()
        # one caption per image per epoch, drawn afresh each epoch
        caption_rows = np.array([rng.choice(prepared.captions_of[i]) for i in range(n)])
        batches = epoch_batches(
            rng, [prepared.words[c] for c in caption_rows], batch_size, options.hard_batches
        )
        losses = []
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            lr = lr_at(step, total, options.learning_rate, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = batches[s]
            images = prepared.pixels[torch.from_numpy(rows)].float().div_(255)
            if options.augment:
                images = augment(images, gen)
            images = ((images.to(device) - mean) / std).contiguous(
                memory_format=torch.channels_last
            )
            texts = prepared.tokens[torch.from_numpy(caption_rows[rows])].to(device)
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
        stats = EpochStats(
            epoch + 1,
            float(np.mean(losses)) if losses else float("nan"),
            time.perf_counter() - t0,
            lr,
            float(1 / model.logit_scale.detach().exp()),
        )
        history.append(stats)
        # model dir first, then the checkpoint: a crash in between only repeats an epoch
        model.eval()
        save_model_dir(
            model,
            out,
            model_cfg,
            extra={"trained_from": options.init, "epochs": epoch + 1, "data": ", ".join(folders)},
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
            ckpt_path,
        )
        tmp = out / (STATE_FILE + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "key": options.key(),
                    "options": asdict(options),
                    "data": folders,
                    "epoch": epoch + 1,
                    "params": result.params,
                    "history": [asdict(h) for h in history],
                },
                indent=2,
            )
        )
        os.replace(tmp, out / STATE_FILE)
        result.epochs_done = epoch + 1
        if on_epoch:
            on_epoch(stats)
    result.seconds = time.perf_counter() - began
    result.history = history
    return result
