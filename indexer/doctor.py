"""`pixfind doctor`: check an index folder and, with ``repair``, recover what can be recovered.

The LanceDB table keeps its versions (one manifest each in ``db/images.lance/_versions``).
When the newest one can't be read (a truncated manifest, a damaged or missing data file)
an older one often can: each version is probed in a scratch copy of the manifests (the
index itself is never written while checking), newest first, down to the first that reads
in full. Repairing moves unreadable manifests aside into ``_damaged/`` (kept, never deleted)
and, where the newest manifest opens but its data doesn't read, restores the intact version
as a new one: no version is dropped. The FAISS files are derived: checked against their
checksums and rebuilt from the table on the next search when damaged."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pixfind.search.errors import UnusableIndex, _short
from pixfind.search.location import location_of
from pixfind.search.store import META_KEY, TABLE, Store

from .lock import LOCK_NAME, index_lock

DAMAGED_DIR = "_damaged"
_U64 = (1 << 64) - 1  # Lance's V2 manifest names count down from it


@dataclass
class Checkup:
    home: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)  # manifests found, newest first
    latest: int | None = None
    readable: int | None = None  # newest version that reads in full
    unopenable: list[int] = field(default_factory=list)  # newer versions whose manifest fails
    repaired: list[str] = field(default_factory=list)

    @property
    def recoverable(self) -> bool:
        return self.readable is not None and self.readable != self.latest

    def to_dict(self) -> dict:
        return {
            "index": str(self.home),
            "ok": not self.problems,
            "problems": self.problems,
            "notes": self.notes,
            "latest_version": self.latest,
            "newest_readable_version": self.readable,
            "repaired": self.repaired,
        }


def _table_dir(home: Path) -> Path:
    return home / "db" / f"{TABLE}.lance"


def manifests(home: Path) -> list[tuple[int, Path]]:
    """(version, manifest path) of every manifest, newest first (either naming scheme)."""
    found = []
    try:
        entries = list(os.scandir(_table_dir(home) / "_versions"))
    except OSError:
        return []
    for entry in entries:
        stem, _, ext = entry.name.partition(".")
        if ext == "manifest" and stem.isdigit():
            number = int(stem)
            found.append((_U64 - number if number >= 1 << 63 else number, Path(entry.path)))
    return sorted(found, reverse=True)


def probe(home: Path, version: int) -> tuple[str, str] | None:
    """None when ``version`` opens and every row of it reads; else (stage, reason) with stage
    "open" (its manifest) or "read" (its data). Works on a scratch copy of the manifests."""
    import lancedb

    table = _table_dir(home)
    with tempfile.TemporaryDirectory(prefix="pixfind-doctor-") as scratch:
        copy = Path(scratch) / f"{TABLE}.lance"
        copy.mkdir()
        for entry in os.scandir(table):
            if entry.name not in ("_versions", DAMAGED_DIR):
                os.symlink(entry.path, copy / entry.name)
        (copy / "_versions").mkdir()
        for number, path in manifests(home):
            if number <= version:
                shutil.copy2(path, copy / "_versions" / path.name)
        try:
            t = lancedb.connect(scratch).open_table(TABLE)
            if int(t.version) != version:
                return "open", f"opens as version {t.version}"
            if not (t.schema.metadata or {}).get(META_KEY):
                return "open", "no pixfind metadata in its schema"
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return "open", _short(exc)
        try:
            names = [f.name for f in t.schema]
            for name in names:  # one column at a time: bounded memory
                for _ in t.search().select([name]).to_batches():
                    pass
        except Exception as exc:  # noqa: BLE001
            return "read", _short(exc)
    return None


def check(home: Path) -> Checkup:
    """Find what is wrong with the index at ``home``; changes nothing."""
    if (where := location_of(home)).remote:  # it reads and moves manifest files on a disk
        raise UnusableIndex(f"`pixfind doctor` checks index folders, not {where.uri} (yet)")
    up = Checkup(home)
    if home.exists() and not home.is_dir():
        up.problems.append(f"{home} is a file, not an index folder; give --index a folder")
        return up
    if not Store.exists(home):
        up.problems.append(f"no index at {home} (no db/{TABLE}.lance)")
        return up
    if (home / LOCK_NAME).is_dir():
        up.problems.append(
            f"{home / LOCK_NAME} is a folder where pixfind keeps a lock file; remove it "
            f"(`rmdir {home / LOCK_NAME}`)"
        )
    if not os.access(home, os.W_OK):
        up.notes.append("the index is read-only: searching works, indexing needs write access")
    found = manifests(home)
    up.versions = [v for v, _ in found]
    up.latest = up.versions[0] if up.versions else None
    if not found:
        up.problems.append(
            f"the table has no version left (no manifest in {(_table_dir(home) / '_versions')}): "
            f"nothing to recover; move {home} aside and index again "
            f"(`pixfind --index {home} index --rebuild PHOTOS...`)"
        )
        return up
    for version in up.versions:
        failure = probe(home, version)
        if failure is None:
            up.readable = version
            break
        stage, reason = failure
        if stage == "open":
            up.unopenable.append(version)
        up.problems.append(f"version {version} can't be {stage}: {reason}")
    if up.readable is None:
        up.problems.append(
            f"no version of the table reads in full; move {home} aside and index again "
            f"(`pixfind --index {home} index --rebuild PHOTOS...`)"
        )
    elif up.recoverable:
        up.notes.append(
            f"version {up.readable} (of {up.latest}) is intact: `pixfind --index {home} doctor "
            "--repair` makes it the current one (newer versions are kept aside), then index "
            "your folders again to add what was indexed since"
        )
    from pixfind.search.index import INDEX_DIR, saved_damage

    if damage := saved_damage(home / INDEX_DIR):
        up.notes.append(f"{damage}; it is rebuilt from the table on the next search")
    return up


def repair(home: Path) -> Checkup:
    """Make the newest intact version current; keeps every manifest (moved, not deleted)."""
    up = check(home)
    if not up.recoverable:
        return up
    import lancedb

    with index_lock(home):
        aside = _table_dir(home) / DAMAGED_DIR
        for version, path in manifests(home):
            if version in up.unopenable:
                aside.mkdir(exist_ok=True)
                path.rename(aside / path.name)
                up.repaired.append(f"moved the unreadable manifest of version {version} to {aside}")
        table = lancedb.connect(str(home / "db")).open_table(TABLE)
        if int(table.version) != up.readable:
            table.restore(up.readable)
            up.repaired.append(
                f"restored version {up.readable} as version {table.version} (versions in "
                "between are kept in the table's history)"
            )
        shutil.rmtree(home / "faiss", ignore_errors=True)  # derived: rebuilt on next search
    after = check(home)
    after.repaired = up.repaired
    return after
