"""Captions for images being indexed: sidecar files and ``captions.jsonl`` (search/captions.py
formats, shared with training) plus captions embedded in the image's own metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pixfind.search.captions import CAPTIONS_FILE, CaptionError, read_jsonl_pairs, sidecar_captions
from pixfind.search.location import is_uri

MAX_CAPTIONS = 8  # per image: the best one counts at search time, more only cost embedding
MAX_CAPTION_CHARS = 500


class CaptionFinder:
    """Looks up captions per image; each ``captions.jsonl`` found in an image's folder or any
    ancestor up to its indexed root is read once per run."""

    def __init__(self, roots: Sequence[str]):
        self.roots = [r.rstrip(os.sep) for r in roots]
        self._jsonl: dict[str, dict[str, list[str]]] = {}
        self.problems: list[str] = []

    def _from_jsonl(self, folder: str) -> dict[str, list[str]]:
        if folder not in self._jsonl:
            found: dict[str, list[str]] = {}
            jsonl = Path(folder) / CAPTIONS_FILE
            if jsonl.is_file():
                try:
                    pairs, problems = read_jsonl_pairs(jsonl, "caption")
                except CaptionError as exc:
                    pairs, problems = [], [str(exc)]
                self.problems += [f"{jsonl}: {p}" for p in problems[:20]]
                for image, caption in pairs:
                    found.setdefault(image, []).append(caption)
            self._jsonl[folder] = found
        return self._jsonl[folder]

    def _folders(self, path: str):
        folder = os.path.dirname(path)
        root = next((r for r in self.roots if path.startswith(r + os.sep)), os.path.dirname(path))
        while True:
            yield folder
            if folder == root or len(folder) <= len(root):
                return
            parent = os.path.dirname(folder)
            if parent == folder:
                return
            folder = parent

    def external(self, path: str) -> list[str]:
        """Captions from sidecars and captions.jsonl files for one image (none for an object
        on s3://: only the captions in its own metadata)."""
        if is_uri(path):
            return []
        try:
            found = list(sidecar_captions(Path(path)))
        except (OSError, ValueError):
            found = []
        resolved = None
        for folder in self._folders(path):
            table = self._from_jsonl(folder)
            if not table:
                continue
            if resolved is None:
                try:
                    resolved = str(Path(path).resolve())
                except (OSError, RuntimeError):
                    resolved = path
            found += table.get(path, []) or table.get(resolved, [])
        return found


def merge_captions(*groups: Sequence[str]) -> tuple[str, ...]:
    """Deduplicated, trimmed, capped captions, in order of the groups given."""
    seen: dict[str, None] = {}
    for group in groups:
        for caption in group:
            text = " ".join(caption.split())[:MAX_CAPTION_CHARS]
            if text and text.lower() not in {s.lower() for s in seen}:
                seen[text] = None
    return tuple(list(seen)[:MAX_CAPTIONS])
