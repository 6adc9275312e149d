"""The query side: encode a text or image query with the index's model and rank by cosine."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from .cold.snapshot import HitRecord
from .cold.texttower import fast_path_enabled
from .encoder import (
    Encoder,
    TextEncoder,
    load_encoder,
    load_text_encoder,
    text_recipe,
)
from .errors import BadQuery, EmptyIndex, IndexMismatch
from .images import load_query_image
from .index import VectorIndex
from .query import Term, combine
from .settings import resolve_home
from .store import Captioned, Store, rebuild_hint
from .types import EncoderSpec, Filters, Hit, ImageRecord

MAX_K = 10_000
MAX_QUERY_CHARS = 1_000
# Weight of the best caption's similarity in a captioned image's score; see README
# "Captions" for the eval that chose it (bench/caption_weight.py).
DEFAULT_CAPTION_WEIGHT = 0.7
SORTS = ("score", "date")
# (score, id, image score, (caption cosine, caption scaled) or None, best caption or None)
Candidate = tuple[float, int, float, tuple[float, float] | None, str | None]


class Searcher:
    """Search one index. The encoder and the FAISS index load lazily, once."""

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        spec: EncoderSpec | None = None,
        device: str = "auto",
    ):
        self.home = resolve_home(home)
        self.store = Store.open(self.home)
        self.device = device
        self.spec = self.store.check_spec(spec) if spec else self.store.info.spec
        self._encoder: Encoder | None = None
        self._text_encoder: TextEncoder | Encoder | None = None
        self._index: VectorIndex | None = None
        self._captioned: tuple[int, Captioned] | None = None
        self.caption_weight = DEFAULT_CAPTION_WEIGHT

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            encoder = load_encoder(self.spec, self.device)
            self.store.check_model(encoder.info)
            self._encoder = encoder
        return self._encoder

    @property
    def text_encoder(self) -> TextEncoder | Encoder:
        """The full encoder when it is already loaded, else the text tower alone."""
        if self._encoder is not None:
            return self._encoder
        if self._text_encoder is None:
            encoder = load_text_encoder(self.spec, self.device)
            if encoder.dim != self.store.info.dim:
                raise IndexMismatch(
                    f"{self.spec.label} encodes {encoder.dim}-d vectors but the index at "
                    f"{self.home} holds {self.store.info.dim}-d ones; "
                    f"{rebuild_hint(self.home, self.spec.label)}"
                )
            self._text_encoder = encoder
        return self._text_encoder

    @property
    def index(self) -> VectorIndex:
        if self._index is None or self._index.infos.store_version != self.store.version:
            # with a model loaded, a rebuilt snapshot can say how to run its text tower
            loaded = self._encoder is not None or self._text_encoder is not None
            recipe = text_recipe(self.spec) if loaded else None
            self._index = VectorIndex.for_store(self.store, recipe)
            if self.device.startswith("cuda"):
                self._index.to_gpu()  # with faiss-gpu installed (pixfind[gpu]); else stays
        return self._index

    def refresh(self) -> None:
        """Pick up writes made by other processes since this searcher opened the table."""
        self.store.table.checkout_latest()

    def __len__(self) -> int:
        return self.store.count()

    # -- queries ---------------------------------------------------------------
    def text_vector(self, text: str) -> np.ndarray:
        text = text.strip()
        if not text:
            raise BadQuery("empty query: give some words to search for, or --image PATH")
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"query too long ({len(text)} chars, limit {MAX_QUERY_CHARS})")
        return self.text_encoder.encode_texts([text])[0]

    def image_vector(self, path: str | os.PathLike) -> np.ndarray:
        decoded = load_query_image(path, draft_size=self.encoder.image_size)
        return self.encoder.encode_images([decoded.image])[0]

    def captioned(self) -> Captioned:
        """Caption vectors of the index (cached per store version)."""
        version = self.store.version
        if self._captioned is None or self._captioned[0] != version:
            self._captioned = (version, self.store.captioned())
        return self._captioned[1]

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        filters: Filters | None = None,
        caption_weight: float | None = None,
        min_score: float | None = None,
        sort: str = "score",
    ) -> list[Hit]:
        """Text search; images with captions score ``(1-w)*image + w*best caption``."""
        weight = self.caption_weight if caption_weight is None else caption_weight
        return self.search_vector(
            self.text_vector(text),
            k,
            filters=filters,
            caption_weight=weight,
            min_score=min_score,
            sort=sort,
        )

    def search_image(
        self,
        path: str | os.PathLike,
        k: int = 10,
        *,
        filters: Filters | None = None,
        min_score: float | None = None,
        sort: str = "score",
    ) -> list[Hit]:
        """Images like the one at ``path``; that image itself is left out when indexed."""
        own = self.store.id_for_path(str(Path(path).expanduser().resolve()))
        return self.search_vector(
            self.image_vector(path),
            k,
            exclude=[own] if own else (),
            filters=filters,
            min_score=min_score,
            sort=sort,
        )

    def similar(
        self,
        image_id: int,
        k: int = 10,
        *,
        filters: Filters | None = None,
        min_score: float | None = None,
        sort: str = "score",
    ) -> list[Hit]:
        """'More like this' for an indexed image, leaving the image itself out."""
        return self.search_vector(
            self.store.vector(image_id),
            k,
            exclude=[image_id],
            filters=filters,
            min_score=min_score,
            sort=sort,
        )

    def terms_vector(self, terms: Sequence[Term]) -> np.ndarray:
        """The combined vector of a query-algebra expression (see search/query.py)."""
        vectors = [
            self.text_vector(t.value) if t.kind == "text" else self.image_vector(t.value)
            for t in terms
        ]
        return combine(vectors, [t.weight for t in terms])

    def search_terms(
        self,
        terms: Sequence[Term],
        k: int = 10,
        *,
        filters: Filters | None = None,
        caption_weight: float | None = None,
        min_score: float | None = None,
        sort: str = "score",
    ) -> list[Hit]:
        """``"dog" + 2*"beach" - "people" + image``: captions count when a text term leads;
        indexed images used as positive terms are left out of the results."""
        exclude = []
        for t in terms:
            if t.kind == "image" and t.weight > 0:
                own = self.store.id_for_path(str(Path(t.value).expanduser().resolve()))
                if own is not None:
                    exclude.append(own)
        texty = any(t.kind == "text" and t.weight > 0 for t in terms)
        weight = self.caption_weight if caption_weight is None else caption_weight
        return self.search_vector(
            self.terms_vector(terms),
            k,
            exclude=exclude,
            filters=filters,
            caption_weight=weight if texty else 0.0,
            min_score=min_score,
            sort=sort,
        )

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
    ) -> list[Hit]:
        """Exact top-k among the photos that pass ``filters``.

        Every hit's ``extra`` carries ``image_score`` and, for captioned images when
        ``caption_weight`` > 0, ``caption_score`` (raw cosine), ``caption_scaled`` (on the
        image scores' scale, see calibrate_captions) and the best-matching ``caption``;
        score = (1 - w) * image_score + w * caption_scaled."""
        if not 1 <= k <= MAX_K:
            raise BadQuery(f"k must be between 1 and {MAX_K}, got {k}")
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
        cap = self.captioned() if caption_weight > 0 else None
        fused = cap is not None and len(cap.ids) > 0

        # Images scored by FAISS alone: everything allowed, minus the captioned ones when
        # fusing (those are scored exactly below, image and caption together).
        drop = np.union1d(excluded, cap.ids) if fused else excluded
        if allowed is None and len(drop) <= len(index) // 2:
            scores, ids, pos = _search_dropping(index, query, k, drop)
        else:
            keep = np.ones(len(index.ids), bool) if allowed is None else np.isin(index.ids, allowed)
            if len(drop):
                keep &= ~np.isin(index.ids, drop)
            scores, ids, pos = _search_positions(index, query, k, np.flatnonzero(keep))
        positions = dict(zip(ids.tolist(), pos.tolist(), strict=True))
        candidates: list[Candidate] = [
            (float(s), int(i), float(s), None, None) for s, i in zip(scores, ids, strict=True)
        ]
        if fused:
            candidates += _fused_candidates(cap, query, k, caption_weight, allowed, excluded)
        candidates = top_candidates(candidates, k, min_score)
        records = self._records(index, [c[1] for c in candidates], positions)
        return make_hits(candidates, records, sort, caption_weight)

    def _records(
        self, index: VectorIndex, ids: list[int], positions: dict[int, int]
    ) -> dict[int, ImageRecord | HitRecord]:
        """Metadata of the hits. The FAISS index was built from this store version in row
        order, so FAISS positions are row offsets: k rows of the index's query snapshot
        (memory-mapped), else a LanceDB take, where an ``id IN (...)`` filter scans every row
        (slow at 1M rows). Falls back to the filter when the store moved on, a hit came from
        elsewhere (captions), or the rows don't carry those ids."""
        fresh = index.infos.store_version == self.store.version
        if ids and fresh and all(i in positions for i in ids):
            snap = index.records() if fast_path_enabled() else None
            if snap is not None:
                found = snap.at([positions[i] for i in ids])
                if set(found) == set(ids):
                    return found
            try:
                found = self.store.records_at([positions[i] for i in ids])
                if set(found) == set(ids):
                    return found
            except Exception:  # noqa: S110 - any backend trouble: use the filter below
                pass
        return self.store.records(ids)


def top_candidates(candidates: list[Candidate], k: int, min_score: float | None) -> list[Candidate]:
    """(score, id, image score, caption scores, caption) rows: best k at or over min_score."""
    candidates = sorted(candidates, key=lambda c: -c[0])
    if min_score is not None:
        candidates = [c for c in candidates if c[0] >= min_score]
    return candidates[:k]


def make_hits(
    candidates: list[Candidate],
    records: dict[int, ImageRecord | HitRecord],
    sort: str,
    caption_weight: float,
) -> list[Hit]:
    kept = [(c, records[c[1]]) for c in candidates if c[1] in records]  # deleted meanwhile
    if sort == "date":
        kept.sort(key=lambda cr: -(cr[1].taken_at or 0.0))
    hits = []
    for (score, image_id, img_score, cap_score, caption), rec in kept:
        extra = {
            "image_score": round(img_score, 6),
            "taken_at": _iso(rec.taken_at),
            "file_type": rec.file_type,
        }
        if cap_score is not None:
            extra.update(
                caption_score=round(cap_score[0], 6),
                caption_scaled=round(cap_score[1], 6),
                caption=caption,
                caption_weight=caption_weight,
            )
        hits.append(Hit(len(hits) + 1, score, image_id, rec.path, rec.width, rec.height, extra))
    return hits


def _iso(stamp: float | None) -> str | None:
    if not stamp:
        return None
    try:
        return datetime.fromtimestamp(stamp).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def _search_dropping(
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


def _search_positions(
    index: VectorIndex, query: np.ndarray, k: int, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k (scores, ids, positions) among the given FAISS positions only (exact for flat
    indexes)."""
    import faiss

    if not len(positions):
        return np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    kk = min(k, len(positions))
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(positions.astype(np.int64)))
    try:
        scores, pos = index.faiss_index.search(query[None, :], kk, params=params)
    except RuntimeError:  # an index type without selector support: score the subset exactly
        vectors = index.faiss_index.reconstruct_batch(positions.astype(np.int64))
        sims = vectors @ query
        top = np.argsort(-sims, kind="stable")[:kk]
        return sims[top], index.ids[positions[top]], positions[top]
    good = pos[0] >= 0
    return scores[0][good], index.ids[pos[0][good]], pos[0][good]


CALIBRATE = True
MIN_CALIBRATION_ROWS = 8


def calibrate_captions(caption: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Map caption similarities onto the image similarities' scale for this query.

    Text-text similarities run far higher than text-image ones (0.6-0.9 vs 0.1-0.3 for CLIP),
    so raw fusion would lift every captioned photo above every uncaptioned one. Matching the
    mean and spread of the two over the captioned photos keeps an average caption average;
    only a caption that stands out lifts its photo."""
    if not CALIBRATE or len(caption) < MIN_CALIBRATION_ROWS:
        return caption
    spread = float(caption.std())
    if spread < 1e-6:
        return caption
    return float(image.mean()) + (caption - float(caption.mean())) * (float(image.std()) / spread)


def _fused_candidates(
    cap: Captioned,
    query: np.ndarray,
    k: int,
    weight: float,
    allowed: np.ndarray | None,
    excluded: np.ndarray,
) -> list[Candidate]:
    """Exact fused scores of every captioned image: (1-w)*image + w*scaled best caption."""
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
    scaled = calibrate_captions(best, img)
    score = np.where(has, (1 - weight) * img + weight * scaled, img)
    idx = np.flatnonzero(keep)
    top = idx[np.argsort(-score[idx], kind="stable")[:k]]
    return [
        (
            float(score[i]),
            int(cap.ids[i]),
            float(img[i]),
            (float(best[i]), float(scaled[i])) if has[i] else None,
            cap.texts[best_row[i]] if has[i] else None,
        )
        for i in top
    ]


def open_index(
    home: str | os.PathLike | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    device: str = "auto",
) -> Searcher:
    """Open an index for searching: ``open_index("~/.local/share/pixfind").search("a dog")``."""
    spec = EncoderSpec(model, pretrained) if model or pretrained else None
    return Searcher(home, spec, device)
