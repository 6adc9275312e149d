"""The keyword side of an index: what text each photo is found by, and how a query's words
are read (quoted phrases must match).

A photo's ``keywords`` column holds its file name split into words, the folder names under
the indexed root, its captions (sidecars, captions.jsonl, EXIF/XMP/IPTC descriptions), its
camera make and model, and the text OCR read inside it (``pixfind index --ocr``).
LanceDB's native full-text index (BM25, stemming, stop words, ASCII folding) does the
tokenising and ranking; this module only turns names such as ``IMG_2023_tokyoTower`` into
words LanceDB's tokenizer can see (``IMG 2023 tokyo Tower``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import backend_errors
from .types import OcrText

COLUMN = "keywords"

_SEPARATORS = re.compile(r"[_\-.+,;()\[\]{}~#@!&=]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_DIGITS = re.compile(r"(?<=[^\W\d])(?=\d)|(?<=\d)(?=[^\W\d])")
_PHRASE = re.compile(r'"([^"]*)"')
_WORD = re.compile(r"\w+")


def split_words(name: str) -> str:
    """``IMG_2023_tokyoTower`` -> ``IMG 2023 tokyo Tower``: separators, camelCase and
    letter/digit boundaries become spaces."""
    text = _SEPARATORS.sub(" ", name)
    text = _CAMEL.sub(" ", text)
    text = _DIGITS.sub(" ", text)
    return " ".join(text.split())


def folder_names(path: str, roots: Sequence[str] = ()) -> list[str]:
    """The folders of ``path`` from the indexed root that holds it down (the root's own name
    included: ``~/Pictures/Wedding 2019`` indexed alone is still found by "wedding"); for a
    path under no given root, its last three folders."""
    parent = os.path.dirname(path)
    for root in sorted(roots, key=len, reverse=True):
        root = root.rstrip(os.sep) or os.sep
        if parent == root or parent.startswith(root.rstrip(os.sep) + os.sep):
            base = os.path.dirname(root)
            rel = os.path.relpath(parent, base) if base != root else parent
            return [p for p in rel.split(os.sep) if p and p != "."]
    return [p for p in parent.split(os.sep) if p][-3:]


def file_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def keyword_text(
    path: str,
    roots: Sequence[str] = (),
    captions: Sequence[str] = (),
    camera_make: str | None = None,
    camera_model: str | None = None,
    ocr_text: str | None = None,
) -> str:
    """The text a photo is found by: one line per field of LINES (captions last, one line
    each), so which field matched can be read back (``fields_of``)."""
    lines = [
        split_words(file_stem(path)),
        " ".join(split_words(f) for f in folder_names(path, roots)),
        " ".join(x for x in (camera_make, camera_model) if x),
        ocr_text or "",
        *captions,
    ]
    text = "\n".join(" ".join(line.split()) for line in lines)
    try:  # a name that is not UTF-8 (surrogate escapes): U+FFFD, as display_path shows it
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


LINES = ("name", "folder", "camera", "ocr")  # then "caption" lines


def fields_of(text: str | None) -> dict[str, str]:
    """A stored keyword text back as {field: text}."""
    lines = (text or "").split("\n")
    out = {name: lines[i] if i < len(lines) else "" for i, name in enumerate(LINES)}
    out["caption"] = " ".join(lines[len(LINES) :])
    return out


@dataclass(frozen=True)
class KeywordQuery:
    """A query's words for the keyword index: ``phrases`` (quoted) must match, ``words``
    (the rest) rank."""

    words: str
    phrases: tuple[str, ...] = ()

    @property
    def vector_text(self) -> str:
        """The same query for the vector side: the quotes dropped."""
        return " ".join([*self.phrases, self.words]).strip()

    def __bool__(self) -> bool:
        return bool(self.words.strip() or self.phrases)


def parse_keywords(text: str) -> KeywordQuery:
    """``tokyo "shibuya crossing" night`` -> words ``tokyo night``, phrase ``shibuya
    crossing``; an unclosed quote is read as an ordinary word; ``IMG_2023`` is searched as
    ``IMG 2023``, as names are indexed."""
    phrases = tuple(split_words(p) for p in _PHRASE.findall(text) if _WORD.search(p))
    rest = _PHRASE.sub(" ", text).replace('"', " ")
    return KeywordQuery(split_words(rest), phrases)  # split as the photos' names were


def _norm(word: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


def _same(query_word: str, word: str) -> bool:
    """Loosely the same word (for showing matches only; ranking is LanceDB's stemmer's)."""
    if query_word == word:
        return True
    short, long_ = sorted((query_word, word), key=len)
    return len(short) >= 4 and long_.startswith(short[: max(4, len(short) - 2)])


def matched_fields(query: KeywordQuery, fields: dict[str, str]) -> tuple[list[str], list[str]]:
    """(fields, words): which of a photo's fields hold the query's words, and the photo's
    words that matched (as written there), for --explain and highlighting."""
    wanted = [_norm(w) for w in _WORD.findall(query.vector_text) if len(w) > 1 or w.isdigit()]
    hit_fields, hit_words = [], []
    for name, text in fields.items():
        found = [
            w for w in _WORD.findall(split_words(text)) if any(_same(q, _norm(w)) for q in wanted)
        ]
        if found:
            hit_fields.append(name)
            hit_words += [w for w in found if w not in hit_words]
    return hit_fields, hit_words


# -- the column and its full-text index in the store ------------------------------------------
def has_column(store) -> bool:
    return COLUMN in store.table.schema.names


def index_ready(store) -> bool:
    """Whether the store's keyword column has its full-text index."""
    if not has_column(store):
        return False
    with backend_errors(store.home, "listing its indexes"):
        return any(
            ix.index_type == "FTS" and COLUMN in ix.columns for ix in store.table.list_indices()
        )


def on_disk(home) -> bool:
    """Whether an index folder may hold a keyword index, without opening LanceDB (the cold
    path's test: LanceDB keeps the table's indexes, only FTS here, under ``_indices``)."""
    from pathlib import Path

    folder = Path(home) / "db" / "images.lance" / "_indices"
    return folder.is_dir() and any(folder.iterdir())


def add_column(store, roots: Sequence[str] = ()) -> int:
    """Give an index written before keywords existed its ``keywords`` column, computed from
    the rows (names, folders, captions, camera): no re-embedding. Returns the rows filled."""
    import pyarrow as pa

    from .store import _real_paths

    if has_column(store):
        return 0
    with backend_errors(store.home, "adding the keywords column"):
        t = store._scan(["id", "path", "path_raw", "captions", "camera_make", "camera_model"])
        texts = [
            keyword_text(p, roots, caps or (), make, model)
            for p, caps, make, model in zip(
                _real_paths(t),
                t["captions"].to_pylist(),
                t["camera_make"].to_pylist(),
                t["camera_model"].to_pylist(),
                strict=True,
            )
        ]
        store.table.add_columns(pa.field(COLUMN, pa.string()))
        if t.num_rows:
            data = pa.table({"id": t["id"], COLUMN: pa.array(texts, pa.string())})
            store.table.merge_insert("id").when_matched_update_all().execute(data)
    return t.num_rows


def update_index(store) -> bool:
    """Build the full-text index when it is missing (a new index, one added to an old
    table, or a run killed before it was built); returns whether it was built. Rows written
    since are found anyway (LanceDB searches unindexed rows too) and folded into the index by
    ``Store.compact`` (``optimize``), which the indexer runs only when rows changed."""
    from lancedb.index import FTS

    if not has_column(store) or index_ready(store) or store.count() == 0:
        return False
    with backend_errors(store.home, "building its keyword index"):
        store.table.create_index(
            COLUMN, config=FTS(with_position=True, remove_stop_words=True), replace=True
        )
    return True


TIE_FETCH = 10_000  # rows asked for to settle a tie at the cut (more: LanceDB's choice)


def search(store, query: KeywordQuery, limit: int, where: str | None = None):
    """(ids int64, BM25 scores float32), best first, equal scores by id: photos matching
    ``query``; every quoted phrase must match. LanceDB returns equal scores in no fixed
    order, so where the cut falls inside a tie the rows around it are fetched too."""
    import numpy as np
    from lancedb.query import BooleanQuery, MatchQuery, Occur, PhraseQuery

    parts = [(Occur.MUST, PhraseQuery(p, COLUMN)) for p in query.phrases]
    if query.words:
        parts.append((Occur.SHOULD, MatchQuery(query.words, COLUMN)))
    fts = parts[0][1] if len(parts) == 1 else BooleanQuery(parts)
    for fetch in (limit + 1, max(limit + 1, TIE_FETCH)):
        with backend_errors(store.home, "searching its keywords"):
            q = store.table.search(fts, query_type="fts").select(["id", "_score"]).limit(fetch)
            if where:
                q = q.where(where, prefilter=True)
            t = q.to_arrow()
        ids = t["id"].to_numpy().astype(np.int64)
        scores = t["_score"].to_numpy().astype(np.float32)
        if not cut_in_tie(scores, limit, fetch):
            break
    return ranked(ids, scores, limit)


def cut_in_tie(scores, limit: int, fetch: int) -> bool:
    """Whether the best ``fetch`` of some scores may leave out a row that ties with the
    ``limit``-th best (so which rows make the cut is not settled yet)."""
    import numpy as np

    if len(scores) < fetch or len(scores) <= limit:
        return False
    best = -np.sort(-scores)
    return bool(best[fetch - 1] >= best[limit - 1])


def ranked(ids, scores, limit: int):
    """The best ``limit`` (ids, scores): by score, equal scores by id."""
    import numpy as np

    order = np.lexsort((ids, -scores))[:limit]
    return ids[order], scores[order]


def with_ocr(text: str | None, ocr_text: str) -> str:
    """A stored keyword text with its OCR line replaced (the rest is kept as written)."""
    lines = (text or "").split("\n")
    lines += [""] * (len(LINES) - len(lines))
    lines[LINES.index("ocr")] = " ".join(ocr_text.split())
    return "\n".join(lines)


# -- OCR text in the store: read once per photo and language, kept like the vectors --------
OCR_COLUMNS = ("ocr_text", "ocr_lang")


def add_ocr_columns(store) -> None:
    """Give an index written before OCR existed its (empty) OCR columns, in place."""
    import pyarrow as pa

    missing = [c for c in OCR_COLUMNS if c not in store.table.schema.names]
    if missing:
        with backend_errors(store.home, "adding the OCR columns"):
            store.table.add_columns([pa.field(c, pa.string()) for c in missing])


def ocr_pending(store, lang: str) -> set[str]:
    """Paths of the rows whose text was not read with ``lang`` (never, or another one)."""
    from .store import _real_paths

    if not set(OCR_COLUMNS) <= set(store.table.schema.names):
        return set(store.file_states())
    t = store._scan(["path", "path_raw", "ocr_lang"])
    done = t["ocr_lang"].to_pylist()
    return {p for p, d in zip(_real_paths(t), done, strict=True) if d != lang}


def set_ocr(store, found: dict[str, OcrText]) -> None:
    """Store text read in indexed photos (path -> text) and put it in their keywords, in
    one commit; vectors and everything else are kept."""
    import pyarrow as pa

    from .store import path_id

    ids = {path_id(p): o for p, o in found.items()}
    if not ids:
        return
    old = texts(store, list(ids))
    with backend_errors(store.home, "writing OCR text"):
        data = pa.table(
            {
                "id": pa.array(list(old), pa.int64()),
                COLUMN: [with_ocr(old[i], ids[i].text) for i in old],
                "ocr_text": [ids[i].text for i in old],
                "ocr_lang": [ids[i].lang for i in old],
            }
        )
        store.table.merge_insert("id").when_matched_update_all().execute(data)


def texts(store, ids) -> dict[int, str]:
    """id -> keyword text of the given rows."""
    id_list = ",".join(str(int(i)) for i in ids)
    t = store._scan(["id", COLUMN], f"id IN ({id_list})")
    return dict(zip(t["id"].to_pylist(), t[COLUMN].to_pylist(), strict=True))


_STOP: dict[str, bool] = {}


def stop_words(words: Sequence[str]) -> set[str]:
    """Which of ``words`` the full-text index ignores (stop words, in LanceDB's own list):
    asked of LanceDB once per word and process, on a one-word-per-row table in memory."""
    import lancedb
    import pyarrow as pa
    from lancedb.index import FTS
    from lancedb.query import MatchQuery

    new = [w for w in dict.fromkeys(words) if w not in _STOP]
    if new:
        table = lancedb.connect("memory://").create_table(
            "probe", data=pa.table({"word": new}), mode="overwrite"
        )
        table.create_index("word", config=FTS(remove_stop_words=True))
        for w in new:
            found = table.search(MatchQuery(w, "word"), query_type="fts").limit(1).to_arrow()
            _STOP[w] = found.num_rows == 0
    return {w for w in words if _STOP[w]}
