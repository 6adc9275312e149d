"""The image tower's precision (search/quantize.py): auto, fp32 or int8 on ONNX Runtime,
always fp32 on torch (which refuses int8), and float32 after one warning line where the int8
tower fails its check against float32."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search import onnxrt, quantize
from pixfind.search.encoder import _load_cached, load_encoder
from pixfind.search.errors import UnknownModel
from pixfind.search.quantize import choose_precision, int8_path
from pixfind.search.types import EncoderSpec

from ..conftest import TINY, make_picture


def test_choices_and_their_default(monkeypatch):
    monkeypatch.delenv("PIXFIND_PRECISION", raising=False)
    assert choose_precision(None, "onnx") == "auto"
    assert choose_precision("INT8", "onnx") == "int8"
    assert choose_precision("fp32", "onnx") == "fp32"
    assert choose_precision("auto", "torch") == "fp32"  # torch: the float32 tower it has
    monkeypatch.setenv("PIXFIND_PRECISION", "fp32")
    assert choose_precision(None, "onnx") == "fp32"
    assert choose_precision("int8", "onnx") == "int8"  # the flag beats the environment


def test_int8_on_torch_and_unknown_values_are_refused():
    with pytest.raises(UnknownModel, match="needs the ONNX runtime"):
        choose_precision("int8", "torch")
    with pytest.raises(UnknownModel, match="auto, fp32, int8"):
        choose_precision("int4", "onnx")


def test_cli_refuses_unknown_or_impossible_precisions_in_one_line(cli, picture_dir):
    result = cli("index", picture_dir, "--precision", "int4", ok=False)
    assert result.exit_code == 1 and "unknown precision 'int4'" in result.output
    tiny = ("--model", *TINY[:1], "--pretrained", TINY[1])
    result = cli("index", picture_dir, *tiny, "--runtime", "torch", "--precision", "int8", ok=False)
    assert result.exit_code == 1 and "needs the ONNX runtime" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """pixfind-tiny on ONNX Runtime, exported into a cache of this module, with 12 photos."""
    import torch
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        _load_cached.cache_clear()
        encoder = load_encoder(EncoderSpec("pixfind-tiny", None), "cpu", "onnx")
        pictures = [make_picture(folder / f"p{i}.jpg", seed=i) for i in range(12)]
        pixels = torch.stack([encoder.preprocess(Image.open(p)) for p in pictures])
        towers = encoder.onnx_towers(pixels)
        assert towers is not None
        assert int8_path(towers, pixels.numpy(), "auto") is not None  # made and checked once
        yield encoder, towers, pixels
        _load_cached.cache_clear()
        onnxrt.loaded.clear()


def test_auto_uses_int8_where_its_check_passes(tiny):
    encoder, towers, pixels = tiny
    encoder.start_run("auto")
    encoder.onnx_towers(pixels)  # a run's first batch decides
    assert encoder.precision == "int8"
    record = onnxrt.read_manifest(towers.directory)["int8"]
    assert record["least_cosine"] >= quantize.INT8_MIN and record["images"] == 12
    int8 = encoder.encode_image_tensors(pixels)
    fp32 = towers.image.encode(pixels.numpy())
    assert np.sum(int8 * fp32, axis=1).min() >= quantize.INT8_MIN
    encoder.start_run("fp32")
    encoder.onnx_towers(pixels)
    assert encoder.precision == "fp32"
    np.testing.assert_allclose(encoder.encode_image_tensors(pixels), fp32, atol=1e-6)


def test_a_failed_check_falls_back_to_fp32_with_one_warning(tiny, monkeypatch, capsys):
    encoder, towers, pixels = tiny
    onnxrt.warn_once.cache_clear()
    monkeypatch.setattr(quantize, "INT8_MIN", 1.01)  # no int8 vector is that close
    encoder.start_run("auto")
    encoder.onnx_towers(pixels)
    assert encoder.precision == "fp32"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "failed its check" in lines[0] and "float32" in lines[0]
    np.testing.assert_allclose(
        encoder.encode_image_tensors(pixels), towers.image.encode(pixels.numpy()), atol=1e-6
    )
    # asked for int8 outright, it serves (its shortfall said once)
    assert int8_path(towers, None, "int8") == towers.directory / quantize.INT8
    assert "--precision int8" in capsys.readouterr().err
