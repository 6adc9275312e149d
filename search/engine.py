"""The query side: ``Searcher.run(Query)`` encodes the query with the index's model and ranks
by cosine. It picks the path itself: a plain text query in a fresh process takes the cold
path (search/cold/: no open_clip, no LanceDB), everything else the warm one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import keywords, objectstore
from .encoder import (
    Encoder,
    TextEncoder,
    load_encoder,
    load_text_encoder,
    text_recipe,
)
from .errors import BadQuery, EmptyIndex, IndexMismatch, UnsupportedImage
from .index import VectorIndex
from .models import requested_spec
from .query import MAX_K, MAX_QUERY_CHARS, SORTS, Query, Term, combine
from .ranking import (
    Candidate,
    by_date,
    fused_candidates,
    image_candidates,
    make_hits,
    nearest,
    top_candidates,
)
from .remote import is_url
from .settings import get_settings, resolve_home
from .store import Captioned, Store, rebuild_hint
from .types import EncoderSpec, Filters, Hit, ImageRecord

__all__ = ["MAX_K", "MAX_QUERY_CHARS", "SORTS", "Query", "Results", "Searcher", "open_index"]

# Weight of the best caption's similarity in a captioned image's score; see README
# "Captions" for the eval that chose it (bench/caption_weight.py).
DEFAULT_CAPTION_WEIGHT = 0.7


@dataclass(frozen=True)
class Results:
    """One page of hits; ``next_offset`` is None on the last page."""

    hits: list[Hit]
    next_offset: int | None
    took_ms: float
    path: str  # "cold" or "warm": which path answered
    mode: str = "vector"  # how it was ranked: hybrid, vector or keyword


class Searcher:
    """Search one index. The store, the encoder and the FAISS index load lazily, once."""

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        spec: EncoderSpec | None = None,
        device: str = "auto",
        cold: bool = True,
        runtime: str | None = None,
    ):
        self.home = resolve_home(home)
        Store.require(self.home)
        self.device = device
        self.runtime = runtime  # auto | torch | onnx; None: PIXFIND_RUNTIME (search/onnxrt.py)
        self.caption_weight = DEFAULT_CAPTION_WEIGHT
        self.calibrate = True  # caption similarities on the image scores' scale
        self._requested = spec
        self._cold_allowed = cold and spec is None
        self._store: Store | None = None
        self._spec: EncoderSpec | None = None
        self._encoder: Encoder | None = None
        self._text_encoder: TextEncoder | Encoder | None = None
        self._from_snapshot = False  # the text encoder came from the query snapshot (ONNX)
        self._index: VectorIndex | None = None
        self._captioned: tuple[int, Captioned] | None = None
        self._keywords: tuple[int, bool] | None = None
        self.fusion = "linear"  # or "rrf": see search/hybrid.py
        self.keyword_weight = 1.0  # of the linear fusion (search/hybrid.py)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.home)
        return self._store

    @property
    def spec(self) -> EncoderSpec:
        if self._spec is None:
            requested = self._requested
            self._spec = self.store.check_spec(requested) if requested else self.store.info.spec
        return self._spec

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:  # a cache export where there is one (search/onnxmodel.py)
            from .onnxmodel import exported_encoder  # Pillow: not for the cold path

            encoder = exported_encoder(self.spec, self.device, self.runtime) or load_encoder(
                self.spec, self.device, self.runtime
            )
            self.store.check_model(encoder.info)
            self._encoder = encoder
        return self._encoder

    @property
    def text_encoder(self) -> TextEncoder | Encoder:
        """The full encoder when it is already loaded, else the text tower alone."""
        if self._encoder is not None:
            return self._encoder
        if self._text_encoder is None:
            encoder = self._snapshot_text_encoder() or load_text_encoder(
                self.spec, self.device, self.runtime
            )
            if encoder.dim != self.store.info.dim:
                raise IndexMismatch(
                    f"{self.spec.label} encodes {encoder.dim}-d vectors but the index at "
                    f"{self.home} holds {self.store.info.dim}-d ones; "
                    f"{rebuild_hint(self.home, self.spec.label)}"
                )
            self._text_encoder = encoder
        return self._text_encoder

    def _snapshot_text_encoder(self) -> TextEncoder | None:
        """The ONNX text tower the query snapshot names, for the index's own model on the
        CPU: a filtered text query then imports neither torch nor open_clip. (Not the cold
        path's numpy tower: a warm searcher answers many queries, and ONNX Runtime encodes
        one in half the time on a busy machine, 45 vs 80-120 ms for ViT-B-32.)"""
        from .cold.fastpath import text_tower
        from .cold.snapshot import read_meta
        from .index import INDEX_DIR

        if self._requested is not None or self.device not in ("auto", "cpu"):
            return None
        meta = read_meta(self.home / INDEX_DIR) or {}
        recipe = meta.get("recipe") or {}
        if meta.get("identity") != self.store.info.identity or "onnx" not in recipe:
            return None
        tower = text_tower({"onnx": recipe["onnx"]}, self.device, self.runtime)
        if tower is None or tower.dim != self.store.info.dim:
            return None
        self._from_snapshot = True
        return TextEncoder(self.store.info.spec, tower, "cpu")

    @property
    def index(self) -> VectorIndex:
        if self._index is None or self._index.infos.store_version != self.store.version:
            # with a model loaded, a rebuilt snapshot can say how to run its text tower
            loaded = self._encoder is not None or (
                self._text_encoder is not None and not self._from_snapshot
            )
            recipe = text_recipe(self.spec) if loaded else None
            self._index = objectstore.vector_index(self.store, recipe)
            if self.device.startswith("cuda"):
                self._index.to_gpu()  # with faiss-gpu installed (pixfind[gpu]); else stays
        return self._index

    def refresh(self) -> None:
        """Pick up writes made by other processes since this searcher opened the table."""
        self.store.table.checkout_latest()

    def __len__(self) -> int:
        return self.store.count()

    # -- the one entry point ---------------------------------------------------------------
    def run(self, query: Query) -> Results:
        """Answer a query: one page of hits, ranked exactly among the photos its filters
        allow. The first plain text query of a fresh searcher may take the cold path; its hits
        are the warm path's, hit for hit (tests/e2e/test_fast_query.py)."""
        start = time.perf_counter()
        end = query.offset + query.k
        # the top end+1 by score (one more than the page says whether more exist); a date
        # order sorts the top end by score
        (hits, mode), path = self._cold(query, end + 1), "cold"
        if hits is None:
            mode = self.mode(query)
            hits, path = self._warm(query, end + 1, mode), "warm"
        more = len(hits) > end
        hits = by_date(hits[:end]) if query.sort == "date" else hits[:end]
        took = (time.perf_counter() - start) * 1000
        return Results(hits[query.offset :], end if more else None, took, path, mode)

    def _cold(self, query: Query, want: int) -> tuple[list[Hit] | None, str]:
        text = query.plain_text
        nothing_loaded = self._store is None and self._text_encoder is None
        if text is None or query.filters or not (self._cold_allowed and nothing_loaded):
            return None, ""  # checked first: a searcher that stays never looks at the disk here
        if query.mode == "keyword":
            return None, ""
        from .cold.fastpath import hybrid_search, text_search

        self._cold_allowed = False  # once: a searcher that stays loads the warm path
        if query.mode != "vector" and keywords.on_disk(self.home):
            return hybrid_search(
                self.home, query, want, self.fusion, self.keyword_weight, self._weight(query),
                device=self.device, runtime=self.runtime,
            ), "hybrid"  # fmt: skip
        return text_search(
            self.home, text, want, min_score=query.min_score, sort="score",
            caption_weight=self._weight(query), device=self.device, runtime=self.runtime,
        ), "vector"  # fmt: skip

    def mode(self, query: Query) -> str:
        """How ``query`` is ranked: its mode, else hybrid where the index has a keyword index
        and the query has words (an image query is a vector query)."""
        if query.mode == "vector":
            return "vector"
        if query.mode == "keyword" and not query.keyword_text.strip():
            raise BadQuery("keyword mode needs words to search for, not only images")
        if not query.keyword_text.strip():
            return "vector"
        version = self.store.version
        if self._keywords is None or self._keywords[0] != version:
            self._keywords = (version, keywords.index_ready(self.store))
        if not self._keywords[1]:
            if query.mode == "keyword":
                raise BadQuery(
                    f"the index at {self.home} has no keyword index yet; run `pixfind --index "
                    f"{self.home} index PHOTOS_DIR` to build it"
                )
            return "vector"
        return query.mode or "hybrid"

    def _warm(self, query: Query, want: int, mode: str) -> list[Hit]:
        if mode != "vector":
            from .hybrid import hybrid_hits, keyword_hits

            kq = keywords.parse_keywords(query.keyword_text)
            if mode == "keyword":
                return keyword_hits(self, query, kq, want)
            if kq:
                return hybrid_hits(self, query, kq, want, self.fusion)
        vector, exclude = self._query_vector(query)
        return self.search_vector(
            vector,
            want,
            exclude,
            filters=query.filters,
            caption_weight=self._weight(query) if query.texty else 0.0,
            min_score=query.min_score,
        )

    # -- the keyword side, as search/hybrid.py asks for it (the cold path answers from its
    # snapshot instead: search/cold/hybridpath.py)
    def keyword_search(self, kq: keywords.KeywordQuery, limit: int, where: str | None = None):
        return keywords.search(self.store, kq, limit, where)

    def stop_words(self, words: list[str]) -> set[str]:
        return keywords.stop_words(words)

    def keyword_texts(self, ids: Sequence[int]) -> dict[int, str]:
        return keywords.texts(self.store, ids)

    def _weight(self, query: Query) -> float:
        return self.caption_weight if query.caption_weight is None else query.caption_weight

    def _query_vector(self, query: Query) -> tuple[np.ndarray, list[int]]:
        """The query's vector and the indexed images to leave out of its results: the image
        asked about, or indexed images used as positive terms."""
        if query.similar_to is not None:
            return self.store.vector(query.similar_to), [query.similar_to]
        if query.upload is not None:
            from .images import DEFAULT_MAX_MEGAPIXELS, DecodeError, decode_bytes

            # A query needs a few hundred pixels a side: uploads (one decode per request) are
            # capped far below indexing. JPEGs keep the indexing cap: above 50 MP their short
            # side is >= 763 px (sides <= 65535), so they decode at 1/2 to 1/8 scale (draft)
            # and stay under 50 MP decoded.
            upload_megapixels = 50.0
            is_jpeg = query.upload[:3] == b"\xff\xd8\xff"
            cap = DEFAULT_MAX_MEGAPIXELS if is_jpeg else upload_megapixels
            try:
                decoded = decode_bytes(
                    query.upload, draft_size=self.encoder.image_size, max_megapixels=cap
                )
            except DecodeError as exc:
                if str(exc).startswith("too large:"):
                    raise UnsupportedImage(
                        f"the upload is too large to search with ({str(exc).split(' > ')[0]}); "
                        f"uploads are limited to {cap:g} megapixels: send a smaller image"
                    ) from exc
                raise UnsupportedImage(f"the upload is not a usable image: {exc}") from exc
            return self.encoder.encode_images([decoded.image])[0], []
        exclude = []
        for t in query.terms:
            if t.kind == "image" and t.weight > 0 and not is_url(t.value):
                own = self.store.id_for_path(str(Path(t.value).expanduser().resolve()))
                if own is not None:
                    exclude.append(own)
        return self.terms_vector(query.terms), exclude

    # -- conveniences over run (the Python API) --------------------------------------------
    def search(self, text: str, k: int = 10, **options) -> list[Hit]:
        """Text search; images with captions score ``(1-w)*image + w*best caption``.
        Options: filters, caption_weight, min_score, sort, offset."""
        return self.run(Query.text(text, k=k, **options)).hits

    def search_image(self, path: str | os.PathLike, k: int = 10, **options) -> list[Hit]:
        """Images like the one at ``path``; that image itself is left out when indexed."""
        return self.run(Query.image(str(path), k=k, **options)).hits

    def similar(self, image_id: int, k: int = 10, **options) -> list[Hit]:
        """'More like this' for an indexed image, leaving the image itself out."""
        return self.run(Query(similar_to=image_id, k=k, **options)).hits

    def search_terms(self, terms: Sequence[Term], k: int = 10, **options) -> list[Hit]:
        """``"dog" + 2*"beach" - "people" + image``: captions count when a text term leads;
        indexed images used as positive terms are left out of the results."""
        return self.run(Query(terms=tuple(terms), k=k, **options)).hits

    # -- vectors ---------------------------------------------------------------------------
    def text_vector(self, text: str) -> np.ndarray:
        text = text.strip()
        if not text:
            raise BadQuery("empty query: give some words to search for, or --image PATH")
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"query too long ({len(text)} chars, limit {MAX_QUERY_CHARS})")
        return self.text_encoder.encode_texts([text])[0]

    def image_vector(self, path: str | os.PathLike) -> np.ndarray:
        from .images import load_query_image  # Pillow: not for text queries

        decoded = load_query_image(path, draft_size=self.encoder.image_size)
        return self.encoder.encode_images([decoded.image])[0]

    def terms_vector(self, terms: Sequence[Term]) -> np.ndarray:
        """The vector of a query-algebra expression (see search/query.py); a single
        unweighted term is its own vector."""
        vectors = [
            self.text_vector(t.value) if t.kind == "text" else self.image_vector(t.value)
            for t in terms
        ]
        if len(terms) == 1 and terms[0].weight == 1.0:
            return vectors[0]
        return combine(vectors, [t.weight for t in terms])

    def captioned(self) -> Captioned:
        """Caption vectors of the index (cached per store version)."""
        version = self.store.version
        if self._captioned is None or self._captioned[0] != version:
            self._captioned = (version, self.store.captioned())
        return self._captioned[1]

    # -- ranking ---------------------------------------------------------------------------
    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        exclude: Iterable[int] = (),
        *,
        filters: Filters | None = None,
        caption_weight: float = 0.0,
        min_score: float | None = None,
        sort: str = "score",
        only: np.ndarray | None = None,
    ) -> list[Hit]:
        """Exact top-k among the photos that pass ``filters`` (and are among the ids ``only``,
        when given); captioned images score (1 - w) * image + w * calibrated best caption
        when ``caption_weight`` w > 0."""
        if k < 1:
            raise BadQuery(f"k must be at least 1, got {k}")
        if not 0.0 <= caption_weight <= 1.0:
            raise BadQuery(f"caption weight must be between 0 and 1, got {caption_weight}")
        if sort not in SORTS:
            raise BadQuery(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        index = self.index
        if len(index) == 0:
            raise EmptyIndex(
                f"the index at {self.home} holds no images yet; add some with "
                f"`pixfind --index {self.home} index PHOTOS_DIR`"
            )
        query = np.asarray(vector, np.float32).reshape(-1)
        excluded = np.array(sorted({int(i) for i in exclude}), np.int64)
        allowed = self.store.filter_ids(filters) if filters else None
        if only is not None:
            only = np.asarray(only, np.int64)
            allowed = only if allowed is None else np.intersect1d(allowed, only)
        cap = self.captioned() if caption_weight > 0 else None
        fused = cap is not None and len(cap.ids) > 0

        # Images scored by FAISS alone: everything allowed, minus the captioned ones when
        # fusing (those are scored exactly below, image and caption together).
        drop = np.union1d(excluded, cap.ids) if fused else excluded
        scores, ids, pos = nearest(index, query, k, allowed, drop)
        positions = dict(zip(ids.tolist(), pos.tolist(), strict=True))
        candidates: list[Candidate] = image_candidates(scores, ids)
        if fused:
            candidates += fused_candidates(
                cap, query, k, caption_weight, allowed, excluded, self.calibrate
            )
        candidates = top_candidates(candidates, k, min_score)
        records = self._records(index, [c.id for c in candidates], positions)
        return make_hits(candidates, records, sort, caption_weight)

    def _records(self, index: VectorIndex, ids: list[int], positions: dict[int, int]) -> dict:
        """Metadata of the hits. The FAISS index was built from this store version in row
        order, so FAISS positions are row offsets: k rows of the index's query snapshot
        (memory-mapped), else a LanceDB take, where an ``id IN (...)`` filter scans every row
        (slow at 1M rows). Falls back to the filter when the store moved on, a hit came from
        elsewhere (captions), or the rows don't carry those ids."""
        fresh = index.infos.store_version == self.store.version
        if ids and fresh and all(i in positions for i in ids):
            snap = index.records() if get_settings().fast_path else None
            if snap is not None:
                found = snap.at([positions[i] for i in ids])
                if set(found) == set(ids):
                    return found
            try:
                found: dict[int, ImageRecord] = self.store.records_at([positions[i] for i in ids])
                if set(found) == set(ids):
                    return found
            except Exception:  # noqa: S110 - any backend trouble: use the filter below
                pass
        return self.store.records(ids)


def open_index(
    home: str | os.PathLike | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    device: str = "auto",
    runtime: str | None = None,
) -> Searcher:
    """Open an index for searching: ``open_index("~/.local/share/pixfind").search("a dog")``."""
    return Searcher(home, requested_spec(model, pretrained), device, runtime=runtime)
