"""The cold text query: ``pixfind search "words"`` without importing open_clip or LanceDB.

A fresh query snapshot (search/cold/snapshot.py) holds the records of the FAISS positions
and the text tower's recipe: the model's ONNX text tower (search/onnxrt.py) where it was
exported, and the plain torch tower (search/cold/texttower.py). With the ONNX tower a plain
text query needs onnxruntime, FAISS and pyarrow only, never torch; with the torch tower,
torch, FAISS and pyarrow (bench/cold_cli.py compares them). The results are the ordinary
path's, hit for hit (tests/e2e/test_fast_query.py, tests/e2e/test_onnx_runtime.py).

``text_search`` returns None whenever the shortcut does not apply or anything about it looks
off, and the caller then takes the ordinary path, which also gives the proper error messages:
queries with image terms, weights or filters, another model asked for, a GPU to use, a
collection with captions (their fusion needs the caption vectors), a stale or missing
snapshot, a model without a recipe. ``PIXFIND_FAST_PATH=0`` turns it off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..onnxrt import OnnxTextTower, choose_runtime
from ..query import SORTS
from ..types import Hit
from . import snapshot
from .texttower import PlainTextTower, fast_path_enabled


def text_search(
    home: str | os.PathLike,
    text: str,
    k: int = 10,
    *,
    min_score: float | None = None,
    sort: str = "score",
    caption_weight: float | None = None,
    device: str = "auto",
    runtime: str | None = None,
) -> list[Hit] | None:
    """Hits for a plain text query from the snapshot, or None: use Searcher instead."""
    try:
        return _text_search(Path(home), text, k, min_score, sort, caption_weight, device, runtime)
    except Exception:  # noqa: BLE001 - a shortcut must never be the reason a search fails
        return None


def _text_search(home, text, k, min_score, sort, caption_weight, device, runtime):
    from ..ranking import image_candidates, make_hits, top_candidates

    text = text.strip()
    if (
        k < 1
        or sort not in SORTS
        or (opened := open_snapshot(home, text, caption_weight, device, runtime)) is None
    ):
        return None
    tower, index, records = opened
    vector = tower.encode_texts([text])[0]
    scores, pos = index.search_positions(vector[None], k)
    good = pos[0] >= 0
    scores, pos = scores[0][good], pos[0][good]
    ids = index.ids[pos]
    candidates = top_candidates(image_candidates(scores, ids), k, min_score)
    by_id = dict(zip(ids.tolist(), pos.tolist(), strict=True))
    found = records.at([by_id[c.id] for c in candidates])
    if set(found) != {c.id for c in candidates}:
        return None
    return make_hits(candidates, found, sort, 0.0)


def open_snapshot(home: Path, text: str, caption_weight: float | None, device: str, runtime):
    """(text tower, VectorIndex, snapshot Records) where the snapshot can answer a query for
    ``text`` (stripped) exactly as the ordinary path would, else None."""
    from ..engine import DEFAULT_CAPTION_WEIGHT
    from ..index import INDEX_DIR, VectorIndex
    from ..query import MAX_QUERY_CHARS

    weight = DEFAULT_CAPTION_WEIGHT if caption_weight is None else caption_weight
    if not fast_path_enabled() or device not in ("auto", "cpu"):
        return None
    if not text or len(text) > MAX_QUERY_CHARS or not 0.0 <= weight <= 1.0:
        return None  # the ordinary path words the error
    directory = home / INDEX_DIR
    meta = snapshot.read_meta(directory)
    if not snapshot.is_fresh(meta, home) or not meta.get("recipe") or not meta.get("rows"):
        return None
    if meta["captioned_rows"] and weight > 0:
        return None
    tower = text_tower(meta["recipe"], device, runtime)
    if tower is None or tower.dim != meta["dim"]:
        return None
    index = VectorIndex.load(directory)
    if (
        index is None
        or index.infos.store_version != meta["store_version"]
        or index.infos.model != meta["identity"]
    ):
        return None
    records = index.records()
    return None if records is None else (tower, index, records)


def hybrid_search(
    home: str | os.PathLike, query, want: int, fusion: str, keyword_weight: float,
    caption_weight: float, device: str = "auto", runtime: str | None = None,
) -> list[Hit] | None:  # fmt: skip
    """search/hybrid.py's hits for a plain text ``query`` (no filters) from the snapshot, its
    keyword half included (search/cold/bm25.py); None: use Searcher instead."""
    try:
        return _hybrid_search(
            Path(home), query, want, fusion, keyword_weight, caption_weight, device, runtime
        )
    except Exception:  # noqa: BLE001 - a shortcut must never be the reason a search fails
        return None


def _hybrid_search(home, query, want, fusion, keyword_weight, caption_weight, device, runtime):
    from ..hybrid import hybrid_hits
    from ..index import INDEX_DIR
    from ..keywords import parse_keywords
    from .bm25 import KeywordSnapshot
    from .hybridpath import SnapshotSearcher

    text = query.plain_text.strip()
    kq = parse_keywords(query.keyword_text)
    if not kq or kq.phrases or not text.isascii() or want < 1:
        return None  # phrases need positions; Lance folds non-ASCII its own way
    opened = open_snapshot(home, text, caption_weight, device, runtime)
    if opened is None:
        return None
    tower, index, records = opened
    kw = KeywordSnapshot.load(home / INDEX_DIR, len(index))
    if kw is None:
        return None
    searcher = SnapshotSearcher(tower, index, records, kw, caption_weight, keyword_weight)
    return hybrid_hits(searcher, query, kq, want, fusion)


def text_tower(recipe: dict, device: str, runtime: str | None) -> OnnxTextTower | PlainTextTower:
    """The snapshot's ONNX text tower where the runtime is ONNX (no torch imported), else
    the plain torch tower; None where the ordinary path encodes on a GPU."""
    gpu = device == "auto" and _gpu_present()
    if choose_runtime(runtime, "cuda" if gpu else "cpu") == "onnx":
        tower = OnnxTextTower.load(recipe.get("onnx"))
        if tower is not None:
            return tower
    import torch

    mps = getattr(torch.backends, "mps", None)
    if device == "auto" and (torch.cuda.is_available() or (mps and mps.is_available())):
        return None  # the ordinary path encodes on the GPU
    return PlainTextTower.load(recipe)


def _gpu_present() -> bool:
    """Whether torch might find a GPU, without importing torch: NVIDIA's device files, or a
    Mac (MPS). A false alarm only costs the torch check."""
    return sys.platform == "darwin" or Path("/dev/nvidiactl").exists()
