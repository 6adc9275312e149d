"""A searcher over the query snapshot alone, for search/hybrid.py: what ``hybrid_hits`` asks
of a Searcher (the query's vector, exact vector top-k, the keyword side), answered without
LanceDB for a plain text query with no filters on a collection without captions to fuse.
Anything it can't answer as the ordinary path would raises ``Declined`` (the caller then
takes the ordinary path)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..ranking import image_candidates, make_hits, nearest, top_candidates
from ..types import Hit


class Declined(Exception):
    """The snapshot can't give the ordinary path's answer here."""


class SnapshotSearcher:
    def __init__(self, tower, index, records, keywords, caption_weight: float, keyword_weight):
        self.tower = tower
        self.index = index
        self.records = records  # snapshot.Records
        self.keywords = keywords  # bm25.KeywordSnapshot
        self.caption_weight = caption_weight
        self.keyword_weight = keyword_weight

    def _weight(self, query) -> float:
        return self.caption_weight if query.caption_weight is None else query.caption_weight

    def _query_vector(self, query) -> tuple[np.ndarray, list[int]]:
        return self.tower.encode_texts([query.plain_text.strip()])[0], []

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        exclude: Iterable[int] = (),
        *,
        filters=None,
        caption_weight: float = 0.0,
        min_score: float | None = None,
        sort: str = "score",
        only: np.ndarray | None = None,
    ) -> list[Hit]:
        """Searcher.search_vector where nothing is filtered and no captions are fused (the
        snapshot serves only collections without captions, or a caption weight of 0)."""
        if filters:
            raise Declined
        index = self.index
        query = np.asarray(vector, np.float32).reshape(-1)
        excluded = np.array(sorted({int(i) for i in exclude}), np.int64)
        scores, ids, pos = nearest(index, query, k, only, excluded)
        positions = dict(zip(ids.tolist(), pos.tolist(), strict=True))
        candidates = top_candidates(image_candidates(scores, ids), k, min_score)
        found = self.records.at([positions[c.id] for c in candidates])
        if set(found) != {c.id for c in candidates}:
            raise Declined
        return make_hits(candidates, found, sort, caption_weight)

    def keyword_search(self, kq, limit: int, where: str | None = None):
        if where or kq.phrases:
            raise Declined
        found = self.keywords.search(self.index.ids, kq.words, limit)
        if found is None:
            raise Declined
        return found

    def stop_words(self, words: list[str]) -> set[str]:
        return self.keywords.stop_words(words)

    def keyword_texts(self, ids: Sequence[int]) -> dict[int, str]:
        out = {}
        for i in ids:
            at = np.flatnonzero(self.index.ids == int(i))
            if len(at):
                out[int(i)] = self.keywords.text(int(at[0]))
        return out
