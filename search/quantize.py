"""The int8 image tower: ONNX Runtime's dynamic int8 quantization of an export's visual.onnx.

On a CPU with VNNI, MatMuls with int8 weights run several times faster than float32 ones
(bench/runtime.py), and a ViT spends most of its time in them. The quantized tower is made
once per export, beside its float32 tower (``visual.int8.onnx``), by the first indexing run
that may use it. It changes the numbers a little, so it is checked then, on that run's first
photos: every image's vector must keep a cosine of at least ``INT8_MIN`` with the float32
tower's, else indexing runs in float32 after one warning line. The check's outcome is recorded
in the export's manifest (``int8``), as the export's own parity check is. Only images are
quantized: queries keep the float32 text tower (int8 image vectors against float32 query
vectors, README "ONNX Runtime on the CPU"). Imports neither torch nor open_clip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import UnknownModel
from .onnxrt import (
    VISUAL,
    OnnxImageTower,
    OnnxTowers,
    read_manifest,
    update_manifest,
    warn_once,
)
from .settings import get_settings

PRECISIONS = ("auto", "fp32", "int8")
INT8 = "visual.int8.onnx"
INT8_MIN = 0.99  # least cosine between an int8 and a float32 image vector a run accepts
CHECK_IMAGES = 32  # photos of the first batch the check encodes twice (once per export)


def choose_precision(precision: str | None, runtime: str) -> str:
    """The image tower's precision asked for (None: PIXFIND_PRECISION) under ``runtime``:
    "auto" (int8 where the check passes) or "int8" on ONNX Runtime; "fp32" on torch, which
    refuses "int8" with a clear message."""
    precision = (precision or get_settings().precision).lower()
    if precision not in PRECISIONS:
        raise UnknownModel(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if runtime == "onnx":
        return precision
    if precision == "int8":
        raise UnknownModel(
            "--precision int8 needs the ONNX runtime on the CPU (this run uses torch); "
            "use --runtime onnx on a CPU, or --precision auto"
        )
    return "fp32"


def quantize(visual: Path, out: Path) -> None:
    """Write ``out``: ``visual`` with int8 weights (per output channel) in its MatMuls and
    activations quantized at run time. Atomic: a concurrent run sees all of it or none."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    quiet = logging.getLogger()  # quantize_dynamic logs an advice on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            visual,
            tmp,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
        os.replace(tmp, out)
    finally:
        quiet.setLevel(level)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def int8_path(
    towers: OnnxTowers, pixels: np.ndarray | None, precision: str, least: float | None = None
) -> Path | None:
    """The export's int8 image tower where ``precision`` (choose_precision's) allows it, else
    None (float32 serves). Made and checked once per export, on ``pixels`` (a run's first
    photos; None: not made now); "auto" uses it where every checked image kept a cosine of at
    least ``least`` (None: INT8_MIN), "int8" even where not (after a warning line)."""
    if precision == "fp32":
        return None
    least = INT8_MIN if least is None else least
    record = (read_manifest(towers.directory) or {}).get("int8")
    path = towers.directory / INT8
    if record is None or (record.get("least_cosine") is not None and not path.is_file()):
        if pixels is None or len(pixels) == 0:  # not made yet, or deleted since
            return None
        record = _make_checked(towers, np.ascontiguousarray(pixels[:CHECK_IMAGES], np.float32))
    worst = record.get("least_cosine")
    if worst is None or not path.is_file():
        warn_once(f"no int8 image tower ({record.get('error')}); indexing in float32")
        return None
    if worst >= least or precision == "int8":
        if worst < least:
            warn_once(f"--precision int8: its check found a least cosine of {worst:.4f} < {least}")
        return path
    warn_once(
        f"the int8 image tower failed its check (least cosine {worst:.4f} < {least} vs float32 "
        f"on {record.get('images')} photos); indexing in float32"
    )
    return None


def _make_checked(towers: OnnxTowers, pixels: np.ndarray) -> dict:
    """Quantize the export's image tower and check it on ``pixels`` against the float32
    tower; the outcome is recorded in the export's manifest."""
    path = towers.directory / INT8
    warn_once(f"making the int8 image tower of {towers.manifest.get('model', 'the model')}")
    record: dict = {"path": INT8, "images": len(pixels), "least_cosine": None}
    try:
        quantize(towers.directory / VISUAL, path)
        int8 = OnnxImageTower(path, towers.manifest["dim"])
        cosines = np.sum(int8.encode(pixels) * towers.image.encode(pixels), axis=1)
        record.update(least_cosine=float(cosines.min()), bytes=path.stat().st_size)
    except Exception as exc:  # noqa: BLE001 - a graph the quantizer can't handle: float32
        first = (str(exc).strip().splitlines() or [""])[0]
        record["error"] = f"{type(exc).__name__}: {first}"[:300]
        with contextlib.suppress(OSError):
            path.unlink()
    with contextlib.suppress(OSError):  # a read-only cache: checked again next run
        update_manifest(towers.directory, {"int8": record})
    return record
