"""The plain CLIP text tower (search/cold/texttower.py) in numpy, over the checkpoint's
safetensors file mapped into memory.

A cold query on ONNX Runtime pays for importing it and for building a session over a 250 MB
``textual.onnx`` (about 0.6 s for ViT-B-32 on the project's 2-core machine); a query is a few
tokens, a dozen small matrix products per layer, which numpy does as fast. Nothing is read
up front: the weights are views of the mapped file (the page cache keeps them between
queries) and only the query's rows of the token embedding are touched.

The same algorithm as ``PlainTextTower.forward`` (token + position embeddings, pre-norm
blocks with causal attention, final LayerNorm, the end-of-text token's feature times the
projection), one text at a time, unpadded. It serves recipes whose weights are a safetensors
file (the Hugging Face hub's format) in float32 or float16; anything else returns None and
the caller keeps ONNX or torch. tests/unit/test_nptower.py checks it against the torch
tower (cosine >= 0.99999).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .texttower import _BLOCK_KEYS, RECIPE_FORMAT, SKIP_PREFIXES, _expected_shapes

_DTYPES = {"F32": np.float32, "F16": np.float16}
# erfc's Chebyshev fit (Numerical Recipes, erfcc): relative error < 1.2e-7 everywhere
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807)
_ERFC += (-1.13520398, 1.48851587, -0.82215223, 0.17087277)


def read_safetensors(path: Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """name -> array view of a safetensors file mapped read-only (float16 converted to
    float32); None where a tensor has another type."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    data = np.memmap(path, np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or name.startswith(skip):
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            return None
        begin, end = info["data_offsets"]
        array = data[begin:end].view(dtype).reshape(info["shape"])
        out[name] = array if dtype == np.float32 else array.astype(np.float32)
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdims=True)
    return centered / np.sqrt(var + np.float32(1e-5)) * weight + bias


def _gelu(h: np.ndarray) -> np.ndarray:
    """torch's exact GELU, 0.5 x (1 + erf(x / sqrt 2)), erf in float64."""
    z = h.astype(np.float64) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * np.abs(z))
    poly = np.zeros_like(t)
    for c in reversed(_ERFC[1:]):
        poly = t * (c + poly)
    erfc = t * np.exp(-z * z + _ERFC[0] + poly)
    erf = np.where(z >= 0, 1.0 - erfc, erfc - 1.0)
    return (0.5 * h * (1.0 + erf)).astype(np.float32)


class NumpyTextTower:
    """``encode_texts`` of a plain CLIP text tower, float32, unpadded, L2-normalised."""

    def __init__(self, arch: dict, state: dict[str, np.ndarray], vocab: str | None = None):
        from ..tokenizer import clip_tokenizer

        self.arch = arch
        self.dim = arch["embed_dim"]
        self.state = state
        self.blocks = [
            [state[f"transformer.resblocks.{i}.{k}"] for k in _BLOCK_KEYS]
            for i in range(arch["layers"])
        ]
        # a model folder's own vocabulary (no open_clip installed), else open_clip's
        self.tokenizer = clip_tokenizer(arch["context_length"], vocab and Path(vocab))

    @classmethod
    def load(cls, recipe: dict | None) -> NumpyTextTower | None:
        """The tower a recipe describes, or None (no safetensors weights, a stale recipe,
        tensors that aren't exactly the architecture's)."""
        if not recipe or recipe.get("format") != RECIPE_FORMAT or not recipe.get("weights"):
            return None
        path = Path(recipe["weights"])
        if path.suffix != ".safetensors":
            return None
        try:
            st = path.stat()
            if (st.st_size, st.st_mtime_ns) != (recipe["weights_size"], recipe["weights_mtime_ns"]):
                return None  # the weights file changed since the index was built
            state = read_safetensors(path, SKIP_PREFIXES)
        except (OSError, ValueError, KeyError):
            return None
        shapes = _expected_shapes(recipe["arch"])
        if state is None or set(state) != set(shapes):
            return None
        if any(tuple(state[k].shape) != s for k, s in shapes.items()):
            return None
        vocab = recipe.get("vocab")
        if vocab and not Path(vocab).is_file():
            return None
        return cls(recipe["arch"], state, vocab)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            tokens = np.asarray(self.tokenizer(list(texts[start : start + batch_size])))
            for n, row in enumerate(tokens, start):
                out[n] = self.forward(row[: int(row.argmax()) + 1])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, np.float32(1e-12))

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        """The feature of one text's tokens up to its end-of-text token (the last one)."""
        s, w, heads = self.state, self.arch["width"], self.arch["heads"]
        length, d = len(tokens), w // heads
        x = s["token_embedding.weight"][tokens] + s["positional_embedding"][:length]
        future = np.triu(np.ones((length, length), bool), 1)
        scale = np.float32(1.0 / np.sqrt(d))
        quick = self.arch["quick_gelu"]
        for ln1w, ln1b, in_w, in_b, out_w, out_b, ln2w, ln2b, fc_w, fc_b, pr_w, pr_b in self.blocks:
            qkv = _layer_norm(x, ln1w, ln1b) @ in_w.T + in_b
            q, k, v = (t.reshape(length, heads, d).transpose(1, 0, 2) for t in np.split(qkv, 3, -1))
            att = (q * scale) @ k.transpose(0, 2, 1)
            att[:, future] = -np.inf
            att = np.exp(att - att.max(-1, keepdims=True))
            a = (att / att.sum(-1, keepdims=True)) @ v
            x = x + a.transpose(1, 0, 2).reshape(length, w) @ out_w.T + out_b
            h = _layer_norm(x, ln2w, ln2b) @ fc_w.T + fc_b
            h = h * (1.0 / (1.0 + np.exp(-1.702 * h))) if quick else _gelu(h)
            x = x + h @ pr_w.T + pr_b
        x = _layer_norm(x[-1], s["ln_final.weight"], s["ln_final.bias"])
        return x @ s["text_projection"]
