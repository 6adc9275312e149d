"""The keyword half of a cold hybrid query: LanceDB's full-text ranking without LanceDB.

``import lancedb`` is most of a cold hybrid query's time, so the query snapshot also holds
an inverted index of the ``keywords`` column (search/keywords.py) in FAISS position order,
built with LanceDB's own analyzer and ranked with its BM25 (lance-index ``scorer.rs``):

- tokens: split on every character that is not a letter or digit, drop tokens of 40 bytes
  or more, lower-case, stem (Snowball English), drop stop words (compared with the stemmed
  token, as Lance's filter chain does), fold to ASCII;
- score: the sum over the query's tokens of idf * (k1 + 1) * tf / (tf + k1 * (1 - b + b *
  doc length / average length)), idf = ln((N - n + 0.5) / (n + 0.5) + 1), in float32;
  ties broken by id (search/keywords.py ``ranked``).

Analyzers drift between releases, so the snapshot is written only when LanceDB ranks a set
of probe queries exactly so (``matches_lancedb``); anything it can't answer the same way
(quoted phrases, text that is not ASCII) goes to LanceDB. Files: ``kw_postings.npz``
(postings, document lengths, the keyword texts) and ``kw_tokens.json``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..keywords import TIE_FETCH, ranked

K1 = 1.2
B = 0.75
MAX_TOKEN_BYTES = 40
POSTINGS = "kw_postings.npz"
TOKENS = "kw_tokens.json"
FORMAT = 1
MAX_ROWS = 200_000  # built in Python at each index build: about a second per 10k rows

# Lance's English stop words (Snowball's list less its contractions, which the tokenizer
# splits anyway), checked against LanceDB in tests/unit/test_bm25.py
_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before
being below between both but by can did do does doing don down during each few for from
further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own s same she should so some such t than that the their
theirs them themselves then there these they this those through to too under until up
very was we were what when where which while who whom why will with you your yours
yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
_SPLIT = re.compile(r"[^\W_]+")  # letters and digits (\w less the underscore)


@lru_cache(maxsize=1)
def _stemmer():
    from snowballstemmer.english_stemmer import EnglishStemmer

    return EnglishStemmer()


@lru_cache(maxsize=65536)
def _analyze(word: str) -> str | None:
    """One base token through Lance's filters; None where a filter drops it."""
    if len(word.encode("utf-8")) >= MAX_TOKEN_BYTES:
        return None
    stem = _stemmer().stemWord(word.lower())
    if stem in STOP_WORDS:
        return None
    if stem.isascii():
        return stem
    folded = unicodedata.normalize("NFKD", stem)
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


def tokenize(text: str) -> list[str]:
    """LanceDB's tokens of ``text`` (its "simple" analyzer with pixfind's FTS settings)."""
    return [t for w in _SPLIT.findall(text) if (t := _analyze(w)) is not None]


class KeywordSnapshot:
    """The inverted index of one snapshot: BM25 search by FAISS position."""

    def __init__(self, tokens: dict[str, int], arrays: dict[str, np.ndarray]):
        self.tokens = tokens  # token -> its row in the postings
        self.starts = arrays["starts"]  # postings of token t: [starts[t], starts[t + 1])
        self.docs = arrays["docs"]  # positions, ascending within a token
        self.freqs = arrays["freqs"]
        self.lengths = arrays["lengths"]  # tokens per document
        self.text_starts = arrays["text_starts"]
        self.text_blob = arrays["text_blob"]
        self.rows = len(self.lengths)
        self.avg_length = np.float32(self.lengths.sum()) / np.float32(max(self.rows, 1))

    @classmethod
    def build(cls, texts: list[str | None]) -> KeywordSnapshot:
        vocab: dict[str, int] = {}
        postings: list[list[tuple[int, int]]] = []
        lengths = np.zeros(len(texts), np.int32)
        for pos, text in enumerate(texts):
            counts = Counter(tokenize(text or ""))
            lengths[pos] = sum(counts.values())
            for token, n in counts.items():
                row = vocab.setdefault(token, len(vocab))
                if row == len(postings):
                    postings.append([])
                postings[row].append((pos, n))
        sizes = np.array([len(p) for p in postings], np.int64)
        flat = [x for p in postings for x in p]
        encoded = [(t or "").encode("utf-8", "surrogateescape") for t in texts]
        arrays = {
            "starts": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            "docs": np.array([d for d, _ in flat], np.int32),
            "freqs": np.array([n for _, n in flat], np.int32),
            "lengths": lengths,
            "text_starts": np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(
                np.int64
            ),
            "text_blob": np.frombuffer(b"".join(encoded), np.uint8),
        }
        return cls(vocab, arrays)

    def save(self, directory: Path) -> None:
        np.savez(directory / POSTINGS, **self._arrays())
        (directory / TOKENS).write_text(json.dumps({"format": FORMAT, "tokens": list(self.tokens)}))

    def _arrays(self) -> dict[str, np.ndarray]:
        names = ("starts", "docs", "freqs", "lengths", "text_starts", "text_blob")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def load(cls, directory: Path, rows: int) -> KeywordSnapshot | None:
        """The snapshot's inverted index, or None where it has none (or not for ``rows``)."""
        try:
            meta = json.loads((directory / TOKENS).read_text())
            if meta.get("format") != FORMAT:
                return None
            with np.load(directory / POSTINGS) as z:
                arrays = {name: z[name] for name in z.files}
        except (OSError, ValueError, KeyError):
            return None
        found = cls({t: i for i, t in enumerate(meta["tokens"])}, arrays)
        return found if found.rows == rows else None

    # -- what search/hybrid.py asks of the keyword side ------------------------------------
    def answerable(self, text: str) -> bool:
        """Whether ``search`` ranks ``text`` as LanceDB does: no phrases (positions are not
        kept), ASCII only (Lance folds accents its own way)."""
        return text.isascii() and '"' not in text

    def matches(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(positions, BM25 scores float32) of every document holding a token of ``text``."""
        scores = np.zeros(self.rows, np.float32)
        hit = np.zeros(self.rows, bool)
        n = np.float32(self.rows)
        for token in tokenize(text):
            row = self.tokens.get(token)
            if row is None:
                continue
            lo, hi = self.starts[row], self.starts[row + 1]
            docs, tf = self.docs[lo:hi], self.freqs[lo:hi].astype(np.float32)
            df = np.float32(hi - lo)
            idf = np.log((n - df + np.float32(0.5)) / (df + np.float32(0.5)) + np.float32(1))
            length = self.lengths[docs].astype(np.float32)
            norm = np.float32(K1) * (np.float32(1 - B) + np.float32(B) * length / self.avg_length)
            scores[docs] += idf * (np.float32(K1 + 1) * tf / (tf + norm))
            hit[docs] = True
        found = np.flatnonzero(hit)
        return found, scores[found]

    def search(self, ids: np.ndarray, text: str, limit: int):
        """keywords.search's answer, (ids, scores), from the snapshot (``ids``: by position);
        None where LanceDB's would not be settled (a tie at the cut wider than it fetches)."""
        pos, scores = self.matches(text)
        if len(scores) > limit:
            cut = -np.partition(-scores, limit - 1)[limit - 1]
            if np.count_nonzero(scores >= cut) >= max(limit + 1, TIE_FETCH):
                return None
        return ranked(ids[pos], scores, limit)

    def stop_words(self, words: list[str]) -> set[str]:
        """Which of ``words`` the full-text index ignores (no token left of them)."""
        return {w for w in words if not tokenize(w)}

    def text(self, position: int) -> str:
        lo, hi = self.text_starts[position], self.text_starts[position + 1]
        return self.text_blob[lo:hi].tobytes().decode("utf-8", "surrogateescape")


def matches_lancedb(snap: KeywordSnapshot, ids: np.ndarray, lancedb_search) -> bool:
    """Whether LanceDB (``lancedb_search(text, limit)``, keywords.search) ranks probe queries
    as the snapshot does: its most frequent tokens and a spread of others, alone and paired.
    This catches what the snapshot can't see: another analyzer, deleted or unindexed rows."""
    sizes = np.diff(snap.starts)
    by_size = [t for _, t in sorted(zip(-sizes, snap.tokens, strict=True))]
    probes = by_size[:3] + by_size[3 :: max(1, len(by_size) // 6)][:6]
    probes += [f"{a} {b}" for a, b in zip(probes[:4], probes[4:8], strict=False)]
    for text in probes:
        ours = snap.search(ids, text, 50)
        theirs = lancedb_search(text, 50)
        if ours is None or not np.array_equal(ours[0], theirs[0]):
            return False
        if not np.allclose(ours[1], theirs[1], rtol=0, atol=1e-5):
            return False
    return True


def write(directory: Path, store, ids: np.ndarray, rows) -> None:
    """The snapshot's keyword files (``rows``: a pyarrow table in FAISS order), where the
    store has a full-text index that they rank exactly as LanceDB does."""
    from ..keywords import COLUMN, KeywordQuery, index_ready, search

    if COLUMN not in rows.column_names or len(ids) > MAX_ROWS or not index_ready(store):
        return
    try:
        snap = KeywordSnapshot.build(rows[COLUMN].to_pylist())
        same = matches_lancedb(snap, ids, lambda text, n: search(store, KeywordQuery(text), n))
    except Exception:  # noqa: BLE001 - without these files hybrid queries just go warm
        return
    if same:
        snap.save(directory)


def columns(store) -> list[str]:
    """The column ``write`` needs from the store's rows, where the table has it."""
    from ..keywords import COLUMN, has_column

    return [COLUMN] if has_column(store) else []
