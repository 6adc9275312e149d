"""Embed stage: a decoded batch -> one image vector per file and one text vector per caption.

Needs only the encoder, not the store: content already indexed is passed in as ``reuse``
(looked up by the writer) and its vector is taken from there instead of the image tower."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pixfind.search.encoder import Encoder

from .decode import DecodedBatch, ImageFacts, Skipped


@dataclass(frozen=True)
class Reused:
    """An indexed row holding some content: its vector serves every copy, move or rename."""

    path: str
    vector: np.ndarray


@dataclass(frozen=True)
class EmbeddedImage:
    facts: ImageFacts
    vector: np.ndarray  # (dim,)
    caption_vectors: np.ndarray  # (len(facts.captions), dim)
    reused_from: str | None = None  # the indexed path whose vector was reused, if any


@dataclass(frozen=True)
class EmbeddedBatch:
    images: tuple[EmbeddedImage, ...] = ()
    skipped: tuple[Skipped, ...] = ()  # passed through: the writer reports them

    @property
    def size(self) -> int:
        return len(self.images) + len(self.skipped)


def embed_batch(
    encoder: Encoder, decoded: DecodedBatch, reuse: Mapping[str, Reused] | None = None
) -> EmbeddedBatch:
    """Vectors for ``decoded``: images whose content hash is in ``reuse`` skip the image tower."""
    reuse = reuse or {}
    images = decoded.images
    vectors = np.zeros((len(images), encoder.dim), np.float32)
    fresh = [i for i, im in enumerate(images) if im.facts.content_hash not in reuse]
    if fresh:
        batch = np.stack([np.asarray(images[i].pixels, np.float32) for i in fresh])
        encoder.onnx_towers(batch)  # the first batch exports the ONNX towers, checked on it
        vectors[fresh] = encoder.encode_image_tensors(batch)
    # every caption of the batch in one text-tower call
    texts = [c for im in images for c in im.facts.captions]
    flat = encoder.encode_texts(texts) if texts else np.zeros((0, encoder.dim), np.float32)
    out, at = [], 0
    for i, im in enumerate(images):
        known = reuse.get(im.facts.content_hash)
        if known is not None:
            vectors[i] = known.vector
        n = len(im.facts.captions)
        out.append(
            EmbeddedImage(
                facts=im.facts,
                vector=vectors[i],
                caption_vectors=flat[at : at + n],
                reused_from=known.path if known is not None else None,
            )
        )
        at += n
    return EmbeddedBatch(tuple(out), decoded.skipped)
