"""A model folder on ONNX Runtime alone: indexing and search without torch or open_clip.

`pixfind models export` (search/modelexport.py, which needs torch) writes a folder holding a
model's ONNX towers, its int8 image tower where that passed its check, the tokenizer's
vocabulary and a manifest (``export.json``: the model's identity, vector size, text tower
kind and context length, preprocessing). ``--model DIR`` then loads ``OnnxEncoder``: the
same interface as search/encoder.py's ``Encoder`` (what the indexer, the engine and the
server use), with preprocessing in Pillow and numpy (search/preprocess.py). Nothing here
imports torch, torchvision or open_clip.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import write_json
from .errors import UnknownModel
from .onnxrt import VOCAB, OnnxImageTower, OnnxTowers, load_towers, model_folder
from .preprocess import ImagePreprocess
from .types import EncoderSpec, ModelInfo

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


class OnnxEncoder:
    """A model folder's towers: batched, L2-normalised encoders returning float32 numpy."""

    device = "cpu"
    runtime = "onnx"
    model = None  # no torch module: nothing to train or export from here
    model_cfg = None

    def __init__(self, spec: EncoderSpec, towers: OnnxTowers, recipe: dict | None = None):
        self.spec = spec
        self.towers = towers
        self._recipe = recipe  # the cold path's text recipe, recorded with a cache export
        meta = towers.manifest
        self.dim = int(meta["dim"])
        self.preprocess = ImagePreprocess.from_config(meta["preprocess"])
        self.precision = "fp32"  # of the image vectors encode_image_tensors makes now
        self._asked: str | None = None
        self._int8: OnnxImageTower | None = None
        pre = self.preprocess
        self.info = ModelInfo(
            model=spec.model,
            pretrained=spec.pretrained,
            identity=str(meta["identity"]),
            dim=self.dim,
            image_size=pre.size[0],
            mean=pre.mean,
            std=pre.std,
            resize_mode=pre.resize_mode,
            interpolation=pre.interpolation,
        )

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @property
    def tokenizer(self):
        return self.towers.text.tokenizer

    def text_tower(self) -> None:
        return None  # the ONNX text tower serves (onnx_towers)

    @property
    def recipe(self) -> dict | None:
        """The query snapshot's text recipe, where a cache export's record holds it (else
        search.encoder.text_recipe makes it, as for any model)."""
        if not self._recipe:
            return None
        return {**self._recipe, "onnx": self.towers.text_entry()}

    def start_run(self, precision: str | None = None) -> None:
        """As ``Encoder.start_run``: the run's first batch chooses the image tower's
        precision (the folder's int8 tower where its recorded check passed)."""
        from .quantize import choose_precision

        self._asked = choose_precision(precision, "onnx")
        self.precision = "fp32"

    def onnx_towers(self, sample: np.ndarray | None = None) -> OnnxTowers:
        if sample is not None and self._asked is not None:
            from .quantize import int8_path

            asked, self._asked = self._asked, None
            path = int8_path(self.towers, np.asarray(sample, np.float32), asked)
            if path is not None and (self._int8 is None or self._int8.path != path):
                self._int8 = OnnxImageTower(path, self.dim)
            self.precision = "int8" if path is not None else "fp32"
        return self.towers

    def encode_image_tensors(self, batch) -> np.ndarray:
        """Encode already-preprocessed images (N, 3, H, W)."""
        tower = self._int8 if self.precision == "int8" else self.towers.image
        return tower.encode(np.asarray(batch, np.float32))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            out.append(self.encode_image_tensors(np.stack([self.preprocess(im) for im in chunk])))
        return np.concatenate(out)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        return self.towers.text.encode_texts(texts, batch_size)


def check_device(spec: EncoderSpec, device: str, runtime: str | None) -> None:
    """A model folder runs on the CPU in ONNX Runtime: refuse anything else in one line."""
    if device not in ("auto", "cpu") or (runtime or "auto").lower() == "torch":
        raise UnknownModel(
            f"{spec.model} is an ONNX model folder (`pixfind models export`): it runs on the "
            "CPU with ONNX Runtime only; drop --device/--runtime torch, or use the open_clip "
            "model it was exported from"
        )


def exported_encoder(
    spec: EncoderSpec | None, device: str = "auto", runtime: str | None = None
) -> OnnxEncoder | None:
    """The ONNX encoder of an open_clip model whose checked export in the model cache is a
    model folder (exports since model folders): what an indexing run on the CPU loads
    instead of building the torch model that the towers stand in for (about 6 s for
    ViT-B-32). None where torch serves: a GPU, --runtime torch, no export yet (the torch
    model exports it), an export from before model folders, a model folder (load_encoder).

    The first such run finds the export through open_clip (which imports torch) and leaves
    a record of it by the model's identity (``identities/``, with the cold path's text
    recipe); later runs read that record and import neither torch nor open_clip."""
    import sys

    from .models import DEFAULT_SPEC, is_onnx_dir, resolve_spec
    from .onnxrt import choose_runtime

    gpu = sys.platform == "darwin" or Path("/dev/nvidiactl").exists()  # as the cold path
    if device not in ("auto", "cpu") or (device == "auto" and gpu):
        return None
    if choose_runtime(runtime, "cpu") != "onnx":
        return None
    spec = spec or DEFAULT_SPEC
    if is_onnx_dir(spec.model):
        return None
    found = _recorded(spec)
    if found is not None:
        return found
    try:
        spec = resolve_spec(spec.model, spec.pretrained)
        from .encoder import text_recipe
        from .onnxexport import export_dir

        directory = export_dir(spec)
        towers = load_towers(directory) if model_folder(directory) else None
        if towers is None:
            return None
        recipe = {k: v for k, v in (text_recipe(spec) or {}).items() if k != "onnx"}
    except Exception:  # noqa: BLE001 - no torch, no config, weights not at hand: load_encoder
        return None
    with contextlib.suppress(OSError):  # a read-only cache: found through open_clip again
        _write_record(spec, directory, recipe)
    return OnnxEncoder(spec, towers, recipe)


def _record_path(spec: EncoderSpec) -> Path:
    from .models import spec_identity
    from .onnxrt import export_root

    digest = hashlib.blake2b(spec_identity(spec).encode(), digest_size=12).hexdigest()
    return export_root() / "identities" / f"{digest}.json"


def _fingerprints(spec: EncoderSpec) -> dict:
    """What the export's key hashed besides the identity, readable without importing: the
    versions of open_clip and torch, a model directory's config file."""
    from importlib.metadata import PackageNotFoundError, version

    from .models import CONFIG_NAME, file_fingerprint, is_model_dir

    out = {}
    for name in ("open_clip_torch", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None  # the light install: the export is all there is
    if is_model_dir(spec.model):
        out["config"] = file_fingerprint(Path(spec.model) / CONFIG_NAME)
    return out


def _write_record(spec: EncoderSpec, directory: Path, recipe: dict) -> None:
    from .models import spec_identity

    path = _record_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "identity": spec_identity(spec),
        "key": directory.name,
        "fingerprints": _fingerprints(spec),
        "recipe": recipe or None,
    }
    write_json(path, record, indent=None)


def _recorded(spec: EncoderSpec) -> OnnxEncoder | None:
    """The encoder a record by identity names, where it still holds (same identity, same
    versions where installed, the export still a model folder); else None."""
    from .models import spec_identity
    from .onnxrt import export_root

    try:
        record = json.loads(_record_path(spec).read_text())
        if record["identity"] != spec_identity(spec):
            return None
        now = _fingerprints(spec)
        if any(now[k] is not None and now[k] != v for k, v in record["fingerprints"].items()):
            return None
        directory = export_root() / record["key"]
        towers = load_towers(directory) if model_folder(directory) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return OnnxEncoder(spec, towers, record.get("recipe")) if towers is not None else None


TEXT_WEIGHTS = "text.safetensors"  # the plain text tower's tensors, for the numpy tower


def folder_recipe(spec: EncoderSpec, recipe_format: int) -> dict | None:
    """The cold path's recipe (search/cold/texttower.py's format) for a model folder whose
    export wrote the plain text tower's tensors: the numpy tower runs a cold query from
    them without an ONNX Runtime session to build. None: not a folder, or no such file."""
    meta = model_folder(spec.model)
    arch = (meta or {}).get("text", {}).get("arch")
    weights = Path(spec.model) / TEXT_WEIGHTS
    if not arch or not weights.is_file():
        return None
    st = weights.stat()
    return {
        "format": recipe_format,
        "identity": str(meta["identity"]),
        "weights": str(weights.resolve()),
        "weights_size": st.st_size,
        "weights_mtime_ns": st.st_mtime_ns,
        "arch": arch,
        "vocab": str((Path(spec.model) / VOCAB).resolve()),
    }


@functools.lru_cache(maxsize=4)
def load_onnx_encoder(spec: EncoderSpec) -> OnnxEncoder:
    """The encoder of a model folder (once per process)."""
    if model_folder(spec.model) is None:
        raise UnknownModel(f"{spec.model} is not a complete ONNX model folder")
    towers = load_towers(Path(spec.model))
    if towers is None:
        raise UnknownModel(
            f"the model folder {spec.model} needs onnxruntime (pip install onnxruntime)"
        )
    return OnnxEncoder(spec, towers)
