"""The plan as an Arrow join: what `make_plan` decides, without a Python dict per indexed file.

The distributed engine plans here: listed files and indexed rows meet in one hash join on
their path bytes (exact, surrogateescape for undecodable names), so millions of paths cost
Arrow columns, not Python objects. Pure: tested against `make_plan` without a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pixfind.search.types import FileStat

from .plan import split_gone

# what the scan found and what the index holds: one row per path
STATES = pa.schema([("key", pa.binary()), ("mtime", pa.float64()), ("size", pa.int64())])
# the work handed out: STATES + whether the path is already indexed (an update)
TODO = pa.schema([*STATES, ("changed", pa.bool_())])


def path_key(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def key_path(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def states_table(found: Iterable[FileStat], chunk: int = 65536) -> pa.Table:
    """The scan's files as a STATES table, built ``chunk`` rows at a time."""
    parts: list[pa.Table] = []
    keys: list[bytes] = []
    mtimes: list[float] = []
    sizes: list[int] = []

    def flush() -> None:
        parts.append(pa.table([keys[:], mtimes[:], sizes[:]], schema=STATES))
        keys.clear(), mtimes.clear(), sizes.clear()

    for stat in found:
        keys.append(path_key(stat.path))
        mtimes.append(stat.mtime)
        sizes.append(stat.size)
        if len(keys) >= chunk:
            flush()
    flush()
    return pa.concat_tables(parts)


@dataclass
class ArrowPlan:
    """`Plan`'s fields with the big parts as Arrow tables (``len()`` works on all of them)."""

    new: pa.Table = field(default_factory=STATES.empty_table)
    changed: pa.Table = field(default_factory=STATES.empty_table)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def todo(self) -> pa.Table:
        """New then changed files (each sorted by path), with their ``changed`` flag."""
        new = self.new.append_column("changed", pa.repeat(False, len(self.new)))
        changed = self.changed.append_column("changed", pa.repeat(True, len(self.changed)))
        return pa.concat_tables([new, changed]).cast(TODO)


def plan_tables(
    found: pa.Table,
    known: pa.Table,
    roots: Sequence[str],
    unseen: Sequence[str] = (),
    prune: bool = False,
) -> ArrowPlan:
    """`make_plan` on STATES tables: ``found`` (the scan) against ``known`` (the index)."""
    old = known.select(["key", "mtime", "size"]).rename_columns(["key", "old_mtime", "old_size"])
    old = old.append_column("indexed", pa.repeat(True, len(old)))
    joined = found.join(old, keys="key", join_type="left outer")
    is_new = pc.is_null(joined["indexed"])
    differs = pc.or_kleene(
        pc.not_equal(joined["mtime"], joined["old_mtime"]),
        pc.not_equal(joined["size"], joined["old_size"]),
    )
    is_changed = pc.and_(pc.invert(is_new), pc.fill_null(differs, True))
    states = joined.select(["key", "mtime", "size"])
    new = states.filter(is_new).sort_by("key")
    changed = states.filter(is_changed).sort_by("key")
    seen = found.select(["key"]).append_column("seen", pa.repeat(True, len(found)))
    gone = old.join(seen, keys="key", join_type="left anti")["key"]
    removed, kept = split_gone(map(key_path, gone.to_pylist()), roots, unseen, prune)
    unchanged = len(found) - len(new) - len(changed)
    return ArrowPlan(new, changed, unchanged, removed, kept)


def indexed_states(store) -> pa.Table:
    """The STATES of every indexed file, read from ``store`` as Arrow: the join's other side."""
    from pixfind.search.store import backend_errors

    with backend_errors(store.home, "reading its table"):
        t = store.table.search().select(["path", "path_raw", "mtime", "size"]).to_arrow()
    key = pc.if_else(pc.is_null(t["path_raw"]), pc.cast(t["path"], pa.binary()), t["path_raw"])
    return pa.table([key, t["mtime"], t["size"]], schema=STATES)
