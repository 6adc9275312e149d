"""Issue 14 on a trained model: the vectors pixfind computes for photos are the ones open_clip's
reference preprocessing gives (parity cosine), and so is text->image recall on the held-out
demo photos. The reference decode is test_preprocess_parity's (Pillow only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pixfind.search.captions import read_collection
from pixfind.search.encoder import load_encoder
from pixfind.search.images import decode_file
from pixfind.search.types import EncoderSpec
from pixfind.train.evaluate import KS, retrieval_recall

from tests.conftest import SHARED_PHOTOS
from tests.unit.test_preprocess_parity import reference_rgb

REAL_PHOTOS = 120


def embed_both(encoder, paths) -> tuple[np.ndarray, np.ndarray]:
    """(pixfind's vectors, the reference path's vectors) of the same photos."""
    ours = [decode_file(p, draft_size=encoder.image_size).image for p in paths]
    ref = [reference_rgb(Path(p).read_bytes()) for p in paths]
    return encoder.encode_images(ours), encoder.encode_images(ref)


def parity_cosines(encoder, paths) -> np.ndarray:
    ours, ref = embed_both(encoder, paths)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    return (ours * ref).sum(axis=1)


def real_photo_paths(n: int = REAL_PHOTOS):
    """The largest photos (by file size) among the first 300 of each dataset: the ones a
    reduced decode would touch come first."""
    root = SHARED_PHOTOS / "images"
    if not root.is_dir():
        pytest.skip(f"../shared/photos not present ({root}); real-photo parity skipped")
    paths = []
    for dataset in ("flickr8k", "coco", "imagenet"):
        files = sorted((root / dataset).glob("*.jpg"))[:300]
        paths += sorted(files, key=lambda p: -p.stat().st_size)[: n // 3]
    return paths


def recall_both(encoder, folder) -> tuple[dict, dict]:
    """Text->image recall at 1/5/10 through pixfind's decode and through the reference."""
    coll = read_collection(folder)
    ours, ref = embed_both(encoder, coll.images)
    texts, owner = [], []
    for row, path in enumerate(coll.images):
        texts += coll.captions[path]
        owner += [row] * len(coll.captions[path])
    text_vecs = encoder.encode_texts(texts)
    return (
        retrieval_recall(ours, text_vecs, np.asarray(owner), KS)[0],
        retrieval_recall(ref, text_vecs, np.asarray(owner), KS)[0],
    )


@pytest.fixture(scope="module")
def demo_encoder(demo_model):
    return load_encoder(EncoderSpec(str(demo_model), None), "cpu")


def test_parity_cosine_on_real_photos(demo_encoder):
    cos = parity_cosines(demo_encoder, real_photo_paths())
    p1, p5, median = np.percentile(cos, [1, 5, 50])
    print(f"\nparity cosine, {len(cos)} real photos: p1 {p1:.5f} p5 {p5:.5f} median {median:.5f}")
    assert p1 >= 0.999


def test_held_out_recall_matches_the_reference_path(demo_encoder, demo_data):
    ours, ref = recall_both(demo_encoder, demo_data.test)
    print(f"\nheld-out text->image recall: pixfind {ours}, reference {ref}")
    for k in KS:
        assert abs(ours[k] - ref[k]) <= 0.005, (k, ours, ref)
