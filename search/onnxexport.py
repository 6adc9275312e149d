"""Exporting a loaded model's towers to ONNX, once per model, with a parity check against torch.

Called by the encoder (search/encoder.py) when the ONNX runtime is chosen and the first batch
of photos is at hand: those real photos and a set of captions are encoded by torch and by
ONNX Runtime, and the export is used only where every cosine between the two is at least
``PARITY_MIN`` (0.9999) for both towers. An export that fails the check is recorded as
failed (so it is not retried on every run) and torch serves, after one warning line.

The image tower is ``model.encode_image``; the text tower is the plain CLIP tower of
search/cold/texttower.py where the model has one (its token axis is dynamic, so a query
runs only its own tokens), else ``model.encode_text`` over the whole context. Both have a
dynamic batch axis. The exporter is torch's TorchScript one with the multi-head attention
fast path off (as rclip's own conversion script), opset 18.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .models import checkpoint_files, file_fingerprint, model_config, spec_identity
from .onnxrt import (
    EXPORT_FORMAT,
    MANIFEST,
    PARITY_MIN,
    TEXTUAL,
    VISUAL,
    VOCAB,
    OnnxTowers,
    export_root,
    load_towers,
    read_manifest,
    warn_once,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .encoder import Encoder
    from .types import EncoderSpec

OPSET = 18
# captions for the text tower's parity check: short and long, punctuation, unicode, and one
# longer than any context (truncated)
PARITY_CAPTIONS = (
    "a dog",
    "a photo of a cat sleeping on a red sofa",
    "Two children playing football on a beach at sunset.",
    "a man in a blue jacket riding a bicycle down a busy city street in the rain",
    "snow",
    "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, 3 spoons & a candle",
    "an aerial view of a small village surrounded by green fields and a winding river, "
    "with mountains in the distance and clouds",
    " ".join(["a very long caption"] * 30),
)


def weights_key(spec: EncoderSpec, cfg: dict | None) -> str:
    """The export's cache key: what makes its numbers (weights, architecture, versions)."""
    from importlib.metadata import version

    h = hashlib.blake2b(digest_size=12)
    weights = None
    try:
        found = checkpoint_files(spec)
        weights = found[1] if found else None
    except Exception:  # noqa: BLE001 - no file: the spec (a tag or seeded random weights)
        weights = None
    what = (
        f"file:{file_fingerprint(weights)}"
        if weights
        else f"{spec_identity(spec)}:torch{version('torch')}"  # seeded random weights
    )
    versions = (version("open_clip_torch"), EXPORT_FORMAT)
    for part in (what, json.dumps(cfg, sort_keys=True), *versions):
        h.update(str(part).encode())
    return h.hexdigest()


def export_dir(spec: EncoderSpec, cfg: dict | None = None) -> Path:
    """Where the towers of ``spec`` (open_clip config ``cfg``) are exported."""
    return export_root() / weights_key(spec, cfg if cfg is not None else model_config(spec))


def _export(module, args: tuple, path: Path, names: list[str], dynamic: dict) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["features"],
            dynamic_axes={**dynamic, "features": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _wrap(fn, owner=None):
    """A module running ``fn``; ``owner`` (the model whose method ``fn`` is) is registered
    so that its weights export as weights rather than as constants."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = owner

        def forward(self, x):
            return fn(x)

    return Tower().eval()


def export_towers(encoder: Encoder, directory: Path) -> dict:
    """Write visual.onnx and textual.onnx of ``encoder`` into ``directory``; returns the
    text tower's description for the manifest."""
    import torch

    model, size = encoder.model, encoder.image_size
    tower = encoder.text_tower()
    ctx = int((encoder.model_cfg or {}).get("text_cfg", {}).get("context_length", 77))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # traceable attention
    try:
        with torch.no_grad():
            _export(
                _wrap(model.encode_image, model),
                (torch.zeros(2, 3, size, size),),
                directory / VISUAL,
                ["pixels"],
                {"pixels": {0: "batch"}},
            )
            tokens = torch.from_numpy(encoder_tokens(encoder, ["a photo", "two dogs"], ctx))
            if tower is not None:
                text, kind = _wrap(tower.forward_tokens), "plain"
                tokens = tokens[:, : int(tokens.argmax(-1).max()) + 2]
                dynamic = {"tokens": {0: "batch", 1: "length"}}
            else:
                text, kind = _wrap(model.encode_text, model), "full"
                dynamic = {"tokens": {0: "batch"}}
            _export(text, (tokens,), directory / TEXTUAL, ["tokens"], dynamic)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return {"kind": kind, "context_length": ctx}


def folder_meta(encoder: Encoder, directory: Path) -> dict:
    """What runs the towers without torch or open_clip (search/onnxmodel.py): the model's
    preprocessing, and the tokenizer's vocabulary copied into ``directory``."""
    from open_clip.model import get_model_preprocess_cfg

    from .preprocess import ImagePreprocess
    from .tokenizer import vocab_path

    shutil.copyfile(vocab_path(), directory / VOCAB)
    cfg = get_model_preprocess_cfg(encoder.model)
    return {"preprocess": ImagePreprocess.from_config(cfg).to_config(), "tokenizer": VOCAB}


def encoder_tokens(encoder: Encoder, texts, ctx: int) -> np.ndarray:
    """The model's own tokenizer's ids as int64 numpy."""
    tokens = encoder.tokenizer(list(texts))
    return np.asarray(tokens.numpy() if hasattr(tokens, "numpy") else tokens, np.int64)[:, :ctx]


def parity(encoder: Encoder, towers: OnnxTowers, sample: torch.Tensor) -> dict[str, float]:
    """The least cosine between torch's and ONNX Runtime's vectors, per tower: real photos
    (``sample``, preprocessed) and captions of many lengths."""
    import torch

    with torch.inference_mode():
        ref_img = encoder.torch_encode_image(sample)
    ref_txt = encoder.torch_encode_texts(list(PARITY_CAPTIONS))
    img = towers.image.encode(np.asarray(sample, np.float32))
    txt = towers.text.encode_texts(list(PARITY_CAPTIONS))
    return {
        "image": float(np.min(np.sum(img * ref_img, axis=1))),
        "text": float(np.min(np.sum(txt * ref_txt, axis=1))),
    }


def prepare(encoder: Encoder, sample: torch.Tensor | None) -> OnnxTowers | None:
    """The ONNX towers of a loaded CPU model: loaded from the cache, else exported (when a
    ``sample`` of real photos is given to check them with). None: torch serves."""
    directory = export_dir(encoder.spec, encoder.model_cfg)
    meta = read_manifest(directory)
    if meta is not None:
        if not meta.get("passed"):
            warn_once(
                f"the ONNX export of {encoder.spec.label} failed its parity check "
                f"({_figures(meta)}); using torch"
            )
            return None
        if "preprocess" not in meta:  # an export from before model folders: made one now, so
            _upgrade(encoder, directory)  # the next indexing run needs no torch model
        return load_towers(directory)
    if sample is None or len(sample) == 0:
        return None
    return _export_checked(encoder, directory, sample[:8])


def _upgrade(encoder: Encoder, directory: Path) -> None:
    """Add the preprocessing and the vocabulary to an export that lacks them (best effort: a
    read-only cache keeps building the torch model)."""
    from .onnxrt import update_manifest

    with contextlib.suppress(OSError):
        update_manifest(directory, folder_meta(encoder, directory))


def _figures(meta: dict) -> str:
    worst = meta.get("parity") or {}
    if "error" in meta:
        return str(meta["error"])[:200]
    return ", ".join(f"{k} cosine {v:.6f}" for k, v in worst.items()) + f" < {PARITY_MIN}"


def _export_checked(encoder: Encoder, directory: Path, sample) -> OnnxTowers | None:
    warn_once(
        f"exporting {encoder.spec.label} to ONNX Runtime into {directory.parent} "
        "(once per model; checked against torch)"
    )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    meta = {
        "format": EXPORT_FORMAT,
        "key": directory.name,
        "model": encoder.spec.label,
        "identity": spec_identity(encoder.spec),
        "dim": encoder.dim,
        "image_size": encoder.image_size,
    }
    towers = None
    try:
        meta.update(folder_meta(encoder, tmp))
        meta["text"] = export_towers(encoder, tmp)
        (tmp / MANIFEST).write_text(json.dumps({**meta, "passed": True}))
        towers = load_towers(tmp)
        meta["parity"] = parity(encoder, towers, sample)
        meta["passed"] = min(meta["parity"].values()) >= PARITY_MIN
    except Exception as exc:  # noqa: BLE001 - an architecture the exporter can't trace
        first = (str(exc).strip().splitlines() or [""])[0]
        meta.update(passed=False, error=f"{type(exc).__name__}: {first}"[:300])
    for name in (VISUAL, TEXTUAL):
        if not meta["passed"]:
            (tmp / name).unlink(missing_ok=True)  # keep only the record of the failure
    (tmp / MANIFEST).write_text(json.dumps(meta, indent=2))
    try:
        os.rename(tmp, directory)
    except OSError:  # another process exported it first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return prepare(encoder, None)
