"""scan -> plan -> decode (worker processes) -> embed (batches) -> write (one commit per batch).

The stages live in their own modules and are usable alone; this module runs them in order
once run.run_index has locked the index and its quick look found something to do (or could
not tell), times them, and stops cleanly on Ctrl-C after the batch in flight."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pixfind.search import keywords, objectstore, phash
from pixfind.search.encoder import Encoder, load_encoder, text_recipe
from pixfind.search.errors import DamagedIndex
from pixfind.search.index import INDEX_DIR
from pixfind.search.location import shown
from pixfind.search.onnxmodel import exported_encoder
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec, FileStat

from . import filestate
from .captions import CaptionFinder
from .decode import DecodedBatch, decode_batches, default_workers, ocr_batches
from .embed import embed_batch
from .ocr import OcrReader
from .plan import Plan, under_roots
from .rehash import fill_hashes, stale_paths
from .report import IndexReport
from .run import (
    IndexOptions,
    Progress,
    StopRequest,
    Timed,
    run_index,
    scan_and_plan,
    skip_failed,
)
from .write import Writer

__all__ = [
    "IndexOptions",
    "StopRequest",
    "fill_missing_hashes",
    "finish",
    "open_store",
    "run_index",
    "update_index",
]


def update_index(
    home: Path,
    options: IndexOptions,
    spec: EncoderSpec | None,
    device: str,
    encoder: Encoder | None,
    on_plan: Callable[[Plan], None] | None,
    on_progress: Progress | None,
    reader: OcrReader | None = None,
    stop: StopRequest | None = None,
    runtime: str | None = None,
) -> IndexReport:
    """run_index's work once the index is locked and the quick look found something to do
    (or could not tell): plan against the table, load the model only when something must
    be embedded, write, read text (``reader``: --ocr), fill missing perceptual hashes, and
    bring the derived files up to date."""
    store, encoder, spec, report = open_store(home, options, spec, device, encoder, runtime)
    stages = report.stages
    planning = time.perf_counter()
    known = store.file_states()
    scanned = scan_and_plan(options, known, report)
    plan, roots = scanned.plan, scanned.roots
    still_failed = skip_failed(
        plan, {} if options.rebuild else filestate.failed_before(home), report
    )
    stages.plan = time.perf_counter() - planning - stages.scan  # with reading the table
    version = store.version
    keywords.add_column(store, roots)  # an index from before keywords: filled in place
    if reader:
        keywords.add_ocr_columns(store)
    phash.add_columns(store)  # an index from before perceptual hashes: filled below
    if on_plan:
        on_plan(plan)
    if plan.todo and encoder is None:  # only now: a re-index with nothing new loads no model
        encoder = _load(spec, device, runtime)
        store.check_model(encoder.info)
    if plan.todo:  # int8 refused on torch before anything is decoded
        encoder.start_run(options.precision)
    changed = {s.path for s in plan.changed}
    writer = Writer(store, changed=changed, removed=plan.removed, roots=roots)
    stop = stop or StopRequest()
    if plan.todo:
        batches = _decode_batches(plan.todo, encoder, options, roots, reader)
        on_done = (lambda done: on_progress(done, len(plan.todo))) if on_progress else None
        try:
            # closing: an early stop shuts the decoding workers down now, not when collected
            with stop.on_sigint(), contextlib.closing(batches):
                _embed_and_write(batches, encoder, writer, report, on_done, stop)
        except KeyboardInterrupt:
            report.interrupted = True
        report.precision = encoder.precision
    report.interrupted = report.interrupted or stop.requested
    if not report.interrupted:  # else committed batches are safe; the next run resumes
        report.add(writer.delete(plan.removed))
        if reader:  # photos indexed without OCR (or in another language): read, not embedded
            unseen = scanned.unseen
            pending = sorted(keywords.ocr_pending(store, reader.lang))
            seen = [
                p for p in pending if under_roots(p, scanned.targets) and not under_roots(p, unseen)
            ]
            _read_text(seen, reader, writer, report, options, stop)
        skip = {s.path for s in plan.todo} | set(plan.removed) | set(plan.kept)
        fill_missing_hashes(store, roots + scanned.given, skip, options, report, stop)
    if not report.interrupted:
        todo = {s.path: s for s in plan.todo}
        failed = {p: (todo[p].mtime, todo[p].size, why) for p, why in report.skipped if p in todo}
        failed.update(still_failed)
        finish(store, report, encoder, failed, known, version)
    report.total = store.count()
    return report


def open_store(
    home: Path,
    options: IndexOptions,
    spec: EncoderSpec | None,
    device: str,
    encoder: Encoder | None,
    runtime: str | None,
) -> tuple[Store, Encoder | None, EncoderSpec | None, IndexReport]:
    """The store opened (a damaged one moved aside on --rebuild) or created, with the model
    check; the encoder only where it had to be loaded (a new table); the spec to load later
    (the index's own by default); the run's report."""
    notes: list[str] = []
    existing = _open_existing(home, options.rebuild, notes)
    if encoder is None and existing is not None:
        if spec is None:
            spec = existing.info.spec  # an index remembers its model
        elif not options.rebuild:
            existing.check_spec(spec)
    if options.rebuild or existing is None:
        encoder = encoder or _load(spec, device, runtime)
        store = Store.create(home, encoder.info, overwrite=options.rebuild)
    else:
        store = existing
        if encoder is not None:
            store.check_model(encoder.info)
    return store, encoder, spec, IndexReport(shown(home), store.info.label, notes=notes)


def fill_missing_hashes(
    store: Store,
    scope: Sequence[str],
    skip: set[str],
    options: IndexOptions,
    report: IndexReport,
    stop: StopRequest,
) -> None:
    """Fill the perceptual hashes of rows under ``scope`` an older index left without them
    (not ``skip``: rows just written, removed or kept unseen)."""
    if stale := stale_paths(store, scope, skip):
        size = store.info.image_size  # the model's draft size, without loading the model
        report.rehashed = fill_hashes(store, stale, size, options.workers, lambda: stop.requested)


def finish(
    store: Store,
    report: IndexReport,
    encoder: Encoder | None,
    failed: dict[str, tuple[float, int, str]],
    known: dict[str, tuple[float, int]] | None = None,
    version: int | None = None,
) -> None:
    """After the rows, the same for every engine: compaction, keyword and vector indexes,
    and the file states for the next run's quick look (``failed``: files that did not
    decode; ``known``: the states read at table ``version``, reused if it is still that)."""
    stages = report.stages
    writing = time.perf_counter()
    if report.embedded or report.removed or report.ocr_read or report.rehashed:
        store.compact()  # also folds new rows into the keyword index
    keywords.update_index(store)  # built when missing, else a no-op
    stages.write += time.perf_counter() - writing
    indexing = time.perf_counter()
    # the text tower's recipe reads the weights: only where the model was loaded anyway
    recipe = (
        None if encoder is None else getattr(encoder, "recipe", None) or text_recipe(encoder.spec)
    )
    vectors = objectstore.vector_index(store, recipe, share=True)
    stages.index = time.perf_counter() - indexing
    unchanged = known if store.version == version else None
    _save_states(store, unchanged, vectors.directory, failed)


def _save_states(
    store: Store,
    known: dict[str, tuple[float, int]] | None,
    faiss_dir: Path | None,
    failed: dict[str, tuple[float, int, str]],
) -> None:
    """Leave the table's file states, the files that ``failed`` to decode and the rows still
    without perceptual hashes for the next run's quick look (indexer/run.py), unless the
    saved ones say the same; ``known``: the states when the table did not change. Not where
    the FAISS index could not be saved in the index folder (read-only)."""
    if faiss_dir != store.home / INDEX_DIR:
        return
    saved = filestate.load_fresh(store.home)
    if saved is not None and saved.failed == failed:
        return
    states = store.file_states() if known is None else known
    derived = [faiss_dir / "infos.json", faiss_dir / "snapshot.json"]
    info = store.info
    filestate.save(
        store.home,
        states,
        store.version,
        info.identity,
        info.label,
        derived,
        failed,
        unhashed=phash.unhashed(store),
    )


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


def _load(spec: EncoderSpec | None, device: str, runtime: str | None) -> Encoder:
    """The model's checked ONNX export where it is a model folder (no torch model built),
    else the open_clip model (which exports on the run's first batch)."""
    return exported_encoder(spec, device, runtime) or load_encoder(spec, device, runtime)


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
    decoded_batches = Timed(batches)
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
