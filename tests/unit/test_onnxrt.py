"""Choosing the runtime (search/onnxrt.py): ONNX on the CPU where installed, torch on GPUs
and wherever it is asked for; PIXFIND_RUNTIME sets the default."""

from __future__ import annotations

import pytest
from pixfind.search import onnxrt
from pixfind.search.errors import UnknownModel
from pixfind.search.onnxrt import choose_runtime, load_towers, read_manifest


def test_auto_is_onnx_on_cpu_and_torch_on_gpus(monkeypatch):
    monkeypatch.setenv("PIXFIND_RUNTIME", "auto")
    assert choose_runtime(None, "cpu") == "onnx"
    assert choose_runtime("auto", "cuda") == "torch"
    assert choose_runtime("onnx", "mps") == "torch"  # ONNX Runtime here is the CPU provider
    assert choose_runtime("torch", "cpu") == "torch"
    monkeypatch.setenv("PIXFIND_RUNTIME", "torch")
    assert choose_runtime(None, "cpu") == "torch"
    assert choose_runtime("ONNX", "cpu") == "onnx"  # the flag beats the environment


def test_without_onnxruntime_torch_serves(monkeypatch):
    monkeypatch.setattr(onnxrt, "onnx_installed", lambda: False)
    assert choose_runtime("auto", "cpu") == "torch"


def test_unknown_runtime_is_refused_with_the_choices():
    with pytest.raises(UnknownModel, match="auto, torch, onnx"):
        choose_runtime("tensorrt", "cpu")


def test_failed_or_damaged_exports_are_not_loaded(tmp_path):
    (tmp_path / onnxrt.MANIFEST).write_text('{"format": 1, "passed": false}')
    assert read_manifest(tmp_path) is not None and load_towers(tmp_path) is None
    (tmp_path / onnxrt.MANIFEST).write_text('{"format": 1, "passed": true, "dim": 8}')
    assert load_towers(tmp_path) is None  # passed, but its files are gone
    (tmp_path / onnxrt.MANIFEST).write_text("{not json")
    assert read_manifest(tmp_path) is None
    assert onnxrt.OnnxTextTower.load({"format": 1, "kind": "plain", "path": "/nope"}) is None
