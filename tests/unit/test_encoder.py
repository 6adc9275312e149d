"""Encoder: real open_clip (small architecture, seeded random weights), no network."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pixfind.search.encoder import _load_cached, load_encoder, save_model_dir
from pixfind.search.models import get_open_clip
from pixfind.search.types import EncoderSpec

from ..conftest import make_picture

TINY = EncoderSpec("pixfind-tiny", None)
TEXTS = ["a red circle", "two blue squares on a white background", "a dog on the beach"]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(TINY, "cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc")
    return [Image.open(make_picture(folder / f"{i}.png", seed=i)).convert("RGB") for i in range(5)]


def test_shapes_and_unit_norm(encoder, images):
    txt = encoder.encode_texts(TEXTS)
    img = encoder.encode_images(images, batch_size=2)  # several batches
    assert txt.shape == (3, 128) and img.shape == (5, 128)
    assert txt.dtype == np.float32 and img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_texts([]).shape == (0, 128)


def test_deterministic_across_loads(encoder, images):
    first = encoder.encode_images(images), encoder.encode_texts(TEXTS)
    _load_cached.cache_clear()
    again = load_encoder(TINY, "cpu")
    assert again is not encoder
    np.testing.assert_array_equal(first[0], again.encode_images(images))
    np.testing.assert_array_equal(first[1], again.encode_texts(TEXTS))


def test_batching_does_not_change_embeddings(encoder, images):
    whole = encoder.encode_images(images, batch_size=8)
    split = encoder.encode_images(images, batch_size=1)
    np.testing.assert_allclose(whole, split, atol=1e-5)


def test_checkpoint_file_and_directory_load_back_identically(encoder, images, tmp_path):
    import torch

    # a different model than the seeded one: perturb weights so "loaded" can't mean "re-seeded"
    with torch.no_grad():
        for p in encoder.model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    expected_img = encoder.encode_images(images)
    expected_txt = encoder.encode_texts(TEXTS)
    ckpt = tmp_path / "tiny.pt"
    torch.save(encoder.model.state_dict(), ckpt)
    from_file = load_encoder(EncoderSpec("pixfind-tiny", str(ckpt)), "cpu")
    np.testing.assert_allclose(from_file.encode_images(images), expected_img, atol=1e-6)
    np.testing.assert_allclose(from_file.encode_texts(TEXTS), expected_txt, atol=1e-6)

    cfg = get_open_clip().get_model_config("pixfind-tiny")
    model_dir = save_model_dir(encoder.model, tmp_path / "tiny-model", cfg)
    from_dir = load_encoder(EncoderSpec(str(model_dir), None), "cpu")
    np.testing.assert_allclose(from_dir.encode_images(images), expected_img, atol=1e-6)
    np.testing.assert_allclose(from_dir.encode_texts(TEXTS), expected_txt, atol=1e-6)
    assert from_dir.info.dim == 128 and from_dir.info.image_size == 64
    _load_cached.cache_clear()  # the module-scoped encoder was modified in place
