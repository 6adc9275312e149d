"""The cold path's keyword index (search/cold/bm25.py) against LanceDB's full-text index:
the same tokens, the same stop words, the same BM25 scores and the same ranking (ties by
id), on real captions where ../shared/photos is present and on made-up texts always."""

from __future__ import annotations

import json
import random

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.index import FTS
from pixfind.search import keywords
from pixfind.search.cold.bm25 import STOP_WORDS, KeywordSnapshot, matches_lancedb, tokenize
from pixfind.search.keywords import KeywordQuery, ranked, split_words

from ..conftest import SHARED_PHOTOS

_WORDS = (
    "dog dogs running ran runs beach sunset tokyo Tokyo TOWER night rain shibuya crossing "
    "wedding anna cake dance danced dancing IMG DSC 2023 0001 red car cars happily happiness "
    "the a an of and is was does doing because ourselves yourselves above very"
)
WORDS = _WORDS.split()


class _Store:
    """What keywords.search asks of a Store: a home (for its error messages) and a table."""

    def __init__(self, texts, tmp_path):
        db = lancedb.connect(tmp_path / "db")
        data = pa.table({"id": np.arange(len(texts), dtype=np.int64) * 7 + 3, "keywords": texts})
        self.table = db.create_table("t", data=data)
        self.table.create_index(
            "keywords", config=FTS(with_position=True, remove_stop_words=True), replace=True
        )
        self.home = tmp_path
        self.ids = data["id"].to_numpy()


def _made_up(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        "\n".join(split_words(" ".join(rng.choices(WORDS, k=rng.randint(1, 9)))) for _ in range(3))
        for _ in range(n)
    ]


def _real(n: int) -> list[str]:
    lines = (SHARED_PHOTOS / "captions.jsonl").read_text().splitlines()[:n]
    return [f"IMG {i:04d}\n{json.loads(line)['caption']}" for i, line in enumerate(lines)]


def test_stop_words_are_lancedbs():
    probe = sorted(STOP_WORDS | {"dog", "would", "could", "ought", "cannot", "doe", "thing"})
    ours = {w for w in probe if not tokenize(w)}
    assert ours == keywords.stop_words(probe)


@pytest.mark.parametrize("corpus", ["made-up", "real"])
def test_bm25_ranks_as_lancedb(tmp_path, corpus):
    if corpus == "real" and not (SHARED_PHOTOS / "captions.jsonl").exists():
        pytest.skip("../shared/photos not present; real-caption check skipped")
    texts = _made_up(400) if corpus == "made-up" else _real(3000)
    store = _Store(texts, tmp_path)
    snap = KeywordSnapshot.build(texts)
    rng = random.Random(1)
    vocab = sorted({w for t in texts for w in t.split()})
    queries = ["a dog", "dog dog", "the", "IMG", "xyzzy", "Running dogs at sunset"]
    queries += [" ".join(rng.sample(vocab, rng.randint(1, 4))) for _ in range(60)]
    for text in queries:
        for limit in (5, 50, 200):
            want_ids, want_scores = keywords.search(store, KeywordQuery(text), limit)
            got = snap.search(store.ids, text, limit)
            assert got is not None
            assert got[0].tolist() == want_ids.tolist(), text
            np.testing.assert_allclose(got[1], want_scores, rtol=0, atol=1e-5)
    assert matches_lancedb(snap, store.ids, lambda t, n: keywords.search(store, KeywordQuery(t), n))
    assert snap.text(5) == texts[5]


def test_ties_are_settled_by_id():
    ids = np.array([9, 4, 7, 1, 8])
    scores = np.array([1.0, 2.0, 1.0, 1.0, 0.5], np.float32)
    got_ids, got_scores = ranked(ids, scores, 3)
    assert got_ids.tolist() == [4, 1, 7] and got_scores.tolist() == [2.0, 1.0, 1.0]
    assert keywords.cut_in_tie(-np.sort(-scores), 2, 3)  # 3rd ties the 2nd: not settled
    assert not keywords.cut_in_tie(np.array([3.0, 2.0, 1.0], np.float32), 2, 3)


def test_a_snapshot_that_ranks_otherwise_is_not_used(tmp_path):
    texts = _made_up(100)
    store = _Store(texts, tmp_path)
    other = KeywordSnapshot.build(texts[:-1] + ["dog dog dog dog"])  # not what LanceDB holds
    search = lambda t, n: keywords.search(store, KeywordQuery(t), n)  # noqa: E731
    assert not matches_lancedb(other, store.ids, search)
    saved = KeywordSnapshot.build(texts)
    saved.save(tmp_path)
    loaded = KeywordSnapshot.load(tmp_path, len(texts))
    assert loaded is not None and matches_lancedb(loaded, store.ids, search)
    assert KeywordSnapshot.load(tmp_path, len(texts) + 1) is None
