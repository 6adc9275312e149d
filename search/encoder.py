"""open_clip dual encoder: one factory resolves a spec to a matched model, preprocess and tokenizer.

torch and open_clip are imported inside functions so that ``pixfind --help`` stays instant.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UnknownModel
from .settings import get_settings
from .types import EncoderSpec, ModelInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_SPEC = EncoderSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)
CONFIG_NAME = "open_clip_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


CONFIG_DIR = Path(__file__).parent / "model_configs"


@functools.cache
def get_open_clip():
    """Import open_clip and register pixfind's own architectures (``pixfind-tiny``) once."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def is_model_dir(path: str | os.PathLike | None) -> bool:
    return bool(path) and (Path(path).expanduser() / CONFIG_NAME).is_file()


def list_models() -> list[tuple[str, list[str]]]:
    """Every open_clip architecture with its pretrained tags (empty list: architecture only)."""
    open_clip = get_open_clip()
    tags: dict[str, list[str]] = {}
    for name, tag in open_clip.list_pretrained():
        tags.setdefault(name, []).append(tag)
    return [(name, tags.get(name, [])) for name in open_clip.list_models()]


def resolve_spec(model: str | None = None, pretrained: str | None = None) -> EncoderSpec:
    """Validate a spec and normalise local paths to absolute ones; raise UnknownModel otherwise.

    Accepted forms: (arch, tag), (arch, checkpoint file), (arch, None), (model dir, None),
    (anything, model dir). Model directories hold open_clip_config.json + weights.
    """
    open_clip = get_open_clip()
    model = model or DEFAULT_MODEL
    if is_model_dir(pretrained):
        return EncoderSpec(str(Path(pretrained).expanduser().resolve()), None)
    if is_model_dir(model):
        return EncoderSpec(str(Path(model).expanduser().resolve()), None)
    if os.sep in model or model.startswith("."):
        raise UnknownModel(
            f"model directory {model!r} not found or has no {CONFIG_NAME}; "
            "pass an open_clip model name (see `pixfind models`) or a directory that "
            "`pixfind train` wrote"
        )
    names = open_clip.list_models()
    if model not in names:
        close = [n for n in names if model.lower().split("-")[0] in n.lower()][:12]
        hint = ", ".join(close or names[:20])
        raise UnknownModel(
            f"unknown model {model!r}. Valid names include: {hint} "
            f"(`pixfind models` lists all {len(names)})"
        )
    if pretrained is None or pretrained.lower() in ("none", "random", ""):
        return EncoderSpec(model, None)
    path = Path(pretrained).expanduser()
    if path.is_file():
        return EncoderSpec(model, str(path.resolve()))
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        if os.sep in pretrained or pretrained.endswith(WEIGHT_SUFFIXES):
            raise UnknownModel(f"checkpoint {pretrained!r} not found")
        valid = ", ".join(tags) if tags else "none (architecture only; use a checkpoint file)"
        raise UnknownModel(
            f"unknown pretrained tag {pretrained!r} for {model}. Valid tags: {valid}; "
            "or pass a local checkpoint file or model directory"
        )
    return EncoderSpec(model, pretrained)


def _file_fingerprint(path: Path) -> str:
    """Cheap fingerprint of a weights file: size + head + tail (hashing GBs would be slow)."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=12)
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


def _weights_in_dir(directory: Path) -> Path | None:
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"):
        if (directory / name).is_file():
            return directory / name
    found = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return found[0] if found else None


def spec_identity(spec: EncoderSpec) -> str:
    """Two specs with equal identity produce the same vectors."""
    if is_model_dir(spec.model):
        weights = _weights_in_dir(Path(spec.model))
        return "dir:" + (_file_fingerprint(weights) if weights else "random")
    if spec.pretrained and Path(spec.pretrained).is_file():
        return f"{spec.model}:file:{_file_fingerprint(Path(spec.pretrained))}"
    return f"{spec.model}:{spec.pretrained or 'random'}"


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UnknownModel("--device cuda asked for, but torch sees no CUDA GPU")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Encoder:
    """A loaded open_clip model with batched, L2-normalised encoders returning float32 numpy."""

    def __init__(self, spec: EncoderSpec, model: Any, preprocess: Any, tokenizer: Any, device: str):
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self._info: ModelInfo | None = None

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            from open_clip.model import get_model_preprocess_cfg

            cfg = get_model_preprocess_cfg(self.model)
            size = cfg.get("size", 224)
            size = size[0] if isinstance(size, list | tuple) else size
            self._info = ModelInfo(
                model=self.spec.model,
                pretrained=self.spec.pretrained,
                identity=spec_identity(self.spec),
                dim=self.dim,
                image_size=int(size),
                mean=tuple(float(x) for x in cfg.get("mean", ())),
                std=tuple(float(x) for x in cfg.get("std", ())),
                resize_mode=str(cfg.get("resize_mode", "shortest")),
                interpolation=str(cfg.get("interpolation", "bicubic")),
            )
        return self._info

    @functools.cached_property
    def dim(self) -> int:
        import torch

        with torch.inference_mode():
            out = self.model.encode_text(self.tokenizer(["x"]).to(self.device))
        return int(out.shape[-1])

    @property
    def image_size(self) -> int:
        return self.info.image_size

    def _finish(self, features: torch.Tensor) -> np.ndarray:
        import torch

        features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def encode_image_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Encode already-preprocessed images (N, 3, H, W)."""
        import torch

        with torch.inference_mode():
            batch = batch.to(self.device, dtype=self.dtype, non_blocking=True)
            return self._finish(self.model.encode_image(batch))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        import torch

        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            out.append(
                self.encode_image_tensors(torch.stack([self.preprocess(im) for im in chunk]))
            )
        return np.concatenate(out)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        return _encode_texts(self, self.model, texts, batch_size)


def _encode_texts(enc, model: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
    import torch

    out = [np.zeros((0, enc.dim), np.float32)]
    threads = torch.get_num_threads()
    if len(texts) == 1 and enc.device == "cpu":
        # A query is a few tokens: one thread is as fast idle and up to 10x faster on a busy
        # machine, where intra-op threads spin waiting for each other (measured 48 vs 595 ms).
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = enc.tokenizer(list(texts[start : start + batch_size])).to(enc.device)
                out.append(enc._finish(encode_text_unpadded(model, tokens)))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(out)


def encode_text_unpadded(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` without computing the padded positions, where exact.

    With a causal attention mask, the output at position i depends on positions <= i only,
    and CLIP-style text towers pool the end-of-text position: cutting the batch after its
    last end-of-text token leaves every pooled feature unchanged, at a fraction of the cost
    (a 5-token query computes 6 positions instead of 77). Text towers without a causal mask,
    with a CLS token or with another pooling take the ordinary path. ``model`` is an
    open_clip CLIP or its TextTransformer (the text-only path).
    """
    import torch

    text_only = not hasattr(model, "encode_text")
    pool = getattr(model, "pool_type" if text_only else "text_pool_type", None)
    eos_id = getattr(model, "eos_id" if text_only else "text_eos_id", None)
    mask = getattr(model, "attn_mask", None)
    plain = (
        mask is None
        or pool not in ("argmax", "eos")
        or (pool == "eos" and eos_id is None)
        or getattr(model, "cls_emb", None) is not None
        or getattr(model, "use_pad_mask", False)
        or getattr(model, "output_tokens", False)
        or not all(hasattr(model, a) for a in ("token_embedding", "positional_embedding"))
    )
    if plain:
        return model(tokens) if text_only else model.encode_text(tokens)
    pooled_at = tokens.argmax(dim=-1) if pool == "argmax" else (tokens == eos_id).int().argmax(-1)
    length = int(pooled_at.max()) + 1
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens[:, :length]).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), pooled_at]
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Module) else x @ proj
    return x


class TextEncoder:
    """Only the text tower of a model: what a text query needs (no image tower in memory)."""

    def __init__(self, spec: EncoderSpec, model: Any, tokenizer: Any, device: str):
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device

    @functools.cached_property
    def dim(self) -> int:
        proj = self.model.text_projection
        if proj is None:
            return int(self.model.width)
        return int(proj.out_features if hasattr(proj, "out_features") else proj.shape[1])

    _finish = Encoder._finish

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        return _encode_texts(self, self.model, texts, batch_size)


def _text_checkpoint(spec: EncoderSpec) -> tuple[dict, Path, str] | None:
    """(model config, weights file, tokenizer name) for a text-only load, or None."""
    open_clip = get_open_clip()
    if is_model_dir(spec.model):
        directory = Path(spec.model)
        cfg = json.loads((directory / CONFIG_NAME).read_text()).get("model_cfg")
        return (cfg, _weights_in_dir(directory), f"local-dir:{directory}") if cfg else None
    if spec.pretrained is None:
        return None  # seeded random weights: only the full model's init order defines them
    cfg = open_clip.get_model_config(spec.model)
    if Path(spec.pretrained).is_file():
        return cfg, Path(spec.pretrained), spec.model
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    tag_cfg = get_pretrained_cfg(spec.model, spec.pretrained)
    if not tag_cfg or tag_cfg.get("quick_gelu", False) != (cfg or {}).get("quick_gelu", False):
        return None
    return cfg, Path(download_pretrained(tag_cfg)), spec.model


def text_recipe(spec: EncoderSpec) -> dict | None:
    """The recipe for running this model's text tower without open_clip (search/texttower.py),
    or None where that would not be exact. Call it once the model is loaded: a pretrained
    tag's weights are then in the local cache."""
    from .cold.texttower import make_recipe

    try:
        found = _text_checkpoint(spec)
        if found is None:
            return None
        cfg, weights, tokenizer_name = found
        return make_recipe(cfg, weights, spec_identity(spec), tokenizer_name)
    except Exception:  # no recipe only means no shortcut
        return None


def _read_text_weights(path: Path) -> dict:
    from .cold.texttower import SKIP_PREFIXES, read_text_state

    if path.suffix == ".safetensors":
        return read_text_state(path)  # tensor by tensor: the text tensors only
    from open_clip.factory import load_state_dict  # the other formats open_clip reads

    return {k: v for k, v in load_state_dict(str(path)).items() if not k.startswith(SKIP_PREFIXES)}


def _create_text_only(spec: EncoderSpec, device: str) -> TextEncoder | None:
    """Build just the text tower and load just its weights; None where that isn't exact
    (custom or Hugging Face text towers, random weights, fp16 devices): the caller then
    loads the whole model."""
    import torch

    if device != "cpu":
        return None
    found = _text_checkpoint(spec)
    if found is None or found[0] is None or found[1] is None:
        return None
    cfg, weights, tokenizer_name = found
    text_cfg = dict(cfg.get("text_cfg", {}))
    if cfg.get("custom_text") or "hf_model_name" in text_cfg or "multimodal_cfg" in cfg:
        return None
    from open_clip.model import _build_text_tower

    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        text = _build_text_tower(cfg["embed_dim"], text_cfg, cfg.get("quick_gelu", False))
    state = _read_text_weights(weights)
    try:
        text.load_state_dict(state, strict=True, assign=True)
    except RuntimeError:
        return None  # another key layout (converted third-party weights): full load
    if getattr(text, "attn_mask", None) is not None:
        text.attn_mask = text.build_causal_mask()
    if any(t.is_meta for t in [*text.parameters(), *text.buffers()]):
        return None
    text = text.float().eval()
    return TextEncoder(spec, text, get_open_clip().get_tokenizer(tokenizer_name), device)


def _create(spec: EncoderSpec, device: str) -> tuple[Any, Any, Any]:
    open_clip = get_open_clip()
    precision = "fp16" if device.startswith("cuda") else "fp32"
    if is_model_dir(spec.model):
        name = f"local-dir:{spec.model}"
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, device=device, precision=precision
        )
        return model, preprocess, open_clip.get_tokenizer(name)
    if spec.pretrained is None:
        import torch

        # Random weights are for plumbing tests and benchmarks: seed them so that every
        # process builds the same model and an index stays searchable.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.model, pretrained=None, device=device, precision=precision
            )
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.model, pretrained=spec.pretrained, device=device, precision=precision
        )
    return model, preprocess, open_clip.get_tokenizer(spec.model)


@functools.lru_cache(maxsize=4)
def _load_cached(spec: EncoderSpec, device: str) -> Encoder:
    try:
        model, preprocess, tokenizer = _create(spec, device)
    except UnknownModel:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError variously
        offline = get_settings().hf_offline
        hint = (
            " (HF_HUB_OFFLINE=1 is set and the weights are not in the Hugging Face cache)"
            if offline
            else " (is the model hub reachable? For offline use pass a local checkpoint file or "
            "model directory with --pretrained/--model; see README 'Offline use')"
        )
        raise UnknownModel(f"could not load {spec.label}: {exc}{hint}") from exc
    model.eval()
    return Encoder(spec, model, preprocess, tokenizer, device)


@functools.lru_cache(maxsize=4)
def _load_text_cached(spec: EncoderSpec, device: str) -> TextEncoder | Encoder:
    try:
        text = _create_text_only(spec, device)
    except Exception:  # any surprise in the shortcut: the full model is always right
        text = None
    return text if text is not None else _load_cached(spec, device)


def load_text_encoder(
    spec: EncoderSpec | None = None, device: str = "auto"
) -> TextEncoder | Encoder:
    """An encoder for text queries: the text tower alone where the weights allow (a text
    search never builds or keeps the image tower), else the full model."""
    spec = spec or DEFAULT_SPEC
    spec = resolve_spec(spec.model, spec.pretrained)
    if not get_settings().text_tower:  # the full model (benchmark baseline)
        return _load_cached(spec, pick_device(device))
    return _load_text_cached(spec, pick_device(device))


def load_encoder(spec: EncoderSpec | None = None, device: str = "auto") -> Encoder:
    """Load (once per process) the encoder for a spec. Validates the spec first."""
    spec = spec or DEFAULT_SPEC
    spec = resolve_spec(spec.model, spec.pretrained)
    return _load_cached(spec, pick_device(device))


def save_model_dir(
    model: Any, out_dir: str | os.PathLike, model_cfg: dict, extra: dict | None = None
) -> Path:
    """Write open_clip_config.json + open_clip_model.safetensors: a loadable model dir."""
    from open_clip.model import get_model_preprocess_cfg
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pp = get_model_preprocess_cfg(model)
    pp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pp.items()}
    config = {"model_cfg": model_cfg, "preprocess_cfg": pp}
    if extra:
        config["pixfind"] = extra
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = out / "open_clip_model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, out / "open_clip_model.safetensors")
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return out
