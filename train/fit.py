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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pixfind.search.captions import read_collections
from pixfind.search.errors import PixfindError, UnknownModel
from pixfind.search.images import DecodeError, decode_file
from pixfind.search.models import CONFIG_NAME, get_open_clip, is_model_dir, register_config

DEMO_MODEL = "pixfind-demo"
CHECKPOINT = Path("checkpoints") / "last.pt"
STATE_FILE = "train.json"
SCRATCH_LR = 2e-3
FINETUNE_LR = 2e-4


class TrainError(PixfindError):
    """Training can't start or continue (bad options, data, or an incompatible checkpoint)."""


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


DataArg = str | os.PathLike | Sequence[str | os.PathLike]  # one captioned folder or several


def _folders(data: DataArg) -> list[str]:
    """The captioned folders of ``data``, as absolute paths."""
    many = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    return [str(Path(d).expanduser().resolve()) for d in many]


def _describe(data: DataArg) -> str:
    return ", ".join(_folders(data))


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
            f"need at least 2 readable captioned images in {_describe(data)}, found {len(kept)}"
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
    folders = _folders(data)
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
