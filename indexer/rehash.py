"""Fill the perceptual hashes of rows indexed before they existed: decode, hash, write.

An index written by an older pixfind has every vector but no ``phash``; rather than
re-embedding it, `pixfind index` decodes those files again (in the decoding workers, with
no model preprocessing) and writes only their hash columns, one commit per batch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from pixfind.search import phash
from pixfind.search.store import Store, path_id
from pixfind.search.types import FileStat

from .decode import DecodedImage, decode_batches, default_workers
from .plan import under_roots

BATCH = 64


def _no_pixels(image) -> None:
    """The preprocessing step of a decode that only hashes (module level: workers pickle it)."""
    return None


def stale_paths(store: Store, roots: Sequence[str], skip: Collection[str]) -> list[str]:
    """Indexed paths under ``roots`` without hashes, but those in ``skip`` (being written,
    gone, or not seen this run)."""
    return [p for p in phash.unhashed(store) if p not in skip and under_roots(p, roots)]


def fill_hashes(
    store: Store,
    paths: Sequence[str],
    draft_size: int | None,
    workers: int = -1,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Decode ``paths`` and write their hashes; returns how many rows were filled. Files that
    no longer decode keep no hash (the next incremental run sees them changed or gone)."""
    stats = [FileStat(p, 0.0, 0) for p in paths]
    workers = default_workers(len(stats), BATCH) if workers < 0 else workers
    filled = 0
    for batch in decode_batches(stats, _no_pixels, BATCH, workers, draft_size, captions=None):
        rows = [
            (path_id(im.facts.stat.path), im.facts.hashes)
            for im in batch.images
            if isinstance(im, DecodedImage) and im.facts.hashes is not None
        ]
        phash.fill(store, rows)
        filled += len(rows)
        if stop():
            break
    return filled
