"""Ranking: exact top-k over FAISS with exclusions and filters, caption fusion, hits.

Pure functions over a VectorIndex, vectors and records; no model and no store in here, so the
engine (search/engine.py) and the cold path (search/cold/fastpath.py) rank the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .types import CaptionMatch, Hit

if TYPE_CHECKING:
    from .index import VectorIndex
    from .store import Captioned


class Record(Protocol):
    """What a hit shows of a photo: a store row (ImageRecord) or a query-snapshot row."""

    path: str
    width: int
    height: int
    taken_at: float
    file_type: str


# Below this many captioned photos a query's caption scores are too few to calibrate.
MIN_CALIBRATION_ROWS = 8


@dataclass(frozen=True)
class CaptionPart:
    """The best caption of a candidate and its similarity, raw and calibrated."""

    text: str
    cosine: float
    scaled: float


@dataclass(frozen=True)
class Candidate:
    """A photo in the running for the top k, before its metadata is read."""

    score: float
    id: int
    image_score: float
    caption: CaptionPart | None = None


def image_candidates(scores: np.ndarray, ids: np.ndarray) -> list[Candidate]:
    """Candidates scored by their image vector alone."""
    return [Candidate(float(s), int(i), float(s)) for s, i in zip(scores, ids, strict=True)]


def top_candidates(candidates: list[Candidate], k: int, min_score: float | None) -> list[Candidate]:
    """The best k candidates scoring at least ``min_score``."""
    candidates = sorted(candidates, key=lambda c: -c.score)
    if min_score is not None:
        candidates = [c for c in candidates if c.score >= min_score]
    return candidates[:k]


def make_hits(
    candidates: list[Candidate],
    records: dict[int, Record],
    sort: str,
    caption_weight: float,
) -> list[Hit]:
    """Hits in ``sort`` order (score, or date taken); candidates whose record is gone
    (deleted meanwhile) are left out."""
    hits = []
    for c in candidates:
        rec = records.get(c.id)
        if rec is None:
            continue
        caption = (
            CaptionMatch(c.caption.text, c.caption.cosine, c.caption.scaled, caption_weight)
            if c.caption
            else None
        )
        hits.append(
            Hit(
                rank=len(hits) + 1,
                score=c.score,
                id=c.id,
                path=rec.path,
                width=rec.width,
                height=rec.height,
                image_score=c.image_score,
                taken_at=rec.taken_at or None,
                file_type=rec.file_type,
                caption=caption,
            )
        )
    return by_date(hits) if sort == "date" else hits


def by_date(hits: list[Hit], first_rank: int = 1) -> list[Hit]:
    """The same hits, newest first (undated last, ties in score order), ranked anew."""
    ordered = sorted(hits, key=lambda h: -(h.taken_at or 0.0))
    return [replace(h, rank=first_rank + i) for i, h in enumerate(ordered)]


def search_dropping(
    index: VectorIndex, query: np.ndarray, k: int, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k (scores, ids, positions) over all rows but the ids in ``drop``: over-fetch and
    filter, growing the fetch until k remain (cheaper than a selector over every row)."""
    want = min(len(index), k + len(drop))
    while True:
        scores, pos = index.search_positions(query[None, :], want)
        scores, pos = scores[0], pos[0]
        valid = pos >= 0
        scores, pos = scores[valid], pos[valid]
        ids = index.ids[pos]
        keep = ~np.isin(ids, drop) if len(drop) else np.ones(len(ids), bool)
        if keep.sum() >= k or want >= len(index):
            return scores[keep][:k], ids[keep][:k], pos[keep][:k]
        want = min(len(index), want * 4)


def nearest(
    index: VectorIndex, query: np.ndarray, k: int, allowed: np.ndarray | None, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k (scores, ids, positions) among the ``allowed`` ids (None: every row) but those
    in ``drop``: over-fetch and filter while few are dropped, else search the kept rows."""
    if allowed is None and len(drop) <= len(index) // 2:
        return search_dropping(index, query, k, drop)
    keep = np.ones(len(index.ids), bool) if allowed is None else np.isin(index.ids, allowed)
    if len(drop):
        keep &= ~np.isin(index.ids, drop)
    return search_positions(index, query, k, np.flatnonzero(keep))


def search_positions(
    index: VectorIndex, query: np.ndarray, k: int, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k (scores, ids, positions) among the given FAISS positions only (exact for flat
    indexes)."""
    if not len(positions):
        return np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    # the cold path's numpy Flat index (search/cold/lite.py) scores its subset itself
    search_among = getattr(index, "search_among", None)
    if search_among is not None:
        return search_among(query, k, positions)
    import faiss

    kk = min(k, len(positions))
    # the disk index (search/bigindex.py) scores a small subset exactly from its fp16 file
    if len(positions) <= getattr(index.faiss_index, "exact_subset_max", 0):
        return _exact_subset(index, query, kk, positions)
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(positions.astype(np.int64)))
    try:
        scores, pos = index.faiss_index.search(query[None, :], kk, params=params)
    except RuntimeError:  # an index type without selector support: score the subset exactly
        return _exact_subset(index, query, kk, positions)
    good = pos[0] >= 0
    return scores[0][good], index.ids[pos[0][good]], pos[0][good]


def _exact_subset(index: VectorIndex, query: np.ndarray, kk: int, positions: np.ndarray):
    vectors = index.faiss_index.reconstruct_batch(positions.astype(np.int64))
    sims = vectors @ query
    top = np.argsort(-sims, kind="stable")[:kk]
    return sims[top], index.ids[positions[top]], positions[top]


def calibrate_captions(caption: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Map caption similarities onto the image similarities' scale for this query.

    Text-text similarities run far higher than text-image ones (0.6-0.9 vs 0.1-0.3 for CLIP),
    so raw fusion would lift every captioned photo above every uncaptioned one. Matching the
    mean and spread of the two over the captioned photos keeps an average caption average;
    only a caption that stands out lifts its photo."""
    if len(caption) < MIN_CALIBRATION_ROWS:
        return caption
    spread = float(caption.std())
    if spread < 1e-6:
        return caption
    return float(image.mean()) + (caption - float(caption.mean())) * (float(image.std()) / spread)


def fused_candidates(
    cap: Captioned,
    query: np.ndarray,
    k: int,
    weight: float,
    allowed: np.ndarray | None,
    excluded: np.ndarray,
    calibrate: bool = True,
) -> list[Candidate]:
    """Exact fused scores of every captioned image: (1-w)*image + w*scaled best caption.
    ``calibrate=False`` fuses raw caption cosines (bench/caption_weight.py --raw)."""
    keep = np.ones(len(cap.ids), bool)
    if allowed is not None:
        keep &= np.isin(cap.ids, allowed)
    if len(excluded):
        keep &= ~np.isin(cap.ids, excluded)
    if not keep.any():
        return []
    img = cap.image_vectors @ query
    sims = cap.vectors @ query
    # best caption per image: sort by (owner, -sim) and take each owner's first row
    order = np.lexsort((-sims, cap.owners))
    first = np.ones(len(order), bool)
    first[1:] = cap.owners[order][1:] != cap.owners[order][:-1]
    best_row = np.full(len(cap.ids), -1, np.int64)
    best_row[cap.owners[order][first]] = order[first]
    has = best_row >= 0
    best = np.where(has, sims[np.clip(best_row, 0, None)], 0.0)
    scaled = calibrate_captions(best, img) if calibrate else best
    score = np.where(has, (1 - weight) * img + weight * scaled, img)
    idx = np.flatnonzero(keep)
    top = idx[np.argsort(-score[idx], kind="stable")[:k]]
    return [
        Candidate(
            float(score[i]),
            int(cap.ids[i]),
            float(img[i]),
            CaptionPart(cap.texts[best_row[i]], float(best[i]), float(scaled[i]))
            if has[i]
            else None,
        )
        for i in top
    ]
