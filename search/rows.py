"""A batch of records and vectors as an Arrow table in the store's schema (what upserts write).

Kept apart from search/store.py, which reads and writes the table: this only lays out rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from .store import RECORD_COLUMNS, stored_path
from .types import ImageRecord, OcrText


def records_table(
    records: Sequence[ImageRecord],
    vectors: np.ndarray,
    schema: pa.Schema,
    caption_vectors: Sequence[np.ndarray] | None = None,
    keywords: Sequence[str] | None = None,
    ocr: Sequence[OcrText | None] | None = None,
    hashes: Sequence[tuple[int, int] | None] | None = None,
) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    cols = {name: [getattr(r, name) for r in records] for name in RECORD_COLUMNS}
    stored = [stored_path(r.path) for r in records]
    cols["path"] = [text for text, _ in stored]
    cols["path_raw"] = [raw for _, raw in stored]
    cols["captions"] = [list(r.captions) for r in records]
    cols["has_caption"] = [bool(r.captions) for r in records]
    caps = list(caption_vectors) if caption_vectors is not None else [None] * len(records)
    flat = []
    for rec, cv in zip(records, caps, strict=True):
        cv = np.zeros((0, dim), np.float32) if cv is None else np.asarray(cv, np.float32)
        if len(cv) != len(rec.captions):
            raise ValueError(f"{len(rec.captions)} captions but {len(cv)} caption vectors")
        flat.append(cv.reshape(-1).tolist())
    cols["caption_vectors"] = flat
    cols["keywords"] = list(keywords) if keywords is not None else [None] * len(records)
    read = list(ocr) if ocr is not None else [None] * len(records)
    cols["ocr_text"] = [o.text if o else None for o in read]
    cols["ocr_lang"] = [o.lang if o else None for o in read]
    pairs = list(hashes) if hashes is not None else [None] * len(records)
    cols["phash"] = [h[0] if h else None for h in pairs]
    cols["phash_crop"] = [h[1] if h else None for h in pairs]
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema if f.name != "vector"]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim))
    return pa.Table.from_arrays(arrays, schema=schema)
