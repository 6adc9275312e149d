"""The front door of an indexing run: lock, scan, plan; stop there when nothing changed.

A re-index of an unchanged folder is the most common run there is, so it must cost what the
scan costs: this module imports neither LanceDB, pyarrow, torch nor open_clip. It plans
against the file states the last complete run left next to the table (indexer/filestate.py);
when they are fresh (the table and its derived files, FAISS index, query snapshot and
keyword index, are as that run left them) and the scan finds nothing new, changed or gone,
the run ends here. Anything else
goes to the pipeline (indexer/pipeline.py), which plans against the table itself and loads
the model only when something must be embedded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pixfind.search import keywords
from pixfind.search.errors import backend_errors
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, register_heif
from pixfind.search.models import spec_identity
from pixfind.search.types import EncoderSpec

from . import filestate
from .lock import index_lock
from .plan import Plan, make_plan, under_roots
from .report import IndexReport
from .scan import scan

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
    start = time.perf_counter()
    register_heif()
    if home.exists() and not home.is_dir():
        from pixfind.search.store import check_location

        check_location(home)  # raises: a file where the index folder should be
    with backend_errors(home, "creating the index folder"):
        home.mkdir(parents=True, exist_ok=True)
    with index_lock(home):
        if encoder is None and not options.rebuild:
            report = _unchanged(home, options, spec, on_plan)
            if report is not None:
                report.seconds = time.perf_counter() - start
                return report
        from .pipeline import update_index

        report = update_index(home, options, spec, device, encoder, on_plan, on_progress)
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
    report = IndexReport(str(home), saved.label)
    plan, _ = scan_and_plan(options, saved.states, report)
    skip_failed(plan, saved.failed, report)
    if plan.todo or plan.removed:
        return None
    if on_plan:
        on_plan(plan)
    report.total = len(saved.states)
    return report


def scan_and_plan(
    options: IndexOptions, known: Mapping[str, tuple[float, int]], report: IndexReport
) -> tuple[Plan, list[str]]:
    """Scan ``options.roots`` and compare with ``known``: (the plan, the roots' real paths).
    What was skipped, unreadable or reached through a symlinked root goes into ``report``,
    with the stage times."""
    stages = report.stages
    roots, given = _real_roots(options.roots, report)
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

    planning = time.perf_counter()
    found = Timed(
        scan(
            roots,
            options.exclude,
            options.include_hidden,
            on_skip=on_skip,
            on_unreadable=on_unreadable,
        )
    )
    # rows stored under a root as given (a symlink) are aliases of the real path: replaced
    plan = make_plan(found, known, roots + given, unseen, options.prune_missing)
    stages.scan = found.seconds
    stages.plan = time.perf_counter() - planning - found.seconds
    report.unchanged = plan.unchanged
    report.kept = len(plan.kept)
    report.pruned = options.prune_missing
    return plan, roots


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
        path = os.path.abspath(os.path.expanduser(os.fspath(root)))
        resolved = os.path.realpath(path)
        real.append(resolved)
        if resolved != path:
            given.append(path)
            report.aliases.append((path, resolved))
    return real, given


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
