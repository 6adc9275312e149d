"""The front door of an indexing run: lock, scan, plan; stop there when nothing changed.

A re-index of an unchanged folder is the most common run there is, so it must cost what the
scan costs: this module imports neither LanceDB, pyarrow, torch nor open_clip. It plans
against the file states the last complete run left next to the table (indexer/filestate.py);
when they are fresh (the table and its derived files, FAISS index, query snapshot and
keyword index, are as that run left them) and the scan finds nothing new, changed or gone,
the run ends here. Anything else goes to the pipeline (indexer/pipeline.py), which plans
against the table itself and loads the model only when something must be embedded.

The quick look is not taken when the run brings a model (a live index keeps one loaded,
``encoder=``), rebuilds, reads text (``--ocr``: which photos still need it is in the table)
or is limited to changed paths (``only``: a live index's event); nor while the table's keyword
index is missing, or rows under the roots still lack their perceptual hashes (files.state
lists those): the pipeline does that work.

``engine="ray"`` (indexer/ray_engine.py) takes the same quick look: a run with nothing to do
starts no Ray cluster. Otherwise the Ray driver replaces the pipeline under the same lock and
leaves the same file states behind, so either engine's next run can stop here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pixfind.search import keywords
from pixfind.search.errors import backend_errors
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, register_heif
from pixfind.search.location import is_uri, shown
from pixfind.search.models import spec_identity
from pixfind.search.photobucket import normalise
from pixfind.search.types import EncoderSpec

from . import filestate
from .lock import index_lock
from .plan import Plan, make_plan, under_roots
from .report import IndexReport
from .scan import confirmed_gone, scan

if TYPE_CHECKING:  # pragma: no cover
    from pixfind.search.encoder import Encoder

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
    precision: str | None = None  # the image tower's: auto, fp32, int8 (None: PIXFIND_PRECISION)


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide the Ray engine runs (``address`` None: a local Ray on this machine)."""

    address: str | None = None
    actors: tuple[int, int] = (1, 1)  # (min, max) actors, each holding one model
    gpus_per_actor: float = 0.0
    commit_every: int = 2048  # rows per commit: what a killed driver can lose at most


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
    engine: str = "local",
    cluster: ClusterOptions | None = None,
) -> IndexReport:
    """Bring the index at ``home`` up to date with the files under ``options.roots``.

    ``encoder``: a loaded encoder to use (a live index keeps one); ``stop``: set by another
    thread to stop after the batch in flight, as the first Ctrl-C does; ``runtime``: auto,
    torch or onnx (None: $PIXFIND_RUNTIME). ``engine`` "local" runs the stages in this
    process (and its decoding workers); "ray" hands decoding and embedding to a Ray cluster
    (``cluster``) and commits what it returns (indexer/ray_engine.py)."""
    start = time.perf_counter()
    if engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {engine!r}: use 'local' or 'ray'")
    if engine == "ray":
        from .ray_engine import check_ray_options

        check_ray_options(options, encoder)  # one line before anything is loaded or locked
    register_heif()
    reader = None
    if options.ocr:  # before anything is loaded or written: a missing Tesseract is one line
        from pixfind.search.settings import get_settings

        from .ocr import ocr_reader

        reader = ocr_reader(options.ocr_lang, get_settings().tessdata)
    if home.exists() and not home.is_dir():
        from pixfind.search.store import check_location

        check_location(home)  # raises: a file where the index folder should be
    with backend_errors(home, "creating the index folder"):
        home.mkdir(parents=True, exist_ok=True)
    with index_lock(home):
        quick = encoder is None and not (options.rebuild or options.ocr or options.only)
        if quick:
            report = _unchanged(home, options, spec, on_plan)
            if report is not None:
                report.seconds = time.perf_counter() - start
                return report
        if engine == "ray":
            from .ray_engine import run_ray_index

            cluster = cluster or ClusterOptions()
            report = run_ray_index(
                home, options, cluster, spec, device, on_plan, on_progress, stop, runtime
            )
        else:
            from .pipeline import update_index

            report = update_index(
                home, options, spec, device, encoder, on_plan, on_progress, reader, stop, runtime
            )
        report.seconds = time.perf_counter() - start
        return report


def _unchanged(
    home: Path,
    options: IndexOptions,
    spec: EncoderSpec | None,
    on_plan: Callable[[Plan], None] | None,
) -> IndexReport | None:
    """The report of a run with nothing to do, or None when the pipeline must look."""
    saved = filestate.load_fresh(home)
    if saved is None or (spec is not None and spec_identity(spec) != saved.identity):
        return None  # another model asked for: the pipeline says what is wrong
    if saved.states and not keywords.on_disk(home):
        return None  # the keyword index is missing: the pipeline builds it
    report = IndexReport(shown(home), saved.label)
    scanned = scan_and_plan(options, saved.states, report)
    plan = scanned.plan
    skip_failed(plan, saved.failed, report)
    if plan.todo or plan.removed:
        return None
    scope, kept = scanned.roots + scanned.given, set(plan.kept)
    if any(p not in kept and under_roots(p, scope) for p in saved.unhashed):
        return None  # rows of an older index without perceptual hashes: the pipeline fills them
    if on_plan:
        on_plan(plan)
    report.total = len(saved.states)
    return report


@dataclass
class Scanned:
    """What scan_and_plan found: the plan and where it looked."""

    plan: Plan  # or an ArrowPlan, where the Ray engine plans (scan_and_plan's ``plan_with``)
    roots: list[str]  # the roots' real paths
    given: list[str]  # the roots as given where they differ (symlinks)
    targets: list[str]  # what was scanned: the roots, or ``options.only`` under them
    unseen: list[str] = field(default_factory=list)  # there but not checkable: rows kept


def scan_and_plan(
    options: IndexOptions,
    known: Mapping[str, tuple[float, int]],
    report: IndexReport,
    plan_with: Callable[..., Plan] | None = None,
) -> Scanned:
    """Scan ``options.roots`` (or ``options.only`` under them) and compare with ``known``.
    What was skipped, unreadable, reached through a symlinked root or paired (RAW+JPEG)
    goes into ``report``, with the stage times. ``plan_with(found, scope, unseen, prune)``
    plans instead of make_plan against ``known`` (the Ray engine's Arrow join)."""
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
    found = Timed(
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
    if plan_with is None:
        plan = make_plan(found, known, scope, unseen, options.prune_missing)
    else:
        plan = plan_with(found, scope, unseen, options.prune_missing)
    stages.scan = found.seconds
    stages.plan = time.perf_counter() - planning - found.seconds
    report.unchanged = plan.unchanged
    report.kept = len(plan.kept)
    report.pruned = options.prune_missing
    return Scanned(plan, roots, given, targets, unseen)


def skip_failed(
    plan: Plan, failed: Mapping[str, tuple[float, int, str]], report: IndexReport
) -> dict[str, tuple[float, int, str]]:
    """Take the files that could not be decoded last time and have not changed since out of
    ``plan.new`` (into ``report.skipped``): a broken file is tried again once it changes, not
    on every run (which would load the model each time). Returns their entries."""
    again = {
        s.path: failed[s.path]
        for s in plan.new
        if s.path in failed and failed[s.path][:2] == (s.mtime, s.size)
    }
    if again:
        plan.new = [s for s in plan.new if s.path not in again]
        report.skipped += [
            (p, f"{why} (unchanged since; not tried again)") for p, (*_, why) in again.items()
        ]
    return again


def _real_roots(roots: Sequence[str], report: IndexReport) -> tuple[list[str], list[str]]:
    """Roots by their real paths, so a folder indexed directly and through a symlink is
    stored once; returns (real roots, the given ones that differ) and notes each alias."""
    real, given = [], []
    for root in roots:
        if is_uri(root):  # a prefix on s3:// (search/photobucket.py): no symlinks there
            real.append(normalise(root))
            continue
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


class Timed(Iterator[T]):
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
