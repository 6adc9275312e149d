"""Hybrid ranking: a text query's vector ranking fused with its keyword ranking (BM25 over
the ``keywords`` column, search/keywords.py).

Fusion (``Searcher.fusion``):

- ``linear`` (the default, chosen by bench/hybrid.py): score = vector score + w * span *
  (bm25 / best bm25) * coverage ** 8, where span is the spread of this query's vector scores
  over its candidates (plus 0.01) and coverage the share of the query's words (stop words
  aside) the photo holds. The keyword part is calibrated to the vector scores it
  joins, so a photo holding all the query's words rises to the top whatever the model's
  cosine scale (random weights included), one holding only some of them barely moves ("a
  red circle" vs a caption "the red barn": 0.5 ** 8), and a photo no word matched keeps its
  vector score exactly: scores stay on the cosine scale, so --min-score keeps its meaning,
  and queries no keyword matches (purely visual ones) rank as in vector mode.
- ``rrf``: reciprocal rank fusion, 1/(60 + vector rank) + 1/(60 + keyword rank).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .keywords import KeywordQuery, fields_of, matched_fields
from .store import filter_where
from .types import Hit, KeywordMatch

if TYPE_CHECKING:
    from .engine import Searcher  # or the cold path's snapshot searcher (search/cold/)
    from .query import Query

KEYWORD_POOL = 200  # keyword matches fused per query (more when a page asks for more)
VECTOR_POOL = 50  # vector candidates the keyword part's span is measured on
KEYWORD_WEIGHT = 1.0
COVERAGE_POWER = 8.0
SPAN_MARGIN = 0.01  # so the best full match ranks first strictly, even from the bottom
RRF_K = 60
FUSIONS = ("linear", "rrf")


def keyword_matches(
    searcher: Searcher, query: Query, kq: KeywordQuery, want: int, exclude=()
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, BM25 scores) of the photos the keywords match, best first, among those the
    query's filters allow and not excluded."""
    filters = query.filters
    where = filter_where(filters) if filters else None
    ids, scores = searcher.keyword_search(kq, max(KEYWORD_POOL, want), where)
    keep = np.ones(len(ids), bool)
    if filters and filters.folder:
        keep &= np.isin(ids, searcher.store.filter_ids(filters))
    if len(exclude):
        keep &= ~np.isin(ids, np.asarray(list(exclude), np.int64))
    return ids[keep], scores[keep]


def coverage(searcher: Searcher, query: Query, kq: KeywordQuery, ids: np.ndarray) -> np.ndarray:
    """The share of the query's words each of ``ids`` holds (stop words not counted; a
    phrase counts as one word and always matches). One keyword search per word: LanceDB's
    tokenizer, stemmer and stop words decide what matches."""
    words = list(dict.fromkeys(kq.words.lower().split()))
    if not len(ids) or len(words) + len(kq.phrases) <= 1:
        return np.ones(len(ids))
    words = [w for w in words if w not in searcher.stop_words(words)]
    held = np.full(len(ids), float(len(kq.phrases)))
    where = filter_where(query.filters) if query.filters else None
    for word in words:
        found, _ = searcher.keyword_search(KeywordQuery(word), KEYWORD_POOL, where)
        held += np.isin(ids, found)
    total = len(words) + len(kq.phrases)
    return held / total if total else np.ones(len(ids))


def keyword_hits(searcher: Searcher, query: Query, kq: KeywordQuery, want: int) -> list[Hit]:
    """Keyword mode: photos ranked by BM25 alone (the score is the BM25 score)."""
    ids, scores = keyword_matches(searcher, query, kq, want)
    if query.min_score is not None:
        keep = scores >= query.min_score
        ids, scores = ids[keep], scores[keep]
    ids, scores = ids[:want], scores[:want]
    records = searcher.store.records(ids.tolist())
    best = float(scores[0]) if len(scores) else 1.0
    hits = []
    for rank, (i, s) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True), 1):
        rec = records.get(i)
        if rec is None:
            continue
        match = KeywordMatch(float(s), rank, float(s) / best, None)
        hits.append(
            Hit(
                rank=len(hits) + 1, score=float(s), id=i, path=rec.path, width=rec.width,
                height=rec.height, taken_at=rec.taken_at or None, file_type=rec.file_type,
                keyword=match,
            )
        )  # fmt: skip
    return _explained(searcher, kq, hits)


def hybrid_hits(
    searcher: Searcher, query: Query, kq: KeywordQuery, want: int, fusion: str = "linear"
) -> list[Hit]:
    """Hybrid mode: the vector ranking and the keyword ranking fused; with a quoted phrase
    only photos that hold it are returned."""
    vector, exclude = searcher._query_vector(query)
    ids, scores = keyword_matches(searcher, query, kq, want, exclude)
    options = dict(
        filters=query.filters,
        caption_weight=searcher._weight(query) if query.texty else 0.0,
    )
    if kq.phrases:  # a phrase must match: the vector side ranks the phrase's photos only
        if not len(ids):
            return []
        pool = searcher.search_vector(vector, len(ids), exclude, only=ids, **options)
    else:
        pool = searcher.search_vector(vector, max(want, VECTOR_POOL), exclude, **options)
        missing = np.setdiff1d(ids, np.array([h.id for h in pool], np.int64))
        if len(missing):
            pool += searcher.search_vector(vector, len(missing), exclude, only=missing, **options)
    cover = coverage(searcher, query, kq, ids) if fusion == "linear" else None
    fused = fuse(pool, ids, scores, fusion, searcher.keyword_weight, cover)
    if query.min_score is not None:
        fused = [h for h in fused if h.score >= query.min_score]
    return _explained(searcher, kq, fused[:want])


def fuse(
    pool: list[Hit],
    ids: np.ndarray,
    scores: np.ndarray,
    fusion: str,
    weight: float = KEYWORD_WEIGHT,
    cover: np.ndarray | None = None,
) -> list[Hit]:
    """The pool's hits with fused scores (see the module doc), best first, ranked anew."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    kw_rank = {int(i): r for r, i in enumerate(ids.tolist(), 1)}
    kw_score = dict(zip(ids.tolist(), scores.tolist(), strict=True))
    cover = np.ones(len(ids)) if cover is None else cover
    kw_cover = dict(zip(ids.tolist(), (cover**COVERAGE_POWER).tolist(), strict=True))
    best = float(scores[0]) if len(scores) else 1.0
    by_vector = sorted(pool, key=lambda h: -h.score)
    # span over a want-independent part of the pool, so pages of one query agree
    spanned = [h for n, h in enumerate(by_vector) if n < VECTOR_POOL or h.id in kw_rank]
    vs = np.array([h.score for h in spanned], np.float64)
    span = float(vs.max() - vs.min()) + SPAN_MARGIN if len(vs) else 1.0
    out = []
    for vrank, h in enumerate(by_vector, 1):
        r = kw_rank.get(h.id)
        if fusion == "rrf":
            score = 1.0 / (RRF_K + vrank) + (1.0 / (RRF_K + r) if r else 0.0)
        else:
            part = weight * span * kw_score[h.id] / best * kw_cover[h.id] if r else 0.0
            score = h.score + part
        match = KeywordMatch(kw_score[h.id], r, kw_score[h.id] / best, h.score) if r else None
        out.append(replace(h, score=score, keyword=match))
    out.sort(key=lambda h: -h.score)
    return [replace(h, rank=i) for i, h in enumerate(out, 1)]


def _explained(searcher: Searcher, kq: KeywordQuery, hits: list[Hit]) -> list[Hit]:
    """The hits (in score order: Searcher.run sorts a page by date) with the fields and words
    their keywords matched (one read of k rows)."""
    matched = [h.id for h in hits if h.keyword is not None]
    if matched:
        texts = searcher.keyword_texts(matched)
        for n, h in enumerate(hits):
            if h.keyword is not None and h.id in texts:
                names, words = matched_fields(kq, fields_of(texts[h.id]))
                kw = replace(h.keyword, fields=tuple(names), words=tuple(words))
                hits[n] = replace(h, keyword=kw)
    return hits


def explain_keyword(hit: Hit) -> str:
    """One line for --explain: the vector part, the keyword part and what matched."""
    kw = hit.keyword
    if kw is None:
        return ""
    vector = "" if kw.vector_score is None else f"vector {kw.vector_score:.3f} + "
    words = ", ".join(kw.words) or "-"
    return (
        f"= {vector}keyword (bm25 {kw.score:.3f}, rank {kw.rank}, {kw.scaled:.2f} of the best) "
        f"in {'/'.join(kw.fields) or '-'}: {words}"
    )
