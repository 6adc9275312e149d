"""The model registry: what a model spec means, for the CLI, the HTTP API, the Python API and
training alike.

A spec names an architecture and its weights: (architecture, pretrained tag), (architecture,
checkpoint file), (architecture, None: seeded random weights) or (model directory, None), a
directory holding open_clip_config.json and weights as ``pixfind train`` writes them. Only
open_clip's public API is used. open_clip is imported inside functions so that
``pixfind --help`` stays instant.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import NeedsTorch, UnknownModel
from .onnxrt import model_folder
from .types import EncoderSpec

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_SPEC = EncoderSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)
CONFIG_NAME = "open_clip_config.json"  # a model directory's config (model_cfg + preprocess_cfg)
CONFIG_DIR = Path(__file__).parent / "model_configs"  # pixfind's own architectures
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
RANDOM_TAGS = ("none", "random", "")  # --pretrained values meaning seeded random weights


@functools.cache
def get_open_clip():
    """Import open_clip and register pixfind's own architectures (``pixfind-tiny``) once;
    NeedsTorch where this install has no torch or open_clip (the light install)."""
    try:
        import open_clip
    except ImportError as exc:
        raise NeedsTorch(
            f"open_clip models need torch and open_clip, which this install lacks ({exc}); "
            "pip install 'pixfind[torch]', or use an ONNX model folder: --model DIR "
            "(`pixfind models export`, README 'Install variants')"
        ) from exc

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def is_model_dir(path: str | os.PathLike | None) -> bool:
    return bool(path) and (Path(path).expanduser() / CONFIG_NAME).is_file()


def is_onnx_dir(path: str | os.PathLike | None) -> bool:
    """A model folder of ONNX towers (`pixfind models export`): runs without torch."""
    return model_folder(path) is not None


def list_models() -> list[tuple[str, list[str]]]:
    """Every open_clip architecture with its pretrained tags (empty list: architecture only)."""
    open_clip = get_open_clip()
    tags: dict[str, list[str]] = {}
    for name, tag in open_clip.list_pretrained():
        tags.setdefault(name, []).append(tag)
    return [(name, tags.get(name, [])) for name in open_clip.list_models()]


def default_tag(model: str) -> str | None:
    """The weights an architecture named without a tag gets: DEFAULT_PRETRAINED for the
    default model, else its first published tag, else None (random weights)."""
    if model == DEFAULT_MODEL:
        return DEFAULT_PRETRAINED
    tags = get_open_clip().list_pretrained_tags_by_model(model)
    return tags[0] if tags else None


def requested_spec(model: str | None, pretrained: str | None) -> EncoderSpec | None:
    """The spec a user asked for with --model/--pretrained (or ``model=``/``pretrained=``),
    validated; None when neither was given: use the index's own model (or the default one
    for a new index).

    An architecture given without a tag gets its first published tag (the default tag for
    ViT-B-32); ``pretrained="none"`` asks for seeded random weights (tests, benchmarks);
    model directories and checkpoint files are taken as they are.
    """
    if model is None and pretrained is None:
        return None
    model = model or DEFAULT_MODEL
    local = is_model_dir(model) or is_onnx_dir(model) or _looks_like_path(model)
    if pretrained is None and not local:
        pretrained = default_tag(model)  # an unknown name has none: resolve_spec says so
    return resolve_spec(model, pretrained)


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith(".")


def _unknown_model(model: str):
    names = get_open_clip().list_models()
    close = [n for n in names if model.lower().split("-")[0] in n.lower()][:12]
    hint = ", ".join(close or names[:20])
    raise UnknownModel(
        f"unknown model {model!r}. Valid names include: {hint} "
        f"(`pixfind models` lists all {len(names)})"
    )


def resolve_spec(model: str | None = None, pretrained: str | None = None) -> EncoderSpec:
    """Validate a spec and normalise local paths to absolute ones; raise UnknownModel otherwise.

    Accepted forms: (arch, tag), (arch, checkpoint file), (arch, None or "none": random
    weights), (model dir, None), (anything, model dir). No defaults are filled in: see
    ``requested_spec`` for what a user's --model/--pretrained mean.
    """
    model = model or DEFAULT_MODEL
    for folder in (pretrained, model):
        if is_model_dir(folder) or is_onnx_dir(folder):
            return EncoderSpec(str(Path(folder).expanduser().resolve()), None)
    if _looks_like_path(model):
        raise UnknownModel(
            f"model directory {model!r} not found or has no {CONFIG_NAME}; "
            "pass an open_clip model name (see `pixfind models`), a directory that "
            "`pixfind train` wrote, or one that `pixfind models export` wrote"
        )
    open_clip = get_open_clip()
    if model not in open_clip.list_models():
        _unknown_model(model)
    if pretrained is None or pretrained.lower() in RANDOM_TAGS:
        return EncoderSpec(model, None)
    path = Path(pretrained).expanduser()
    if path.is_file():
        return EncoderSpec(model, str(path.resolve()))
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        if _looks_like_path(pretrained) or pretrained.endswith(WEIGHT_SUFFIXES):
            raise UnknownModel(f"checkpoint {pretrained!r} not found")
        valid = ", ".join(tags) if tags else "none (architecture only; use a checkpoint file)"
        raise UnknownModel(
            f"unknown pretrained tag {pretrained!r} for {model}. Valid tags: {valid}; "
            "or pass a local checkpoint file or model directory"
        )
    return EncoderSpec(model, pretrained)


# -- identity ----------------------------------------------------------------------------------
def file_fingerprint(path: Path) -> str:
    """Cheap fingerprint of a weights file: size + head + tail (hashing GBs would be slow)."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=12)
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


def weights_in_dir(directory: Path) -> Path | None:
    """The weights file of a model directory (None: the directory holds a config only)."""
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"):
        if (directory / name).is_file():
            return directory / name
    found = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return found[0] if found else None


def spec_identity(spec: EncoderSpec) -> str:
    """Two specs with equal identity produce the same vectors (an ONNX model folder has
    the identity of the model it was exported from)."""
    folder = model_folder(spec.model) if spec.pretrained is None else None
    if folder is not None:
        return str(folder["identity"])
    if is_model_dir(spec.model):
        weights = weights_in_dir(Path(spec.model))
        return "dir:" + (file_fingerprint(weights) if weights else "random")
    if spec.pretrained and Path(spec.pretrained).is_file():
        return f"{spec.model}:file:{file_fingerprint(Path(spec.pretrained))}"
    return f"{spec.model}:{spec.pretrained or 'random'}"


# -- configs and weights -----------------------------------------------------------------------
def open_clip_name(spec: EncoderSpec) -> str:
    """The name open_clip's factories (create_model, get_tokenizer) take for a resolved spec."""
    return f"local-dir:{spec.model}" if is_model_dir(spec.model) else spec.model


def model_config(spec: EncoderSpec) -> dict | None:
    """The open_clip model config a resolved spec builds (None: unknown)."""
    if is_onnx_dir(spec.model):
        return None
    if is_model_dir(spec.model):
        return json.loads((Path(spec.model) / CONFIG_NAME).read_text()).get("model_cfg")
    return get_open_clip().get_model_config(spec.model)


def checkpoint_files(spec: EncoderSpec) -> tuple[dict, Path, str] | None:
    """(model config, weights file, tokenizer name) of a resolved spec whose weights are one
    local file open_clip loads unchanged, or None (random weights, no config, a tag whose
    activation differs from its architecture's). A pretrained tag's weights are downloaded
    into (or found in) the Hugging Face cache."""
    if is_model_dir(spec.model):
        cfg = model_config(spec)
        weights = weights_in_dir(Path(spec.model))
        return (cfg, weights, open_clip_name(spec)) if cfg and weights else None
    if spec.pretrained is None:
        return None  # seeded random weights: only the full model's init order defines them
    open_clip = get_open_clip()
    cfg = open_clip.get_model_config(spec.model)
    if not cfg:
        return None
    if Path(spec.pretrained).is_file():
        return cfg, Path(spec.pretrained), spec.model
    tag_cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    if not tag_cfg or tag_cfg.get("quick_gelu", False) != cfg.get("quick_gelu", False):
        return None
    return cfg, Path(open_clip.download_pretrained(tag_cfg)), spec.model


def register_config(name: str, cfg: dict) -> None:
    """Make a model config known to open_clip under ``name`` unless that name is taken.

    open_clip's public registry (``add_model_config``) reads JSON files, so the config is
    written to a private temporary folder, registered, and the folder removed: registered
    configs stay in memory for the process."""
    open_clip = get_open_clip()
    if open_clip.get_model_config(name) is not None:
        return
    if not all(key in cfg for key in ("embed_dim", "vision_cfg", "text_cfg")):
        raise UnknownModel(
            f"model config {name!r} is not an open_clip config (needs embed_dim, vision_cfg "
            "and text_cfg)"
        )
    folder = Path(tempfile.mkdtemp(prefix="pixfind-config-"))
    try:
        path = folder / f"{name}.json"
        path.write_text(json.dumps(cfg))
        open_clip.add_model_config(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if open_clip.get_model_config(name) is None:
        raise UnknownModel(f"could not register model config {name!r}")
