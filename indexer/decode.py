"""Decode stage: image files -> model-ready pixels plus what the index stores about each file.

Runs in worker processes (a process pool, batch by batch, in order) or in-process; every
function here is usable on its own, so decoding can also run in remote workers that never
see the store. Pixels are float32 numpy arrays: no torch is needed to decode (an ONNX model
folder indexes without torch installed)."""

from __future__ import annotations

import functools
import itertools
import os
import signal
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, DecodeError, decode_bytes, read_photo
from pixfind.search.metadata import ImageMeta
from pixfind.search.phash import Hashes, image_hashes
from pixfind.search.raw import raw_kind
from pixfind.search.types import FileStat, OcrText

from .captions import CaptionFinder, merge_captions
from .ocr import OcrReader

# PIL image -> (3, H, W) pixels: open_clip's transform (a tensor) or search/preprocess.py's
Preprocess = Callable[..., "np.ndarray"]


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
    pixels: np.ndarray  # (3, H, W) float32, preprocessed for the encoder


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
        data, st = read_photo(stat.path)
        raw = raw_kind(stat.path)
        decoded = decode_bytes(data, draft_size, max_megapixels, raw)
        pixels = preprocess(decoded.image)
        pixels = None if pixels is None else np.asarray(pixels, np.float32)
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
        data, _ = read_photo(stat.path)
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


_job: tuple[Callable, Callable] | None = None  # a worker's (fn, collate), set at its start


def _worker_init(fn: Callable, collate: Callable) -> None:
    # Ctrl-C reaches every process of the terminal's group: decoding workers ignore it so
    # the main process can finish and commit the batch in flight, then stop them itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")  # open_clip's transform: one thread, as DataLoader's
    if torch is not None:  # workers (a forked OpenMP pool must not be used)
        torch.set_num_threads(1)
    global _job
    _job = (fn, collate)


def _work(stats: Sequence[FileStat]):
    fn, collate = _job
    return collate([fn(stat) for stat in stats])


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
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Workers only decode; they never touch LanceDB, whose fork warning doesn't apply to them.
    warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
    methods = multiprocessing.get_all_start_methods()
    # forked workers inherit ``fn`` (its caption finder, OCR reader) without pickling it
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunks = iter(stats[start : start + batch_size] for start in range(0, len(stats), batch_size))
    pool = ProcessPoolExecutor(workers, context, initializer=_worker_init, initargs=(fn, collate))
    try:
        ahead = deque(pool.submit(_work, c) for c in itertools.islice(chunks, 2 * workers))
        while ahead:  # two batches per worker decoded ahead, handed on in order
            done = ahead.popleft().result()
            chunk = next(chunks, None)
            if chunk is not None:
                ahead.append(pool.submit(_work, chunk))
            yield done
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def default_workers(todo: int, batch_size: int) -> int:
    if todo <= batch_size:
        return 0
    # Leave a core to the encoder's threads: on 2 cores, 1 decode worker beat 2 (ViT-B-32 on
    # phone-size JPEGs, bench/indexing.py); decoding with draft mode is the smaller share.
    return max(1, min(4, (os.cpu_count() or 2) - 1))
