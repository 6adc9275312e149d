"""A live index: watch photo folders and keep the index current (`pixfind watch`,
`pixfind serve --watch`).

watchfiles (the Rust ``notify`` crate: inotify, FSEvents, ReadDirectoryChangesW, or polling)
reports changed paths; they are grouped until the folders are quiet for ``quiet_ms`` (at most
``max_wait_ms``) and handed to the normal incremental indexer, ``run_index`` with
``IndexOptions.only``: one writer at a time under the index lock, one commit per decode batch,
and what is removed is ruled as in `pixfind index` (a path is removed only when the folder
above it can be listed; a missing root or an unreadable folder removes nothing). Changes that
arrive while a batch is indexed wait for the next one, so a burst becomes a few runs.

The whole folders are rescanned at start, after a watcher error, when a missing root comes
back, and every ``rescan_minutes``: watchfiles drops the kernel's queue-overflow notice, so a
periodic rescan is what catches changes an overflow lost. The encoder is loaded once and kept.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pixfind.search.encoder import Encoder, load_encoder
from pixfind.search.errors import IndexLocked
from pixfind.search.images import supported_extensions
from pixfind.search.onnxmodel import exported_encoder
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec

from .pipeline import IndexOptions, StopRequest, run_index
from .plan import under_roots
from .report import IndexReport
from .scan import ignored

ADDED, MODIFIED, DELETED = 1, 2, 3  # watchfiles.Change values


@dataclass(frozen=True)
class WatchSettings:
    quiet_ms: int = 200  # hand a batch over once no change came for this long...
    max_wait_ms: int = 1600  # ...or this long after its first change (a steady stream)
    rescan_minutes: float = 60.0  # full rescan this often (0: only at start and on errors)
    retry_seconds: float = 2.0  # the index is locked by another writer: try again after this
    force_polling: bool = False  # network shares and other file systems without events
    poll_ms: int = 1000  # how often polling looks, when it does


Report = Callable[[IndexReport, bool], None]  # (what one run did, whether it was a full scan)
Note = Callable[[str], None]


def open_encoder(home: Path, spec: EncoderSpec | None, device: str) -> Encoder:
    """The encoder a run of ``run_index`` on ``home`` would load: the index's own model unless
    another is asked for (refused before loading when it differs)."""
    if spec is None and Store.exists(home):
        spec = Store.open(home).info.spec
    elif spec is not None and Store.exists(home):
        Store.open(home).check_spec(spec)
    # PIXFIND_RUNTIME (auto: ONNX on a CPU, a cache export without the torch model)
    return exported_encoder(spec, device, None) or load_encoder(spec, device, None)


class Watcher:
    """Watches ``options.roots`` and indexes what changes into ``home`` until ``stop()`` (from
    another thread) or Ctrl-C (when run in the main thread: KeyboardInterrupt after the batch
    in flight is committed)."""

    def __init__(
        self,
        home: Path,
        options: IndexOptions,
        encoder: Encoder,
        settings: WatchSettings | None = None,
        on_report: Report | None = None,
        on_note: Note | None = None,
    ):
        self.home = home
        self.options = options
        self.encoder = encoder
        self.settings = settings or WatchSettings()
        self.on_report = on_report or (lambda report, full: None)
        self.on_note = on_note or (lambda line: None)
        # watched by their real paths, as the index stores them
        self.roots = [os.path.realpath(os.path.expanduser(os.fspath(r))) for r in options.roots]
        self._exts = supported_extensions()
        self._stop_event = threading.Event()
        self._stop = StopRequest()
        self.runs = 0  # indexing runs so far (full scans included)

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set() or self._stop.requested

    def stop(self) -> None:
        """Stop after the batch in flight is committed (safe from any thread)."""
        self._stop.requested = True
        self._stop_event.set()

    def run(self) -> None:
        """Watch until stopped. In the main thread the first Ctrl-C stops after the batch in
        flight is committed (a second one interrupts at once)."""
        if threading.current_thread() is not threading.main_thread():
            return self._run()

        def first_ctrl_c(signum, frame) -> None:
            self.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        # a handler that only sets a flag: a KeyboardInterrupt raised inside the table
        # library's code could be taken for one of its own errors
        previous = signal.signal(signal.SIGINT, first_ctrl_c)
        try:
            self._run()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self) -> None:
        """Watch until stopped. A watcher error restarts the watcher and rescans everything."""
        from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

        failures = 0
        while not self.stopped:
            present = [r for r in self.roots if os.path.isdir(r) or os.path.isfile(r)]
            missing = [r for r in self.roots if r not in present]
            for root in missing:
                self.on_note(f"{root} is missing (not mounted?): its photos are kept")
            try:
                notify = RustNotify(
                    present,
                    False,  # debug
                    self.settings.force_polling,
                    self.settings.poll_ms,
                    True,  # recursive
                    True,  # ignore_permission_denied: unreadable folders are reported by scans
                )
            except (OSError, RuntimeError) as exc:
                failures += 1
                self.on_note(f"can't watch {', '.join(present)}: {exc}; trying again")
                self._wait(self.settings.retry_seconds * min(failures, 15))
                continue
            with notify:
                # watching first, then the full scan: nothing changed during the scan is lost
                if not self._full_scan():
                    return
                try:
                    self._follow(notify, missing)
                    failures = 0
                except WatchfilesRustInternalError as exc:
                    failures += 1
                    self.on_note(f"the watcher failed ({exc}); rescanning everything")
                    self._wait(self.settings.retry_seconds * min(failures, 15))

    def _follow(self, notify, missing: Sequence[str]) -> None:
        """Index changes as they come; return when a full rescan is due (or on stop)."""
        s = self.settings
        rescan_at = time.monotonic() + s.rescan_minutes * 60 if s.rescan_minutes > 0 else None
        pending: set[str] = set()
        while not self.stopped:
            raw = notify.watch(s.max_wait_ms, s.quiet_ms, 1000, self._stop_event)
            if raw in ("stop", "signal"):  # a signal: a second Ctrl-C (the first sets stop)
                return
            if raw != "timeout":
                pending |= self.relevant(raw)
            if any(os.path.isdir(r) for r in missing) or any(
                not os.path.lexists(r) for r in self.roots if r not in missing
            ):
                self.on_note("a watched folder appeared or disappeared; rescanning everything")
                return
            if rescan_at is not None and time.monotonic() > rescan_at:
                return
            if pending and self._index(sorted(pending)) is not None:
                pending.clear()
            elif pending:
                self._wait(s.retry_seconds)

    def relevant(self, changes) -> set[str]:
        """The changed paths worth a look: image files, new folders (moved in with their
        photos), and anything deleted (a folder's rows go with it); never hidden or excluded
        ones, nor changes to a folder's own times."""
        keep = set()
        exclude, hidden = self.options.exclude, self.options.include_hidden
        for change, path in changes:
            root = next((r for r in self.roots if under_roots(path, [r])), None)
            if root is None or ignored(path, root, exclude, hidden):
                continue
            image = os.path.splitext(path)[1].lower() in self._exts
            new_folder = change == ADDED and os.path.isdir(path) and not os.path.islink(path)
            if change == DELETED or image or new_folder:
                keep.add(path)
        return keep

    def _full_scan(self) -> bool:
        """Rescan everything (retrying while another writer holds the index); False: stopped."""
        while not self.stopped:
            if self._index(None) is not None:
                return not self.stopped
            self._wait(self.settings.retry_seconds)
        return False

    def _index(self, only: list[str] | None) -> IndexReport | None:
        """One run of the indexer over ``only`` (None: everything); None when the index is
        locked by another writer (the caller tries again)."""
        options = replace(self.options, only=only, rebuild=False)
        if only is not None:
            options = replace(options, workers=0 if len(only) <= 256 else options.workers)
        try:
            report = run_index(self.home, options, encoder=self.encoder, stop=self._stop)
        except IndexLocked as exc:
            self.on_note(f"{exc} (will retry)")
            return None
        self.runs += 1
        self.on_report(report, only is None)
        if report.interrupted:
            self.stop()
        return report

    def _wait(self, seconds: float) -> None:
        self._stop_event.wait(seconds)


def changed(report: IndexReport) -> bool:
    """Whether a run changed the index (so searchers should look again)."""
    return bool(report.added or report.updated or report.removed)
