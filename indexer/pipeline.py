"""scan -> plan -> decode (worker processes) -> embed (batches) -> write (one commit per batch).

The stages live in their own modules and are usable alone; this module runs them in order
under the index lock, times them, and stops cleanly on Ctrl-C after the batch in flight."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pixfind.search import keywords, phash
from pixfind.search.encoder import Encoder, load_encoder, text_recipe
from pixfind.search.errors import DamagedIndex
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, register_heif
from pixfind.search.index import VectorIndex
from pixfind.search.settings import get_settings
from pixfind.search.store import Store, backend_errors, check_location
from pixfind.search.types import EncoderSpec, FileStat

from .captions import CaptionFinder
from .decode import DecodedBatch, decode_batches, default_workers, ocr_batches
from .embed import embed_batch
from .lock import index_lock
from .ocr import OcrReader, ocr_reader
from .plan import Plan, make_plan, under_roots
from .rehash import fill_hashes, stale_paths
from .report import IndexReport
from .scan import confirmed_gone, scan
from .write import Writer

Progress = Callable[[int, int], None]  # (done, total)
T = TypeVar("T")


@dataclass
class IndexOptions:
    roots: Sequence[str]
    exclude: Sequence[str] = ()
    include_hidden: bool = False
    batch_size: int = 0  # 0: 32 on CPU, 128 on CUDA
    workers: int = -1  # -1: automatic
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    rebuild: bool = False
    captions: bool = True  # read sidecars, captions.jsonl and metadata captions
    prune_missing: bool = False  # remove photos not seen even under unreadable folders
    # Only these files or folders under the roots (a live index's changed paths): only they are
    # scanned, and only rows at or under them can be removed. None: everything under the roots.
    only: Sequence[str] | None = None
    ocr: bool = False  # read text inside photos (Tesseract), also in those indexed before
    ocr_lang: str = "eng"  # Tesseract languages, "eng+deu"


class StopRequest:
    """Set by the first Ctrl-C (SIGINT): stop after the batch in flight is committed."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def on_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            self.requested = True
            # a second Ctrl-C interrupts at once (committed batches are still safe)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class _Timed(Iterator[T]):
    """Counts the seconds spent producing items: a streaming stage's time, as its consumer
    sees it (the scan runs inside planning, decoding workers run ahead of embedding)."""

    def __init__(self, items: Iterable[T]):
        self._items = iter(items)
        self.seconds = 0.0

    def __next__(self) -> T:
        start = time.perf_counter()
        try:
            return next(self._items)
        finally:
            self.seconds += time.perf_counter() - start


def run_index(
    home: Path,
    options: IndexOptions,
    spec: EncoderSpec | None = None,
    device: str = "auto",
    on_plan: Callable[[Plan], None] | None = None,
    on_progress: Progress | None = None,
    encoder: Encoder | None = None,
    stop: StopRequest | None = None,
    runtime: str | None = None,
) -> IndexReport:
    """Bring the index at ``home`` up to date with the files under ``options.roots``.

    ``encoder``: a loaded encoder to use (a live index keeps one); ``stop``: set by another
    thread to stop after the batch in flight, as the first Ctrl-C does."""
    register_heif()
    start = time.perf_counter()
    # before anything is loaded or written: a missing Tesseract is one line, at once
    reader = ocr_reader(options.ocr_lang, get_settings().tessdata) if options.ocr else None
    check_location(home)
    with backend_errors(home, "creating the index folder"):
        home.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with index_lock(home):
        existing = _open_existing(home, options.rebuild, notes)
        if encoder is None and existing is not None:
            if spec is None:
                spec = existing.info.spec  # an index remembers its model
            elif not options.rebuild:
                existing.check_spec(spec)
        encoder = encoder or load_encoder(spec, device, runtime)
        if options.rebuild or existing is None:
            store = Store.create(home, encoder.info, overwrite=options.rebuild)
        else:
            existing.check_model(encoder.info)
            store = existing
        report = IndexReport(str(home), encoder.info.label, notes=notes)
        stages = report.stages
        roots, given = _real_roots(options.roots, report)
        unseen: list[str] = []

        def on_skip(path: str, reason: str) -> None:
            report.skipped.append((path, reason))
            if not reason.startswith(("file vanished", "not a regular file")):
                unseen.append(path)  # still there, only not checkable now: keep its row

        def on_unreadable(path: str, reason: str) -> None:
            if options.only is not None and confirmed_gone(path, roots):
                return  # a changed path that was deleted: its rows go
            report.unreadable.append((path, reason))
            unseen.append(path)
            for alias, real in report.aliases:  # rows stored under the symlinked root, too
                if under_roots(path, [real]):
                    unseen.append(alias + path[len(real) :])

        planning = time.perf_counter()
        targets = roots if options.only is None else _targets(options.only, roots)
        found = _Timed(
            scan(
                targets,
                options.exclude,
                options.include_hidden,
                on_skip=on_skip,
                on_unreadable=on_unreadable,
                on_pair=lambda raw, sibling: report.raw_pairs.append((raw, sibling)),
            )
        )
        # rows stored under a root as given (a symlink) are aliases of the real path: replaced
        scope = roots + given if options.only is None else targets
        plan = make_plan(found, store.file_states(), scope, unseen, options.prune_missing)
        stages.scan = found.seconds
        stages.plan = time.perf_counter() - planning - found.seconds
        report.unchanged = plan.unchanged
        report.kept = len(plan.kept)
        report.pruned = options.prune_missing
        keywords.add_column(store, roots)  # an index from before keywords: filled in place
        if reader:
            keywords.add_ocr_columns(store)
        phash.add_columns(store)  # an index from before perceptual hashes: filled below
        if on_plan:
            on_plan(plan)
        changed = {s.path for s in plan.changed}
        writer = Writer(store, changed=changed, removed=plan.removed, roots=roots)
        batches = _decode_batches(plan.todo, encoder, options, roots, reader)
        on_done = (lambda done: on_progress(done, len(plan.todo))) if on_progress else None
        stop = stop or StopRequest()
        try:
            # closing: an early stop shuts the decoding workers down now, not when collected
            with stop.on_sigint(), contextlib.closing(batches):
                _embed_and_write(batches, encoder, writer, report, on_done, stop)
        except KeyboardInterrupt:
            report.interrupted = True
        report.interrupted = report.interrupted or stop.requested
        if not report.interrupted:  # else committed batches are safe; the next run resumes
            report.add(writer.delete(plan.removed))
            if reader:  # photos indexed without OCR (or in another language): read, not embedded
                pending = sorted(keywords.ocr_pending(store, reader.lang))
                seen = [
                    p for p in pending if under_roots(p, targets) and not under_roots(p, unseen)
                ]
                _read_text(seen, reader, writer, report, options, stop)
            skip = {s.path for s in plan.todo} | set(plan.removed) | set(plan.kept)
            if stale := stale_paths(store, roots + given, skip):  # an older index: hash it
                report.rehashed = fill_hashes(
                    store, stale, encoder.image_size, options.workers, lambda: stop.requested
                )
        if not report.interrupted:
            writing = time.perf_counter()
            if report.embedded or report.removed or report.ocr_read or report.rehashed:
                store.compact()  # also folds new rows into the keyword index
            keywords.update_index(store)  # built when missing, else a no-op
            stages.write += time.perf_counter() - writing
            indexing = time.perf_counter()
            VectorIndex.for_store(store, recipe=text_recipe(encoder.spec))
            stages.index = time.perf_counter() - indexing
        report.total = store.count()
        report.seconds = time.perf_counter() - start
        return report


def _open_existing(home: Path, rebuild: bool, notes: list[str]) -> Store | None:
    """The index's store, if any. A damaged one stops the run (`pixfind doctor` says what
    can be recovered) unless --rebuild asks for a new one: then it is moved aside, kept."""
    if not Store.exists(home):
        return None
    try:
        return Store.open(home)
    except DamagedIndex:
        if not rebuild:
            raise
    aside = home / f"db.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    (home / "db").rename(aside)
    notes.append(f"the damaged table was moved to {aside} (delete it when you no longer need it)")
    return None


def _real_roots(roots: Sequence[str], report: IndexReport) -> tuple[list[str], list[str]]:
    """Roots by their real paths, so a folder indexed directly and through a symlink is
    stored once; returns (real roots, the given ones that differ) and notes each alias."""
    real, given = [], []
    for root in roots:
        path = os.path.abspath(os.path.expanduser(os.fspath(root)))
        resolved = os.path.realpath(path)
        real.append(resolved)
        if resolved != path:
            given.append(path)
            report.aliases.append((path, resolved))
    return real, given


def _targets(only: Sequence[str], roots: Sequence[str]) -> list[str]:
    """The changed paths that lie under the (real) roots, made absolute."""
    paths = (os.path.abspath(os.path.expanduser(os.fspath(p))) for p in only)
    return sorted({p for p in paths if under_roots(p, roots)})


def _decode_batches(
    todo: Sequence[FileStat],
    encoder: Encoder,
    options: IndexOptions,
    roots: Sequence[str],
    reader: OcrReader | None,
) -> Iterator[DecodedBatch]:
    batch_size = options.batch_size or (128 if encoder.device.startswith("cuda") else 32)
    workers = default_workers(len(todo), batch_size) if options.workers < 0 else options.workers
    return decode_batches(
        todo,
        encoder.preprocess,
        batch_size,
        workers,
        draft_size=encoder.image_size,
        max_megapixels=options.max_megapixels,
        captions=CaptionFinder(roots) if options.captions else None,
        ocr=reader,
    )


def _read_text(
    paths: Sequence[str],
    reader: OcrReader,
    writer: Writer,
    report: IndexReport,
    options: IndexOptions,
    stop: StopRequest,
) -> None:
    """OCR of indexed photos whose vectors are kept, one commit per batch; the time goes to
    the ocr stage only (no embedding, no decoding for the model)."""
    batch_size = options.batch_size or 32
    # no encoder runs meanwhile: every core may read (default_workers leaves one to it)
    auto = min(len(paths) // batch_size, os.cpu_count() or 2, 4)
    workers = auto if options.workers < 0 else options.workers
    stats = [FileStat(p, 0.0, 0) for p in paths]
    batches = ocr_batches(stats, reader, batch_size, workers)
    try:
        with stop.on_sigint(), contextlib.closing(batches):
            for batch in batches:
                writing = time.perf_counter()
                report.add(writer.write_ocr(batch))
                report.stages.write += time.perf_counter() - writing
                if stop.requested:
                    break
    except KeyboardInterrupt:
        report.interrupted = True
    report.interrupted = report.interrupted or stop.requested


def _embed_and_write(
    batches: Iterator[DecodedBatch],
    encoder: Encoder,
    writer: Writer,
    report: IndexReport,
    on_done: Callable[[int], None] | None,
    stop: StopRequest,
) -> None:
    stages, done = report.stages, 0
    decoded_batches = _Timed(batches)
    try:
        for decoded in decoded_batches:
            writing = time.perf_counter()
            reuse = writer.reusable(decoded)
            embedding = time.perf_counter()
            embedded = embed_batch(encoder, decoded, reuse)
            written = time.perf_counter()
            report.add(writer.write(embedded))
            stages.write += (embedding - writing) + (time.perf_counter() - written)
            stages.embed += written - embedding
            done += decoded.size
            if on_done:
                on_done(done)
            if stop.requested:
                return
    finally:
        stages.decode += decoded_batches.seconds
