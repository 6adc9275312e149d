"""Building the model to train: an open_clip architecture (name or JSON config), a model
directory, a checkpoint or a pretrained tag; which layers train; the AdamW optimizer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixfind.search.errors import UnknownModel
from pixfind.search.models import CONFIG_NAME, get_open_clip, is_model_dir, register_config

from .data import TrainError

if TYPE_CHECKING:
    from .fit import TrainOptions

DEMO_MODEL = "pixfind-demo"


def custom_name(cfg: dict) -> str:
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
        name = custom_name(cfg)
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


def lock(model: Any, options: TrainOptions) -> None:
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


def adamw(model: Any, options: TrainOptions) -> Any:
    """AdamW; the fused kernel where torch has one for the device (on CPU it is ~8x quicker
    than the per-parameter loop over the 3M-weight token embedding of a small model)."""
    import torch

    groups = _param_groups(model, options.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=options.learning_rate, betas=(0.9, 0.98), fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or no fused kernel there
        return torch.optim.AdamW(groups, lr=options.learning_rate, betas=(0.9, 0.98))
