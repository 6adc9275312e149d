"""The indexed files' (path, mtime, size) as of one table version, readable without LanceDB.

``import lancedb`` and a scan of the table cost a second or more before a re-index can even
tell that nothing changed; rclip answers that from SQLite in a fraction of it. So at the end
of each complete run the indexer writes ``files.state`` next to the table: a JSON header
naming the table version it reflects (its number and the stat of its manifest file, as the
query snapshot does: search/cold/snapshot.py), then the mtimes and sizes as packed binary
arrays and the paths as one NUL-separated block. LanceDB stays the source of truth: the file
is used only while the table's newest manifest is the one it names, so any write to the
table (an indexer, ``pixfind doctor --repair``, a deleted and re-created ``db/``) makes it
stale, and a stale, missing or damaged file only sends the run down the ordinary path. It
also records the stat of the derived files that run left current (the FAISS index's
``infos.json`` and query snapshot): rebuilt, rewritten or deleted since, they are looked at;
and the paths of rows still without perceptual hashes (an older index's, being filled in).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pixfind.search.location import location_of
from pixfind.search.objectstore import table_manifest

from .doctor import manifests

STATE_FILE = "files.state"
FORMAT = 1
_MAGIC = b"PIXFIND-FILES\n"


@dataclass(frozen=True)
class SavedStates:
    """What a complete run left: the table's files as of ``manifest``, and its model."""

    manifest: dict
    identity: str  # the model's identity (search/models.py spec_identity)
    label: str
    states: dict[str, tuple[float, int]]  # path -> (mtime, size), as Store.file_states()
    # files that could not be decoded then, not in the table: path -> (mtime, size, reason)
    failed: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    # rows without perceptual hashes then (search/phash.py unhashed): the pipeline fills them
    unhashed: tuple[str, ...] = ()


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def table_stamp(home: Path, version: int | None = None) -> dict | None:
    """{version, name, size, mtime_ns} of the table's newest manifest (or of ``version``'s):
    a deleted and re-created table at the same version number has another file. On object
    storage, the manifest's {version, name, etag} (search/objectstore.py)."""
    if (where := location_of(home)).remote:
        return table_manifest(where, version)
    for number, path in manifests(home):
        if version is None or number == version:
            stamp = _stamp(path)
            return None if stamp is None else {"version": number, "name": path.name, "stat": stamp}
    return None


def save(
    home: Path,
    states: Mapping[str, tuple[float, int]],
    version: int,
    identity: str,
    label: str,
    derived: Sequence[Path] = (),
    failed: Mapping[str, tuple[float, int, str]] | None = None,
    unhashed: Sequence[str] = (),
) -> bool:
    """Write ``home/files.state`` for table ``version`` (atomically), with the stat of the
    ``derived`` files (under ``home``) now current and the files that ``failed`` to decode
    (so that an unchanged broken file does not send every run to the pipeline); False where
    it can't be written (a read-only index) or the version's manifest is not there.
    ``unhashed``: the rows still without perceptual hashes (a quick look under their roots
    hands over to the pipeline, which fills them)."""
    manifest = table_stamp(home, version)
    if manifest is None:
        return False
    paths = list(states)
    mtimes = array("d", (states[p][0] for p in paths))
    sizes = array("q", (states[p][1] for p in paths))
    blob = "\0".join(paths).encode("utf-8", "surrogateescape")
    body = mtimes.tobytes() + sizes.tobytes() + blob
    header = {
        "format": FORMAT,
        "manifest": manifest,
        "derived": {str(p.relative_to(home)): _stamp(p) for p in derived},
        "failed": [[path, *entry] for path, entry in (failed or {}).items()],
        "unhashed": list(unhashed),
        "identity": identity,
        "label": label,
        "rows": len(paths),
        "byteorder": sys.byteorder,
        "crc32": zlib.crc32(body),
    }
    path = home / STATE_FILE
    tmp = path.with_name(f"{STATE_FILE}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC + json.dumps(header).encode() + b"\n" + body)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _read(home: Path) -> tuple[dict, memoryview] | None:
    """(header, body) of ``home/files.state`` in this format, or None."""
    try:
        with open(home / STATE_FILE, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if not data.startswith(_MAGIC):
        return None
    end = data.find(b"\n", len(_MAGIC))
    try:
        header = json.loads(data[len(_MAGIC) : end])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None
    return header, memoryview(data)[end + 1 :]


def _failed(header: dict) -> dict[str, tuple[float, int, str]]:
    return {path: (mtime, size, why) for path, mtime, size, why in header.get("failed", [])}


def failed_before(home: Path) -> dict[str, tuple[float, int, str]]:
    """The files the last complete run could not decode, fresh or not: about files, not the
    table, it holds while their (mtime, size) do."""
    found = _read(home)
    return _failed(found[0]) if found else {}


def load_fresh(home: Path) -> SavedStates | None:
    """The saved states if they reflect the table as it is now (its newest manifest) and its
    derived files are the ones current then, else None: missing, stale, damaged or from
    another format all mean "ask the table"."""
    found = _read(home)
    if found is None:
        return None
    header, body = found
    if (
        header.get("byteorder") != sys.byteorder
        or header.get("manifest") != table_stamp(home)
        or any(_stamp(home / name) != stamp for name, stamp in header["derived"].items())
        or zlib.crc32(body) != header.get("crc32")
    ):
        return None
    rows = int(header["rows"])
    mtimes, sizes = array("d"), array("q")
    mtimes.frombytes(body[: 8 * rows])
    sizes.frombytes(body[8 * rows : 16 * rows])
    blob = bytes(body[16 * rows :]).decode("utf-8", "surrogateescape")
    paths = blob.split("\0") if rows else []
    if len(paths) != rows:
        return None
    states = dict(zip(paths, zip(mtimes.tolist(), sizes.tolist(), strict=True), strict=True))
    manifest, identity, label = header["manifest"], header["identity"], header["label"]
    unhashed = tuple(header.get("unhashed", ()))
    return SavedStates(manifest, identity, label, states, _failed(header), unhashed)
