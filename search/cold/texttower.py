"""A CLIP text tower in plain torch, for text queries that must not pay for importing open_clip.

``import open_clip`` costs about 2 s on top of torch (it pulls in torchvision, timm and the
Hugging Face hub), more than the rest of a cold ``pixfind search "x"``. The standard CLIP
text transformer (token + position embeddings, pre-norm blocks with causal self-attention,
final LayerNorm, the end-of-text token's feature times a projection) is small enough to run
as a few functional torch calls on the checkpoint's own tensors.

It is pixfind's only text tower implementation for plain CLIP models, cold or warm:

- the cold path (search/cold/fastpath.py) loads it from a *recipe*, which says where the
  tensors are and what the architecture is. The indexer writes one (``text_recipe`` in
  search/encoder.py, with open_clip loaded anyway) into the query snapshot;
- ``load_text_encoder`` (a text query with open_clip loaded) loads it from the same recipe:
  the text tensors alone, the image tower is never built;
- a loaded full model (``Encoder.encode_texts``, e.g. caption vectors at indexing) runs its
  own text tensors through it (``from_state``), without computing the padded positions.

Only configurations this module reproduces exactly get a tower: anything else (custom or
Hugging Face text towers, layer scale, other pooling, tokenizer options, random weights
without a file, fp16 or GPU models) takes open_clip's ``encode_text``. The weights are
checked strictly: every text tensor must be used and match its expected shape, else
``load``/``from_state`` return None. tests/unit/test_texttower.py and
tests/e2e/test_fast_query.py check that tokens and embeddings equal open_clip's.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RECIPE_FORMAT = 1
SKIP_PREFIXES = ("visual.", "logit_scale", "logit_bias")

# text_cfg keys this module understands, with the only values it reproduces. Other keys, or
# these with other values, mean "not a plain CLIP text tower": no recipe, open_clip path.
_FREE_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
_FREE_KEYS |= {"pad_id", "eos_id"}  # unused by argmax pooling under a causal mask
_DEFAULTS: dict[str, Any] = {
    "ls_init_value": None,
    "embed_cls": False,
    "no_causal_mask": False,
    "use_pad_mask": False,
    "correct_cls_mask": False,
    "pool_type": "argmax",
    "proj_type": "linear",
    "proj_bias": False,
    "output_tokens": False,
    "final_ln_after_pool": False,
    "attentional_pool": False,
    "norm_kwargs": {},
    "act_kwargs": {},
    "tokenizer_kwargs": {},
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
}
_BLOCK_KEYS = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)


def plain_text_cfg(model_cfg: dict | None, tokenizer_name: str = "") -> dict | None:
    """The architecture part of a recipe, or None where this module is not exact."""
    if not model_cfg or model_cfg.get("custom_text") or "multimodal_cfg" in model_cfg:
        return None
    if "siglip" in tokenizer_name.lower():  # open_clip picks another tokenizer by name
        return None
    text = dict(model_cfg.get("text_cfg") or {})
    for key, value in text.items():
        if key not in _FREE_KEYS and (key not in _DEFAULTS or value != _DEFAULTS[key]):
            return None
    if not {"width", "heads", "layers"} <= text.keys():
        return None
    if text["width"] % text["heads"]:
        return None
    return {
        "embed_dim": int(model_cfg["embed_dim"]),
        "context_length": int(text.get("context_length", 77)),
        "vocab_size": int(text.get("vocab_size", 49408)),
        "width": int(text["width"]),
        "heads": int(text["heads"]),
        "layers": int(text["layers"]),
        "mlp_ratio": float(text.get("mlp_ratio", 4.0)),
        "quick_gelu": bool(model_cfg.get("quick_gelu", False)),
    }


def make_recipe(model_cfg: dict | None, weights: Path, identity: str, tokenizer_name: str = ""):
    """A recipe for ``weights`` (a .safetensors, .pt/.pth/.bin state dict), or None."""
    arch = plain_text_cfg(model_cfg, tokenizer_name)
    if arch is None or weights is None or not Path(weights).is_file():
        return None
    weights = Path(weights).resolve()
    st = weights.stat()
    return {
        "format": RECIPE_FORMAT,
        "identity": identity,
        "weights": str(weights),
        "weights_size": st.st_size,
        "weights_mtime_ns": st.st_mtime_ns,
        "arch": arch,
    }


# -- tokenizer -------------------------------------------------------------------------------
@functools.cache
def _tokenizer_module():
    """open_clip's own tokenizer.py, loaded as a standalone module: its only imports are
    ftfy, regex, numpy and torch, while ``import open_clip`` would load everything."""
    if "open_clip" in sys.modules:  # already paid for: use the real thing
        from open_clip import tokenizer

        return tokenizer
    return standalone_tokenizer_module()


def standalone_tokenizer_module():
    spec = importlib.util.find_spec("open_clip")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_pixfind_open_clip_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@functools.cache
def simple_tokenizer(context_length: int):
    """open_clip's SimpleTokenizer (what ``open_clip.get_tokenizer`` gives plain CLIP models)."""
    return _tokenizer_module().SimpleTokenizer(context_length=context_length)


# -- weights ---------------------------------------------------------------------------------
def read_text_state(path: Path) -> dict:
    """The text tensors of a checkpoint (safetensors read tensor by tensor; torch state dicts,
    also under 'state_dict' or with 'module.' prefixes)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:  # reads the text tensors only
            return {k: f.get_tensor(k) for k in f.keys() if not k.startswith(SKIP_PREFIXES)}  # noqa: SIM118
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        return {}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(SKIP_PREFIXES)}


def _expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    w, ctx, hidden = arch["width"], arch["context_length"], int(arch["width"] * arch["mlp_ratio"])
    shapes = {
        "token_embedding.weight": (arch["vocab_size"], w),
        "positional_embedding": (ctx, w),
        "ln_final.weight": (w,),
        "ln_final.bias": (w,),
        "text_projection": (w, arch["embed_dim"]),
    }
    block = {
        "ln_1.weight": (w,),
        "ln_1.bias": (w,),
        "attn.in_proj_weight": (3 * w, w),
        "attn.in_proj_bias": (3 * w,),
        "attn.out_proj.weight": (w, w),
        "attn.out_proj.bias": (w,),
        "ln_2.weight": (w,),
        "ln_2.bias": (w,),
        "mlp.c_fc.weight": (hidden, w),
        "mlp.c_fc.bias": (hidden,),
        "mlp.c_proj.weight": (w, hidden),
        "mlp.c_proj.bias": (w,),
    }
    for i in range(arch["layers"]):
        shapes.update({f"transformer.resblocks.{i}.{k}": s for k, s in block.items()})
    return shapes


@contextlib.contextmanager
def threads_for(n_texts: int):
    """One intra-op thread to encode one query: a query is a few tokens, and one thread is as
    fast on an idle machine and up to 10x faster on a busy one, where intra-op threads spin
    waiting for each other (measured 48 vs 595 ms)."""
    import torch

    threads = torch.get_num_threads()
    if n_texts == 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class PlainTextTower:
    """``encode_text`` of a plain CLIP text tower, float32 on CPU, unpadded, L2-normalised.

    The one text tower of pixfind: the cold path loads it from a recipe (``load``), a text
    query with open_clip loaded from the same weights file (search.encoder.load_text_encoder),
    and a loaded full model runs its own text tensors through it (``from_state``)."""

    def __init__(self, arch: dict, state: dict):
        self.arch = arch
        self.dim = arch["embed_dim"]
        self.heads = arch["heads"]
        self.state = state
        self.blocks = [
            [state[f"transformer.resblocks.{i}.{k}"] for k in _BLOCK_KEYS]
            for i in range(arch["layers"])
        ]
        self.tokenizer = simple_tokenizer(arch["context_length"])

    @classmethod
    def from_state(cls, arch: dict | None, state: dict) -> PlainTextTower | None:
        """The tower over a state dict's text tensors (others are ignored; float32 ones are
        used in place, not copied), or None when they aren't exactly this architecture's."""
        if arch is None:
            return None
        state = {k: v for k, v in state.items() if not k.startswith(SKIP_PREFIXES)}
        shapes = _expected_shapes(arch)
        if set(state) != set(shapes):
            return None
        if any(tuple(state[k].shape) != s for k, s in shapes.items()):
            return None
        if any(v.device.type != "cpu" for v in state.values()):
            return None
        return cls(arch, {k: v.detach().float() for k, v in state.items()})

    @classmethod
    def load(cls, recipe: dict | None) -> PlainTextTower | None:
        """The tower a recipe describes, or None when the recipe is stale or not exact."""
        if not recipe or recipe.get("format") != RECIPE_FORMAT or not recipe.get("weights"):
            return None  # no recipe, or one with only an ONNX text tower (search/onnxrt.py)
        path = Path(recipe["weights"])
        try:
            st = path.stat()
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns) != (recipe["weights_size"], recipe["weights_mtime_ns"]):
            return None  # the weights file changed since the index was built
        return cls.from_state(recipe["arch"], read_text_state(path))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        import torch

        out = [np.zeros((0, self.dim), np.float32)]
        with threads_for(len(texts)), torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[start : start + batch_size]))
                features = torch.nn.functional.normalize(self.forward(tokens), dim=-1)
                out.append(features.numpy().astype(np.float32, copy=False))
        return np.concatenate(out)

    def forward(self, tokens) -> Any:
        """Features at each sequence's end-of-text token (the highest token id, as open_clip's
        argmax pooling), computing only the positions up to the last one: exact under the
        causal mask, which keeps later positions from touching earlier ones."""
        length = int(tokens.argmax(dim=-1).max()) + 1
        return self.forward_tokens(tokens[:, :length])

    def forward_tokens(self, tokens) -> Any:
        """``forward`` of tokens already cut to their length (what the ONNX export traces,
        search/onnxexport.py: the length is an input dimension there)."""
        import torch
        from torch.nn import functional as F

        s, w, heads = self.state, self.arch["width"], self.heads
        pooled_at = tokens.argmax(dim=-1)
        batch, length = tokens.shape
        x = F.embedding(tokens, s["token_embedding.weight"])
        x = x + s["positional_embedding"][:length]
        quick = self.arch["quick_gelu"]
        for ln1w, ln1b, in_w, in_b, out_w, out_b, ln2w, ln2b, fc_w, fc_b, pr_w, pr_b in self.blocks:
            h = F.layer_norm(x, (w,), ln1w, ln1b, 1e-5)
            q, k, v = F.linear(h, in_w, in_b).split(w, dim=-1)
            q, k, v = (t.view(batch, length, heads, w // heads).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(a.transpose(1, 2).reshape(batch, length, w), out_w, out_b)
            h = F.linear(F.layer_norm(x, (w,), ln2w, ln2b, 1e-5), fc_w, fc_b)
            h = h * torch.sigmoid(1.702 * h) if quick else F.gelu(h)
            x = x + F.linear(h, pr_w, pr_b)
        x = F.layer_norm(x, (w,), s["ln_final.weight"], s["ln_final.bias"], 1e-5)
        return x[torch.arange(batch), pooled_at] @ s["text_projection"]


def fast_path_enabled() -> bool:
    """``PIXFIND_FAST_PATH=0`` turns off the snapshot and plain-tower shortcuts."""
    from ..settings import get_settings

    return get_settings().fast_path
