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

from pixfind.search import keywords
from pixfind.search.encoder import Encoder, load_encoder, text_recipe
from pixfind.search.errors import DamagedIndex
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, register_heif
from pixfind.search.index import VectorIndex
from pixfind.search.store import Store, backend_errors, check_location
from pixfind.search.types import EncoderSpec, FileStat

from .captions import CaptionFinder
from .decode import DecodedBatch, decode_batches, default_workers
from .embed import embed_batch
from .lock import index_lock
from .plan import Plan, make_plan, under_roots
from .report import IndexReport
from .scan import scan
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
    engine: str = "local",
    cluster: ClusterOptions | None = None,
) -> IndexReport:
    """Bring the index at ``home`` up to date with the files under ``options.roots``.

    ``engine`` "local" runs the stages in this process (and its decoding workers); "ray"
    hands decoding and embedding to a Ray cluster (``cluster``) and commits what it returns
    (indexer/ray_engine.py). Both build rows with the same stage functions."""
    if engine == "ray":
        from .ray_engine import run_ray_index

        cluster = cluster or ClusterOptions()
        return run_ray_index(home, options, cluster, spec, device, on_plan, on_progress)
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r}: use 'local' or 'ray'")
    with indexing(home, options, spec, device, encoder) as (store, encoder, report):
        stages = report.stages
        roots, given = real_roots(options.roots, report)
        found, unseen = scan_roots(roots, options, report)
        planning = time.perf_counter()
        # rows stored under a root as given (a symlink) are aliases of the real path: replaced
        plan = make_plan(found, store.file_states(), roots + given, unseen, options.prune_missing)
        stages.scan = found.seconds
        stages.plan = time.perf_counter() - planning - found.seconds
        report.unchanged = plan.unchanged
        report.kept = len(plan.kept)
        keywords.add_column(store, roots)  # an index from before keywords: filled in place
        if on_plan:
            on_plan(plan)
        changed = {s.path for s in plan.changed}
        writer = Writer(store, changed=changed, removed=plan.removed, roots=roots)
        batches = _decode_batches(plan.todo, encoder, options, roots)
        on_done = (lambda done: on_progress(done, len(plan.todo))) if on_progress else None
        stop = StopRequest()
        try:
            # closing: an early stop shuts the decoding workers down now, not when collected
            with stop.on_sigint(), contextlib.closing(batches):
                _embed_and_write(batches, encoder, writer, report, on_done, stop)
        except KeyboardInterrupt:
            report.interrupted = True
        report.interrupted = report.interrupted or stop.requested
        if not report.interrupted:  # else committed batches are safe; the next run resumes
            finish(store, writer, plan.removed, report, encoder)
        report.total = store.count()
        return report


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide the Ray engine runs (``address`` None: a local Ray on this machine)."""

    address: str | None = None
    actors: tuple[int, int] = (1, 1)  # (min, max) actors, each holding one model
    gpus_per_actor: float = 0.0
    commit_every: int = 2048  # rows per commit: what a killed driver can lose at most


@contextlib.contextmanager
def indexing(
    home: Path,
    options: IndexOptions,
    spec: EncoderSpec | None,
    device: str,
    encoder: Encoder | None = None,
) -> Iterator[tuple[Store, Encoder, IndexReport]]:
    """Under the index lock: the store opened (or created) with the model check, the encoder
    it needs, and the run's report, whose ``seconds`` is set on the way out."""
    register_heif()
    start = time.perf_counter()
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
        encoder = encoder or load_encoder(spec, device)
        if options.rebuild or existing is None:
            store = Store.create(home, encoder.info, overwrite=options.rebuild)
        else:
            existing.check_model(encoder.info)
            store = existing
        report = IndexReport(str(home), encoder.info.label, notes=notes)
        report.pruned = options.prune_missing
        try:
            yield store, encoder, report
        finally:
            report.seconds = time.perf_counter() - start


def scan_roots(
    roots: Sequence[str], options: IndexOptions, report: IndexReport
) -> tuple[_Timed[FileStat], list[str]]:
    """The files under ``roots`` (timed as they are drawn) and the paths the scan could not
    check, filled as it goes: their rows are kept (see make_plan)."""
    unseen: list[str] = []

    def on_skip(path: str, reason: str) -> None:
        report.skipped.append((path, reason))
        if not reason.startswith(("file vanished", "not a regular file")):
            unseen.append(path)  # still there, only not checkable now: keep its row

    def on_unreadable(path: str, reason: str) -> None:
        report.unreadable.append((path, reason))
        unseen.append(path)
        for alias, real in report.aliases:  # rows stored under the symlinked root, too
            if under_roots(path, [real]):
                unseen.append(alias + path[len(real) :])

    found = scan(
        roots,
        options.exclude,
        options.include_hidden,
        on_skip=on_skip,
        on_unreadable=on_unreadable,
        on_pair=lambda raw, sibling: report.raw_pairs.append((raw, sibling)),
    )
    return _Timed(found), unseen


def finish(
    store: Store, writer: Writer, removed: Sequence[str], report: IndexReport, encoder: Encoder
) -> None:
    """After the rows: remove the gone files' rows, compact, then the derived files (keyword
    index, vector index), the same for every engine."""
    stages = report.stages
    writing = time.perf_counter()
    report.add(writer.delete(removed))
    if report.embedded or report.removed:
        store.compact()  # also folds new rows into the keyword index
    keywords.update_index(store)  # built when missing, else a no-op
    stages.write += time.perf_counter() - writing
    indexing_at = time.perf_counter()
    VectorIndex.for_store(store, recipe=text_recipe(encoder.spec))
    stages.index = time.perf_counter() - indexing_at


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


def real_roots(roots: Sequence[str], report: IndexReport) -> tuple[list[str], list[str]]:
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


def _decode_batches(
    todo: Sequence[FileStat], encoder: Encoder, options: IndexOptions, roots: Sequence[str]
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
    )


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
