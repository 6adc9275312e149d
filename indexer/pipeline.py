"""scan -> plan -> decode (worker processes) -> embed (batches) -> write (one commit per batch)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pixfind.search.encoder import Encoder, load_encoder, text_recipe
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, DecodeError, decode_file, register_heif
from pixfind.search.index import VectorIndex
from pixfind.search.metadata import ImageMeta
from pixfind.search.store import Store, now, path_id
from pixfind.search.types import EncoderSpec, FileStat, ImageRecord

from .captions import CaptionFinder, merge_captions
from .lock import index_lock
from .plan import Plan, make_plan
from .scan import scan

Progress = Callable[[int, int], None]  # (done, total)


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


@dataclass
class IndexReport:
    home: str
    model: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    moved: int = 0  # new paths whose content was already indexed elsewhere (vector reused)
    reused: int = 0  # all vectors reused by content hash (moves, copies, touched files)
    captioned: int = 0  # images written with at least one caption
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict:
        return {
            "index": self.home,
            "model": self.model,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "reused": self.reused,
            "captioned": self.captioned,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "total": self.total,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.embedded / self.seconds, 2) if self.seconds else 0.0,
            "interrupted": self.interrupted,
        }


@dataclass
class _Item:
    stat: FileStat
    pixels: object | None  # preprocessed tensor
    width: int = 0
    height: int = 0
    content_hash: str = ""
    error: str | None = None
    meta: ImageMeta | None = None
    file_type: str = ""


class _DecodeDataset:
    """Map-style dataset for torch's DataLoader: decoding + preprocessing run in its workers."""

    def __init__(self, stats: Sequence[FileStat], preprocess, draft: int, max_mp: float):
        self.stats, self.preprocess, self.draft, self.max_mp = stats, preprocess, draft, max_mp

    def __len__(self) -> int:
        return len(self.stats)

    def __getitem__(self, i: int) -> _Item:
        stat = self.stats[i]
        try:
            decoded = decode_file(stat.path, self.draft, self.max_mp)
            pixels = self.preprocess(decoded.image)
        except DecodeError as exc:
            return _Item(stat, None, error=str(exc))
        except Exception as exc:  # a hostile file must never stop the run
            return _Item(stat, None, error=f"preprocessing failed: {type(exc).__name__}: {exc}")
        # the stat of the bytes actually read: a file rewritten since the scan is stored as read
        stat = FileStat(stat.path, decoded.mtime or stat.mtime, decoded.size or stat.size)
        return _Item(
            stat,
            pixels,
            decoded.width,
            decoded.height,
            decoded.content_hash,
            meta=decoded.meta,
            file_type=decoded.file_type,
        )


def _collate(items: list[_Item]) -> list[_Item]:
    return items


def _worker_init(_: int) -> None:
    # Ctrl-C reaches every process of the terminal's group: decoding workers ignore it so
    # the main process can finish and commit the batch in flight, then stop them itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def _batches(dataset: _DecodeDataset, batch_size: int, workers: int):
    import torch

    # Workers only decode; they never touch LanceDB, whose fork warning doesn't apply to them.
    warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
    if workers == 0:
        for start in range(0, len(dataset), batch_size):
            yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
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


def run_index(
    home: Path,
    options: IndexOptions,
    spec: EncoderSpec | None = None,
    device: str = "auto",
    on_plan: Callable[[Plan], None] | None = None,
    on_progress: Progress | None = None,
    encoder: Encoder | None = None,
) -> IndexReport:
    """Bring the index at ``home`` up to date with the files under ``options.roots``."""
    register_heif()
    start = time.perf_counter()
    home.mkdir(parents=True, exist_ok=True)
    with index_lock(home):
        existing = Store.open(home) if Store.exists(home) else None
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
        report = IndexReport(str(home), encoder.info.label)
        roots = [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in options.roots]
        for root in roots:
            if not os.path.exists(root):
                report.skipped.append((root, "path does not exist"))

        found = scan(
            roots,
            options.exclude,
            options.include_hidden,
            on_skip=lambda p, r: report.skipped.append((p, r)),
        )
        plan = make_plan(found, store.file_states(), roots)
        report.unchanged = plan.unchanged
        if on_plan:
            on_plan(plan)
        stop = StopRequest()
        try:
            with stop.on_sigint():
                _embed_and_write(store, encoder, plan, options, report, on_progress, stop)
        except KeyboardInterrupt:
            report.interrupted = True
        report.interrupted = report.interrupted or stop.requested
        if report.interrupted:  # committed batches are safe; the next run resumes after them
            report.total = store.count()
            report.seconds = time.perf_counter() - start
            return report
        if plan.removed:
            store.delete_paths(plan.removed)
            report.removed += len(plan.removed)
        if report.embedded or report.removed:
            store.compact()
        VectorIndex.for_store(store, recipe=text_recipe(encoder.spec))
        report.total = store.count()
        report.seconds = time.perf_counter() - start
        return report


def _embed_and_write(
    store: Store,
    encoder: Encoder,
    plan: Plan,
    options: IndexOptions,
    report: IndexReport,
    on_progress: Progress | None,
    stop: StopRequest | None = None,
) -> None:
    todo = plan.todo
    changed = {s.path for s in plan.changed}
    removed = set(plan.removed)
    # a fresh index holds no vectors to reuse; otherwise hashes are checked in memory
    known_hashes = store.known_hashes() if todo and store.count() > 0 else set()
    captions = CaptionFinder([os.path.abspath(r) for r in options.roots])
    batch_size = options.batch_size or (128 if encoder.device.startswith("cuda") else 32)
    workers = default_workers(len(todo), batch_size) if options.workers < 0 else options.workers
    dataset = _DecodeDataset(todo, encoder.preprocess, encoder.image_size, options.max_megapixels)
    done = 0
    for batch in _batches(dataset, batch_size, workers):
        good = [it for it in batch if it.pixels is not None]
        bad = [it for it in batch if it.pixels is None]
        for it in bad:
            report.skipped.append((it.stat.path, it.error or "unknown error"))
        stale = [it.stat.path for it in bad if it.stat.path in changed]
        if stale:  # a file that changed into something undecodable leaves the index
            store.delete_paths(stale)
            report.removed += len(stale)
        if good:
            _write_batch(store, encoder, good, captions, options, report, known_hashes, removed)
            for it in good:
                if it.stat.path in changed:
                    report.updated += 1
                else:
                    report.added += 1
        done += len(batch)
        if on_progress:
            on_progress(done, len(todo))
        if stop is not None and stop.requested:
            return


def _write_batch(
    store: Store,
    encoder: Encoder,
    good: list[_Item],
    captions: CaptionFinder,
    options: IndexOptions,
    report: IndexReport,
    known_hashes: set[str],
    removed: set[str],
) -> None:
    """Embed what isn't known by content hash, embed captions, commit the batch at once."""
    import torch

    wanted = {it.content_hash for it in good} & known_hashes
    known = store.rows_by_hash(wanted) if wanted else {}
    vectors = np.zeros((len(good), encoder.dim), np.float32)
    fresh = [i for i, it in enumerate(good) if it.content_hash not in known]
    if fresh:
        vectors[fresh] = encoder.encode_image_tensors(torch.stack([good[i].pixels for i in fresh]))
    for i, it in enumerate(good):
        if it.content_hash in known:
            old_path, vectors[i] = known[it.content_hash]
            report.reused += 1
            report.moved += old_path in removed and old_path != it.stat.path
    caps = [
        merge_captions(
            captions.external(it.stat.path) if options.captions else (),
            (it.meta.captions if it.meta and options.captions else ()),
        )
        for it in good
    ]
    texts = [c for group in caps for c in group]
    flat = encoder.encode_texts(texts) if texts else np.zeros((0, encoder.dim), np.float32)
    per_image, at = [], 0
    for group in caps:
        per_image.append(flat[at : at + len(group)])
        at += len(group)
    report.captioned += sum(1 for group in caps if group)
    stamp = now()
    records = []
    for it, group in zip(good, caps, strict=True):
        meta = it.meta or ImageMeta()
        records.append(
            ImageRecord(
                id=path_id(it.stat.path),
                path=it.stat.path,
                mtime=it.stat.mtime,
                size=it.stat.size,
                width=it.width,
                height=it.height,
                content_hash=it.content_hash,
                indexed_at=stamp,
                file_type=it.file_type,
                taken_at=meta.taken_at if meta.taken_at is not None else it.stat.mtime,
                taken_source="exif" if meta.taken_at is not None else "mtime",
                camera_make=meta.camera_make,
                camera_model=meta.camera_model,
                gps_lat=meta.gps_lat,
                gps_lon=meta.gps_lon,
                captions=group,
            )
        )
    store.upsert(records, vectors, per_image)
