"""The model registry (search/models.py): what --model/--pretrained and model= mean, for every
caller alike. open_clip's registry only, no weights loaded, no network."""

from __future__ import annotations

import json

import pytest
from pixfind.search.errors import UnknownModel
from pixfind.search.models import (
    CONFIG_NAME,
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DEFAULT_SPEC,
    get_open_clip,
    is_model_dir,
    register_config,
    requested_spec,
    resolve_spec,
    spec_identity,
)
from pixfind.search.types import EncoderSpec


def _model_dir(path):
    path.mkdir()
    cfg = get_open_clip().get_model_config("pixfind-tiny")
    (path / CONFIG_NAME).write_text(json.dumps({"model_cfg": cfg}))
    (path / "open_clip_model.safetensors").write_bytes(b"not really weights")
    return path


def test_nothing_asked_means_the_index_model():
    assert requested_spec(None, None) is None


def test_architecture_without_tag_gets_its_first_published_tag():
    first = get_open_clip().list_pretrained_tags_by_model("RN50")[0]
    assert requested_spec("RN50", None) == EncoderSpec("RN50", first)
    assert requested_spec(DEFAULT_MODEL, None) == DEFAULT_SPEC
    assert EncoderSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED) == DEFAULT_SPEC
    # an architecture without published weights: random ones
    assert requested_spec("pixfind-tiny", None) == EncoderSpec("pixfind-tiny", None)


def test_tag_alone_applies_to_the_default_model():
    assert requested_spec(None, "openai") == EncoderSpec(DEFAULT_MODEL, "openai")


@pytest.mark.parametrize("word", ["none", "None", "random"])
def test_pretrained_none_means_random_weights(word):
    assert requested_spec("RN50", word) == EncoderSpec("RN50", None)
    assert resolve_spec("RN50", word) == EncoderSpec("RN50", None)


def test_explicit_tag_passes_through():
    assert requested_spec("RN50", "openai") == EncoderSpec("RN50", "openai")


def test_model_directory_resolves_to_its_absolute_path(tmp_path, monkeypatch):
    directory = _model_dir(tmp_path / "trained")
    assert is_model_dir(directory) and not is_model_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    expected = EncoderSpec(str(directory.resolve()), None)
    assert requested_spec("trained", None) == expected  # relative, no tag filled in
    assert requested_spec(str(directory), None) == expected
    assert requested_spec(None, str(directory)) == expected  # --pretrained DIR
    assert resolve_spec("ViT-B-32", "trained") == expected
    assert spec_identity(expected).startswith("dir:")


def test_checkpoint_file_resolves_to_its_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "ckpt.pt").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    spec = requested_spec("RN50", "ckpt.pt")
    assert spec == EncoderSpec("RN50", str((tmp_path / "ckpt.pt").resolve()))
    before = spec_identity(spec)
    assert before.startswith("RN50:file:")
    (tmp_path / "ckpt.pt").write_bytes(b"other weights")  # same path, other weights
    assert spec_identity(spec) != before


def test_identity_tells_weights_apart(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"a" * 100)
    (tmp_path / "b.pt").write_bytes(b"b" * 100)
    a, b = (resolve_spec("RN50", str(tmp_path / n)) for n in ("a.pt", "b.pt"))
    assert spec_identity(a) != spec_identity(b)
    assert spec_identity(EncoderSpec("RN50", None)) == "RN50:random"
    assert spec_identity(EncoderSpec("RN50", "openai")) == "RN50:openai"


def test_unknown_model_lists_valid_names():
    for ask in (lambda: requested_spec("ViT-B-33", None), lambda: resolve_spec("ViT-B-33")):
        with pytest.raises(UnknownModel, match="unknown model 'ViT-B-33'") as caught:
            ask()
        assert "ViT-B-32" in str(caught.value) and "pixfind models" in str(caught.value)


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(UnknownModel, match="unknown pretrained tag") as caught:
        requested_spec("ViT-B-32", "no-such-tag")
    assert "laion2b_s34b_b79k" in str(caught.value) and "openai" in str(caught.value)
    with pytest.raises(UnknownModel, match="architecture only"):
        requested_spec("pixfind-tiny", "no-such-tag")


def test_missing_checkpoint_and_model_dir_are_clear(tmp_path):
    with pytest.raises(UnknownModel, match="not found"):
        requested_spec("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(UnknownModel, match=CONFIG_NAME):
        requested_spec(str(tmp_path / "no-model-here"), None)


def test_register_config_uses_the_public_registry():
    open_clip = get_open_clip()
    cfg = dict(open_clip.get_model_config("pixfind-tiny"), embed_dim=96)
    register_config("pixfind-test-registered", cfg)
    assert "pixfind-test-registered" in open_clip.list_models()
    assert open_clip.get_model_config("pixfind-test-registered")["embed_dim"] == 96
    register_config("pixfind-test-registered", {**cfg, "embed_dim": 1})  # taken: kept as is
    assert open_clip.get_model_config("pixfind-test-registered")["embed_dim"] == 96
    assert resolve_spec("pixfind-test-registered") == EncoderSpec("pixfind-test-registered", None)
    with pytest.raises(UnknownModel, match="not an open_clip config"):
        register_config("pixfind-test-broken", {"text_cfg": {}})
