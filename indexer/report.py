"""What an indexing run did: counts, skipped files, and the seconds spent in each stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .write import WriteResult  # numpy and the store: not needed by a run with nothing to do


@dataclass
class StageTimes:
    """Seconds per stage. decode is what the pipeline waited for decoded batches: with decoding
    workers running ahead it is less than their decoding time, and near 0 when they keep up."""

    scan: float = 0.0
    plan: float = 0.0  # reading the indexed files' states and comparing
    decode: float = 0.0
    embed: float = 0.0
    write: float = 0.0  # store lookups, upserts, deletes and compaction
    index: float = 0.0  # FAISS build (or load when up to date)
    # OCR (--ocr): decoding at OCR size + Tesseract, summed over the decoding workers' photos;
    # with workers it runs alongside embedding, so it is not part of the run's wall time
    ocr: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {name: round(seconds, 3) for name, seconds in asdict(self).items()}


@dataclass
class IndexReport:
    home: str
    model: str
    precision: str = ""  # of the image vectors embedded: fp32 or int8 ("": none embedded)
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    moved: int = 0  # new paths whose content was already indexed elsewhere (vector reused)
    reused: int = 0  # all vectors reused by content hash (moves, copies, touched files)
    captioned: int = 0  # images written with at least one caption
    ocr_read: int = 0  # photos whose text OCR read (--ocr)
    ocr_found: int = 0  # ... in which it found words
    rehashed: int = 0  # rows of an older index given their perceptual hashes (no re-embedding)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # folders (and roots) that could not be listed: their indexed photos are kept (``kept``)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    kept: int = 0  # indexed photos not seen but kept: under an unreadable folder
    pruned: bool = False  # --prune-missing: photos not seen were removed even there
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (root as given, real path)
    notes: list[str] = field(default_factory=list)  # things pixfind did on its own, one line each
    # (RAW, its JPEG/HEIF sibling): RAW+JPEG shots indexed once, through the sibling
    raw_pairs: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    stages: StageTimes = field(default_factory=StageTimes)

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def add(self, result: WriteResult) -> None:
        self.added += result.added
        self.updated += result.updated
        self.removed += result.removed
        self.moved += result.moved
        self.reused += result.reused
        self.captioned += result.captioned
        self.ocr_read += result.ocr_read
        self.ocr_found += result.ocr_found
        self.stages.ocr += result.ocr_seconds
        self.skipped += [(s.path, s.reason) for s in result.skipped]

    def warnings(self) -> list[str]:
        """Lines for people about what was not seen or was done on its own (paths escaped)."""
        from pixfind.search.types import printable_path

        lines = list(self.notes)
        if self.rehashed:
            lines.append(
                f"gave {self.rehashed} photos indexed by an older pixfind their perceptual "
                "hashes, for `pixfind duplicates` (decoded again, not re-embedded)"
            )
        for given, real in self.aliases:
            lines.append(
                f"indexed {printable_path(given)} as {printable_path(real)} (a symlink: real "
                "paths are stored, so each photo is indexed once)"
            )
        for path, reason in self.unreadable[:20]:
            lines.append(f"could not read {printable_path(path)}: {reason}")
        if len(self.unreadable) > 20:
            lines.append(f"... and {len(self.unreadable) - 20} more unreadable (see --json)")
        if self.kept:
            lines.append(
                f"kept {self.kept} indexed photos that were not seen there (not seeing a file "
                "does not mean it is gone): fix access or mount it and index again, or use "
                "--prune-missing to remove them"
            )
        elif self.unreadable and self.pruned:
            lines.append("--prune-missing: photos under unreadable folders were removed")
        if self.raw_pairs:
            lines.append(
                f"{len(self.raw_pairs)} RAW files have a JPEG/HEIF of the same name beside them: "
                "each pair is indexed once, as the JPEG/HEIF (search results name the RAW)"
            )
        return lines

    @property
    def ocr_ms_per_photo(self) -> float:
        return 1000 * self.stages.ocr / self.ocr_read if self.ocr_read else 0.0

    def stage_summary(self) -> str:
        """One line for people, e.g. "scan 0.1s, plan 0.0s, decode 2.3s, embed 10.2s, ..."
        (ocr only when a run read text: "ocr 4.1s = 52 ms/photo")."""
        times = asdict(self.stages)
        ocr = times.pop("ocr")
        line = ", ".join(f"{name} {s:.1f}s" for name, s in times.items())
        if self.ocr_read:
            line += f", ocr {ocr:.1f}s = {self.ocr_ms_per_photo:.0f} ms/photo"
        return line

    def to_dict(self) -> dict:
        return {
            "index": self.home,
            "model": self.model,
            "precision": self.precision,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "reused": self.reused,
            "captioned": self.captioned,
            "ocr_read": self.ocr_read,
            "ocr_found": self.ocr_found,
            "ocr_ms_per_photo": round(self.ocr_ms_per_photo, 1),
            "rehashed": self.rehashed,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "kept_unseen": self.kept,
            "pruned": self.pruned,
            "aliases": [{"given": g, "indexed_as": r} for g, r in self.aliases],
            "raw_pairs": [{"raw": r, "indexed_as": s} for r, s in self.raw_pairs],
            "notes": self.notes,
            "total": self.total,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.embedded / self.seconds, 2) if self.seconds else 0.0,
            "interrupted": self.interrupted,
            "stages": self.stages.to_dict(),
        }
