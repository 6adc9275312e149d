"""open_clip dual encoder: loading a resolved spec (search/models.py) and encoding with it.

torch and open_clip are imported inside functions so that ``pixfind --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import NeedsTorch, UnknownModel
from .models import (
    CONFIG_NAME,
    DEFAULT_SPEC,
    checkpoint_files,
    get_open_clip,
    is_model_dir,
    is_onnx_dir,
    model_config,
    open_clip_name,
    resolve_spec,
    spec_identity,
)
from .settings import get_settings
from .types import EncoderSpec, ModelInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from .cold.texttower import PlainTextTower
    from .onnxmodel import OnnxEncoder
    from .onnxrt import OnnxImageTower, OnnxTextTower, OnnxTowers


def pick_device(device: str = "auto") -> str:
    try:
        import torch
    except ImportError as exc:
        raise NeedsTorch(
            f"this needs torch, which this install lacks ({exc}): pip install 'pixfind[torch]'"
        ) from exc

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

    def __init__(
        self,
        spec: EncoderSpec,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        device: str,
        model_cfg: dict | None = None,
        runtime: str = "torch",
    ):
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.model_cfg = model_cfg
        self._info: ModelInfo | None = None
        self._tower: PlainTextTower | None = None
        self.runtime = runtime  # "onnx": ONNX Runtime where its export passed (onnx_towers)
        self._onnx: OnnxTowers | None = None
        self._onnx_state = "unseen"  # then "absent" (no export yet) or "decided"
        self.precision = "fp32"  # of the image vectors encode_image_tensors makes now
        self._asked: str | None = None  # an indexing run's precision, until its first batch
        self._int8: OnnxImageTower | None = None

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

        tower = self.text_tower()
        if tower is not None:
            return tower.dim
        with torch.inference_mode():
            out = self.model.encode_text(self.tokenizer(["x"]).to(self.device))
        return int(out.shape[-1])

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @functools.cached_property
    def _text_arch(self) -> dict | None:
        """The plain text tower's architecture where it reproduces this model's encode_text
        exactly: float32 on CPU, a plain CLIP text tower (search/cold/texttower.py)."""
        import torch

        from .cold.texttower import plain_text_cfg

        if self.device != "cpu" or self.dtype != torch.float32:
            return None  # open_clip's fp16 casts and device kernels are the reference there
        try:
            cfg = self.model_cfg if self.model_cfg is not None else model_config(self.spec)
        except Exception:  # noqa: BLE001 - no config: open_clip's encode_text
            return None
        return plain_text_cfg(cfg, open_clip_name(self.spec))

    def text_tower(self) -> PlainTextTower | None:
        """This model's own text tensors (shared, not copied) run by the plain text tower:
        ``model.encode_text`` without computing the padded positions. None where that is not
        exact; the text is then encoded by open_clip's ``encode_text``."""
        from .cold.texttower import PlainTextTower

        arch = self._text_arch
        if arch is None:
            return None
        tower = self._tower
        live = getattr(self.model, "token_embedding", None)
        if tower is not None and live is not None:
            used = tower.state["token_embedding.weight"]
            if used.data_ptr() == live.weight.data_ptr():
                return tower
        self._tower = tower = PlainTextTower.from_state(arch, self.model.state_dict())
        if tower is None:
            self._text_arch = None  # another key layout: don't try again
        return tower

    def _finish(self, features: torch.Tensor) -> np.ndarray:
        import torch

        features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def start_run(self, precision: str | None = None) -> None:
        """An indexing run begins, asking for the image tower's ``precision`` (auto, fp32,
        int8; None: PIXFIND_PRECISION): its first batch (``onnx_towers(sample)``) decides
        whether the int8 tower serves (search/quantize.py). int8 on torch is refused."""
        from .quantize import choose_precision

        self._asked = choose_precision(precision, self.runtime)
        self.precision = "fp32"

    def onnx_towers(self, sample: torch.Tensor | None = None) -> OnnxTowers | None:
        """This model's ONNX Runtime towers when the runtime is "onnx" and their export
        passed its parity check (search/onnxexport.py): loaded from the model cache, or
        exported when a ``sample`` of real photos is given to check them with (the indexer
        does, with its first batch; a query never waits for an export). The first sample
        after ``start_run`` also chooses the image tower's precision."""
        towers = self._find_towers(sample)
        if sample is not None and self._asked is not None:
            asked, self._asked = self._asked, None
            if towers is not None and asked != "fp32":
                from .onnxrt import OnnxImageTower
                from .quantize import int8_path

                path = int8_path(towers, np.asarray(sample, np.float32), asked)
                if path is not None and (self._int8 is None or self._int8.path != path):
                    self._int8 = OnnxImageTower(path, self.dim)
                self.precision = "int8" if path is not None else "fp32"
        return towers

    def _find_towers(self, sample: torch.Tensor | None) -> OnnxTowers | None:
        if self.runtime != "onnx" or self._onnx_state == "decided":
            return self._onnx
        if sample is None and self._onnx_state == "absent":
            return None
        from .onnxexport import prepare
        from .onnxrt import loaded

        self._onnx = prepare(self, sample)
        found = self._onnx is not None
        self._onnx_state = "decided" if found or sample is not None else "absent"
        if found:
            loaded[spec_identity(self.spec)] = self._onnx
        return self._onnx

    def encode_image_tensors(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Encode already-preprocessed images (N, 3, H, W): a tensor or a numpy array."""
        towers = self.onnx_towers()
        if towers is not None:
            tower = self._int8 if self.precision == "int8" else towers.image
            return tower.encode(np.asarray(batch, np.float32))
        return self.torch_encode_image(batch)

    def torch_encode_image(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = torch.as_tensor(batch).to(self.device, dtype=self.dtype, non_blocking=True)
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
        towers = self.onnx_towers()
        if towers is not None:
            return towers.text.encode_texts(texts, batch_size)
        return self.torch_encode_texts(texts, batch_size)

    def torch_encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        tower = self.text_tower()
        if tower is not None:
            return tower.encode_texts(texts, batch_size)
        import torch

        from .cold.texttower import threads_for

        out = [np.zeros((0, self.dim), np.float32)]
        with threads_for(len(texts) if self.device == "cpu" else 0), torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
                out.append(self._finish(self.model.encode_text(tokens)))
        return np.concatenate(out)


class TextEncoder:
    """Only the text tower of a model, read from its weights file: what a text query needs
    (no image tower built or kept in memory). The same plain tower the cold path runs."""

    def __init__(self, spec: EncoderSpec, tower: PlainTextTower | OnnxTextTower, device="cpu"):
        self.spec = spec
        self.tower = tower
        self.tokenizer = tower.tokenizer
        self.device = device
        self.dim = tower.dim

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        return self.tower.encode_texts(texts, batch_size)


def text_recipe(spec: EncoderSpec) -> dict | None:
    """The recipe for running this model's text tower without open_clip: the plain torch
    tower (search/cold/texttower.py) where that is exact, and the ONNX text tower where one
    is loaded in this process (search/onnxrt.py); None: neither. For a pretrained tag it
    fetches the weights into the local cache where they aren't yet: call it once the model
    is loaded (or loading it is the next step anyway)."""
    from .cold.texttower import RECIPE_FORMAT, make_recipe
    from .onnxmodel import folder_recipe

    identity = spec_identity(spec)
    try:  # a model folder's own text tensors where its export wrote them
        found = checkpoint_files(spec) or folder_recipe(spec, RECIPE_FORMAT)
        recipe = make_recipe(*found[:2], identity, found[2]) if isinstance(found, tuple) else found
    except Exception:  # noqa: BLE001 - no recipe only means no shortcut
        recipe = None
    towers = exported_towers(spec)
    if towers is not None:
        recipe = recipe or {"format": RECIPE_FORMAT, "identity": identity}
        recipe["onnx"] = towers.text_entry()
    return recipe


def _create(spec: EncoderSpec, device: str) -> tuple[Any, Any, Any, dict | None]:
    """(model, preprocess, tokenizer, model config) of a resolved spec."""
    open_clip = get_open_clip()
    precision = "fp16" if device.startswith("cuda") else "fp32"
    name = open_clip_name(spec)
    if is_model_dir(spec.model):
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, device=device, precision=precision
        )
    elif spec.pretrained is None:
        import torch

        # Random weights are for plumbing tests and benchmarks: seed them so that every
        # process builds the same model and an index stays searchable.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=None, device=device, precision=precision
            )
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=spec.pretrained, device=device, precision=precision
        )
    return model, preprocess, open_clip.get_tokenizer(name), model_config(spec)


@functools.lru_cache(maxsize=4)
def _load_cached(spec: EncoderSpec, device: str, runtime: str = "torch") -> Encoder:
    try:
        model, preprocess, tokenizer, cfg = _create(spec, device)
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
    return Encoder(spec, model, preprocess, tokenizer, device, cfg, runtime)


@functools.lru_cache(maxsize=4)
def _load_text_cached(
    spec: EncoderSpec, device: str, runtime: str = "torch"
) -> TextEncoder | Encoder:
    from .cold.texttower import PlainTextTower

    tower = onnx_text_tower(spec) if runtime == "onnx" else None
    # the plain tower is float32 on CPU; other devices use open_clip's
    if tower is None and device == "cpu":
        try:
            tower = PlainTextTower.load(text_recipe(spec))
        except Exception:  # noqa: BLE001 - any surprise in the shortcut: the full model is right
            tower = None
    if tower is not None:
        return TextEncoder(spec, tower, device)
    return _load_cached(spec, device, runtime)


def onnx_text_tower(spec: EncoderSpec) -> OnnxTextTower | None:
    """The ONNX text tower of an export that passed its parity check, found without
    building the model; None where there is none yet (the indexer exports)."""
    towers = exported_towers(spec)
    return towers.text if towers is not None else None


def exported_towers(spec: EncoderSpec) -> OnnxTowers | None:
    """The ONNX towers of ``spec`` loaded in this process, else found in the model cache
    (a re-index that encodes nothing still records them in the query snapshot)."""
    from .onnxrt import load_towers, loaded

    identity = spec_identity(spec)
    if identity not in loaded:
        try:
            towers = load_towers(_export_dir(spec))
        except Exception:  # noqa: BLE001 - no config, no weights file: torch serves
            towers = None
        if towers is None:
            return None
        loaded[identity] = towers
    return loaded[identity]


def _export_dir(spec: EncoderSpec) -> Path:
    """Where the ONNX towers of ``spec`` are: the model folder itself, or the model cache."""
    if is_onnx_dir(spec.model):
        return Path(spec.model)
    from .onnxexport import export_dir

    return export_dir(spec)


def _device_runtime(device: str, runtime: str | None) -> tuple[str, str]:
    """(device, runtime) to load with: a forced ONNX runtime runs on the CPU."""
    from .onnxrt import choose_runtime

    if device == "auto" and (runtime or get_settings().runtime) == "onnx":
        device = "cpu"
    device = pick_device(device)
    return device, choose_runtime(runtime, device)


def load_text_encoder(
    spec: EncoderSpec | None = None, device: str = "auto", runtime: str | None = "torch"
) -> TextEncoder | Encoder:
    """An encoder for text queries: the text tower alone, read from the weights file, where
    that is exact (a text search never builds or keeps the image tower), else the full model
    (random weights, custom or Hugging Face text towers, GPUs)."""
    spec = spec or DEFAULT_SPEC
    spec = resolve_spec(spec.model, spec.pretrained)
    if is_onnx_dir(spec.model):
        return _onnx_folder(spec, device, runtime)
    device, runtime = _device_runtime(device, runtime)
    if not get_settings().text_tower:  # the full model (benchmark baseline)
        return _load_cached(spec, device, runtime)
    return _load_text_cached(spec, device, runtime)


def load_encoder(
    spec: EncoderSpec | None = None, device: str = "auto", runtime: str | None = "torch"
) -> Encoder:
    """Load (once per process) the encoder for a spec. Validates the spec first.

    ``runtime`` "auto" (None: PIXFIND_RUNTIME) or "onnx" encodes with ONNX Runtime on the
    CPU once its export passed (search/onnxexport.py); "torch" (training, evaluation) never
    exports."""
    spec = spec or DEFAULT_SPEC
    spec = resolve_spec(spec.model, spec.pretrained)
    if is_onnx_dir(spec.model):
        return _onnx_folder(spec, device, runtime)
    return _load_cached(spec, *_device_runtime(device, runtime))


def _onnx_folder(spec: EncoderSpec, device: str, runtime: str | None) -> OnnxEncoder:
    """The encoder of an ONNX model folder (search/onnxmodel.py): no torch imported."""
    from .onnxmodel import check_device, load_onnx_encoder

    check_device(spec, device, runtime)
    return load_onnx_encoder(spec)


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
