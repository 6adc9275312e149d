"""One writer per index: a second `pixfind index` on the same index refuses with a clear message.

A local index holds a lock file; one on object storage a lease object (indexer/lease.py)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pixfind.search.errors import IndexLocked, UnusableIndex, backend_errors
from pixfind.search.location import location_of

LOCK_NAME = "index.lock"


@contextlib.contextmanager
def index_lock(home: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``home/index.lock``; released even on kill -9. An
    index on s3:// holds its lease instead (gs://, az://: none yet, one writer at a time)."""
    location = location_of(home)
    if location.remote:
        if location.scheme != "s3":
            warn = f"no writer's lease on {location.scheme}:// yet: run one indexer at a time"
            print(f"pixfind: {warn}", file=sys.stderr, flush=True)
            yield
            return
        from .lease import held

        with held(location):
            yield
        return
    path = home / LOCK_NAME
    if path.is_dir():
        raise UnusableIndex(
            f"{path} is a folder, where pixfind keeps its lock file; remove it "
            f"(`rmdir {path}`) and run this again"
        )
    with backend_errors(home, f"creating its lock file {path}"):
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise IndexLocked(
                f"the index at {home} is being updated by pid {holder}; wait for it to "
                "finish (or stop it), then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
