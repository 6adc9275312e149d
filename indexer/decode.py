"""Decode stage: image files -> model-ready tensors plus what the index stores about each file.

Runs in worker processes (torch's DataLoader) or in-process; every function here is usable on
its own, so decoding can also run in remote workers that never see the store."""

from __future__ import annotations

import functools
import os
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, DecodeError, decode_bytes, read_stable
from pixfind.search.metadata import ImageMeta
from pixfind.search.phash import Hashes, image_hashes
from pixfind.search.raw import raw_kind
from pixfind.search.types import FileStat, OcrText

from .captions import CaptionFinder, merge_captions
from .ocr import OcrReader

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
    ocr: OcrText | None = None  # None: not read by OCR in this run
    hashes: Hashes | None = None  # perceptual hashes, for `pixfind duplicates`


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
    ocr: OcrReader | None = None,
) -> DecodedImage | Skipped:
    """Decode one file; a file that can't be used is a ``Skipped``, never an exception.

    ``captions`` None reads no captions at all, not even those embedded in the image;
    ``ocr`` None reads no text inside it."""
    try:
        data, st = read_stable(stat.path)
        raw = raw_kind(stat.path)
        decoded = decode_bytes(data, draft_size, max_megapixels, raw)
        pixels = preprocess(decoded.image)
    except DecodeError as exc:
        return Skipped(stat.path, str(exc))
    except Exception as exc:  # a hostile file must never stop the run
        return Skipped(stat.path, f"preprocessing failed: {type(exc).__name__}: {exc}")
    found = merge_captions(captions.external(stat.path), decoded.meta.captions) if captions else ()
    try:  # from the image already decoded: a few ms next to decoding it
        hashes = image_hashes(decoded.image)
    except Exception:  # never lose a photo for its hash: it is only left out of duplicates
        hashes = None
    facts = ImageFacts(
        # the stat of the bytes actually read: a file rewritten since the scan is stored as read
        stat=FileStat(stat.path, st.st_mtime, st.st_size),
        width=decoded.width,
        height=decoded.height,
        content_hash=decoded.content_hash,
        file_type=decoded.file_type,
        meta=decoded.meta,
        captions=found,
        ocr=ocr.read(data, raw) if ocr else None,  # the same bytes: text matches vector
        hashes=hashes,
    )
    return DecodedImage(facts, pixels)


@dataclass(frozen=True)
class OcrRead:
    """Text read in an indexed photo whose vector is kept (an --ocr run over an index
    built without it)."""

    path: str
    ocr: OcrText


def ocr_one(stat: FileStat, reader: OcrReader) -> OcrRead | Skipped:
    try:
        data, _ = read_stable(stat.path)
    except DecodeError as exc:
        return Skipped(stat.path, str(exc))
    return OcrRead(stat.path, reader.read(data, raw_kind(stat.path)))


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
    ocr: OcrReader | None = None,
) -> DecodedBatch:
    """Decode ``stats`` in this process, in order."""
    return batch_of(
        [decode_one(stat, preprocess, draft_size, max_megapixels, captions, ocr) for stat in stats]
    )


class _Mapped:
    """Map-style dataset for torch's DataLoader: ``fn`` (decoding, OCR) runs in its workers."""

    def __init__(self, stats: Sequence[FileStat], fn: Callable):
        self.stats, self.fn = stats, fn

    def __len__(self) -> int:
        return len(self.stats)

    def __getitem__(self, i: int):
        return self.fn(self.stats[i])


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
    ocr: OcrReader | None = None,
) -> Iterator[DecodedBatch]:
    """Decoded batches of ``stats`` in order, decoded ahead by ``workers`` processes (0: here)."""
    decode = functools.partial(
        decode_one,
        preprocess=preprocess,
        draft_size=draft_size,
        max_megapixels=max_megapixels,
        captions=captions,
        ocr=ocr,
    )
    return _mapped_batches(stats, decode, batch_of, batch_size, workers)


@dataclass(frozen=True)
class OcrBatch:
    read: tuple[OcrRead, ...] = ()
    skipped: tuple[Skipped, ...] = ()


def _ocr_batch(results: Sequence[OcrRead | Skipped]) -> OcrBatch:
    return OcrBatch(
        read=tuple(r for r in results if isinstance(r, OcrRead)),
        skipped=tuple(r for r in results if isinstance(r, Skipped)),
    )


def ocr_batches(
    stats: Sequence[FileStat], reader: OcrReader, batch_size: int, workers: int = 0
) -> Iterator[OcrBatch]:
    """Batches of the text in ``stats``' photos, read ahead by ``workers`` processes."""
    read = functools.partial(ocr_one, reader=reader)
    return _mapped_batches(stats, read, _ocr_batch, batch_size, workers)


def _mapped_batches(stats, fn, collate, batch_size: int, workers: int) -> Iterator:
    if workers == 0:
        for start in range(0, len(stats), batch_size):
            yield collate([fn(stat) for stat in stats[start : start + batch_size]])
        return
    import torch

    # Workers only decode; they never touch LanceDB, whose fork warning doesn't apply to them.
    warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
    loader = torch.utils.data.DataLoader(
        _Mapped(stats, fn),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
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
