"""The query snapshot: what a text search needs besides the FAISS index, readable without LanceDB.

``import lancedb`` costs about a second, and at a million rows a LanceDB take of ten rows
costs milliseconds. So next to ``faiss/index.faiss`` (and in the same atomic swap, see
VectorIndex.save) pixfind writes:

- ``records.bin``: the columns a hit shows (id, path, size in pixels, date, file type) in
  FAISS position order, as raw arrays one after another (their layout in snapshot.json)
  read by memory map without pyarrow (60-150 ms to import): fetching the records of ten
  hits touches ten rows, at any collection size (about 60-100 bytes a photo);
- ``snapshot.json``: which table version it reflects (its number and the stat of its
  manifest file, so that a deleted and re-created table at the same version number is not
  taken for it), how many rows carry captions, and the text tower's recipe
  (search/texttower.py).

A snapshot is used only while it is fresh: the newest manifest in ``db/images.lance/_versions``
must be the one recorded. Anything else (an indexer that wrote since, a missing or damaged
file) sends the query down the ordinary path, which rebuilds the index and the snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json

SNAPSHOT_FORMAT = 2  # 2: records.bin (1: records.arrow)
META = "snapshot.json"
RECORDS = "records.bin"
COLUMNS = ["id", "path", "path_raw", "width", "height", "taken_at", "file_type"]
_U64 = (1 << 64) - 1


# their [size, crc32] go in infos.json (kw_*: the keyword half, search/cold/bm25.py)
CHECKED_FILES = ("index.faiss", "ids.npy", RECORDS, "kw_postings.npz", "kw_tokens.json")


def file_sum(path: Path) -> list[int]:
    """[size, crc32] of a file, read in blocks: cheap (several GB/s), catches damage."""
    crc, size = 0, 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return [size, crc]


def checksums(directory: Path) -> dict[str, list[int]]:
    return {
        name: file_sum(directory / name) for name in CHECKED_FILES if (directory / name).exists()
    }


def notice(message: str) -> None:
    """One line on stderr about something pixfind repaired by itself (derived files)."""
    print(f"pixfind: {message}", file=sys.stderr, flush=True)


# one save at a time per process: `pixfind serve --watch` builds in a request thread and in
# the watcher thread, and a save's temp and swap folders are named by process
_SAVING = threading.Lock()


def save_somewhere(save, directory: Path, home: Path) -> Path | None:
    """``save(directory)``; where the index folder can't be written (read-only, full disk)
    the cache folder, else nowhere (kept in memory): a read-only index still searches."""
    try:
        with _SAVING:
            save(directory)
        return directory
    except (OSError, RuntimeError) as exc:  # FAISS reports write errors as RuntimeError
        why = exc.strerror if isinstance(exc, OSError) else str(exc).strip().split("\n")[-1]
    try:
        with _SAVING:
            save(cache_dir(home))
        where = cache_dir(home)
    except (OSError, RuntimeError):
        where = None
    notice(f"can't write {directory} ({why}); the FAISS index is kept in {where or 'memory'}")
    return where


def impossible(scores: np.ndarray, pos: np.ndarray, rows: int, exact: bool) -> bool:
    """Search results no intact index gives: cosines of unit vectors lie in [-1, 1]
    (approximate indexes stray a little), positions within the rows."""
    found = pos >= 0
    slack = 1e-3 if exact else 0.5
    return bool((pos >= rows).any() or not np.all(np.abs(scores[found]) <= 1.0 + slack))


def damage(directory: Path, checksums: dict) -> str | None:
    """What is wrong with the derived files in ``directory`` against the checksums written
    with them; None when intact. Files saved without checksums count as damaged."""
    if not checksums:
        return f"{directory} was saved without checksums"
    for name, expected in checksums.items():
        path = directory / name
        try:
            if file_sum(path) != list(expected):
                return f"{path} is damaged (its checksum does not match)"
        except OSError as exc:
            return f"{path} can't be read ({exc.strerror or exc})"
    return None


def cache_dir(home: Path) -> Path:
    """Where the FAISS files of an index folder that can't be written are kept."""
    from ..settings import model_cache_dir

    key = hashlib.blake2b(str(home).encode("utf-8", "surrogateescape"), digest_size=8)
    return model_cache_dir() / f"faiss-{key.hexdigest()}"


def versions_dir(home: Path) -> Path:
    from ..store import TABLE

    return home / "db" / f"{TABLE}.lance" / "_versions"


def _stamp(version: int, path: Path) -> dict | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"version": version, "name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def manifest_of(home: Path, version: int) -> dict | None:
    """The stamp of one version's manifest (either naming scheme), or None. On object
    storage, the version and URI (its files are not stat'ed there)."""
    from ..location import location_of

    if (where := location_of(home)).remote:
        from ..objectstore import table_manifest

        return table_manifest(where, version)
    base = versions_dir(home)
    for name in (f"{_U64 - version:020d}.manifest", f"{version}.manifest"):
        if found := _stamp(version, base / name):
            return found
    return None


def newest_manifest(home: Path) -> dict | None:
    """{version, name, size, mtime_ns} of the table's newest manifest, without LanceDB.

    Lance names manifests ``{version}.manifest`` or, in its V2 scheme, ``{u64max -
    version:020}.manifest`` (newest first in a listing). On object storage: one listing."""
    from ..location import location_of

    if (where := location_of(home)).remote:
        from ..objectstore import table_manifest

        return table_manifest(where)
    best: tuple[int, os.DirEntry] | None = None
    try:
        entries = list(os.scandir(versions_dir(home)))
    except OSError:
        return None
    for entry in entries:
        stem, dot, ext = entry.name.partition(".")
        if ext != "manifest" or not stem.isdigit():
            continue
        number = int(stem)
        version = _U64 - number if number >= 1 << 63 else number
        if best is None or version > best[0]:
            best = (version, entry)
    return None if best is None else _stamp(best[0], Path(best[1].path))


def write(
    directory: Path,
    home: Path,
    records,
    store_version: int,
    identity: str,
    dim: int,
    recipe: dict | None,
) -> None:
    """Write the snapshot files into ``directory`` (the index's temp folder before its swap).

    ``records`` is a pyarrow table with COLUMNS (and ``has_caption``) in FAISS order."""
    import pyarrow.compute as pc

    # gs://, az://: the version the index was built from (no newest manifest is read there,
    # so no cold path, but the hits' records are read from the snapshot)
    manifest = newest_manifest(home) or manifest_of(home, store_version)
    if manifest is None or manifest["version"] != store_version:
        return  # the table moved on while the index was built: no snapshot this time
    captioned = int(pc.sum(records["has_caption"]).as_py() or 0) if records.num_rows else 0
    layout = save_columns(directory / RECORDS, record_columns(records))
    _write_meta(directory, manifest, records.num_rows, captioned, identity, dim, recipe, layout)


def write_streamed(
    directory: Path,
    home: Path,
    written,
    store_version: int,
    identity: str,
    dim: int,
    recipe: dict | None,
) -> None:
    """``write`` for records already written by a RecordsWriter (search/cold/records.py):
    links them into ``directory`` and writes the snapshot's meta, when the table is still at
    that version."""
    manifest = newest_manifest(home) or manifest_of(home, store_version)
    if manifest is None or manifest["version"] != store_version or written.rows == 0:
        return
    written.close()
    try:
        os.link(written.path, directory / RECORDS)
    except OSError:  # another file system (the cache folder of a read-only index)
        import shutil

        shutil.copyfile(written.path, directory / RECORDS)
    _write_meta(
        directory, manifest, written.rows, written.captioned, identity, dim, recipe, written.layout
    )


def _write_meta(directory, manifest, rows, captioned, identity, dim, recipe, layout) -> None:
    meta = {
        "format": SNAPSHOT_FORMAT,
        "store_version": manifest["version"],
        "manifest": manifest,
        "rows": rows,
        "records": layout,
        "captioned_rows": captioned,
        "identity": identity,
        "dim": dim,
        "recipe": recipe if recipe and recipe.get("identity") == identity else None,
    }
    (directory / META).write_text(json.dumps(meta, indent=2))


def read_meta(directory: Path) -> dict | None:
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == SNAPSHOT_FORMAT else None


def outdated(directory: Path) -> bool:
    """Whether ``directory`` holds a snapshot in an older format: the index is rebuilt with a
    new one (once, after an upgrade), else the cold path would stay off until the next
    change to the table."""
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") != SNAPSHOT_FORMAT


def set_recipe(directory: Path, recipe: dict) -> None:
    """Record the text tower's recipe in an existing snapshot (when it changed)."""
    meta = read_meta(directory)
    if meta is None or meta.get("recipe") == recipe or recipe.get("identity") != meta["identity"]:
        return
    meta["recipe"] = recipe
    # a read-only index still searches, just without the shortcut
    with contextlib.suppress(OSError):
        write_json(directory / META, meta)


def is_fresh(meta: dict | None, home: Path) -> bool:
    """Whether a snapshot reflects the table as it is now (its newest version)."""
    return bool(meta) and newest_manifest(home) == meta.get("manifest")


def same_table(meta: dict | None, home: Path, version: int) -> bool:
    """False when the snapshot was made from another table that had the same version number
    (``db/`` deleted and indexed anew): its manifest file differs. True without a snapshot."""
    if not meta or meta.get("store_version") != version:
        return True
    return manifest_of(home, version) == meta.get("manifest")


@dataclass(frozen=True)
class HitRecord:
    """What a hit shows of a photo (the fields Searcher reads from an ImageRecord)."""

    path: str
    width: int
    height: int
    taken_at: float
    file_type: str


class Records:
    """The memory-mapped records of one snapshot, by FAISS position."""

    def __init__(self, directory: Path, rows: int):
        layout = (read_meta(directory) or {}).get("records")
        if not layout:
            raise ValueError(f"{directory / META} has no records layout")
        self.columns = load_columns(directory / RECORDS, layout)
        if len(self.columns["id"]) != rows:
            raise ValueError(f"{directory / RECORDS}: {len(self.columns['id'])} rows, not {rows}")

    def at(self, positions: list[int]) -> dict[int, HitRecord]:
        c = self.columns
        return {
            int(c["id"][p]): HitRecord(
                path=_text(c, "path", p, "surrogateescape"),
                width=int(c["width"][p]),
                height=int(c["height"][p]),
                taken_at=float(c["taken_at"][p]),
                file_type=_text(c, "file_type", p),
            )
            for p in positions
        }


def _text(columns: dict, name: str, position: int, errors: str = "strict") -> str:
    lo, hi = columns[f"{name}_starts"][position : position + 2]
    return columns[f"{name}_blob"][lo:hi].tobytes().decode("utf-8", errors)


def record_columns(table) -> dict[str, np.ndarray]:
    """The records' arrays from a pyarrow table with COLUMNS: nulls as the hits show them
    (0, 0.0, ""), the path as the bytes of its real name (``path_raw`` where set)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def filled(name: str, value, dtype) -> np.ndarray:
        return pc.fill_null(table[name], value).to_numpy().astype(dtype)

    path = pc.if_else(
        pc.is_null(table["path_raw"]), table["path"].cast(pa.binary()), table["path_raw"]
    )
    return {
        "id": table["id"].to_numpy().astype(np.int64),
        "width": filled("width", 0, np.int64),
        "height": filled("height", 0, np.int64),
        "taken_at": filled("taken_at", 0.0, np.float64),
        **_blob("path", path),
        **_blob("file_type", pc.fill_null(table["file_type"], "").cast(pa.binary())),
    }


def _blob(name: str, array) -> dict[str, np.ndarray]:
    """A binary Arrow column as (starts: int64, n + 1; blob: uint8)."""
    import pyarrow as pa

    arr = array.combine_chunks() if hasattr(array, "combine_chunks") else array
    arr = arr.cast(pa.large_binary())
    if len(arr) == 0:
        return {f"{name}_starts": np.zeros(1, np.int64), f"{name}_blob": np.zeros(0, np.uint8)}
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    blob = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return {f"{name}_starts": offsets - offsets[0], f"{name}_blob": blob[offsets[0] : offsets[-1]]}


def save_columns(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, list]:
    """Write arrays one after another, each 8-byte aligned, into one file; returns their
    layout (name -> [dtype, shape, offset]) for ``load_columns``."""
    layout = {}
    with open(path, "wb") as fh:
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            fh.write(b"\0" * (-fh.tell() % 8))
            layout[name] = [array.dtype.str, list(array.shape), fh.tell()]
            fh.write(array.tobytes())
        fh.write(b"\0" * 8)  # never an empty file: those can't be mapped
    return layout


def load_columns(path: Path, layout: dict[str, list]) -> dict[str, np.ndarray]:
    """The arrays ``save_columns`` wrote, as views of the file mapped read-only."""
    data = np.memmap(path, np.uint8, mode="r")
    out = {}
    for name, (dtype, shape, offset) in layout.items():
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + size > len(data):
            raise ValueError(f"{path} is shorter than its layout")
        out[name] = data[offset : offset + size].view(dtype).reshape(shape)
    return out
