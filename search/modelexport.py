"""`pixfind models export MODEL --out DIR`: a self-contained ONNX model folder (needs torch).

The folder holds what search/onnxmodel.py runs without torch, torchvision or open_clip:
``visual.onnx`` and ``textual.onnx`` (checked against torch: cosine >= 0.9999 on the photos
given, else on generated pictures, and on captions), ``visual.int8.onnx`` where the int8
image tower passed its check (search/quantize.py), the tokenizer's vocabulary and
``export.json`` (identity, vector size, text tower, preprocessing, the checks' figures). The
towers are the model cache's own export (search/onnxexport.py), made there first when
missing, then copied.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PixfindError, UnknownModel
from .onnxrt import MANIFEST, TEXTUAL, VISUAL, VOCAB, model_folder, read_manifest, update_manifest
from .quantize import INT8
from .types import EncoderSpec

SAMPLE = 16  # photos (or generated pictures) the export's checks encode


@dataclass(frozen=True)
class ExportedFolder:
    path: Path
    label: str
    identity: str
    dim: int
    parity: dict  # least cosine against torch, per tower
    int8: float | None  # the int8 image tower's least cosine (None: none in the folder)
    bytes: int


def export_model_folder(
    spec: EncoderSpec,
    out: str | os.PathLike,
    photos: Sequence[str | os.PathLike] = (),
    precision: str = "auto",
) -> ExportedFolder:
    """Write the ONNX model folder of ``spec`` into ``out`` (absent or empty)."""
    from .encoder import load_encoder
    from .onnxexport import folder_meta

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PixfindError(f"{out} already exists and is not an empty folder; choose another")
    encoder = load_encoder(spec, "cpu", "onnx")
    if encoder.runtime != "onnx":
        raise PixfindError("exporting needs onnxruntime: pip install onnxruntime")
    sample = np.stack([encoder.preprocess(im) for im in sample_images(photos, SAMPLE)])
    encoder.start_run(precision)
    towers = encoder.onnx_towers(sample)
    if towers is None:
        meta = read_manifest(_cache_dir(encoder)) or {}
        raise UnknownModel(
            f"{spec.label} does not export to ONNX Runtime: its export failed the parity check "
            f"({meta.get('error') or meta.get('parity')}); it runs with torch only"
        )
    source = towers.directory
    if model_folder(source) is None:  # an export made before model folders existed
        update_manifest(source, folder_meta(encoder, source))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name in (VISUAL, TEXTUAL, VOCAB, INT8, MANIFEST):
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        _text_weights(encoder, tmp)
        mask = os.umask(0)
        os.umask(mask)  # a folder to copy and share: readable as the umask allows
        for path in (*tmp.iterdir(), tmp):
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta = read_manifest(out) or {}
    int8 = (meta.get("int8") or {}).get("least_cosine") if (out / INT8).is_file() else None
    return ExportedFolder(
        out.resolve(),
        spec.label,
        str(meta.get("identity")),
        int(meta.get("dim", 0)),
        dict(meta.get("parity") or {}),
        int8,
        sum(p.stat().st_size for p in out.iterdir()),
    )


def _text_weights(encoder, directory: Path) -> None:
    """The plain text tower's tensors (float32 safetensors) and architecture, where the model
    has one: a cold query then runs the numpy tower (search/cold/nptower.py) over them."""
    from safetensors.torch import save_file

    from .onnxmodel import TEXT_WEIGHTS

    tower = encoder.text_tower()
    if tower is None:
        return
    save_file({k: v.contiguous() for k, v in tower.state.items()}, str(directory / TEXT_WEIGHTS))
    text = json.loads((directory / MANIFEST).read_text())["text"]
    update_manifest(directory, {"text": {**text, "arch": tower.arch}})


def _cache_dir(encoder) -> Path:
    from .onnxexport import export_dir

    return export_dir(encoder.spec, encoder.model_cfg)


def sample_images(photos: Sequence[str | os.PathLike], n: int) -> list:
    """Up to ``n`` decoded photos (files, or folders searched for images), else generated
    pictures (gradients, shapes and noise) where none is given."""
    from .images import DecodeError, decode_file, supported_extensions

    files: list[Path] = []
    for item in photos:
        path = Path(item).expanduser()
        if path.is_dir():
            exts = supported_extensions()
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in exts)
        else:
            files.append(path)
    images = []
    for path in files:
        if len(images) == n:
            break
        try:
            images.append(decode_file(path).image)
        except DecodeError as exc:
            raise PixfindError(f"can't use {path} to check the export: {exc}") from exc
    if photos and not images:
        raise PixfindError(f"no photos found in {', '.join(map(str, photos))}")
    return images or generated_pictures(n)


def generated_pictures(n: int) -> list:
    """``n`` distinct pictures: a colour gradient, a few shapes and some noise each."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    pictures = []
    for i in range(n):
        w, h = int(rng.integers(200, 480)), int(rng.integers(200, 480))
        base = np.linspace(rng.uniform(0, 255, 3), rng.uniform(0, 255, 3), w)[None]
        base = base + rng.normal(0, 12, (h, w, 3))
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(3 + i % 4):
            x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            box = (x, y, x + int(rng.integers(20, 160)), y + int(rng.integers(20, 160)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        pictures.append(img)
    return pictures
