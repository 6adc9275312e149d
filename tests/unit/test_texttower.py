"""The one text tower (search/cold/texttower.py): the same numbers as open_clip's encode_text,
whether it reads a weights file (cold and warm text queries) or runs a loaded model's own
tensors (the full encoder), and open_clip's tokens without importing open_clip."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.cold.texttower import (
    PlainTextTower,
    make_recipe,
    plain_text_cfg,
    read_text_state,
    standalone_tokenizer_module,
)
from pixfind.search.encoder import (
    Encoder,
    TextEncoder,
    _load_text_cached,
    load_text_encoder,
    save_model_dir,
    text_recipe,
)
from pixfind.search.models import get_open_clip
from pixfind.search.types import EncoderSpec

TEXTS = [
    "a dog",
    "Two BLUE squares on a white background, seen from far above!",
    "x",
    "",
    "caf\u00e9 &amp; cr\u00e8me br\u00fbl\u00e9e \U0001f600",
    " ".join(["very long query"] * 40),  # longer than the context: truncated, ends in EOT
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, its config, a model dir holding it): pixfind-tiny, weights perturbed so that
    nothing equals a fresh initialisation."""
    import torch

    open_clip = get_open_clip()
    cfg = open_clip.get_model_config("pixfind-tiny")
    torch.manual_seed(1)
    model = open_clip.create_model("pixfind-tiny", pretrained=None)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.eval()
    return model, cfg, save_model_dir(model, tmp_path_factory.mktemp("tower") / "tiny", cfg)


def _reference(model, texts):
    import torch

    tokens = get_open_clip().get_tokenizer("pixfind-tiny")(texts)
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()


def test_tower_from_weights_file_equals_open_clip(tiny):
    model, cfg, directory = tiny
    recipe = make_recipe(cfg, directory / "open_clip_model.safetensors", "test")
    tower = PlainTextTower.load(recipe)
    assert tower is not None and tower.dim == cfg["embed_dim"]
    ref = _reference(model, TEXTS)
    np.testing.assert_allclose(tower.encode_texts(TEXTS), ref, atol=2e-5)
    np.testing.assert_allclose(tower.encode_texts(TEXTS, batch_size=2), ref, atol=2e-5)
    for i, text in enumerate(TEXTS):  # one query at a time, as searches encode them
        np.testing.assert_allclose(tower.encode_texts([text])[0], ref[i], atol=2e-5)
    assert tower.encode_texts([]).shape == (0, cfg["embed_dim"])


def test_tower_from_a_loaded_models_tensors_equals_open_clip(tiny):
    model, cfg, _ = tiny
    tower = PlainTextTower.from_state(plain_text_cfg(cfg), model.state_dict())
    assert tower is not None
    np.testing.assert_allclose(tower.encode_texts(TEXTS), _reference(model, TEXTS), atol=2e-5)
    # missing, extra or misshapen tensors: no tower
    state = dict(model.state_dict())
    assert PlainTextTower.from_state(None, state) is None
    assert (
        PlainTextTower.from_state(plain_text_cfg(cfg), {**state, "extra": state["ln_final.bias"]})
        is None
    )
    state.pop("text_projection")
    assert PlainTextTower.from_state(plain_text_cfg(cfg), state) is None
    bigger = {**cfg, "text_cfg": {**cfg["text_cfg"], "width": cfg["text_cfg"]["width"] * 2}}
    assert PlainTextTower.from_state(plain_text_cfg(bigger), model.state_dict()) is None


def test_text_encoder_and_full_encoder_run_the_same_tower(tiny):
    model, _, directory = tiny
    spec = EncoderSpec(str(directory), None)
    _load_text_cached.cache_clear()
    text = load_text_encoder(spec, "cpu")
    assert isinstance(text, TextEncoder) and isinstance(text.tower, PlainTextTower)
    state = read_text_state(directory / "open_clip_model.safetensors")
    assert set(text.tower.state) == set(state)  # the text tensors only
    full = Encoder(spec, model, None, get_open_clip().get_tokenizer("pixfind-tiny"), "cpu")
    assert isinstance(full.text_tower(), PlainTextTower)
    ref = _reference(model, TEXTS)
    np.testing.assert_allclose(text.encode_texts(TEXTS), ref, atol=2e-5)
    np.testing.assert_allclose(full.encode_texts(TEXTS), ref, atol=2e-5)
    assert text.dim == full.dim == ref.shape[1]
    assert text_recipe(spec)["arch"] == text.tower.arch
    _load_text_cached.cache_clear()


def test_standalone_tokenizer_equals_open_clip():
    module = standalone_tokenizer_module()
    assert module.__name__ != "open_clip.tokenizer"  # really loaded on its own
    for context in (77, 32):
        ours = module.SimpleTokenizer(context_length=context)(TEXTS)
        ref = get_open_clip().get_tokenizer("pixfind-tiny", context_length=context)(TEXTS)
        assert ours.shape == (len(TEXTS), context)
        assert ours.equal(ref)
