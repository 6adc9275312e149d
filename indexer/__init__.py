"""The offline indexing pipeline: scan -> plan -> decode -> embed -> write (uses search/).

Each stage is usable alone (decode.decode_batch, embed.embed_batch, write.Writer); run.run_index
locks the index, stops after planning when nothing changed, and else hands over to pipeline.

Names are imported on first use (PEP 562), so ``pixfind --help`` and a query do not load
the pipeline's stages (numpy, pyarrow, PIL) through ``pixfind.indexer.commands``.
"""

from __future__ import annotations

import importlib

_MODULES = {
    "run": ("ClusterOptions", "IndexOptions", "run_index"),
    "plan": ("Plan", "make_plan"),
    "report": ("IndexReport", "StageTimes"),
    "scan": ("scan",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(module, name)
