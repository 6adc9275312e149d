"""Decode stage: image files -> model-ready tensors plus what the index stores about each file.

Runs in worker processes (torch's DataLoader) or in-process; every function here is usable on
its own, so decoding can also run in remote workers that never see the store."""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, DecodeError, decode_file
from pixfind.search.metadata import ImageMeta
from pixfind.search.types import FileStat

from .captions import CaptionFinder, merge_captions

if TYPE_CHECKING:
    import torch

Preprocess = Callable[..., "torch.Tensor"]  # PIL image -> (3, H, W) tensor (open_clip's)


@dataclass(frozen=True)
class ImageFacts:
    """Everything the index stores about a decoded file besides its vectors."""

    stat: FileStat  # of the bytes actually read, which may be newer than the scan's
    width: int  # original size, after EXIF rotation
    height: int
    content_hash: str
    file_type: str
    meta: ImageMeta = field(default_factory=ImageMeta)
    captions: tuple[str, ...] = ()  # sidecars, captions.jsonl, then embedded metadata


@dataclass(frozen=True)
class DecodedImage:
    facts: ImageFacts
    pixels: torch.Tensor  # preprocessed for the encoder


@dataclass(frozen=True)
class Skipped:
    """A file left out of the index, with the reason shown to users."""

    path: str
    reason: str


@dataclass(frozen=True)
class DecodedBatch:
    images: tuple[DecodedImage, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def size(self) -> int:
        """Files this batch accounts for (decoded or not): what progress counts."""
        return len(self.images) + len(self.skipped)


def decode_one(
    stat: FileStat,
    preprocess: Preprocess,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    captions: CaptionFinder | None = None,
) -> DecodedImage | Skipped:
    """Decode one file; a file that can't be used is a ``Skipped``, never an exception.

    ``captions`` None reads no captions at all, not even those embedded in the image."""
    try:
        decoded = decode_file(stat.path, draft_size, max_megapixels)
        pixels = preprocess(decoded.image)
    except DecodeError as exc:
        return Skipped(stat.path, str(exc))
    except Exception as exc:  # a hostile file must never stop the run
        return Skipped(stat.path, f"preprocessing failed: {type(exc).__name__}: {exc}")
    found = merge_captions(captions.external(stat.path), decoded.meta.captions) if captions else ()
    facts = ImageFacts(
        # the stat of the bytes actually read: a file rewritten since the scan is stored as read
        stat=FileStat(stat.path, decoded.mtime or stat.mtime, decoded.size or stat.size),
        width=decoded.width,
        height=decoded.height,
        content_hash=decoded.content_hash,
        file_type=decoded.file_type,
        meta=decoded.meta,
        captions=found,
    )
    return DecodedImage(facts, pixels)


def batch_of(results: Sequence[DecodedImage | Skipped]) -> DecodedBatch:
    return DecodedBatch(
        images=tuple(r for r in results if isinstance(r, DecodedImage)),
        skipped=tuple(r for r in results if isinstance(r, Skipped)),
    )


def decode_batch(
    stats: Sequence[FileStat],
    preprocess: Preprocess,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    captions: CaptionFinder | None = None,
) -> DecodedBatch:
    """Decode ``stats`` in this process, in order."""
    return batch_of(
        [decode_one(stat, preprocess, draft_size, max_megapixels, captions) for stat in stats]
    )


class _DecodeDataset:
    """Map-style dataset for torch's DataLoader: decoding + preprocessing run in its workers."""

    def __init__(
        self,
        stats: Sequence[FileStat],
        preprocess: Preprocess,
        draft_size: int | None,
        max_megapixels: float,
        captions: CaptionFinder | None,
    ):
        self.stats, self.preprocess = stats, preprocess
        self.draft_size, self.max_megapixels, self.captions = draft_size, max_megapixels, captions

    def __len__(self) -> int:
        return len(self.stats)

    def __getitem__(self, i: int) -> DecodedImage | Skipped:
        return decode_one(
            self.stats[i], self.preprocess, self.draft_size, self.max_megapixels, self.captions
        )


def _worker_init(_: int) -> None:
    # Ctrl-C reaches every process of the terminal's group: decoding workers ignore it so
    # the main process can finish and commit the batch in flight, then stop them itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_batches(
    stats: Sequence[FileStat],
    preprocess: Preprocess,
    batch_size: int,
    workers: int = 0,
    draft_size: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    captions: CaptionFinder | None = None,
) -> Iterator[DecodedBatch]:
    """Decoded batches of ``stats`` in order, decoded ahead by ``workers`` processes (0: here)."""
    if workers == 0:
        for start in range(0, len(stats), batch_size):
            chunk = stats[start : start + batch_size]
            yield decode_batch(chunk, preprocess, draft_size, max_megapixels, captions)
        return
    import torch

    # Workers only decode; they never touch LanceDB, whose fork warning doesn't apply to them.
    warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(stats, preprocess, draft_size, max_megapixels, captions),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=batch_of,
        prefetch_factor=2,
        persistent_workers=False,
        worker_init_fn=_worker_init,
    )
    yield from loader


def default_workers(todo: int, batch_size: int) -> int:
    if todo <= batch_size:
        return 0
    # Leave a core to the encoder's threads: on 2 cores, 1 decode worker beat 2 (ViT-B-32 on
    # phone-size JPEGs, bench/indexing.py); decoding with draft mode is the smaller share.
    return max(1, min(4, (os.cpu_count() or 2) - 1))
