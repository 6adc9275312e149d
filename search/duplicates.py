"""Groups of duplicate photos in an index: exact copies (same bytes) and near copies (resized,
recompressed, re-exported, lightly edited or cropped, bursts), with one best copy per group.

Exact copies share the stored content hash. Near copies are pairs whose perceptual hashes
(search/phash.py) differ in at most ``threshold`` of 64 bits: whole picture against whole
picture, or (within at most 7 bits) one's whole picture against the other's centre 90%, a
light crop. Pairs are
found exactly by multi-index hashing (phash.near_pairs; bench/duplicates.py times a million
photos) and join into groups (connected components, so a burst whose ends differ more than
the threshold is still one group).

Nothing here deletes or moves a file: callers show or list the copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from . import phash
from .errors import BadQuery
from .store import Store, _real_paths
from .types import Filters

DEFAULT_THRESHOLD = 10  # bits of 64; README "Duplicates" has the measurements behind it
MAX_THRESHOLD = 16  # beyond this unrelated photos group together (and the search slows)
KEEP_RULES = ("largest", "oldest", "metadata")
_COLUMNS = (
    "id", "path", "path_raw", "width", "height", "size", "mtime", "taken_at", "taken_source",
    "file_type", "content_hash", "camera_make", "camera_model", "gps_lat", "has_caption",
)  # fmt: skip


@dataclass(frozen=True)
class Copy:
    """One photo of a group."""

    id: int
    path: str
    width: int
    height: int
    size: int  # bytes
    taken_at: float  # EXIF date, else the file's mtime (POSIX seconds)
    taken_source: str  # "exif" or "mtime"
    file_type: str
    metadata: int  # how many of EXIF date, camera, GPS position and caption it carries
    best: bool  # the copy to keep, by the group's rule
    same_file: bool  # byte-identical to the best copy
    distance: int  # perceptual-hash bits from the best copy (0 for the best; -1: unknown)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Group:
    """Photos that are copies of each other, best copy first."""

    kind: str  # "exact": every copy has the same bytes; "near": some are edited copies
    copies: tuple[Copy, ...]

    @property
    def best(self) -> Copy:
        return self.copies[0]

    @property
    def others(self) -> tuple[Copy, ...]:
        return self.copies[1:]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "copies": [c.to_dict() for c in self.copies]}


@dataclass(frozen=True)
class Duplicates:
    groups: tuple[Group, ...]
    photos: int  # photos compared (after filters)
    unhashed: int  # of those, photos without perceptual hashes (only exact copies found)
    threshold: int
    keep: str

    @property
    def copies(self) -> int:
        """Photos that are not the best of their group: what could be removed."""
        return sum(len(g.others) for g in self.groups)

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "keep": self.keep,
            "photos": self.photos,
            "unhashed": self.unhashed,
            "copies": self.copies,
            "groups": [g.to_dict() for g in self.groups],
        }


def check_options(threshold: int, keep: str) -> None:
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise BadQuery(
            f"--threshold must be 0..{MAX_THRESHOLD} bits (default {DEFAULT_THRESHOLD}); "
            f"got {threshold}"
        )
    if keep not in KEEP_RULES:
        raise BadQuery(f"--keep must be one of {', '.join(KEEP_RULES)}; got {keep!r}")


def find_duplicates(
    store: Store,
    filters: Filters | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    keep: str = "largest",
) -> Duplicates:
    """Groups of copies among the photos of ``store`` that pass ``filters``."""
    check_options(threshold, keep)
    hashed = phash.has_columns(store)
    t = store._scan([*_COLUMNS, *(phash.COLUMNS if hashed else ())])
    if filters:
        t = t.filter(np.isin(t["id"].to_numpy(), store.filter_ids(filters)))
    n = t.num_rows
    full = crop = None
    has_hash = np.zeros(n, bool)
    if hashed and n:
        has_hash = t[phash.COLUMNS[0]].is_valid().to_numpy(zero_copy_only=False)
        full = phash.to_codes(_ints(t[phash.COLUMNS[0]]))
        crop = phash.to_codes(_ints(t[phash.COLUMNS[1]]))
    links = [exact_pairs(t["content_hash"].to_pylist())]
    if full is not None and has_hash.any():
        rows = np.flatnonzero(has_hash)
        i, j = phash.near_pairs(full[rows], crop[rows], threshold)
        links.append((rows[i], rows[j]))
    a = np.concatenate([p[0] for p in links]).astype(np.int64)
    b = np.concatenate([p[1] for p in links]).astype(np.int64)
    members = components(n, a, b)
    every = np.concatenate(members) if members else np.zeros(0, np.int64)
    sub = t.take(every)  # one take for all groups: a take per group costs ~10 ms each
    rows = sub.drop_columns(["path_raw"]).to_pylist()
    for row, path in zip(rows, _real_paths(sub), strict=True):
        row["path"] = path
    ends = np.cumsum([len(m) for m in members]).tolist()
    groups = [
        _group(idx, rows[end - len(idx) : end], full, crop, has_hash, keep)
        for idx, end in zip(members, ends, strict=True)
    ]
    groups.sort(key=lambda g: (-len(g.copies), g.best.path))
    return Duplicates(tuple(groups), n, int(n - has_hash.sum()), threshold, keep)


def _ints(column) -> np.ndarray:
    """An int64 column with nulls as 0 (their rows are masked out by ``has_hash``)."""
    import pyarrow.compute as pc

    return pc.fill_null(column, 0).to_numpy().astype(np.int64)


def exact_pairs(hashes: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) linking each row to the first row with the same content hash."""
    first: dict[str, int] = {}
    a, b = [], []
    for i, h in enumerate(hashes):
        if h is None:
            continue
        j = first.setdefault(h, i)
        if j != i:
            a.append(j)
            b.append(i)
    return np.array(a, np.int64), np.array(b, np.int64)


def components(n: int, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Connected components of more than one row, given edges (a[k], b[k])."""
    if not len(a):
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return [g for g in np.split(order, cuts) if len(g) > 1]


def _metadata(row: dict) -> int:
    return sum(
        (
            row["taken_source"] == "exif",
            bool(row["camera_make"] or row["camera_model"]),
            row["gps_lat"] is not None,
            bool(row["has_caption"]),
        )
    )


def best_order(rows: Sequence[dict], keep: str) -> list[int]:
    """Indices of ``rows`` best first. largest: most pixels, then bytes; oldest: earliest
    taken; metadata: most of EXIF date, camera, GPS and caption. Ties: the other rules in
    that order, then the path, so the choice never depends on the index's row order."""

    def largest(r):
        return (-(r["width"] or 0) * (r["height"] or 0), -(r["size"] or 0))

    def oldest(r):
        return (r["taken_at"] or r["mtime"] or 0.0,)

    def metadata(r):
        return (-_metadata(r),)

    rules = {"largest": largest, "oldest": oldest, "metadata": metadata}
    chain = [rules[keep]] + [f for name, f in rules.items() if name != keep]
    return sorted(
        range(len(rows)), key=lambda k: (*(x for f in chain for x in f(rows[k])), rows[k]["path"])
    )


def _group(idx: np.ndarray, rows: list[dict], full, crop, has_hash, keep: str) -> Group:
    order = best_order(rows, keep)
    idx = idx[order]
    rows = [rows[k] for k in order]
    best = idx[0]
    copies = []
    for k, (i, row) in enumerate(zip(idx, rows, strict=True)):
        known = full is not None and has_hash[i] and has_hash[best]
        distance = _distance(full, crop, best, i) if known else -1
        copies.append(
            Copy(
                id=int(row["id"]),
                path=row["path"],
                width=int(row["width"] or 0),
                height=int(row["height"] or 0),
                size=int(row["size"] or 0),
                taken_at=float(row["taken_at"] or row["mtime"] or 0.0),
                taken_source=row["taken_source"] or "mtime",
                file_type=row["file_type"] or "",
                metadata=_metadata(row),
                best=k == 0,
                same_file=row["content_hash"] == rows[0]["content_hash"],
                distance=0 if k == 0 else distance,
            )
        )
    kind = "exact" if all(c.same_file for c in copies) else "near"
    return Group(kind, tuple(copies))


def _distance(full: np.ndarray, crop: np.ndarray, i: int, j: int) -> int:
    return int(
        min(
            phash.hamming(full[i], full[j]),
            phash.hamming(full[i], crop[j]),
            phash.hamming(crop[i], full[j]),
        )
    )
