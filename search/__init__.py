"""pixfind's query-side core: model registry, encoder, store, FAISS index and the searcher.

from pixfind.search import open_index
index = open_index()                      # the default index location
for hit in index.search("a dog on the beach", k=5):
    print(f"{hit.score:.3f} {hit.path}")

Names are imported on first use (PEP 562), so importing a light module such as
``pixfind.search.errors`` does not load numpy, torch or LanceDB.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DEFAULT_SPEC": "models",
    "list_models": "models",
    "requested_spec": "models",
    "resolve_spec": "models",
    "Encoder": "encoder",
    "load_encoder": "encoder",
    "Results": "engine",
    "Searcher": "engine",
    "open_index": "engine",
    "BadQuery": "errors",
    "EmptyIndex": "errors",
    "IndexLocked": "errors",
    "IndexMismatch": "errors",
    "NoIndex": "errors",
    "NotFound": "errors",
    "PixfindError": "errors",
    "UnknownModel": "errors",
    "UnsupportedImage": "errors",
    "Query": "query",
    "Term": "query",
    "make_terms": "query",
    "parse_filters": "query",
    "default_home": "settings",
    "CaptionMatch": "types",
    "EncoderSpec": "types",
    "Filters": "types",
    "Hit": "types",
    "ImageRecord": "types",
    "ModelInfo": "types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pixfind.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
