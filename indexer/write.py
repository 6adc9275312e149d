"""Write stage: embedded batches -> rows of the LanceDB store, one commit per batch.

The writer is the only stage that touches the store: it looks up content already indexed
(moves, renames, copies), upserts rows with their captions, and deletes rows of files that
are gone or no longer decodable. Each call returns what it did; nothing else is changed."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pixfind.search.keywords import keyword_text, set_ocr
from pixfind.search.rows import records_table
from pixfind.search.store import Store, now, path_id
from pixfind.search.types import ImageRecord

from .decode import DecodedBatch, OcrBatch, Skipped
from .embed import EmbeddedBatch, EmbeddedImage, Reused


@dataclass(frozen=True)
class WriteResult:
    """What one write did, for the report."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0  # new paths whose content was indexed under a path now gone
    reused: int = 0  # vectors taken from the index by content hash
    captioned: int = 0  # rows written with at least one caption
    ocr_read: int = 0  # photos whose text OCR read (vectors written or kept)
    ocr_found: int = 0  # ... in which it found words
    ocr_seconds: float = 0.0  # OCR's time for them, summed over the decoding workers
    skipped: tuple[Skipped, ...] = ()


class Writer:
    """Writes into ``store`` for one run.

    ``changed``: paths already indexed whose files changed (rewritten rows count as updated,
    and such a file that no longer decodes leaves the index). ``removed``: indexed paths whose
    files are gone (a new path holding their content counts as moved). ``roots``: the indexed
    folders, whose names and subfolders' names a photo's keywords hold."""

    def __init__(
        self,
        store: Store,
        changed: Collection[str] = (),
        removed: Collection[str] = (),
        roots: Sequence[str] = (),
    ):
        self.store = store
        self.roots = list(roots)
        self.changed = frozenset(changed)
        self.removed = frozenset(removed)
        self._known_hashes: set[str] | None = None

    def reusable(self, decoded: DecodedBatch) -> dict[str, Reused]:
        """Indexed rows holding content of ``decoded``, by content hash."""
        if self._known_hashes is None:
            # one scan per run, so batches look up moves in memory; a fresh index holds none
            count = self.store.count()
            self._known_hashes = self.store.known_hashes() if count else set()
        wanted = {im.facts.content_hash for im in decoded.images} & self._known_hashes
        if not wanted:
            return {}
        rows = self.store.rows_by_hash(wanted)
        return {h: Reused(path, vector) for h, (path, vector) in rows.items()}

    def write(self, batch: EmbeddedBatch) -> WriteResult:
        """Commit ``batch`` at once; its skipped files that were indexed leave the index."""
        stale = stale_paths(batch, self.changed)
        if stale:  # a file that changed into something undecodable leaves the index
            self.store.delete_paths(stale)
        if batch.images:
            self.store.upsert_rows(rows_of(batch.images, self.store.table.schema, self.roots))
        return tally(batch, self.changed, self.removed)

    def write_ocr(self, batch: OcrBatch) -> WriteResult:
        """Commit text read in indexed photos whose vectors are kept. A photo that could
        not be read now keeps its row: not reading a file is not evidence that it is gone."""
        set_ocr(self.store, {r.path: r.ocr for r in batch.read})
        read = [r.ocr for r in batch.read]
        return WriteResult(
            ocr_read=len(read),
            ocr_found=sum(1 for o in read if o.text),
            ocr_seconds=sum(o.seconds for o in read),
            skipped=batch.skipped,
        )

    def delete(self, paths: Sequence[str]) -> WriteResult:
        """Remove the rows of ``paths`` (files that are gone)."""
        if paths:
            self.store.delete_paths(paths)
        return WriteResult(removed=len(paths))


def stale_paths(batch: EmbeddedBatch, changed: Collection[str]) -> list[str]:
    """Indexed files of ``batch`` that no longer decode: their rows must go."""
    return [s.path for s in batch.skipped if s.path in changed]


def rows_of(images: Sequence[EmbeddedImage], schema, roots: Sequence[str]) -> pa.Table:
    """The table rows of ``images`` (records, vectors, caption vectors, keywords, text read,
    perceptual hashes): the one row builder of both engines; the single-process writer
    upserts them, Ray writes files."""
    vectors = np.stack([im.vector for im in images]).astype(np.float32, copy=False)
    keywords = [_keywords(im, roots) for im in images]
    captions = [im.caption_vectors for im in images]
    ocr = [im.facts.ocr for im in images]
    hashes = [im.facts.hashes for im in images]
    return records_table(_records(images), vectors, schema, captions, keywords, ocr, hashes)


def tally(batch: EmbeddedBatch, changed: Collection[str], removed: Collection[str]) -> WriteResult:
    """What writing ``batch`` does: ``changed`` are indexed paths being rewritten, ``removed``
    indexed paths that are gone (a new path holding their content is a move)."""
    images = batch.images
    updated = sum(1 for im in images if im.facts.stat.path in changed)
    read = [im.facts.ocr for im in images if im.facts.ocr is not None]

    def moved(im: EmbeddedImage) -> bool:
        old = im.reused_from
        return old is not None and old in removed and old != im.facts.stat.path

    return WriteResult(
        added=len(images) - updated,
        updated=updated,
        removed=len(stale_paths(batch, changed)),
        moved=sum(1 for im in images if moved(im)),
        reused=sum(1 for im in images if im.reused_from is not None),
        captioned=sum(1 for im in images if im.facts.captions),
        ocr_read=len(read),
        ocr_found=sum(1 for o in read if o.text),
        ocr_seconds=sum(o.seconds for o in read),
        skipped=batch.skipped,
    )


def _keywords(image: EmbeddedImage, roots: Sequence[str]) -> str:
    facts = image.facts
    meta = facts.meta
    return keyword_text(
        facts.stat.path,
        roots,
        facts.captions,
        meta.camera_make,
        meta.camera_model,
        facts.ocr.text if facts.ocr else None,
    )


def _records(images: Sequence[EmbeddedImage]) -> list[ImageRecord]:
    stamp = now()
    records = []
    for im in images:
        facts, stat = im.facts, im.facts.stat
        meta = facts.meta
        records.append(
            ImageRecord(
                id=path_id(stat.path),
                path=stat.path,
                mtime=stat.mtime,
                size=stat.size,
                width=facts.width,
                height=facts.height,
                content_hash=facts.content_hash,
                indexed_at=stamp,
                file_type=facts.file_type,
                taken_at=meta.taken_at if meta.taken_at is not None else stat.mtime,
                taken_source="exif" if meta.taken_at is not None else "mtime",
                camera_make=meta.camera_make,
                camera_model=meta.camera_model,
                gps_lat=meta.gps_lat,
                gps_lon=meta.gps_lon,
                captions=facts.captions,
            )
        )
    return records
