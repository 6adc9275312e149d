"""Decide what an indexing run must do: pure, no I/O, so it is tested without a model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pixfind.search.types import FileStat


@dataclass
class Plan:
    new: list[FileStat] = field(default_factory=list)
    changed: list[FileStat] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # not seen, but under an unreadable folder

    @property
    def todo(self) -> list[FileStat]:
        return self.new + self.changed


def under_roots(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def make_plan(
    found: Iterable[FileStat],
    known: Mapping[str, tuple[float, int]],
    roots: Sequence[str],
    unseen: Sequence[str] = (),
    prune: bool = False,
) -> Plan:
    """Compare files on disk with the index by (path, mtime, size).

    A known path under one of ``roots`` that was not found is removed; known paths elsewhere
    (other roots indexed earlier) are left alone, and so are paths at or under ``unseen``
    (folders that could not be listed, missing roots, files that could not be checked: not
    seeing a file is not evidence that it is gone) unless ``prune``. ``unseen`` is read
    after ``found`` is consumed, so a scan may fill it as it goes.
    """
    plan = Plan()
    seen: set[str] = set()
    for stat in found:
        seen.add(stat.path)
        old = known.get(stat.path)
        if old is None:
            plan.new.append(stat)
        elif old[0] != stat.mtime or old[1] != stat.size:
            plan.changed.append(stat)
        else:
            plan.unchanged += 1
    gone = (p for p in known if p not in seen)
    plan.removed, plan.kept = split_gone(gone, roots, unseen, prune)
    return plan


def split_gone(
    gone: Iterable[str], roots: Sequence[str], unseen: Sequence[str] = (), prune: bool = False
) -> tuple[list[str], list[str]]:
    """(removed, kept) of indexed paths not found by the scan, each sorted: only paths under
    ``roots`` go, and paths at or under ``unseen`` are kept unless ``prune``."""
    gone = sorted(p for p in gone if under_roots(p, roots))
    if prune or not unseen:
        return gone, []
    removed, kept = [], []
    for path in gone:
        (kept if under_roots(path, unseen) else removed).append(path)
    return removed, kept
