"""Captioned collections: ``captions.jsonl`` and sidecar text files (shared by train, eval, index).

``captions.jsonl`` lines are ``{"image": "relative/path.jpg", "caption": "..."}`` with paths
relative to the folder that holds the file (or to its ``images/`` subfolder, as in
../shared/photos); several lines per image are allowed. Sidecars are ``photo.jpg.txt`` or
``photo.txt`` beside the image, one caption per non-empty line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PixfindError
from .images import supported_extensions

CAPTIONS_FILE = "captions.jsonl"
LABELS_FILE = "labels.jsonl"


class CaptionError(PixfindError):
    """A captions file that can't be read as a whole (not a single bad line)."""


@dataclass
class Collection:
    """Images of a folder with their captions (absolute path -> captions, insertion-ordered)."""

    root: Path
    captions: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "captions.jsonl:12: reason"

    @property
    def images(self) -> list[str]:
        return list(self.captions)

    def pairs(self) -> list[tuple[str, str]]:
        return [(img, cap) for img, caps in self.captions.items() for cap in caps]


def _image_base(root: Path, jsonl: Path) -> Path:
    """Paths in a jsonl are relative to its folder, or to an ``images/`` folder beside it."""
    return jsonl.parent / "images" if (jsonl.parent / "images").is_dir() else jsonl.parent


def read_jsonl_pairs(
    jsonl: Path, key: str, root: Path | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """(absolute image path, value of ``key``) per good line, and a message per bad line."""
    base = _image_base(root or jsonl.parent, jsonl)
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionError(f"can't read {jsonl}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        where = f"{jsonl.name}:{number}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            problems.append(f"{where}: needs a string field 'image'")
            continue
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: needs a non-empty string field '{key}'")
            continue
        path = (base / row["image"]).resolve()
        if not path.is_file():
            problems.append(f"{where}: image not found: {row['image']}")
            continue
        pairs.append((str(path), value.strip()))
    return pairs, problems


def sidecar_captions(image: Path) -> list[str]:
    for candidate in (image.with_name(image.name + ".txt"), image.with_suffix(".txt")):
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return []
            return [line.strip() for line in text.splitlines() if line.strip()]
    return []


def _walk_images(root: Path) -> Iterable[Path]:
    exts = supported_extensions()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in exts:
                yield Path(folder) / name


def read_collection(root: str | os.PathLike) -> Collection:
    """Captions of a folder: from ``captions.jsonl`` when present, else from sidecar files."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CaptionError(f"{root} is not a folder")
    coll = Collection(root)
    jsonl = root / CAPTIONS_FILE
    if jsonl.is_file():
        pairs, coll.problems = read_jsonl_pairs(jsonl, "caption")
        for image, caption in pairs:
            coll.captions.setdefault(image, []).append(caption)
    else:
        for image in _walk_images(root):
            caps = sidecar_captions(image)
            if caps:
                coll.captions[str(image)] = caps
    if not coll.captions:
        raise CaptionError(
            f"no captions found in {root}: add {CAPTIONS_FILE} "
            '(lines {"image": "relative/path.jpg", "caption": "..."}) or photo.jpg.txt sidecars'
            + (f"; first problem: {coll.problems[0]}" if coll.problems else "")
        )
    return coll


def read_collections(roots: str | os.PathLike | Sequence[str | os.PathLike]) -> Collection:
    """Several captioned folders as one collection (a photo in two of them keeps all its
    captions); one folder is read_collection."""
    if isinstance(roots, (str, os.PathLike)):
        return read_collection(roots)
    if not roots:
        raise CaptionError("no captioned folder given")
    parts = [read_collection(r) for r in roots]
    merged = Collection(parts[0].root)
    for part in parts:
        for image, caps in part.captions.items():
            have = merged.captions.setdefault(image, [])
            have.extend(c for c in caps if c not in have)
        merged.problems.extend(part.problems)
    return merged


def read_labels(root: str | os.PathLike) -> tuple[list[tuple[str, str]], list[str]]:
    """(image, label) pairs from ``labels.jsonl`` for zero-shot classification."""
    root = Path(root).expanduser().resolve()
    jsonl = root / LABELS_FILE
    if not jsonl.is_file():
        raise CaptionError(f"no {LABELS_FILE} in {root}")
    return read_jsonl_pairs(jsonl, "label")
