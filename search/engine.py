"""The query side: encode a text or image query with the index's model and rank by cosine."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .encoder import (
    Encoder,
    TextEncoder,
    load_encoder,
    load_text_encoder,
    resolve_spec,
    spec_identity,
)
from .errors import BadQuery, EmptyIndex, IndexMismatch
from .images import load_query_image
from .index import VectorIndex
from .paths import resolve_home
from .store import RECORD_COLUMNS, Store, rebuild_hint
from .types import EncoderSpec, Hit, ImageRecord

MAX_K = 10_000
MAX_QUERY_CHARS = 1_000


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
        self.spec = self._check_spec(spec) if spec else self.store.info.spec
        self._encoder: Encoder | None = None
        self._text_encoder: TextEncoder | Encoder | None = None
        self._index: VectorIndex | None = None

    def _check_spec(self, spec: EncoderSpec) -> EncoderSpec:
        resolved = resolve_spec(spec.model, spec.pretrained)
        if spec_identity(resolved) != self.store.info.identity:
            info = self.store.info
            raise IndexMismatch(
                f"the index at {self.home} was built with {info.label} but {resolved.label} "
                f"was asked for; search it without --model/--pretrained (it remembers its "
                f"model), or rebuild it: `pixfind --index {self.home} index --rebuild "
                f"--model {resolved.model} PATH...`"
            )
        return resolved

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
            self._index = VectorIndex.for_store(self.store)
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

    def search(self, text: str, k: int = 10) -> list[Hit]:
        return self.search_vector(self.text_vector(text), k)

    def search_image(self, path: str | os.PathLike, k: int = 10) -> list[Hit]:
        """Images like the one at ``path``; that image itself is left out when indexed."""
        own = self.store.id_for_path(str(Path(path).expanduser().resolve()))
        return self.search_vector(self.image_vector(path), k, exclude=[own] if own else ())

    def similar(self, image_id: int, k: int = 10) -> list[Hit]:
        """'More like this' for an indexed image, leaving the image itself out."""
        return self.search_vector(self.store.vector(image_id), k, exclude=[image_id])

    def search_vector(
        self, vector: np.ndarray, k: int = 10, exclude: Iterable[int] = ()
    ) -> list[Hit]:
        if not 1 <= k <= MAX_K:
            raise BadQuery(f"k must be between 1 and {MAX_K}, got {k}")
        index = self.index
        if len(index) == 0:
            raise EmptyIndex(
                f"the index at {self.home} holds no images yet; add some with "
                f"`pixfind --index {self.home} index PHOTOS_DIR`"
            )
        excluded = {int(i) for i in exclude}
        scores, pos = index.search_positions(vector[None, :], k + len(excluded))
        found = [
            (float(s), int(index.ids[p]), int(p))
            for s, p in zip(scores[0], pos[0], strict=True)
            if p >= 0 and int(index.ids[p]) not in excluded
        ][:k]
        pairs = [(s, i) for s, i, _ in found]
        records = self._records_at(index, [p for _, _, p in found], [i for _, i in pairs])
        hits = []
        for score, image_id in pairs:
            rec = records.get(image_id)
            if rec is None:  # deleted between the index build and now
                continue
            hits.append(Hit(len(hits) + 1, score, image_id, rec.path, rec.width, rec.height))
        return hits

    def _records_at(
        self, index: VectorIndex, positions: list[int], ids: list[int]
    ) -> dict[int, ImageRecord]:
        """Metadata of the hits. The FAISS index was built from this store version in row
        order, so FAISS positions are row offsets: a take of k rows, where an ``id IN (...)``
        filter scans every row (slow at 1M rows). Falls back to the filter when the
        store moved on or the rows don't carry the expected ids."""
        if positions and index.infos.store_version == self.store.version:
            try:
                query = self.store.table.take_offsets(sorted(set(positions)))
                rows = query.select(RECORD_COLUMNS).to_arrow().to_pylist()
                found = {r["id"]: ImageRecord(**r) for r in rows}
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
) -> Searcher:
    """Open an index for searching: ``open_index("~/.local/share/pixfind").search("a dog")``."""
    spec = EncoderSpec(model, pretrained) if model or pretrained else None
    return Searcher(home, spec, device)
