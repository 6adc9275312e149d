"""pixfind's core library: encoder, store, FAISS index and the searcher.

from pixfind.search import open_index
index = open_index()                      # the default index location
for hit in index.search("a dog on the beach", k=5):
    print(f"{hit.score:.3f} {hit.path}")
"""

from .encoder import DEFAULT_SPEC, Encoder, list_models, load_encoder, resolve_spec
from .engine import Searcher, open_index
from .errors import (
    BadQuery,
    EmptyIndex,
    IndexLocked,
    IndexMismatch,
    NoIndex,
    NotFound,
    PixfindError,
    UnknownModel,
)
from .settings import default_home
from .types import EncoderSpec, Hit, ImageRecord, ModelInfo

__all__ = [
    "DEFAULT_SPEC",
    "BadQuery",
    "EmptyIndex",
    "Encoder",
    "EncoderSpec",
    "Hit",
    "ImageRecord",
    "IndexLocked",
    "IndexMismatch",
    "ModelInfo",
    "NoIndex",
    "NotFound",
    "PixfindError",
    "Searcher",
    "UnknownModel",
    "default_home",
    "list_models",
    "load_encoder",
    "open_index",
    "resolve_spec",
]
